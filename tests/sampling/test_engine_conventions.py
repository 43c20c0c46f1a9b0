"""The engine (``lm-eval-ext passuntil``) follows lm-eval's conventions: its
output layout and file names, its results keys, its results table, its flags
(several tasks, few-shot, chat template, samples), and a rerun of a finished
run changes nothing.

Most runs use a scripted model registered with lm-eval (fast, exact); the
layout and key comparison runs lm-eval itself and the engine on the tiny
local model."""

from __future__ import annotations

import json
import re

import pytest

from tests.toy_task import write_exact_match_task

SCRIPTED = "lm-eval-ext-test-scripted"
STAMP = r"\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.\d+"
# doc "x" never passes; the others pass on every third sample of their prompt
ROWS = [{"prompt": "alpha", "target": [" a"]}, {"prompt": "beta", "target": [" a"]},
        {"prompt": "gamma", "target": [" a"]}, {"prompt": "x", "target": ["NEVER_EVER"]}]
#: The scripted model raises after this many generate_until calls (None: never).
FAIL_AFTER = {"calls": None}


def _register_scripted():
    from lm_eval.api.model import LM
    from lm_eval.api.registry import get_model, register_model

    try:
        return get_model(SCRIPTED)
    except ValueError:
        pass

    class Scripted(LM):
        """Answers " a" on every third request of a prompt; records prompts."""

        prompts: list[str] = []

        def __init__(self, pretrained=None, batch_size=None, device=None, **kwargs):
            super().__init__()
            self.seen: dict[str, int] = {}
            self.calls = 0

        def generate_until(self, requests, disable_tqdm=False):
            self.calls += 1
            if FAIL_AFTER["calls"] is not None and self.calls > FAIL_AFTER["calls"]:
                raise RuntimeError("scripted failure")
            out = []
            for req in requests:
                prompt = req.arguments[0]
                type(self).prompts.append(prompt)
                i = self.seen.get(prompt, 0)
                self.seen[prompt] = i + 1
                out.append(" a" if i % 3 == 2 else " b")
            return out

        def loglikelihood(self, requests, disable_tqdm=False):
            raise NotImplementedError

        def loglikelihood_rolling(self, requests, disable_tqdm=False):
            raise NotImplementedError

        # chat templating, as lm-eval's API models have it
        @property
        def tokenizer_name(self) -> str:
            return "scripted"

        def chat_template(self, chat_template=False):
            return "SCRIPTED-TEMPLATE" if chat_template else ""

        def apply_chat_template(self, chat_history, add_generation_prompt=True):
            return "".join(f"<{m['role']}>{m['content']}" for m in chat_history) + "<assistant>"

    register_model(SCRIPTED)(Scripted)
    return Scripted


@pytest.fixture
def scripted(monkeypatch, tmp_path):
    cls = _register_scripted()
    cls.prompts = []
    FAIL_AFTER["calls"] = None
    monkeypatch.chdir(tmp_path)  # lm-eval's git describe: not in this repository
    yield cls
    FAIL_AFTER["calls"] = None


@pytest.fixture
def no_env_report(monkeypatch):
    """lm-eval's environment report (pip, git) costs seconds: not tested here."""
    import lm_eval.loggers.utils as lu

    monkeypatch.setattr(lu, "add_env_info", lambda results: None)


def _tasks(tmp_path, names=("toy_a", "toy_b")):
    """One task directory holding the same toy task under each name."""
    for name in names:
        tasks = write_exact_match_task(tmp_path, name, ROWS, max_gen_toks=1)
    return tasks


def _run(args, capsys):
    from lm_eval_ext.cli import main

    code = main(["passuntil", *map(str, args)])
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    return out, err


def _scripted_args(tasks, out, *extra):
    return ["--model", SCRIPTED, "--model_args", "pretrained=org/scripted-1m", "--include_path", tasks,
            "-o", out, "--r", "2", "--cap", "16", "--first", "4", *extra]


def _snapshot(root):
    return {p: p.stat().st_mtime_ns for p in root.rglob("*")}


# ---------------------------------------------------------------- against lm-eval itself

def test_layout_keys_hashes_and_table_match_lm_eval(tiny_model_dir, tmp_path, monkeypatch, capsys):
    """lm-eval's own CLI path (simple_evaluate + EvaluationTracker, as ``lm_eval
    run`` calls them) and the engine on the same model and task: the same
    directory and file names, lm-eval's results keys (and config keys), the
    same model_name and task hash, and lm-eval's table on stdout."""
    import lm_eval
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.tasks import TaskManager
    from lm_eval.utils import get_file_datetime, make_table

    import lm_eval_ext.registration  # noqa: F401

    monkeypatch.chdir(tmp_path)
    tasks = write_exact_match_task(tmp_path, "toy_passuntil", ROWS, max_gen_toks=1)
    model_args = f"pretrained={tiny_model_dir},dtype=float32"

    ref_out = tmp_path / "ref"
    tracker = EvaluationTracker(output_path=str(ref_out))
    ref = lm_eval.simple_evaluate(model="hf", model_args=model_args, tasks=["toy_passuntil"], limit=2,
                                  task_manager=TaskManager(include_path=str(tasks), include_defaults=False),
                                  evaluation_tracker=tracker, log_samples=True, device="cpu", batch_size=4)
    ref_samples = ref.pop("samples")
    tracker.save_results_aggregated(results=ref, samples=ref_samples)
    tracker.save_results_samples(task_name="toy_passuntil", samples=ref_samples["toy_passuntil"])
    capsys.readouterr()

    out = tmp_path / "out"
    stdout, _ = _run(["--model", "hf", "--model_args", model_args, "--device", "cpu", "-b", "32",
                      "-t", "toy_passuntil", "--include_path", tasks, "-o", out, "--limit", "2", "--r", "1",
                      "--cap", "4", "--first", "4", "--log_samples"], capsys)

    # layout: <output_path>/<model_name_sanitized>/{results_<date>.json, samples_<task>_<date>.jsonl}
    (ref_res,) = ref_out.glob("*/results_*.json")
    (ref_smp,) = ref_out.glob("*/samples_*.jsonl")
    visible = sorted(p.relative_to(out) for p in out.rglob("*") if ".passuntil_state" not in p.parts)
    assert len(visible) == 3, visible
    (res_file,) = out.glob("*/results_*.json")
    (smp_file,) = out.glob("*/samples_*.jsonl")
    assert res_file.parent.name == ref_res.parent.name == str(tiny_model_dir).replace("/", "__")
    assert re.fullmatch(f"results_{STAMP}.json", res_file.name)
    assert re.fullmatch(f"samples_toy_passuntil_{STAMP}.jsonl", smp_file.name)
    assert get_file_datetime(smp_file.name) == res_file.name[len("results_"):-len(".json")]
    assert get_file_datetime(ref_smp.name) == ref_res.name[len("results_"):-len(".json")]

    # lm-eval's keys, at the top, in config and in every sample
    want, got = json.loads(ref_res.read_text()), json.loads(res_file.read_text())
    assert set(want) <= set(got), set(want) - set(got)
    assert set(want["config"]) <= set(got["config"]), set(want["config"]) - set(got["config"])
    want_rec = json.loads(ref_smp.read_text().splitlines()[0])
    got_recs = [json.loads(x) for x in smp_file.read_text().splitlines()]
    assert set(want_rec) <= set(got_recs[0]), set(want_rec) - set(got_recs[0])
    assert set(got_recs[0]["arguments"]) == set(want_rec["arguments"]) == {"gen_args_0"}
    for key in ("model_name", "model_name_sanitized", "model_source", "lm_eval_version", "n-shot", "versions"):
        assert got[key] == want[key], key
    assert got["config"]["model_args"] == model_args and got["config"]["batch_size"] == 32
    # the same documents and prompts hash alike
    assert got["task_hashes"] == want["task_hashes"] and got["task_hashes"]["toy_passuntil"]
    assert float(got["total_evaluation_time_seconds"]) > 0
    assert got["n-samples"]["toy_passuntil"] == {"original": 4, "effective": 2}
    # lm-eval's table on stdout, not JSON
    assert make_table(got) in stdout and "|toy_passuntil|" in stdout
    assert not stdout.lstrip().startswith("{")


# ---------------------------------------------------------------- flags, reruns, resume

def test_two_tasks_one_results_file_and_a_rerun_changes_nothing(scripted, no_env_report, tmp_path, capsys):
    from lm_eval_ext.sampling.runner import state_path

    tasks, out = _tasks(tmp_path), tmp_path / "out"
    stdout, err = _run(_scripted_args(tasks, out, "-t", "toy_a,toy_b"), capsys)
    mdir = out / "org__scripted-1m"
    (res_file,) = mdir.glob("results_*.json")
    assert not list(out.rglob("samples_*"))  # no --log_samples
    res = json.loads(res_file.read_text())
    assert list(res["results"]) == ["toy_a", "toy_b"] and set(res["task_hashes"]) == {"toy_a", "toy_b"}
    assert res["model_name"] == "org/scripted-1m" and res["model_name_sanitized"] == "org__scripted-1m"
    assert set(res["passuntil"]["tasks"]) == {"toy_a", "toy_b"}
    for t in ("toy_a", "toy_b"):
        st = json.loads(state_path(out, t, SCRIPTED, "pretrained=org/scripted-1m").read_text())
        assert st["finished"] and st["outputs"]["results"] == res_file.name
        assert st["instances"]["3"]["stop"] == "cap" and st["instances"]["0"]["stop"] == "r_passes"
        assert res["results"][t]["n_samples,passuntil"] == sum(len(i["outcomes"]) for i in st["instances"].values())
    assert "|toy_a|" in stdout and "|toy_b|" in stdout and f"wrote {res_file}" in err

    # the same command (tasks space-separated this time): nothing written
    before, n_prompts = _snapshot(out), len(scripted.prompts)
    stdout, err = _run(_scripted_args(tasks, out, "--tasks", "toy_a", "toy_b"), capsys)
    assert f"already complete: {res_file}" in err and "resuming" not in err
    assert _snapshot(out) == before
    assert "|toy_a|" in stdout and "|toy_b|" in stdout  # the finished run's table
    assert len(scripted.prompts) == n_prompts  # no model call
    # other settings on a finished run are refused
    with pytest.raises(SystemExit, match="other settings"):
        _run(_scripted_args(tasks, out, "-t", "toy_a", "--seed", "7"), capsys)
    assert _snapshot(out) == before


def test_rerun_with_log_samples_adds_only_the_samples(scripted, no_env_report, tmp_path, capsys):
    tasks, out = _tasks(tmp_path, ("toy_a",)), tmp_path / "out"
    _run(_scripted_args(tasks, out, "-t", "toy_a"), capsys)
    (res_file,) = out.rglob("results_*.json")
    n_prompts = len(scripted.prompts)
    text = res_file.read_text()
    _, err = _run(_scripted_args(tasks, out, "-t", "toy_a", "--log_samples"), capsys)
    assert f"already complete: {res_file}" in err
    (smp,) = out.rglob("samples_*.jsonl")
    assert smp.parent == res_file.parent and smp.name == res_file.name.replace("results_", "samples_toy_a_")[:-5] + ".jsonl"
    assert [r["doc_id"] for r in map(json.loads, smp.read_text().splitlines())] == [0, 1, 2, 3]
    assert list(out.rglob("results_*.json")) == [res_file] and res_file.read_text() == text
    assert len(scripted.prompts) == n_prompts  # nothing sampled


def test_a_resumed_run_says_so_and_a_new_task_adds_a_file(scripted, no_env_report, tmp_path, capsys):
    from lm_eval_ext.sampling.runner import state_path

    tasks, out = _tasks(tmp_path), tmp_path / "out"
    FAIL_AFTER["calls"] = 2  # dies in its third lm-eval call
    with pytest.raises(RuntimeError, match="scripted failure"):
        _run(_scripted_args(tasks, out, "-t", "toy_a"), capsys)
    st = json.loads(state_path(out, "toy_a", SCRIPTED, "pretrained=org/scripted-1m").read_text())
    spent = sum(len(i["outcomes"]) for i in st["instances"].values())
    assert not st["finished"] and spent > 0 and not list(out.rglob("results_*.json"))
    FAIL_AFTER["calls"] = None
    _, err = _run(_scripted_args(tasks, out, "-t", "toy_a"), capsys)
    assert f"resuming toy_a at round {st['round']} ({spent} samples drawn)" in err
    (first,) = out.rglob("results_*.json")

    # toy_a is done: a call with toy_a and toy_b samples toy_b only and writes it alone
    _, err = _run(_scripted_args(tasks, out, "-t", "toy_a,toy_b"), capsys)
    assert f"already complete: {first}" in err
    files = sorted(out.rglob("results_*.json"))
    assert len(files) == 2
    second = json.loads(next(f for f in files if f != first).read_text())
    assert list(second["results"]) == ["toy_b"]  # toy_a is not counted twice


def test_killed_before_its_results_file_a_rerun_writes_the_planned_one(scripted, no_env_report, tmp_path, capsys,
                                                                         monkeypatch):
    """The results file's name is recorded in the state before it is written:
    a run killed in between writes that name on the rerun, never a second file."""
    import lm_eval_ext.sampling.runner as runner

    tasks, out = _tasks(tmp_path, ("toy_a",)), tmp_path / "out"
    real = runner.write_text_atomic

    def killed(path, text):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "write_text_atomic", killed)
    with pytest.raises(KeyboardInterrupt):
        _run(_scripted_args(tasks, out, "-t", "toy_a", "--log_samples"), capsys)
    st = json.loads(runner.state_path(out, "toy_a", SCRIPTED, "pretrained=org/scripted-1m").read_text())
    assert st["finished"] and not list(out.rglob("results_*.json"))
    planned = st["outputs"]["results"]
    monkeypatch.setattr(runner, "write_text_atomic", real)
    n_prompts = len(scripted.prompts)
    _run(_scripted_args(tasks, out, "-t", "toy_a", "--log_samples"), capsys)
    assert [p.name for p in out.rglob("results_*.json")] == [planned]
    assert len(list(out.rglob("samples_*.jsonl"))) == 1 and len(scripted.prompts) == n_prompts


def test_fewshot_chat_template_and_system_instruction_reach_the_prompts(scripted, no_env_report, tmp_path, capsys):
    tasks, out = _tasks(tmp_path, ("toy_a",)), tmp_path / "out"
    _run(_scripted_args(tasks, out, "-t", "toy_a", "--num_fewshot", "2", "--apply_chat_template",
                        "--system_instruction", "Be brief."), capsys)
    assert scripted.prompts and all(p.startswith("<system>Be brief.") and p.endswith("<assistant>")
                                    for p in scripted.prompts)
    # two demonstrations (as turns: fewshot_as_multiturn is on with a chat template)
    assert all(p.count("<user>") == 3 for p in scripted.prompts), scripted.prompts[0]
    (res_file,) = out.rglob("results_*.json")
    res = json.loads(res_file.read_text())
    assert res["n-shot"]["toy_a"] == 2 and res["configs"]["toy_a"]["num_fewshot"] == 2
    assert res["chat_template"] == "SCRIPTED-TEMPLATE" and res["chat_template_sha"]
    assert res["system_instruction"] == "Be brief." and res["fewshot_as_multiturn"] is True
    # a different prompt is a different run
    with pytest.raises(SystemExit, match="other settings"):
        _run(_scripted_args(tasks, out, "-t", "toy_a", "--num_fewshot", "1", "--apply_chat_template",
                            "--system_instruction", "Be brief."), capsys)


def test_a_state_from_before_the_layout_is_adopted(scripted, no_env_report, tmp_path, capsys):
    """output_path/passuntil_state.json (the engine before lm-eval's layout)
    moves to its place and the run resumes from it."""
    from lm_eval_ext.sampling.adaptive import AdaptiveState, StopRule
    from lm_eval_ext.sampling.runner import state_path

    tasks, out = _tasks(tmp_path, ("toy_a",)), tmp_path / "out"
    out.mkdir()
    settings = {"task": "toy_a", "model": SCRIPTED, "model_args": "pretrained=org/scripted-1m", "limit": None,
                "metadata": {}, "gen_kwargs": None, "batch_size": None, "include_path": str(tasks),
                "chunk_samples": 4096}
    old = AdaptiveState(range(4), StopRule(r=2, cap=16, first=4), 1234, settings)
    old.record({d: [False] * 4 for d in range(4)})
    old.end_round()
    old.save(out / "passuntil_state.json")
    _, err = _run(_scripted_args(tasks, out, "-t", "toy_a"), capsys)
    assert "resuming toy_a at round 1 (16 samples drawn)" in err
    assert not (out / "passuntil_state.json").exists()
    st = json.loads(state_path(out, "toy_a", SCRIPTED, "pretrained=org/scripted-1m").read_text())
    assert st["finished"] and all(i["outcomes"].startswith("0000") for i in st["instances"].values())


def test_flags_parse_as_lm_eval_s(tmp_path):
    from lm_eval_ext.cli import main

    with pytest.raises(SystemExit):
        main(["passuntil", "-t", "toy", "-o", str(tmp_path), "--seed", "0,1234,1234,1234"])
    with pytest.raises(SystemExit, match="fewshot_as_multiturn needs apply_chat_template"):
        main(["passuntil", "--model", SCRIPTED, "-t", "toy_a", "-o", str(tmp_path / "o"), "--include_path",
              str(_tasks(tmp_path, ("toy_a",))), "--fewshot_as_multiturn"])
    assert not (tmp_path / "o").exists()
