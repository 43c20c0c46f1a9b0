"""Loss -> accuracy on the forecasting core, and the two-step chain
(analysis.forecast.curves, .lossacc, .losslaw; ``backtest --x loss`` and
``--via loss``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import special

from analysis.forecast.curves import fit_curve
from analysis.forecast.lossacc import (backtest_loss_table, fit_loss_forecast, is_loss_column, observe_loss)
from analysis.forecast.losslaw import calibrated_loss_law, chain_predict, fit_loss_law

ROOT = Path(__file__).resolve().parents[3]
CHANCE = 0.25


def true_score(L):
    """A multiple-choice task: chance 0.25, ceiling 0.9, rising around L = 2.6."""
    return CHANCE + (0.9 - CHANCE) * special.expit(4.0 * (2.6 - np.asarray(L, float)))


def ladder(seed=0, n_items=2000, tau=0.008, sizes=(2e7, 4e7, 8e7, 1.6e8, 3.2e8, 6.4e8, 1.3e9, 2.6e9, 5e9),
           mults=(1, 4)):
    """Models on Chinchilla's L(N, D) with between-model scatter, scored
    binomially on the sigmoid above."""
    rng = np.random.default_rng(seed)
    rows = []
    for N in sizes:
        for m in mults:
            D = 20 * N * m
            L = 1.7 + 400 / N**0.34 + 410 / D**0.28
            L *= np.exp(rng.normal(0, 0.004))
            p = np.clip(true_score(L) + rng.normal(0, tau), 0.001, 0.999)
            rows.append(dict(model=f"m{N:.0e}x{m}", N=N, tokens=D, loss=L, task="mc",
                             score=rng.binomial(n_items, p) / n_items, n_items=n_items, chance=CHANCE,
                             true=true_score(L)))
    df = pd.DataFrame(rows)
    df["split"] = np.where(df["N"] < 1e9, "train", "holdout")
    return df


def test_is_loss_column():
    assert all(is_loss_column(c) for c in ("loss", "val_loss", "bpb", "task_bits_per_byte", "nll", "lambada_ppl"))
    assert not any(is_loss_column(c) for c in ("N", "compute", "tokens", "score"))


def test_fit_curve_recovers_a_sigmoid_and_its_uncertainty():
    L = np.linspace(4.0, 2.2, 25)
    rng = np.random.default_rng(3)
    n = 5000
    y = rng.binomial(n, true_score(L)) / n
    v = y * (1 - y) / n
    fit = fit_curve(L, y, v, "sigmoid_chance", chance=CHANCE)
    p = fit.params
    assert p["ceiling"] == pytest.approx(0.9, abs=0.05)
    assert p["k"] == pytest.approx(4.0, rel=0.25)
    assert p["L0"] == pytest.approx(2.6, abs=0.05)
    mu, var = fit.predict([2.0, 2.6])
    assert np.all(var > 0)
    # the band is wider where the curve is extrapolated
    assert var[0] > var[1]
    assert mu[1] == pytest.approx(true_score(2.6), abs=0.02)
    four = fit_curve(L, y, v, "sigmoid")
    assert four.params["floor"] == pytest.approx(CHANCE, abs=0.03)
    with pytest.raises(ValueError, match="needs 6 models"):
        fit_curve(L[:4], y[:4], v[:4], "sigmoid")


def test_forecast_covers_held_out_models_and_warns_beyond_the_range():
    covered, total = 0, 0
    for seed in range(4):
        df = ladder(seed)
        obs = observe_loss(df, x="loss")
        train = obs[obs["model"].map(df.set_index("model")["split"]) == "train"]
        test = obs[~obs["model"].isin(train["model"])]
        res = fit_loss_forecast(train)
        assert res.verdict == "follows the curve"
        pred = res.predict(test["L"].to_numpy(), n_items=test["n_items"].to_numpy())
        assert np.all((pred["lower"] >= 0) & (pred["upper"] <= 1) & (pred["lower"] < pred["upper"]))
        truth = test["model"].map(df.set_index("model")["true"]).to_numpy()
        y = test["score"].to_numpy()
        covered += int(np.sum((pred["lower"].to_numpy() <= y) & (y <= pred["upper"].to_numpy())))
        total += len(test)
        # the ceiling (0.9) is beyond every fitted score (<= 0.65), so the
        # curves leave it at 1: the point is high, the interval says so
        assert np.mean(np.abs(pred["predicted"].to_numpy() - truth)) < 0.1
        warns = res.warnings_for(test["L"].to_numpy())
        below = test["L"].to_numpy() < train["L"].min()
        assert all(any("extrapolated" in w for w in ws) == b for ws, b in zip(warns, below))
    assert covered / total >= 0.8
    s = res.summary()
    assert "sigmoid" in s and "kappa" in s and "predict()" in s
    d = res.to_dict()
    assert d["verdict"]["label"] == "follows the curve" and set(d["forms"]) == {"sigmoid", "sigmoid_chance"}


def test_constant_scores_have_no_usable_trend():
    df = ladder(1)
    rng = np.random.default_rng(0)
    df["score"] = rng.binomial(2000, 0.25, len(df)) / 2000
    res = fit_loss_forecast(observe_loss(df, x="loss"))
    assert res.verdict == "no usable trend"
    assert not res.extrapolate
    assert any("no usable trend" in w for w in res.warnings_for([1.5])[0])


def test_bad_inputs_name_the_model():
    df = ladder(0)
    df.loc[3, "loss"] = np.nan
    with pytest.raises(ValueError, match=re.escape(df.loc[3, "model"])):
        observe_loss(df, x="loss")
    df = ladder(0)
    df["score"] = df["score"].astype(object)
    df.loc[2, "score"] = "n/a"
    with pytest.raises(ValueError, match=re.escape(df.loc[2, "model"]) + ".*n/a"):
        observe_loss(df, x="loss")


def test_checkpoints_of_few_runs_cluster_the_covariance():
    rng = np.random.default_rng(5)
    rows = []
    for r in range(6):
        off = rng.normal(0, 0.03)  # the run's own deviation, shared by its checkpoints
        for step in range(8):
            L = 4.0 - 0.2 * step - 0.1 * r
            rows.append(dict(model=f"r{r}@{step}", run=f"r{r}", loss=L, score=float(np.clip(true_score(L) + off, 0, 1)),
                             n_items=5000, chance=CHANCE))
    obs = observe_loss(pd.DataFrame(rows), x="loss")
    res = fit_loss_forecast(obs)
    assert any("clustered by training run (6 runs)" in n for n in res.notes)
    assert obs["run"].nunique() == 6


def test_loss_law_and_the_chain():
    df = ladder(2)
    models = df.groupby("model").first().reset_index()
    train = models[models["split"] == "train"]
    law = fit_loss_law(train, x="N")
    assert law.kind == "chinchilla"
    assert law.params["E"] == pytest.approx(1.7, rel=0.1)
    power = fit_loss_law(train.assign(compute=6 * train["N"] * train["tokens"]), x="compute", kind="power")
    assert power.kind == "power"
    law = calibrated_loss_law(train, x="N")
    assert law.calibration.n_errors > 0
    test = models[models["split"] == "holdout"]
    obs = observe_loss(df[df["split"] == "train"], x="loss")
    curve = fit_loss_forecast(obs)
    chain = chain_predict(law, curve, test, n_items=test["n_items"].to_numpy())
    one = curve.predict(chain["loss_pred"].to_numpy(), n_items=test["n_items"].to_numpy())
    # both steps' uncertainty: wider than the curve's own interval at the predicted loss
    assert np.all(chain["sd"].to_numpy() > one["sd"].to_numpy())
    assert np.all((chain["loss_lower"] < chain["loss_pred"]) & (chain["loss_pred"] < chain["loss_upper"]))
    assert np.all(np.abs(chain["predicted"] - test["true"].to_numpy()) < 0.1)


def test_backtest_loss_table_split_and_via():
    df = ladder(4)
    rep, det = backtest_loss_table(df, x_name="loss")
    e = rep["tasks"]["mc"]
    assert e["verdict"] == "follows the curve" and len(e["predictions"]) == (df["split"] == "holdout").sum()
    assert e["coverage"] is not None
    rep2, _ = backtest_loss_table(df, x_name="N", via="loss")
    p = rep2["tasks"]["mc"]["predictions"]
    assert all({"loss_pred", "loss_lower", "loss_upper", "loss_observed"} <= set(x) for x in p)
    with pytest.raises(ValueError, match="needs a split column"):
        backtest_loss_table(df.drop(columns="split"), x_name="N", via="loss")


def _cli(*args, cwd=ROOT):
    env = dict(os.environ, HF_HUB_OFFLINE="1", MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", "analysis", "backtest", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)


def test_cli_backtest_on_the_loss_axis(tmp_path):
    df = ladder(6).drop(columns="true")
    csv = tmp_path / "ladder.csv"
    df.to_csv(csv, index=False)
    r = _cli(str(csv), "--x", "loss", "--out", str(tmp_path / "one"))
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "one" / "backtest.json").read_text())
    assert rep["tasks"]["mc"]["law"] == "score from loss"
    assert "mean absolute error" in r.stdout and "extrapolated" in r.stdout
    assert (tmp_path / "one" / "backtest_mc.png").stat().st_size > 0
    r = _cli(str(csv), "--x", "N", "--via", "loss", "--out", str(tmp_path / "two"))
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "two" / "backtest.json").read_text())
    assert rep["tasks"]["mc"]["law"] == "N -> loss -> score"
    assert "loss law (L = E + A N^-alpha + B D^-beta)" in " ".join(rep["tasks"]["mc"]["warnings"])
    r = _cli(str(csv), "--x", "loss", "--law", "passuntil", "--out", str(tmp_path / "three"))
    assert r.returncode == 2 and "--law passuntil" in r.stderr


GADRE = ROOT.parent / "shared" / "data" / "gadre2024_scaling" / "gadre2024_wide.csv"


@pytest.mark.skipif(not GADRE.exists(), reason="../shared/data not present")
def test_gadre_small_models_predict_the_large_from_loss():
    """Real data (Gadre et al. 2024, RedPajama models): fit <= 411M, predict
    the 1.4B and 6.9B models' HellaSwag and PIQA from their C4 loss."""
    wide = pd.read_csv(GADRE)
    wide = wide[wide["train_dataset"] == "rpj"]
    rows = []
    for task, chance, n in (("hellaswag", 0.25, 10042), ("piqa", 0.5, 1838)):
        rows.append(pd.DataFrame({"model": wide["name"], "task": task, "score": wide[task], "n_items": n,
                                  "chance": chance, "loss": wide["loss_paloma_c4_en"],
                                  "split": np.where(wide["params"] < 5e8, "train", "holdout")}))
    rep, det = backtest_loss_table(pd.concat(rows), x_name="loss")
    preds = [p for e in rep["tasks"].values() for p in e["predictions"]]
    assert len(preds) == 6
    assert sum(p["covered"] for p in preds) >= 5
    assert np.mean([abs(p["predicted"] - p["observed"]) for p in preds]) < 0.03


PYTHIA = ROOT.parent / "shared" / "data" / "pythia_evals" / "pythia_v1_evals_tidy.csv.gz"


@pytest.mark.skipif(not PYTHIA.exists(), reason="../shared/data not present")
def test_pythia_chain_predicts_the_large_models_from_n_and_tokens():
    """Real data: Pythia deduped checkpoints; fit the loss law (log LAMBADA
    perplexity against N and tokens) and the score curve on <= 1.4B, predict
    the final 2.8B, 6.9B and 12B models' ARC-Easy and PIQA from (N, tokens)."""
    raw = pd.read_csv(PYTHIA)
    raw = raw[(raw["variant"] == "deduped") & (raw["eval_kind"] == "zero-shot") & (raw["step"] >= 3000)]
    lam = raw[(raw["task"] == "lambada_openai") & (raw["metric"] == "ppl")]
    loss = pd.Series(np.log(lam["value"].to_numpy()), index=lam["model"] + "@" + lam["step"].astype(str))
    acc = raw[raw["task"].isin(["arc_easy", "piqa"]) & (raw["metric"] == "acc")]
    t = pd.DataFrame({"model": acc["model"] + "@" + acc["step"].astype(str), "run": acc["model"],
                      "N": acc["params_total"], "tokens": acc["tokens_seen"], "task": acc["task"],
                      "score": acc["value"], "n_items": acc["task"].map({"arc_easy": 2376, "piqa": 1838}),
                      "chance": acc["task"].map({"arc_easy": 0.25, "piqa": 0.5})})
    t["loss"] = t["model"].map(loss)
    big = t["N"] > 1.5e9
    t = t[~big | (acc["step"].to_numpy() == 143000)]
    t["split"] = np.where(t["N"] > 1.5e9, "holdout", "train")
    rep, _ = backtest_loss_table(t, x_name="N", via="loss")
    preds = [p for e in rep["tasks"].values() for p in e["predictions"]]
    assert len(preds) == 6
    assert sum(p["covered"] for p in preds) >= 5
    assert np.mean([abs(p["predicted"] - p["observed"]) for p in preds]) < 0.05
    assert all(p["loss_lower"] < p["loss_pred"] < p["loss_upper"] for p in preds)


def test_cli_forecasts_models_not_yet_trained(tmp_path):
    """split = predict: no score, no loss, only N and tokens; the chain
    forecasts them and nothing is scored."""
    df = ladder(6).drop(columns="true")
    fut = df["split"] == "holdout"
    df.loc[fut, ["score", "loss"]] = np.nan
    df.loc[fut, "split"] = "predict"
    csv = tmp_path / "plan.csv"
    df.to_csv(csv, index=False)
    r = _cli(str(csv), "--x", "N", "--via", "loss", "--out", str(tmp_path / "o"))
    assert r.returncode == 0, r.stderr
    e = json.loads((tmp_path / "o" / "backtest.json").read_text())["tasks"]["mc"]
    assert e["coverage"] is None and len(e["predictions"]) == int(fut.sum())
    assert all(p["observed"] is None and 0 <= p["lower"] < p["predicted"] < p["upper"] <= 1 for p in e["predictions"])
    assert "split = predict" in r.stdout
    # from the loss alone, a model to predict needs its loss: an error naming them
    r = _cli(str(csv), "--x", "loss", "--out", str(tmp_path / "p"))
    assert r.returncode == 2 and "no loss for these models: m1e+09x1" in r.stderr
