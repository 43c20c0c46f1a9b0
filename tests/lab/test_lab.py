"""The emergence lab (lm_eval_ext.lab): synthetic tasks, the checker, the
trainer's determinism and resumption, and `--quick` end to end through lm-eval."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lm_eval_ext.lab import synthetic as syn
from lm_eval_ext.lab.synthetic import TaskSpec

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- task data

def test_examples_are_correct():
    assert syn.addition_example(47, 85) == ("47+85=", "231")  # 132, least significant digit first
    assert syn.addition_example(0, 0) == ("0+0=", "0")
    assert syn.counting_example("abbab") == ("abbab#", "2")
    with pytest.raises(ValueError):
        syn.counting_example("abc")


@pytest.mark.parametrize("kind", syn.TASK_KINDS)
def test_test_sets_are_deterministic_distinct_and_correct(kind):
    spec = TaskSpec(max_digits=2, max_len=10, n_test=20)
    a, b = syn.test_set(kind, spec), syn.test_set(kind, spec)
    assert a == b
    assert syn.test_set(kind, spec, seed=1) != a  # the seed matters
    assert len({r["prompt"] for r in a}) == 20
    for r in a:
        if kind.startswith("add"):
            x, y = r["prompt"][:-1].split("+")
            assert r["target"] == str(int(x) + int(y))[::-1]
        else:
            s = r["prompt"][:-1]
            assert r["target"] == str(s.count("a")) and len(s) == r["length"]


def test_length_split_train_short_test_long():
    spec = TaskSpec(max_digits=2, max_len=10, n_test=25)
    for r in syn.test_set("add", spec):
        assert [len(x) for x in r["prompt"][:-1].split("+")] == [2, 2]
    for r in syn.test_set("add_long", spec):
        assert [len(x) for x in r["prompt"][:-1].split("+")] == [3, 3]
    assert all(7 <= r["length"] <= 10 for r in syn.test_set("count", spec))
    assert all(11 <= r["length"] <= 14 for r in syn.test_set("count_long", spec))
    held = syn.held_out_prompts(spec)
    seen_digits, seen_len = set(), set()
    for step in range(40):
        batch = syn.training_batch(3, step, 64, spec)
        for prompt, answer in batch:
            assert prompt not in held  # test items are never trained on
            if "+" in prompt:
                x, y = prompt[:-1].split("+")
                seen_digits |= {len(x), len(y)}
                assert answer == str(int(x) + int(y))[::-1]
            else:
                seen_len.add(len(prompt) - 1)
    assert seen_digits == {1, 2}
    assert seen_len == set(range(1, 11))
    # a pure function of (seed, step): resumable and reproducible
    assert syn.training_batch(3, 7, 16, spec) == syn.training_batch(3, 7, 16, spec)
    assert syn.training_batch(3, 7, 16, spec) != syn.training_batch(4, 7, 16, spec)


def test_tokenizer_is_character_level_and_round_trips():
    tok = syn.build_tokenizer()
    text = "47+85=231\nabba#2"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids == [syn.encode_char(ch) for ch in text]
    assert tok.decode(ids) == text
    assert tok.eos_token_id == tok.pad_token_id == 0
    with pytest.raises(ValueError, match="alphabet"):
        syn.encode_char("x")


# ---------------------------------------------------------------- the checker

def _lab_task(name):
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(REPO / "task_configs" / "lab"), include_defaults=False)
    return tm.load([name])["tasks"][name]


def test_lab_task_config_and_exact_match_checker():
    task = _lab_task("lab_add")
    docs = list(task.eval_docs)
    assert [d["prompt"] for d in docs] == [r["prompt"] for r in syn.test_set("add", TaskSpec())]
    assert task.config.repeats == 16 and task.config.generation_kwargs["until"] == ["\n"]
    from lm_eval_ext.passuntil.filters import PassUntilExactMatchFilter

    checker = PassUntilExactMatchFilter(target_field="target", first_line=True)
    doc = docs[0]
    gold = doc["target"]
    samples = [gold, f" {gold} ", f"{gold}\n999", gold + "0", gold[:-1], gold[::-1] + "9", ""]
    out = checker.apply([samples], [doc])
    assert out == [["passed", "passed", "passed", "failed", "failed", "failed", "failed"]]
    # the YAML's filter is this checker, with these options
    fl = task.config.filter_list[0]["filter"][0]
    assert fl["function"] == "passuntil_exact_match" and fl["first_line"] is True


# ---------------------------------------------------------------- trainer

def test_trainer_is_deterministic_and_resumes_after_interruption(tmp_path, monkeypatch):
    import torch
    from safetensors.torch import load_file

    from lm_eval_ext.lab import ladder

    torch.set_num_threads(1)
    size = ladder.Size("t", 8, 1, 2)
    settings = ladder.TrainSettings(steps=12, batch_size=8, warmup=2, checkpoint_every=5,
                                    spec=TaskSpec(n_test=4))
    ref = ladder.train_model(tmp_path / "a", size, 5, settings, progress=False)
    assert ref["N"] == ladder.count_parameters(size, settings.spec)
    assert ladder.train_model(tmp_path / "a", size, 5, settings, progress=False) == ref  # finished: skipped

    real = ladder.training_batch

    def dies_at_8(seed, step, *a, **k):
        if step == 8:
            raise KeyboardInterrupt
        return real(seed, step, *a, **k)

    monkeypatch.setattr(ladder, "training_batch", dies_at_8)
    with pytest.raises(KeyboardInterrupt):
        ladder.train_model(tmp_path / "b", size, 5, settings, progress=False)
    assert not ladder.is_trained(ladder.model_dir(tmp_path / "b", size, 5))
    assert (tmp_path / "b" / "t-s5.partial" / "train_state.pt").is_file()  # step 5 saved
    monkeypatch.setattr(ladder, "training_batch", real)
    resumed = ladder.train_model(tmp_path / "b", size, 5, settings, progress=False)
    wa = load_file(ladder.model_dir(tmp_path / "a", size, 5) / "model.safetensors")
    wb = load_file(ladder.model_dir(tmp_path / "b", size, 5) / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert resumed["tokens"] == ref["tokens"] and resumed["loss"] == pytest.approx(ref["loss"])
    ladder.train_model(tmp_path / "c", size, 6, settings, progress=False)
    wc = load_file(ladder.model_dir(tmp_path / "c", size, 6) / "model.safetensors")
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)  # another seed, another model


def test_config_mismatch_is_refused(tmp_path):
    from lm_eval_ext.lab.pipeline import LabConfig, check_config, quick_config

    check_config(tmp_path, quick_config())
    check_config(tmp_path, quick_config())  # same settings: fine
    with pytest.raises(ValueError, match="other settings"):
        check_config(tmp_path, LabConfig())
    with pytest.raises(ValueError, match="primary task"):
        LabConfig(tasks=("lab_count",), primary_task="lab_add")


def test_parse_sizes():
    from lm_eval_ext.lab.ladder import parse_sizes

    s = parse_sizes("16x1,32x2x4,64x2")
    assert [(x.d_model, x.n_layer, x.n_head) for x in s] == [(16, 1, 2), (32, 2, 4), (64, 2, 4)]
    with pytest.raises(ValueError, match="WIDTHxLAYERS"):
        parse_sizes("16,32x2,64x2")


# ---------------------------------------------------------------- end to end

def _run_quick(out: Path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "lm_eval_ext.lab", "--quick", "--output_path", str(out)],
                          cwd=out.parent, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def _one_pu_everywhere(out: Path, tmp_path: Path, report: str) -> None:
    """The same run's PU is one number in the engine's results JSON, the lab's
    per_model_pu.csv and report, `python -m analysis scaling` and
    `python -m analysis seeds` (each model, and each size's mean over seeds)."""
    import csv

    from analysis.cli import main as analysis_main

    task = "lab_count"
    per_model = {r["model"]: r for r in csv.DictReader((out / "per_model_pu.csv").open()) if r["task"] == task}
    assert len(per_model) == 10
    for model, row in per_model.items():
        (res,) = [json.loads(f.read_text()) for f in (out / "eval" / Path(model).name).rglob("results_*.json")
                  if task in json.loads(f.read_text())["results"]]
        assert res["results"][task]["pu,passuntil"] == pytest.approx(float(row["value"]), rel=1e-9), model
    args = [str(out / "eval"), "--manifest", str(out / "models" / "manifest.csv")]
    assert analysis_main(["scaling", *args, "--tasks", task, "--n_boot", "-1",
                          "--output_path", str(tmp_path / "scaling")]) == 0
    fc = json.loads((tmp_path / "scaling" / f"scaling_{task}.json").read_text())["forecast"]
    assert {m["model"]: m["p"] for m in fc["models"]} == pytest.approx(
        {m: float(r["value"]) for m, r in per_model.items()}, rel=1e-9)
    assert analysis_main(["seeds", *args, "--task", task, "--n_boot", "200",
                          "--output_path", str(tmp_path / "seeds")]) == 0
    sizes = json.loads((tmp_path / "seeds" / f"seeds_{task}_pu.json").read_text())["sizes"]
    assert len(sizes) == 5
    for s in sizes:
        mean = np.mean([float(r["value"]) for r in per_model.values() if float(r["N"]) == s["N"]])
        assert s["mean"] == pytest.approx(mean, rel=1e-9)
        row = next(line for line in report.splitlines() if line.startswith("| q") and f"| {s['N']:,.0f} |" in line)
        assert f"| {mean:.3g} (" in row, (row, mean)


@pytest.mark.slow
def test_quick_lab_end_to_end_and_resume(tmp_path):
    from analysis.ingest import read_manifest

    out = tmp_path / "lab"
    _run_quick(out)
    report = (out / "report.md").read_text()
    outcome = json.loads((out / "outcome.json").read_text())
    prediction = json.loads((out / "prediction.json").read_text())
    primary = outcome["primary_task"]
    r = outcome["tasks"][primary]
    assert 0 < r["lower"] <= r["predicted"] <= r["upper"] < 1
    assert 0 < r["observed"] < 1
    assert r["inside"] == (r["lower"] <= r["observed"] <= r["upper"])
    # the report shows predicted and observed PU with the interval
    assert f"{r['predicted']:.4g}" in report and f"{r['observed']:.4g}" in report
    assert f"[{r['lower']:.4g}, {r['upper']:.4g}]" in report
    # the prediction was written before the largest model existed
    assert prediction["largest_models_existing_when_written"] == []
    largest = [d for d in (out / "models").iterdir() if d.name.startswith("q48-s")]
    assert len(largest) == 2
    written = prediction["written_at"]
    import datetime as dt

    t_pred = dt.datetime.fromisoformat(written).timestamp()
    assert all((d / "lab_model.json").stat().st_mtime > t_pred for d in largest)
    # ladder: >= 5 sizes spanning >= 30x, 2 seeds, manifest readable by the analysis
    man = read_manifest(out / "models" / "manifest.csv")
    assert len(man) == 10 and man["N"].nunique() == 5 and man["N"].max() / man["N"].min() >= 30
    assert set(man["seed"]) == {0.0, 1.0}
    # the held-out model went through the real lm_eval CLI too
    cli = outcome["lm_eval_cli"]
    assert set(cli) == {"lab_count", "lab_add"}
    assert cli["lab_count"]["n_samples"] == 16 * 16
    assert list((out / "eval_cli").rglob("samples_lab_count_*.jsonl"))
    # plots: the scaling law with the held-out model, PU per size, seeds
    pngs = ["scaling_lab_count.png", "per_size_pu.png"]
    if "Unavailable" not in report.split("## Seed distributions")[1]:
        pngs.append("seeds_lab_count.png")
    for name in pngs:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name
        assert f"({name})" in report

    _one_pu_everywhere(out, tmp_path, report)

    # resume: a rerun trains and scores nothing again and keeps the first prediction
    markers = {p: p.stat().st_mtime_ns for p in (out / "models").glob("*/lab_model.json")}
    evals = {p: p.stat().st_mtime_ns for p in (out / "eval").rglob("results_*.json")}
    proc = _run_quick(out)
    assert "1/5" in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in (out / "models").glob("*/lab_model.json")} == markers
    assert {p: p.stat().st_mtime_ns for p in (out / "eval").rglob("results_*.json")} == evals
    assert json.loads((out / "prediction.json").read_text()) == prediction
    assert json.loads((out / "outcome.json").read_text())["tasks"] == outcome["tasks"]
