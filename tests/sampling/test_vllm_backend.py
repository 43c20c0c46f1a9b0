"""``vllm-passuntil`` on a real vLLM (CPU build) and a tiny local GPT-2.

Skipped where vLLM is not installed (the project's own environment); run in
the vLLM environment that ``bench/setup_vllm_env.sh`` makes:

    .venv-vllm/bin/python -m pytest -q tests/sampling/test_vllm_backend.py

What is shown: one vLLM request per instance draws exactly the samples of
per-sample seeds; the adaptive engine draws the same samples whatever its
chunking, and after a SIGKILL and a restart through the real CLI; the plain
lm-eval CLI draws the same samples as the engine's first ones; the PU agrees
with the ``hf`` backend's and with the model's exact pass probability; data
parallel dispatch over several replicas returns what one engine does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm")

# One engine in this process (vLLM's engine-core subprocess is for the CLI tests).
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

from lm_eval.api.instance import Instance  # noqa: E402

from lm_eval_ext.sampling.adaptive import StopRule  # noqa: E402
from lm_eval_ext.sampling.runner import run_adaptive, state_path  # noqa: E402
from lm_eval_ext.sampling.vllm_passuntil import (  # noqa: E402
    VLLMPassUntil,
    _Replica,
    _ReplicaPool,
    base_seed,
    split_by_load,
)
from tests.lm_eval_cli import offline_env, sigkill_when  # noqa: E402
from tests.toy_task import write_exact_match_task  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TASK = "toy_passuntil"
TOKENS = [" a", " b", " c", "e", "s", "t", "(", ")", ":", " =", " x", " in"]
ROWS = [{"prompt": "def f(x):\n    return", "target": TOKENS}, {"prompt": "import", "target": TOKENS[:4]},
        {"prompt": "for i", "target": TOKENS[4:]}, {"prompt": "x", "target": ["NEVER_EVER"]}]
RULE = StopRule(r=2, cap=128, first=4)
SEED = 1234
# top_k=0: full-vocabulary sampling in both backends (transformers' generate
# would otherwise apply its default top_k=50 under lm-eval's hf, and vLLM not)
GEN_KWARGS = "top_k=0"
ENGINE_ARGS = "dtype=float32,enforce_eager=True,gpu_memory_utilization=0.1,max_model_len=512"


def model_args(model_dir) -> str:
    return f"pretrained={model_dir},{ENGINE_ARGS}"


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    return write_exact_match_task(tmp_path_factory.mktemp("vllm_task"), TASK, ROWS, max_gen_toks=1)


@pytest.fixture(scope="module")
def lm(tiny_model_dir):
    model = VLLMPassUntil(pretrained=str(tiny_model_dir), dtype="float32", enforce_eager=True,
                          gpu_memory_utilization=0.1, max_model_len=512, seed=SEED)
    yield model
    model.close()


def run(lm, task_dir, out, **kw):
    kw = {"rule": RULE, "seed": SEED, "include_path": str(task_dir), "gen_kwargs": GEN_KWARGS,
          "chunk_samples": 4096, "progress": False, "echo": None, **kw}
    return run_adaptive(TASK, lm, output_path=out, **kw)


def outcomes(out, model, args=None) -> tuple[dict, dict]:
    """Per document: outcomes (from the state) and completions in sampling order."""
    spath = state_path(out, TASK, model, args)
    state = json.loads(spath.read_text())
    texts: dict[str, list[str]] = {}
    seen = set()
    for line in (spath.parent / "completions.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if (rec["doc_id"], rec["round"], rec["seed"]) in seen:
            continue  # a chunk drawn again after a kill
        seen.add((rec["doc_id"], rec["round"], rec["seed"]))
        texts.setdefault(str(rec["doc_id"]), []).extend(c for c, _ in rec["samples"])
    assert state["finished"]
    return {d: i["outcomes"] for d, i in state["instances"].items()}, texts


@pytest.fixture(scope="module")
def reference(lm, task_dir, tmp_path_factory):
    """The uninterrupted run, one lm-eval call per round: (outcomes, completions, results, output dir)."""
    out = tmp_path_factory.mktemp("vllm_ref")
    res = run(lm, task_dir, out)
    outs, texts = outcomes(out, lm)
    return outs, texts, res, out


def instance(doc_id, context, gen_kwargs, task=TASK):
    return Instance(request_type="generate_until", doc={}, arguments=(context, gen_kwargs), idx=0,
                    metadata=(task, doc_id, 1))


SAMPLING = {"until": ["\n"], "max_gen_toks": 6, "do_sample": True, "temperature": 1.0}


def test_one_request_per_instance_draws_the_per_sample_seeds(lm):
    from vllm import SamplingParams, TokensPrompt

    a, b = instance(0, "def f(x):", SAMPLING), instance(1, "import os", SAMPLING)
    before = dict(lm.passuntil_stats)
    got = lm.generate_until([a] * 6 + [b] * 3)
    assert lm.passuntil_stats["vllm_requests"] - before["vllm_requests"] == 2  # one per instance
    assert len(set(got[:6])) > 1  # six samples, not one sample six times

    # sample i is what a request of its own with seed base + i draws
    toks = lm.tok_encode("def f(x):")
    first = base_seed(SEED, TASK, 0, "def f(x):")
    single = lm.model.generate([TokensPrompt(prompt_token_ids=toks)] * 6,
                               [SamplingParams(seed=first + i, max_tokens=6, stop=["\n", "<|endoftext|>"],
                                               temperature=1.0, skip_special_tokens=False,
                                               spaces_between_special_tokens=False) for i in range(6)],
                               use_tqdm=False)
    assert [o.outputs[0].text.split("\n")[0] for o in single] == got[:6]

    # whatever the calls: samples 0-2 then 3-5 (the engine's offsets), alone or with others
    with lm.passuntil_draw(seed=SEED, task=TASK, doc_ids=[0], offsets={0: 0}):
        head = lm.generate_until([a] * 3)
    with lm.passuntil_draw(seed=SEED, task=TASK, doc_ids=[7, 0], offsets={7: 0, 0: 3}):
        other, tail = instance(0, "x = ", SAMPLING), instance(1, "def f(x):", SAMPLING)
        mixed = lm.generate_until([other] * 2 + [tail] * 3)
    assert head + mixed[2:] == got[:6]

    # greedy: one answer for every repeat (vLLM refuses n > 1 there)
    greedy = lm.generate_until([instance(0, "def f(x):", {"until": ["\n"], "max_gen_toks": 6, "do_sample": False})]
                               * 3)
    assert len(set(greedy)) == 1


def test_same_samples_whatever_the_chunking(lm, task_dir, reference, tmp_path):
    outs, texts, _, _ = reference
    run(lm, task_dir, tmp_path, chunk_samples=16)
    assert outcomes(tmp_path, lm) == (outs, texts)
    assert outs["3"] == "0" * RULE.cap  # the impossible instance ran to the cap
    assert any(o.count("1") >= RULE.r for o in outs.values())
    # Its samples over 6 rounds are samples 0..127 of its per-sample seeds, as one call draws them.
    toy = {"until": ["\n"], "max_gen_toks": 1, "do_sample": True, "temperature": 1.0, "top_k": 0}
    with lm.passuntil_draw(seed=SEED, task=TASK, doc_ids=[3], offsets={3: 0}):
        assert lm.generate_until([instance(0, ROWS[3]["prompt"], toy)] * RULE.cap) == texts["3"]


def cli(model_dir, task_dir, out) -> list[str]:
    return [sys.executable, "-m", "lm_eval_ext", "passuntil", "--model", "vllm-passuntil",
            "--model_args", model_args(model_dir), "--tasks", TASK, "--include_path", str(task_dir),
            "--output_path", str(out), "--r", str(RULE.r), "--cap", str(RULE.cap), "--first", str(RULE.first),
            "--chunk_samples", "8", "--seed", str(SEED), "--gen_kwargs", GEN_KWARGS, "--log_samples"]


@pytest.mark.slow
def test_killed_and_resumed_through_the_cli(tiny_model_dir, task_dir, reference, tmp_path):
    """SIGKILL (the whole process group: vLLM's engine core too) after some
    chunks, then the same command: the outcomes and completions of the
    uninterrupted in-process run (another chunking, another process)."""
    outs, texts, _, _ = reference
    env = offline_env(OMP_NUM_THREADS="2")
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)  # as a user runs it: vLLM's engine-core process
    cmd = cli(tiny_model_dir, task_dir, tmp_path)
    spath = state_path(tmp_path, TASK, "vllm-passuntil", model_args(tiny_model_dir))
    sigkill_when(cmd, spath, lambda st: st["round"] >= 2 or len(st["chunks_done"]) >= 2, env=env, cwd=ROOT,
                 poll=0.05)
    st = json.loads(spath.read_text())
    assert not st["finished"] and 0 < sum(len(i["outcomes"]) for i in st["instances"].values())

    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming {TASK} at round" in again.stderr
    assert outcomes(tmp_path, "vllm-passuntil", model_args(tiny_model_dir)) == (outs, texts)


@pytest.mark.slow
def test_plain_lm_eval_cli_draws_the_engines_first_samples(tiny_model_dir, reference, tmp_path):
    """``lm-eval-ext lm-eval run --model vllm-passuntil`` on the same task with
    ``repeats: 8``: sample i of a document is the engine's sample i (the run
    seed is the model's ``seed=``, the engine's ``--seed`` there)."""
    _, texts, _, _ = reference
    (tmp_path / "task").mkdir()
    tasks = write_exact_match_task(tmp_path / "task", TASK, ROWS, max_gen_toks=1)
    yaml = tasks / f"{TASK}.yaml"
    yaml.write_text(yaml.read_text().replace("repeats: 1", "repeats: 8"))
    cmd = [sys.executable, "-m", "lm_eval_ext", "lm-eval", "--no_builtin_tasks", "run",
           "--model", "vllm-passuntil", "--model_args", f"{model_args(tiny_model_dir)},seed={SEED}",
           "--tasks", TASK, "--include_path", str(tasks), "--gen_kwargs", GEN_KWARGS,
           "--output_path", str(tmp_path / "out"), "--log_samples"]
    done = subprocess.run(cmd, cwd=ROOT, env=offline_env(OMP_NUM_THREADS="2"), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(x) for x in next((tmp_path / "out").rglob(f"samples_{TASK}_*.jsonl")).read_text()
             .splitlines()]
    assert sorted(rec["doc_id"] for rec in lines) == list(range(len(ROWS)))
    for rec in lines:
        assert rec["resps"][0] == texts[str(rec["doc_id"])][:8]


def test_pu_agrees_with_hf_and_with_the_model(tiny_model_dir, task_dir, reference, tmp_path):
    """The vLLM run's PU and the hf run's agree within their intervals, and the
    vLLM run's per-instance intervals cover the model's exact pass probability."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    outs, _, res_v, out_v = reference
    res_h = run_adaptive(TASK, "hf", f"pretrained={tiny_model_dir},dtype=float32", output_path=tmp_path,
                         rule=RULE, seed=SEED, include_path=str(task_dir), gen_kwargs=GEN_KWARGS,
                         device="cpu", batch_size=64, progress=False, echo=None)
    mv, mh = res_v["results"][TASK], res_h["results"][TASK]
    pv, ph = mv["pu,passuntil"], mh["pu,passuntil"]
    sv, sh = mv["pu_stderr,passuntil"], mh["pu_stderr,passuntil"]
    assert abs(pv - ph) <= 1.96 * (sv ** 2 + sh ** 2) ** 0.5, (pv, sv, ph, sh)

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    words = [tok.decode([v]) for v in range(len(tok))]
    samples_v = {rec["doc_id"]: rec for rec in map(json.loads, next(out_v.rglob(f"samples_{TASK}_*.jsonl"))
                                                    .read_text().splitlines())}
    for d, row in enumerate(ROWS):
        with torch.no_grad():
            ids = tok(row["prompt"], return_tensors="pt").input_ids
            probs = model(ids).logits[0, -1].softmax(-1)
        accept = {t.strip() for t in row["target"]}
        p = float(sum(probs[v] for v, w in enumerate(words) if w.split("\n")[0].strip() in accept and w))
        lo, hi = samples_v[d]["pu_interval"]
        assert lo <= p <= hi, (d, p, lo, hi, outs[str(d)])


def test_data_parallel_dispatch_returns_what_one_engine_does(lm):
    """The replica pool (Ray actors in a real run) over two in-process
    replicas sharing this engine: the same samples as one engine, whatever
    replica an instance lands on."""
    assert split_by_load([5, 1, 1, 1, 4], 2) == [[0, 2], [1, 3, 4]]  # 6 and 6
    assert split_by_load([1], 3) == [[0], [], []]
    replicas = []
    for _ in range(2):
        r = _Replica.__new__(_Replica)
        r.llm = lm.model
        replicas.append(r)
    calls = []

    def submit(replica, prompts, params, texts):
        calls.append(len(prompts))
        return replica.generate(prompts, params, None, texts)

    reqs = [instance(d, p, SAMPLING) for d, p in enumerate(["def f(x):", "import os", "for i in", "x = 1"])]
    batch = [r for r in reqs for _ in range(3)] + [reqs[0]] * 2
    one = lm.generate_until(batch)
    lm._pool = _ReplicaPool(replicas, submit=submit, gather=list)
    try:
        two = lm.generate_until(batch)
    finally:
        lm._pool = None
    assert two == one
    assert len(calls) == 2 and sum(calls) == len(reqs)


@pytest.mark.slow
def test_ray_replicas_are_loaded_once_and_draw_what_one_engine_does(tiny_model_dir, lm):
    """``data_parallel_size=2`` on CPU (``gpus_per_replica=0``): two Ray actors
    load the model when the model is created and serve every later call (same
    processes), with the samples of one engine. Needs ray (not installed by
    default: ``WITH_RAY=1 bash bench/setup_vllm_env.sh``); about 2 minutes on 2 cores."""
    ray = pytest.importorskip("ray")
    reqs = [instance(d, p, SAMPLING) for d, p in enumerate(["def f(x):", "import os", "for i in", "x = 1"])]
    batch = [r for r in reqs for _ in range(5)]
    dp = VLLMPassUntil(pretrained=str(tiny_model_dir), dtype="float32", enforce_eager=True,
                       gpu_memory_utilization=0.08, max_model_len=512, seed=SEED, data_parallel_size=2,
                       gpus_per_replica=0)
    try:
        pids = ray.get([r.ready.remote() for r in dp._pool.replicas])
        assert len(set(pids)) == 2
        first, second = dp.generate_until(batch), dp.generate_until(batch)
        assert ray.get([r.ready.remote() for r in dp._pool.replicas]) == pids  # the same actors
    finally:
        dp.close()
    assert first == second == lm.generate_until(batch)
