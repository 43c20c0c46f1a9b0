"""Degenerate emergence data (issue 12): constant or flat scores give the
verdict "no emergence in range" instead of an emergence point with a
zero-width interval; the bootstrap resamples whole runs when there is a
``run`` column; predictions beyond the fitted losses say so."""

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from analysis.emergence import law as law_mod
from analysis.emergence.law import (
    EMERGENCE,
    NO_EMERGENCE,
    backtest_emergence,
    calibrate_d0,
    fit_emergence_curve,
    fit_emergence_law,
)

# Perf = A*ReLU(E(D) - L) + B, E(D) = k*(log D)^alpha + C
A, B, K, ALPHA, C = 0.5, 0.25, 0.12, 1.0, 2.4


def sweep(rng, *, losses=np.linspace(2.0, 3.6, 9), Ds=(10, 100, 1000), n=400, fewshot=True, flat_fewshot=False,
          runs=None):
    """Binomial accuracies from the law; few-shot (D = 0) rows follow it at
    D0 = 1 (E = C), or sit at the floor when ``flat_fewshot``.  ``runs``:
    that many training runs, each with every loss (shifted a little)."""
    rows = []
    for r in range(runs or 1):
        for i, L in enumerate(losses + 0.01 * r):
            for D in ((0,) if fewshot else ()) + tuple(Ds):
                e = K * np.log(D) ** ALPHA + C if D else C
                p = B if (D == 0 and flat_fewshot) else min(A * max(e - L, 0.0) + B, 1.0)
                row = dict(checkpoint=f"r{r}c{i}", L=L, D=D, n=n, perf=rng.binomial(n, p) / n)
                if runs:
                    row["run"] = f"r{r}"
                rows.append(row)
    return pd.DataFrame(rows)


def quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kw)


def no_zero_width(ci: pd.DataFrame):
    finite = ci["lower"].notna() & ci["upper"].notna()
    assert (ci.loc[finite, "upper"] - ci.loc[finite, "lower"] > 1e-9).all(), ci


# --------------------------------------------------------------------------
# verdicts
# --------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:parameter.*at a bound")
@pytest.mark.parametrize("likelihood", ["binomial", "gaussian"])
def test_constant_scores_give_the_verdict_and_nan_bounds(likelihood):
    # Every checkpoint at 0.25: the fit used to report E = 1.969 [1.969, 1.969].
    L = np.linspace(2.5, 3.6, 8)
    df = pd.DataFrame({"checkpoint": [f"c{i}" for i in range(8)], "L": L, "perf": 0.25, "n": 400})
    if likelihood == "gaussian":
        df = df.drop(columns="n")
    with pytest.warns(UserWarning, match="no emergence in range: every score is 0.25"):
        r = fit_emergence_curve(df, n_boot=30, seed=0)
    assert r.likelihood == likelihood
    assert r.verdict == NO_EMERGENCE and not r.emerged
    assert "constant scores" in r.verdict_reason
    em = r.emergence_loss().iloc[0]
    assert em["verdict"] == NO_EMERGENCE
    assert math.isnan(em["E"]) and math.isnan(em["lower"]) and math.isnan(em["upper"])
    ci = r.conf_int()
    assert ci.loc["E"].isna().all()
    no_zero_width(ci)  # a parameter whose refits all agree has no interval, not a point
    no_zero_width(r.conf_int(method="wald"))
    pred = r.predict([3.0])
    assert math.isnan(pred["lower"].iloc[0]) or pred["upper"].iloc[0] - pred["lower"].iloc[0] > 1e-9
    text = r.summary()
    assert "verdict: no emergence in range: every score is 0.25" in text
    assert "emergence point E: none" in text and "1.969" not in text
    d = r.to_dict()
    json.dumps(d)
    assert d["verdict"] == NO_EMERGENCE and d["emergence"]["E"] is None and d["emergence"]["lower"] is None


def test_constant_scores_of_a_law_leave_e_d0_and_calibration_empty():
    L = np.linspace(2.5, 3.6, 8)
    df = pd.DataFrame([dict(checkpoint=f"c{i}", L=l, D=D, n=400, perf=0.3)
                       for i, l in enumerate(L) for D in (10, 100, 1000)])
    r = quiet(fit_emergence_law, df, d0=1, n_boot=20)
    assert r.verdict == NO_EMERGENCE
    fs = r.few_shot
    assert fs["verdict"] == NO_EMERGENCE and np.isnan(fs[["E", "lower", "upper"]].to_numpy(float)).all()
    em = r.emergence_loss([10, 1000])
    assert em[["E", "lower", "upper"]].isna().all().all()
    assert r.conf_int().loc[["k", "alpha", "C"]].isna().all().all()
    assert r.bse[["k", "alpha", "C"]].isna().all()
    assert r.to_dict()["few_shot_emergence"]["E"] is None
    with pytest.raises(ValueError, match="no emergence in range"):
        calibrate_d0(r, 2.5)


def test_a_curve_at_its_floor_is_no_emergence_and_the_law_is_emergence():
    # Binomial noise around chance at every checkpoint: the kink fitted to
    # noise is not clearly better than a flat line (2*dllf below the chi2(2)
    # 95% point 5.99) or lies past every checkpoint; the same design with the
    # true law is far above the threshold.
    rng = np.random.default_rng(0)
    flat = pd.DataFrame({"checkpoint": [f"c{i}" for i in range(10)], "L": np.linspace(2.5, 3.6, 10), "n": 400,
                         "perf": rng.binomial(400, 0.25, 10) / 400})
    r = quiet(fit_emergence_curve, flat, n_boot=20)
    assert r.verdict == NO_EMERGENCE, (r.lr_flat, r.side_counts)
    assert ("chi2(2)" in r.verdict_reason) or ("past the fitted kink" in r.verdict_reason)
    assert r.lr_flat_threshold == pytest.approx(5.991, abs=1e-3)
    assert r.emergence_loss()[["E", "lower", "upper"]].isna().all().all()
    df = sweep(rng, fewshot=False)
    law = quiet(fit_emergence_law, df, d0=1, n_boot=0)
    assert law.verdict == EMERGENCE and law.verdict_reason == "" and law.lr_flat > law.lr_flat_threshold
    assert law.lr_flat_threshold == pytest.approx(9.488, abs=1e-3)  # chi2(4): A, k, alpha, C
    assert np.isfinite(law.few_shot["E"]) and law.few_shot["verdict"] == EMERGENCE
    # a curve whose kink lies below every checkpoint never rises above its floor
    low = pd.DataFrame({"checkpoint": [f"c{i}" for i in range(8)], "L": np.linspace(2.5, 3.6, 8), "n": 400,
                        "perf": rng.binomial(400, 0.25, 8) / 400})
    assert quiet(fit_emergence_curve, low, floor=0.25, n_boot=0).verdict == NO_EMERGENCE


def test_backtest_on_a_flat_few_shot_curve_reports_the_verdict_and_no_coverage():
    # The finetuned rows follow the law; the few-shot rows never leave the
    # floor: there is no observed emergence point to score the forecast on.
    rng = np.random.default_rng(3)
    df = sweep(rng, flat_fewshot=True)
    bt = quiet(backtest_emergence, df, d0=1, n_boot=20, seed=0)
    assert bt.verdict == NO_EMERGENCE and "few-shot curve" in bt.verdict_reason
    assert bt.error_nats is None and bt.covered is None and bt.lead_loss is None
    assert math.isnan(bt.observed) and math.isnan(bt.cutoff) and not bt.cutoff_detected
    assert len(bt.checkpoints_used) == 9  # nothing emerged: every checkpoint is "before" it
    assert bt.law.emerged and np.isfinite(bt.predicted)  # the forecast itself is still made
    d = bt.to_dict()
    json.dumps(d)
    assert d["covered"] is None and d["error_nats"] is None and d["verdict"] == NO_EMERGENCE
    text = bt.summary()
    assert "error, coverage: not scored" in text and "inside the interval" not in text
    assert "observed few-shot emergence: none" in text
    # constant few-shot scores: the same verdict
    const = df.assign(perf=df["perf"].where(df["D"] > 0, 0.25))
    bt2 = quiet(backtest_emergence, const, d0=1, n_boot=0)
    assert bt2.verdict == NO_EMERGENCE and "constant" in bt2.verdict_reason and bt2.covered is None


# --------------------------------------------------------------------------
# the bootstrap clustered by run
# --------------------------------------------------------------------------


def test_checkpoint_bootstrap_resamples_whole_runs_when_there_is_a_run_column(monkeypatch):
    rng = np.random.default_rng(7)
    df = sweep(rng, losses=np.linspace(2.2, 3.6, 5), fewshot=False, runs=4)  # 4 runs x 5 checkpoints x 3 D
    run_of = {round(L, 9): run for L, run in zip(df["L"], df["run"])}
    seen = []
    real = law_mod._fit_point

    def spy(model, data, likelihood, n_starts, extra_start=None):
        if n_starts == 0:  # a bootstrap refit
            seen.append(np.asarray(data.L).copy())
        return real(model, data, likelihood, n_starts, extra_start)

    monkeypatch.setattr(law_mod, "_fit_point", spy)
    r = quiet(fit_emergence_law, df, d0=1, n_boot=25, bootstrap="checkpoint", seed=2)
    assert r.bootstrap == "run" and r.n_runs == 4 and r.n_checkpoints == 20
    assert "runs: 4" in r.summary() and r.to_dict()["n_runs"] == 4
    assert len(seen) == 25
    for L in seen:
        # every drawn run comes whole: all 5 of its checkpoints (x 3 D), each
        # as often as the others; never a checkpoint without its run
        rows = pd.DataFrame({"L": np.round(L, 9)})
        rows["run"] = rows["L"].map(run_of)
        per_run = rows.groupby(["run", "L"]).size().groupby(level="run")
        assert (per_run.nunique() == 1).all() and (per_run.size() == 5).all(), rows.value_counts()
        assert len(L) % 15 == 0
    no_zero_width(r.conf_int())
    # "run" names the same thing; without a run column it is an error
    assert quiet(fit_emergence_law, df, n_boot=5, bootstrap="run").bootstrap == "run"
    with pytest.raises(ValueError, match="needs a column run"):
        fit_emergence_law(df.drop(columns="run"), n_boot=5, bootstrap="run")
    # checkpoints resampled individually without the column
    assert quiet(fit_emergence_law, df.drop(columns="run"), n_boot=5, bootstrap="checkpoint").bootstrap == "checkpoint"


def test_run_column_errors_and_auto_counts_runs():
    rng = np.random.default_rng(1)
    one = sweep(rng, fewshot=False, runs=1)
    with pytest.raises(ValueError, match=">= 2 runs"):
        fit_emergence_law(one, n_boot=5, bootstrap="checkpoint")
    # 25 checkpoints of one run: "auto" would resample checkpoints without the
    # run column, but one run is one cluster: parametric
    L = np.linspace(2.4, 4.2, 25)
    curve = pd.DataFrame({"checkpoint": [f"m{i}" for i in range(25)], "L": L,
                          "perf": 0.3 * np.maximum(3.2 - L, 0) + 0.25 + 0.01 * rng.standard_normal(25)})
    assert quiet(fit_emergence_curve, curve, n_boot=5).bootstrap == "checkpoint"
    assert quiet(fit_emergence_curve, curve.assign(run="r0"), n_boot=5).bootstrap == "parametric"
    two = one.assign(run=np.where(one["checkpoint"] == "r0c0", "a", "b"))
    two.loc[(two["checkpoint"] == "r0c0") & (two["D"] == 10), "run"] = "b"
    with pytest.raises(ValueError, match="lies in several runs"):
        fit_emergence_law(two, n_boot=0)


def test_a_run_passed_as_checkpoint_is_explained():
    rng = np.random.default_rng(2)
    df = sweep(rng, fewshot=False, runs=2)
    as_run = df.assign(checkpoint=df["run"])
    with pytest.raises(ValueError, match="more than one loss L") as exc:
        fit_emergence_law(as_run, n_boot=0)
    msg = str(exc.value)
    assert "'r0'" in msg and "column 'run'" in msg and "resamples whole runs" in msg


# --------------------------------------------------------------------------
# extrapolation warnings
# --------------------------------------------------------------------------


def test_predictions_below_the_fitted_losses_warn_by_how_much():
    rng = np.random.default_rng(4)
    df = sweep(rng, losses=np.linspace(2.5, 3.6, 8), fewshot=False)  # span 1.1 nats
    r = quiet(fit_emergence_law, df, d0=1, n_boot=20)
    # E(D0 = 1) = C = 2.4 < 2.5: the forecast itself lies beyond the data, noted at fit time
    fs = r.few_shot
    if fs["E"] < 2.5:
        assert any(w.startswith(f"extrapolation: E(D0=1) = {fs['E']:.4g} nats lies") for w in r.warnings)
    inside = r.predict([2.6, 3.0], D=100)
    assert inside.attrs["warnings"] == []
    with pytest.warns(UserWarning, match="extrapolation: L = 2.39 lies 0.11 nats below"):
        out = r.predict([2.39, 3.0], D=100)
    (w,) = out.attrs["warnings"]
    assert w == ("extrapolation: L = 2.39 lies 0.11 nats below the strongest fitted checkpoint (L = 2.5), "
                 "10% of the fitted loss span (2.5 to 3.6 nats, 1.1); the law is untested there")
    assert w in r.warnings and w in r.to_dict()["warnings"] and f"warning: {w}" in r.summary()
    n = len(r.warnings)
    quiet(r.predict, [2.39], D=100)
    assert len(r.warnings) == n  # recorded once
    # several losses below: the lowest is named, with the count
    many = quiet(r.predict, [1.95, 2.2, 2.3], D=[10, 10, 10])
    assert "L = 1.95 (the lowest of 3 below the range) lies 0.55 nats below" in many.attrs["warnings"][0]
    assert "50% of the fitted loss span" in many.attrs["warnings"][0]
    # an emergence point asked for below the range
    em = quiet(r.emergence_loss, [1.0, 1000.0])
    below = em.loc[em["E"] < 2.5, "D"].tolist()
    assert (len(em.attrs["warnings"]) == 1) == bool(below)
    if below:
        assert em.attrs["warnings"][0].startswith("extrapolation: E(D=1) = ")
