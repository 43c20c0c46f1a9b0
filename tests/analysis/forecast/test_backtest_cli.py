"""``python -m analysis backtest``: tables and lm-eval output in,
``backtest.json`` (its exact shape) and one PNG per task out; and the
forecaster's track record on the real Pythia ladder where ../shared/data is
present."""

from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.cli import main
from analysis.forecast.observations import p_from_y
from analysis.forecast.verdict import LABELS

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT.parent / "shared" / "data"

TASK_KEYS = {"x", "law", "verdict", "warnings", "coverage", "predictions"}
PRED_KEYS = {"model", "x", "observed", "predicted", "lower", "upper", "covered"}
PNG = b"\x89PNG\r\n\x1a\n"
SIZES = [7e7, 1.6e8, 4e8, 1e9, 1.4e9, 2.8e9, 6.9e9, 1.2e10]


def _score_rows(seed=0, sizes=SIZES, n_items=2000):
    rng = np.random.default_rng(seed)
    rows = []
    for task, chance, y0, alpha in (("toy_mc", 0.25, 0.6, 0.25), ("toy_gen", 0.0, 0.9, 0.3)):
        y = y0 - alpha * np.log(np.asarray(sizes) / sizes[0]) + rng.normal(0, 0.05, len(sizes))
        score = chance + (1 - chance) * p_from_y(y)
        for i, (n, s) in enumerate(zip(sizes, score)):
            rows.append({"model": f"org/m{i}", "N": n, "task": task, "score": rng.binomial(n_items, s) / n_items,
                         "n_items": n_items, "chance": chance})
    return pd.DataFrame(rows)


def _run(args, capsys):
    rc = main(["backtest", *map(str, args)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _report(out_dir: Path) -> dict:
    report = json.loads((out_dir / "backtest.json").read_text())
    assert set(report) == {"tasks"}
    for task, entry in report["tasks"].items():
        assert set(entry) == TASK_KEYS, (task, sorted(entry))
        assert entry["verdict"] in LABELS
        assert isinstance(entry["warnings"], list) and all(isinstance(w, str) for w in entry["warnings"])
        for p in entry["predictions"]:
            assert set(p) == PRED_KEYS, sorted(p)
            assert isinstance(p["covered"], bool) and isinstance(p["model"], str)
            assert p["lower"] <= p["predicted"] <= p["upper"]
            assert p["covered"] == (p["lower"] <= p["observed"] <= p["upper"])
        if entry["predictions"]:
            cov = np.mean([p["covered"] for p in entry["predictions"]])
            assert entry["coverage"] == pytest.approx(cov)
    return report


def _png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 5_000, path
    assert path.read_bytes()[:8] == PNG


# ---------------------------------------------------------------- tables

def test_scores_csv_forward_chaining(tmp_path, capsys):
    df = _score_rows()
    csv = tmp_path / "ladder.csv"
    df.to_csv(csv, index=False)
    out = tmp_path / "out"
    rc, stdout, err = _run([csv, "--x", "N", "--output_path", out], capsys)
    assert rc == 0, err
    report = _report(out)
    assert set(report["tasks"]) == {"toy_mc", "toy_gen"}
    for task in ("toy_mc", "toy_gen"):
        entry = report["tasks"][task]
        assert entry["x"] == "N" and entry["law"] == "auto"
        assert entry["verdict"] == "follows the law"
        preds = entry["predictions"]
        # forward chaining from the third size on: origin k predicts the 8 - k larger models
        assert len(preds) == sum(range(1, 6))
        assert {p["model"] for p in preds} == {f"org/m{i}" for i in range(3, 8)}
        obs = df[df["task"] == task].set_index("model")
        for p in preds:
            assert p["observed"] == pytest.approx(obs.loc[p["model"], "score"])
            assert p["x"] == pytest.approx(obs.loc[p["model"], "N"])
        assert entry["coverage"] >= 0.8
        _png(out / f"backtest_{task}.png")
        assert task in stdout
    # extrapolating farther than the ladder spans is warned about
    assert any("extrapolates" in w for w in report["tasks"]["toy_mc"]["warnings"])
    assert "wrote" in stdout and "coverage" in stdout


def test_split_column_predicts_exactly_the_holdout_models(tmp_path, capsys):
    df = _score_rows(seed=1)
    holdout = {"org/m6", "org/m7"}
    df["split"] = np.where(df["model"].isin(holdout), "holdout", "train")
    csv = tmp_path / "ladder.csv"
    df.to_csv(csv, index=False)
    out = tmp_path / "out"
    rc, _, err = _run([csv, "--output_path", out, "--tasks", "toy_mc"], capsys)
    assert rc == 0, err
    report = _report(out)
    assert set(report["tasks"]) == {"toy_mc"}
    preds = report["tasks"]["toy_mc"]["predictions"]
    assert len(preds) == 2 and {p["model"] for p in preds} == holdout
    _png(out / "backtest_toy_mc.png")
    assert not (out / "backtest_toy_gen.png").exists()


def test_models_sharing_compute_stay_two_models(tmp_path, capsys):
    """--x compute: compute = 6 N tokens; 'wide' and 'deep' have different N
    and tokens but the same compute, and both are predicted."""
    rng = np.random.default_rng(2)
    N = np.array([2e7, 5e7, 1e8, 2e8, 5e8, 1e9])
    tokens = 20 * N
    models = [f"m{i}" for i in range(len(N))] + ["wide", "deep"]
    N = np.concatenate([N, [2e9, 4e9]])
    tokens = np.concatenate([tokens, [4e10, 2e10]])  # the same N * tokens
    compute = 6 * N * tokens
    y = 0.9 - 0.15 * np.log(compute / compute[0]) + rng.normal(0, 0.03, len(N))
    y[-1] += 0.1  # the two same-compute models do differ
    score = 0.25 + 0.75 * p_from_y(y)
    df = pd.DataFrame({"model": models, "N": N, "tokens": tokens, "task": "toy_mc",
                       "score": np.round(score, 4), "n_items": 3000, "chance": 0.25,
                       "split": ["train"] * 6 + ["holdout"] * 2})
    csv = tmp_path / "compute.csv"
    df.to_csv(csv, index=False)
    out = tmp_path / "out"
    rc, _, err = _run([csv, "--x", "compute", "--output_path", out], capsys)
    assert rc == 0, err
    entry = _report(out)["tasks"]["toy_mc"]
    assert entry["x"] == "compute"
    preds = {p["model"]: p for p in entry["predictions"]}
    assert set(preds) == {"wide", "deep"}
    assert preds["wide"]["x"] == pytest.approx(preds["deep"]["x"]) == pytest.approx(6 * 2e9 * 4e10)
    assert preds["wide"]["predicted"] == pytest.approx(preds["deep"]["predicted"])
    assert preds["wide"]["observed"] != pytest.approx(preds["deep"]["observed"])
    # without the split: forward chaining keeps both too
    df.drop(columns="split").to_csv(csv, index=False)
    rc, _, err = _run([csv, "--x", "compute", "--output_path", tmp_path / "out2"], capsys)
    assert rc == 0, err
    models = [p["model"] for p in _report(tmp_path / "out2")["tasks"]["toy_mc"]["predictions"]]
    assert "wide" in models and "deep" in models and models.count("wide") == models.count("deep")


def test_garbage_is_one_error_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "garbage.csv"
    bad.write_bytes(b"hello world\nthis is , not ; a table\n\x00\x01\xff\n")
    rc, stdout, err = _run([bad, "--output_path", tmp_path / "out"], capsys)
    assert rc == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len([ln for ln in lines if ln.startswith("error:")]) == 1, err
    assert "garbage.csv" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "backtest.json").exists()
    rc, _, err = _run([tmp_path / "nothing_here", "--output_path", tmp_path / "out"], capsys)
    assert rc == 2 and err.count("error:") == 1 and "nothing_here" in err
    # a table without the scale asked for
    _score_rows().drop(columns="N").to_csv(tmp_path / "noN.csv", index=False)
    rc, _, err = _run([tmp_path / "noN.csv", "--output_path", tmp_path / "out"], capsys)
    assert rc == 2 and err.count("error:") == 1


def _count_rows(seed=3, sizes=(1e6, 2e6, 4e6, 8e6, 1.6e7, 3.2e7), n_instances=12, n=400):
    rng = np.random.default_rng(seed)
    rows = []
    y = 1.7 - 0.35 * np.log(np.asarray(sizes) / sizes[0])
    for i, (size, yi) in enumerate(zip(sizes, y)):
        p = float(p_from_y(yi))
        for k in range(n_instances):
            rows.append({"model": f"m{i}", "N": size, "task": "passuntil_toy", "instance": k, "n": n,
                         "c": int(rng.binomial(n, min(1.0, p * rng.uniform(0.2, 1.8))))})
    return pd.DataFrame(rows)


def test_counts_csv(tmp_path, capsys):
    csv = tmp_path / "counts.csv"
    _count_rows().to_csv(csv, index=False)
    out = tmp_path / "out"
    rc, _, err = _run([csv, "--output_path", out], capsys)
    assert rc == 0, err
    entry = _report(out)["tasks"]["passuntil_toy"]
    assert entry["verdict"] in LABELS and entry["verdict"] != "no usable trend"
    preds = entry["predictions"]
    assert len(preds) == 1 + 2 + 3 and {p["model"] for p in preds} == {"m3", "m4", "m5"}
    # observed = the task PU, the mean over instances of c / n
    t = _count_rows()
    pu = t.assign(r=t["c"] / t["n"]).groupby("model")["r"].mean()
    for p in preds:
        assert p["observed"] == pytest.approx(pu[p["model"]])
        assert 0 <= p["lower"] <= p["upper"] <= 1
    assert entry["coverage"] >= 0.8
    _png(out / "backtest_passuntil_toy.png")


# ---------------------------------------------------------------- lm-eval output directories

def _results_json(directory: Path, model: str, n_params: float, results: dict, n_samples: dict | None = None):
    """An lm-eval v0.4 results file (the layout of tests/test_tables.py)."""
    directory.mkdir(parents=True, exist_ok=True)
    data = {"results": results, "configs": {t: {"task": t} for t in results}, "n-shot": {t: 0 for t in results},
            "versions": {t: 1.0 for t in results},
            "config": {"model": "hf", "model_args": f"pretrained={model}", "model_num_parameters": n_params}}
    if n_samples:
        data["n-samples"] = {t: {"original": n, "effective": n} for t, n in n_samples.items()}
    (directory / "results_2026-01-01T00-00-00.000000.json").write_text(json.dumps(data))


def test_lm_eval_passuntil_directory(tmp_path, capsys):
    """PassUntil runs as lm-eval writes them: results_*.json with
    config.model_num_parameters and samples_<task>_*.jsonl with n_samples,
    n_passed per instance (as tests/test_tables.py builds them)."""
    t = _count_rows()
    runs = tmp_path / "runs"
    for i, (model, g) in enumerate(t.groupby("model", sort=True)):
        d = runs / f"org__{model}"
        pu = float((g["c"] / g["n"]).mean())
        _results_json(d, f"org/{model}", float(g["N"].iloc[0]), {"passuntil_toy": {"alias": "passuntil_toy",
                                                                                    "pu,none": pu}})
        (d / "samples_passuntil_toy_2026-01-01T00-00-00.000000.jsonl").write_text("".join(
            json.dumps({"doc_id": int(r.instance), "n_samples": int(r.n), "n_passed": int(r.c)}) + "\n"
            for r in g.itertuples()))
    out = tmp_path / "out"
    rc, _, err = _run([runs, "--x", "N", "--output_path", out], capsys)
    assert rc == 0, err
    report = _report(out)
    assert set(report["tasks"]) == {"passuntil_toy"}
    preds = report["tasks"]["passuntil_toy"]["predictions"]
    assert {p["model"] for p in preds} == {"org/m3", "org/m4", "org/m5"}
    pu = t.assign(r=t["c"] / t["n"]).groupby("model")["r"].mean()
    for p in preds:
        assert p["observed"] == pytest.approx(pu[p["model"].split("/")[1]])
        assert p["x"] == pytest.approx(float(t.loc[t["model"] == p["model"].split("/")[1], "N"].iloc[0]))
    _png(out / "backtest_passuntil_toy.png")


def test_lm_eval_scores_directory(tmp_path, capsys):
    """Aggregated v0.4 results of a multiple-choice task: the chance floor
    comes from the known lm-eval tasks, with a note."""
    df = _score_rows(seed=4, sizes=SIZES[:6], n_items=2376)
    runs = tmp_path / "runs"
    for r in df[df["task"] == "toy_mc"].itertuples():
        se = math.sqrt(r.score * (1 - r.score) / (r.n_items - 1))
        _results_json(runs / r.model.replace("/", "__"), r.model, r.N,
                      {"arc_easy": {"alias": "arc_easy", "acc,none": r.score, "acc_stderr,none": se,
                                    "acc_norm,none": r.score + 0.01, "acc_norm_stderr,none": se}},
                      n_samples={"arc_easy": 2376})
    out = tmp_path / "out"
    rc, _, err = _run([runs, "--output_path", out], capsys)
    assert rc == 0, err
    entry = _report(out)["tasks"]["arc_easy"]
    assert any("chance floor 0.25" in w and "arc_easy" in w for w in entry["warnings"]), entry["warnings"]
    preds = entry["predictions"]
    assert {p["model"] for p in preds} == {f"org/m{i}" for i in range(3, 6)}
    acc = df[df["task"] == "toy_mc"].set_index("model")["score"]
    for p in preds:  # acc (not acc_norm) is the metric read by default
        assert p["observed"] == pytest.approx(acc[p["model"]])
    _png(out / "backtest_arc_easy.png")
    # --metric acc_norm reads the other one
    rc, _, err = _run([runs, "--output_path", tmp_path / "out_norm", "--metric", "acc_norm"], capsys)
    assert rc == 0, err
    preds = _report(tmp_path / "out_norm")["tasks"]["arc_easy"]["predictions"]
    assert all(p["observed"] == pytest.approx(acc[p["model"]] + 0.01) for p in preds)


# ---------------------------------------------------------------- real data

RISING = ("lambada_openai", "arc_easy", "sciq", "piqa", "winogrande", "arc_challenge")


def test_real_pythia_ladder_coverage_and_interval_score():
    """Forward chaining over the Pythia deduped final checkpoints (8 sizes,
    70M-12B) on the tasks that rise above chance: pooled coverage of the 95%
    intervals and the mean interval score against the plain least-squares
    baseline (computed on the same predictions)."""
    if not DATA.exists():
        pytest.skip(f"real data not present: {DATA}")
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import real_ladders
    finally:
        sys.path.remove(str(ROOT / "bench"))
    from analysis.forecast.backtest import backtest_obs, summarize
    from analysis.forecast.ladder import task_observations

    ladder = real_ladders.pythia_final_ladder(DATA)
    table = ladder.table.assign(x=ladder.table["N"].astype(float))
    frames, per_task = [], {}
    for task in RISING:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obs, _ = task_observations(table, task)
            rows, _ = backtest_obs(obs, x_name="N")
        per_task[task] = summarize(rows)
        frames.append(rows.assign(task=task))
    pooled = summarize(pd.concat(frames, ignore_index=True))
    msg = f"pooled {pooled}; per task {per_task}"
    print(msg)
    assert pooled["n"] >= 50, msg
    assert pooled["coverage"] >= 0.9, msg
    assert pooled["score"] <= 0.8 * pooled["base_score"], msg
