"""`python -m analysis emergence` on a small synthetic sweep written in
lm-eval v0.4's results layout (``<out>/<model>/results_<stamp>.json``) with a
manifest in the layout ``lm-eval-ext finetune-sweep`` writes (base checkpoints
as D = 0 rows, pretraining loss from the ``emergence_loss`` task)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from analysis.cli import main

TASK = "emergence_csqa"
N_ITEMS = 400
# Perf = A*ReLU(E(D) - L) + B, E(D) = k*(log D)^alpha + C
A, B, K, ALPHA, C = 0.5, 0.2, 0.12, 1.0, 2.6
LOSSES = np.linspace(2.0, 3.6, 9)  # few-shot emergence (at C) is observed: 2.0, 2.2, 2.4 are past it
DS = [0, 10, 100, 1000]


def _results_file(root, model, tasks: dict, stamp="2026-11-22T10-00-00.000000"):
    """One lm-eval v0.4 results JSON: tasks = {task: {metric: (value, n_items)}}."""
    d = root / model.strip("/").replace("/", "__")
    d.mkdir(parents=True, exist_ok=True)
    results, nsamples = {}, {}
    for task, metrics in tasks.items():
        results[task] = {"alias": task}
        for metric, (value, n) in metrics.items():
            results[task][f"{metric},none"] = value
            results[task][f"{metric}_stderr,none"] = "N/A"
            nsamples[task] = {"original": n, "effective": n}
    data = {"results": results, "group_subtasks": {t: [] for t in tasks}, "configs": {t: {} for t in tasks},
            "versions": {t: 1.0 for t in tasks}, "n-shot": {t: 0 for t in tasks}, "n-samples": nsamples,
            "config": {"model": "hf", "model_args": f"pretrained={model},dtype=float32",
                       "model_num_parameters": 1000, "limit": None}}
    (d / f"results_{stamp}.json").write_text(json.dumps(data))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("emergence_sweep")
    rng = np.random.default_rng(4)
    rows = []
    for i, L in enumerate(LOSSES):
        label = f"ck{i}"
        base = str(root / "ckpts" / label)
        # the base checkpoint: few-shot score and its pretraining loss (emergence_loss task)
        for D in DS:
            e = K * np.log(max(D, 1.5)) ** ALPHA + C if D > 0 else C  # few-shot emerges at E(D0 = 1) = C
            p = min(A * max(e - L, 0.0) + B, 1.0)
            acc = rng.binomial(N_ITEMS, p) / N_ITEMS
            model = base if D == 0 else str(root / "ft" / label / f"{TASK}-D{D}-s0")
            tasks = {TASK: {"acc": (acc, N_ITEMS)}}
            if D == 0:
                tasks["emergence_loss"] = {"nll_per_token": (float(L), 300)}
            _results_file(root / "runs", model, tasks)
            # the sweep records the finetuning task by its short name, as `finetune-sweep --task csqa` does
            rows.append({"model": model, "checkpoint": label, "D": D, "seed": "" if D == 0 else 0, "task": "csqa",
                         "flops": f"{1e15 * np.exp(3.6 - L) ** 4:.4g}"})
    man = root / "manifest.csv"
    with open(man, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root, man


@pytest.mark.slow
def test_emergence_cli_end_to_end(sweep):
    root, man = sweep
    out = root / "analysis"
    env = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "analysis", "emergence", str(root / "runs"), "--manifest", str(man),
                           "--d0", "1", "--backtest", "--n_boot", "40", "--output_path", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert TASK in proc.stdout and "few-shot emergence E(D0=1)" in proc.stdout
    assert "Emergence backtest" in proc.stdout
    png = out / f"emergence_{TASK}.png"
    assert png.is_file() and png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / f"emergence_{TASK}.json").read_text())
    fit = report["fit"]
    # L came from the emergence_loss results of each base checkpoint, n from n-samples
    assert fit["likelihood"] == "binomial" and fit["n_checkpoints"] == len(LOSSES)
    assert sorted({r["L"] for r in report["rows"]}) == pytest.approx(sorted(LOSSES))
    assert fit["D_values"] == [10.0, 100.0, 1000.0]
    fs = fit["few_shot_emergence"]
    assert fs["lower"] <= fs["E"] <= fs["upper"]
    assert abs(fs["E"] - C) < 0.3  # the truth is C (D0 = 1); simulated with 400 items per score
    bt = report["backtest"]
    assert bt["lead_loss"] > 0 and bt["lead_flops_ratio"] > 1
    assert abs(bt["error_nats"]) < 0.4


def test_emergence_cli_bad_input_is_a_clear_error(sweep, tmp_path, capsys):
    root, man = sweep
    # a manifest without the checkpoint column
    bad = tmp_path / "bad.csv"
    bad.write_text("model,D\nx,0\n")
    assert main(["emergence", str(root / "runs"), "--manifest", str(bad), "--output_path", str(tmp_path / "o")]) == 2
    assert "'checkpoint'" in capsys.readouterr().err
    # an unknown metric names the task and the metrics it has
    assert main(["emergence", str(root / "runs"), "--manifest", str(man), "--metric", "f1",
                 "--output_path", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "f1" in err and TASK in err
    # no loss column and a wrong loss task: names the checkpoint and its base model
    assert main(["emergence", str(root / "runs"), "--manifest", str(man), "--loss_task", "nope",
                 "--output_path", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no pretraining loss for checkpoint 'ck0'" in err and "ckpts/ck0" in err
    # a backtest needs D0
    assert main(["emergence", str(root / "runs"), "--manifest", str(man), "--backtest",
                 "--output_path", str(tmp_path / "o")]) == 2
    assert "--d0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------
# tidy tables (issue 12): CSV with runs and a holdout split, flat scores
# --------------------------------------------------------------------------


def _table_rows(rng, *, runs=3, losses=np.linspace(2.0, 3.6, 7), flat=False):
    """One row per (model, task): 3 runs x 7 checkpoints x D in {0, 10, 100,
    1000}; the strongest checkpoint of each run (L ~ 2.0) is held out."""
    rows = []
    for r in range(runs):
        for i, L in enumerate(losses + 0.03 * r):
            for D in DS:
                e = K * np.log(D) ** ALPHA + C if D else C
                p = B if flat else min(A * max(e - L, 0.0) + B, 1.0)
                rows.append({"model": f"run{r}/step{1000 * (7 - i)}" + (f"/ft-D{D}" if D else ""),
                             "task": TASK, "score": rng.binomial(N_ITEMS, p) / N_ITEMS, "D": D,
                             "loss": round(float(L), 6), "n_items": N_ITEMS, "seed": 0, "run": f"run{r}",
                             "checkpoint": f"run{r}/step{1000 * (7 - i)}", "split": "holdout" if i == 0 else "train",
                             "N": 70_000_000, "tokens": 1e9 * (7 - i)})
    return rows


def _write_csv(path, rows, columns):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def test_emergence_cli_reads_a_csv_with_runs_and_a_holdout_split(tmp_path, capsys):
    cols = ["model", "task", "score", "D", "loss", "n_items", "seed", "run", "checkpoint", "split"]
    table = _write_csv(tmp_path / "sweep.csv", _table_rows(np.random.default_rng(6)), cols)
    out = tmp_path / "o"
    assert main(["emergence", str(table), "--d0", "1", "--n_boot", "20", "--bootstrap", "checkpoint",
                 "--output_path", str(out)]) == 0
    text = capsys.readouterr().out
    assert "verdict: emergence observed" in text
    assert "(run bootstrap, 20 refits)" in text and "runs: 3" in text
    assert "held out (split = holdout): 3 checkpoint(s), 12 row(s)" in text
    # the held-out checkpoints are stronger than any fitted one: an extrapolation, said so
    assert "warning: extrapolation: L = 2 (the lowest of 3 below the range) lies 0.2667 nats below the " \
           "strongest fitted checkpoint (L = 2.267), 19% of the fitted loss span (2.267 to 3.66 nats, 1.393)" in text
    report = json.loads((out / f"emergence_{TASK}.json").read_text())
    fit = report["fit"]
    assert fit["bootstrap"] == "run" and fit["n_runs"] == 3 and fit["n_checkpoints"] == 18
    assert fit["verdict"] == "emergence observed" and fit["L_range"][0] == pytest.approx(2.0 + 0.8 / 3, abs=1e-5)
    assert len(report["holdout"]["rows"]) == 12 and report["holdout"]["warnings"]
    assert report["holdout"]["warnings"][0] in fit["warnings"]
    assert {r["run"] for r in report["rows"]} == {"run0", "run1", "run2"}
    assert (out / f"emergence_{TASK}.png").is_file()


def test_emergence_cli_csv_without_checkpoint_column_by_subprocess(tmp_path):
    # model, N, tokens, loss, task, score, n_items, seed, run, D, split: a run's
    # checkpoints are told apart by tokens (the run alone names 7 of them)
    cols = ["model", "N", "tokens", "loss", "task", "score", "n_items", "seed", "run", "D", "split"]
    table = _write_csv(tmp_path / "sweep.csv", _table_rows(np.random.default_rng(6)), cols)
    out = tmp_path / "o"
    env = dict(os.environ, HF_HUB_OFFLINE="1", MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "analysis", "emergence", str(table), "--d0", "1", "--n_boot", "0",
                           "--output_path", str(out)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "not valid JSON" not in proc.stderr
    report = json.loads((out / f"emergence_{TASK}.json").read_text())
    assert report["fit"]["n_checkpoints"] == 18 and report["fit"]["n_runs"] == 3
    assert len({r["checkpoint"] for r in report["rows"]}) == 21
    assert all(r["checkpoint"].startswith(f"run={r['run']} ") for r in report["rows"])


def test_emergence_cli_flat_scores_print_the_verdict(tmp_path, capsys):
    cols = ["model", "task", "score", "D", "loss", "n_items", "seed", "run", "checkpoint"]
    table = _write_csv(tmp_path / "flat.csv", _table_rows(np.random.default_rng(2), flat=True), cols)
    out = tmp_path / "o"
    assert main(["emergence", str(table), "--d0", "1", "--n_boot", "10", "--backtest", "--output_path", str(out)]) == 0
    text = capsys.readouterr().out
    assert "verdict: no emergence in range: " in text
    assert "E(D) (and E(D0)): none, no emergence in range" in text
    assert "observed few-shot (D = 0) curve: no emergence in range: " in text
    assert "error, coverage: not scored (nothing to compare)" in text
    report = json.loads((out / f"emergence_{TASK}.json").read_text())
    assert report["fit"]["verdict"] == "no emergence in range"
    assert report["fit"]["few_shot_emergence"]["E"] is None and report["fit"]["few_shot_emergence"]["lower"] is None
    assert report["backtest"]["covered"] is None and report["backtest"]["error_nats"] is None
    assert (out / f"emergence_{TASK}.png").is_file()


def test_emergence_cli_run_given_as_checkpoint_points_to_the_run_column(tmp_path, capsys):
    rows = [dict(r, checkpoint=r["run"]) for r in _table_rows(np.random.default_rng(6))]
    cols = ["model", "task", "score", "D", "loss", "n_items", "checkpoint"]
    table = _write_csv(tmp_path / "sweep.csv", rows, cols)
    assert main(["emergence", str(table), "--n_boot", "0", "--output_path", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "checkpoint 'run0' has several values in column 'loss'" in err
    assert "put the run in a column 'run'" in err
