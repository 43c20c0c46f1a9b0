"""The adaptive sampler through the real lm-eval path on a tiny local model,
killed with SIGKILL in the middle and resumed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.toy_task import write_exact_match_task
from tests.lm_eval_cli import offline_env, sigkill_when

TOKENS = [" a", " b", " c", "e", "s", "t", "(", ")", ":", " =", " x", " in"]


def make_task(tmp_path):
    rows = [{"prompt": "def f(x):\n    return", "target": TOKENS}, {"prompt": "import", "target": TOKENS[:4]},
            {"prompt": "for i", "target": TOKENS[4:]}, {"prompt": "x", "target": ["NEVER_EVER"]}]
    return write_exact_match_task(tmp_path, "toy_passuntil", rows, max_gen_toks=1)


def cmd(model_dir, tasks, out):
    return [sys.executable, "-m", "lm_eval_ext", "passuntil", "--model", "hf",
            "--model_args", f"pretrained={model_dir},dtype=float32", "--device", "cpu", "--batch_size", "32",
            "--tasks", "toy_passuntil", "--include_path", str(tasks), "--output_path", str(out),
            "--r", "2", "--cap", "512", "--first", "4", "--chunk_samples", "8", "--pass_at_k", "1,4",
            "--log_samples"]


def state_file(out, model_dir):
    from lm_eval_ext.sampling.runner import state_path

    return state_path(out, "toy_passuntil", "hf", f"pretrained={model_dir},dtype=float32")


def outcomes(out, model_dir):
    state = json.loads(state_file(out, model_dir).read_text())
    return {d: i["outcomes"] for d, i in state["instances"].items()}, state


@pytest.mark.slow
def test_kill_and_resume_through_lm_eval(tiny_model_dir, tmp_path):
    tasks = make_task(tmp_path)
    ref = tmp_path / "ref"
    done = subprocess.run(cmd(tiny_model_dir, tasks, ref), env=offline_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ref_out, ref_state = outcomes(ref, tiny_model_dir)
    assert ref_state["finished"]

    killed = tmp_path / "killed"
    sigkill_when(cmd(tiny_model_dir, tasks, killed), state_file(killed, tiny_model_dir),
                 lambda st: st["round"] >= 1 or bool(st["chunks_done"]), env=offline_env())
    part, part_state = outcomes(killed, tiny_model_dir)
    assert not part_state["finished"] and 0 < sum(map(len, part.values())) < sum(map(len, ref_out.values()))

    again = subprocess.run(cmd(tiny_model_dir, tasks, killed), env=offline_env(), capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming toy_passuntil at round" in again.stderr
    resumed, state = outcomes(killed, tiny_model_dir)
    assert resumed == ref_out  # same samples, same verdicts, same order
    assert state["finished"]
    # The stop reasons make sense: the impossible instance ran to the cap.
    assert state["instances"]["3"]["stop"] == "cap" and len(resumed["3"]) == 512
    assert any(i["stop"] == "r_passes" for i in state["instances"].values())

    # Results and samples in lm-eval's format and layout for the whole run.
    res_files = list(killed.rglob("results_*.json"))
    assert len(res_files) == 1
    assert res_files[0].parent == killed / str(tiny_model_dir).replace("/", "__")
    res = json.loads(res_files[0].read_text())
    m = res["results"]["toy_passuntil"]
    assert m["n_samples,passuntil"] == sum(map(len, ref_out.values()))
    for key in ("pu,passuntil", "pu_stderr,passuntil", "pu_censored,passuntil", "pass@1,passuntil",
                "pass@4,passuntil"):
        assert key in m
    assert res["passuntil"]["rule"]["r"] == 2 and res["passuntil"]["samples_spent"] == m["n_samples,passuntil"]
    lines = [json.loads(x) for x in next(killed.rglob("samples_toy_passuntil_*.jsonl")).read_text().splitlines()]
    assert [x["doc_id"] for x in lines] == [0, 1, 2, 3]
    for x in lines:
        o = resumed[str(x["doc_id"])]
        assert x["n_samples"] == len(o) and x["n_passed"] == o.count("1")
        assert len(x["resps"][0]) == len(o)  # every completion, once, despite the kill
        if x["pu_stop"] == "r_passes":
            k = x["pu_K"]
            assert o[:k].count("1") == 2 and o[k - 1] == "1"
            assert x["pu_rK"] == pytest.approx(1 / (k - 1))  # Haldane's, named apart
        assert x["pu_estimator"] == "rao-blackwell"  # the design's unbiased estimate is the PU
    assert lines[3]["pu_censored"] == 1 and lines[3]["pu_interval"][0] == 0.0

    # Rerunning a finished run writes nothing; other settings are refused.
    files = {p: p.stat().st_mtime_ns for p in killed.rglob("*")}
    rerun = subprocess.run(cmd(tiny_model_dir, tasks, killed), env=offline_env(), capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0 and f"already complete: {res_files[0]}" in rerun.stderr
    assert {p: p.stat().st_mtime_ns for p in killed.rglob("*")} == files
    other = cmd(tiny_model_dir, tasks, killed)
    other[other.index("--r") + 1] = "3"
    refused = subprocess.run(other, env=offline_env(), capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "other settings" in refused.stderr


def test_unknown_task_is_a_clear_error_and_writes_nothing(tmp_path):
    from lm_eval_ext.sampling.runner import run_adaptive

    tasks = make_task(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        run_adaptive("nope", "hf", "pretrained=unused", output_path=out, include_path=tasks)
    assert not out.exists()
