"""Emergence laws (analysis.emergence.law) against synthetic ground truth.

Every simulation uses a fixed seed, so the tests are deterministic; the
thresholds are chosen so that a correct method passes with margin at the
long-run rates quoted in each test.
"""

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from analysis.emergence.law import (
    backtest_emergence,
    calibrate_d0,
    fit_emergence_curve,
    fit_emergence_law,
    softplus,
)

# Perf = A*ReLU(E(D) - L) + B, E(D) = k*(log D)^alpha + C
TRUE = dict(A=0.5, B=0.25, k=0.12, alpha=1.0, C=2.4)


def e_true(D):
    return TRUE["k"] * np.log(D) ** TRUE["alpha"] + TRUE["C"]


def make_sweep(rng, *, losses=np.linspace(2.5, 3.6, 8), Ds=(10, 100, 1000), n=400, seeds=1, fewshot_d0=None):
    """Binomial accuracies on n items from the true law; D = 0 rows follow the
    law at D0 = fewshot_d0 when given (the few-shot curve)."""
    rows = []
    for i, L in enumerate(losses):
        for D in ((0,) if fewshot_d0 else ()) + tuple(Ds):
            e = e_true(fewshot_d0 if D == 0 else D)
            p = min(TRUE["A"] * max(e - L, 0.0) + TRUE["B"], 1.0)
            for s in range(seeds if D else 1):
                rows.append(dict(checkpoint=f"c{i}", L=L, D=D, seed=s, n=n, perf=rng.binomial(n, p) / n,
                                 flops=1e18 * np.exp(4 * (3.6 - L))))
    return pd.DataFrame(rows)


def covers(ci, name, truth):
    return ci.loc[name, "lower"] <= truth <= ci.loc[name, "upper"]


# --------------------------------------------------------------------------
# the law fitted back within its intervals
# --------------------------------------------------------------------------


def test_law_bootstrap_intervals_cover_the_true_parameters_and_emergence_points():
    # 8 checkpoints x D in {10, 100, 1000}, 400 items per score; few-shot
    # emergence E(D0 = 1) = C = 2.4 lies below every checkpoint's loss (the
    # prediction problem).  Parametric bootstrap (what "auto" picks for a
    # sweep of fewer than 20 checkpoints).  Long-run coverage of these 90%
    # intervals (this design, 50 refits, 200 data sets, another seed): A 87.5%,
    # B 89%, k 93%, alpha 92.5%, C 91%, E(1) 91%, E(100) 94%.  12 sets keep
    # the test at a few seconds: at 90% a ">= 9 of 12" check fails with
    # probability ~3% (at A's 87.5%, ~6%); the seed is fixed.
    rng = np.random.default_rng(11)
    names = list(TRUE) + ["E(1)", "E(100)"]
    hits = dict.fromkeys(names, 0)
    est = []
    for i in range(12):
        df = make_sweep(rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = fit_emergence_law(df, d0=1, n_boot=50, alpha_ci=0.1, seed=i)
        assert r.bootstrap == "parametric" and r.likelihood == "binomial" and len(r.boot) >= 45
        ci = r.conf_int()
        for k, v in TRUE.items():
            hits[k] += covers(ci, k, v)
        assert r.verdict == "emergence observed"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # E(1) often lies below the data: an extrapolation warning
            em = r.emergence_loss([1, 100]).set_index("D")
        hits["E(1)"] += em.loc[1, "lower"] <= e_true(1) <= em.loc[1, "upper"]
        hits["E(100)"] += em.loc[100, "lower"] <= e_true(100) <= em.loc[100, "upper"]
        est.append(em.loc[100, "E"])
    print("\ncoverage of 90% intervals over 12 sets:", hits)
    for name in names:
        assert hits[name] >= 9, (name, hits)
    # the emergence point inside the data is estimated without visible bias
    assert abs(np.median(est) - e_true(100)) < 0.03, est


def test_checkpoint_bootstrap_with_seeds():
    # 10 checkpoints resampled whole, 2 finetuning seeds per (checkpoint, D)
    # scored as separate rows.  (With 10 checkpoints "auto" is parametric:
    # the cluster bootstrap under-covers with so few clusters, see the
    # module docstring.)
    rng = np.random.default_rng(5)
    df = make_sweep(rng, losses=np.linspace(2.5, 3.6, 10), seeds=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = fit_emergence_law(df, d0=1, n_boot=60, seed=1, bootstrap="checkpoint")
    assert r.bootstrap == "checkpoint" and r.nobs == 60 and r.n_checkpoints == 10
    em = r.emergence_loss([10, 1000])
    assert (em["lower"] < em["E"]).all() and (em["E"] < em["upper"]).all()
    assert np.all(np.abs(em["E"] - e_true(em["D"])) < 0.1), em
    assert r.n_converged >= 1 and 0.5 < r.dispersion < 2  # binomial noise only
    assert abs(r.params["A"] - TRUE["A"]) < 0.1 and abs(r.params["B"] - TRUE["B"]) < 0.02
    assert (r.bse > 0).all() and r.n_boot_failed <= 3


# --------------------------------------------------------------------------
# one ReLU-shaped curve
# --------------------------------------------------------------------------


def test_relu_curve_with_noise_gives_the_emergence_point():
    # Perf = 0.3*ReLU(3.2 - L) + 0.25 + N(0, 0.01^2), no item counts: the
    # Gaussian likelihood.  Over 100 seeds the estimate's sd is ~0.02 nats.
    rng = np.random.default_rng(3)
    L = np.linspace(2.4, 4.2, 25)
    y = 0.3 * np.maximum(3.2 - L, 0) + 0.25 + 0.01 * rng.standard_normal(L.size)
    df = pd.DataFrame({"checkpoint": [f"m{i}" for i in range(L.size)], "L": L, "perf": y})
    r = fit_emergence_curve(df, n_boot=100, seed=0)
    assert r.likelihood == "gaussian" and r.bootstrap == "checkpoint"  # 25 checkpoints, >= 4 each side
    em = r.emergence_loss().iloc[0]
    assert abs(em["E"] - 3.2) < 0.06, em
    assert em["lower"] <= 3.2 <= em["upper"]
    # accuracies: the Gaussian fit's curve and band stay inside [0, 1] far
    # beyond the data, where the linear part passes 1 (0.3 * (3.2 - 0) + 0.25)
    far = r.predict([0.0, 1.0, 3.0])
    assert far["perf"].iloc[0] == 1.0
    assert ((far[["perf", "lower", "upper"]] >= 0) & (far[["perf", "lower", "upper"]] <= 1)).all().all()
    assert abs(r.params["A"] - 0.3) < 0.03 and abs(r.params["B"] - 0.25) < 0.01
    side = r.side_counts.iloc[0]
    assert side["pre"] > 5 and side["post"] > 5
    # the smoothed law is within tau*log 2 of the ReLU at the kink, exact far from it
    assert softplus(0.0, 0.05) == pytest.approx(0.05 * np.log(2))
    assert softplus(1.0, 0.05) == pytest.approx(1.0)
    pred = r.predict([2.5, 4.0], interval=True)
    assert pred["perf"].iloc[0] == pytest.approx(r.params["A"] * (r.params["E"] - 2.5) + r.params["B"], rel=1e-6)
    assert (pred["lower"] <= pred["perf"]).all() and (pred["perf"] <= pred["upper"]).all()


def test_binomial_curve_with_a_fixed_floor():
    rng = np.random.default_rng(8)
    L = np.linspace(2.6, 4.0, 12)
    p = 0.4 * np.maximum(3.3 - L, 0) + 0.5
    df = pd.DataFrame({"checkpoint": [f"m{i}" for i in range(L.size)], "L": L, "n": 1000,
                       "perf": rng.binomial(1000, p) / 1000})
    r = fit_emergence_curve(df, floor=0.5, n_boot=0)
    assert r.likelihood == "binomial" and list(r.params.index) == ["A", "E"]
    em = r.emergence_loss().iloc[0]  # Wald (delta method) without refits
    assert em["lower"] <= 3.3 <= em["upper"] and em["upper"] - em["lower"] < 0.3
    json.dumps(r.to_dict())  # JSON-serialisable
    assert "Emergence curve" in r.summary()


def test_flat_data_show_no_gain_over_a_flat_line():
    # Every checkpoint at chance: a kink fitted to noise gains little over a
    # flat line; the true law gains hundreds (2*dllf ~0, i.e. A -> 0, vs 493 here).
    rng = np.random.default_rng(0)
    df = make_sweep(rng)
    flat = df.assign(perf=rng.binomial(400, 0.25, len(df)) / 400)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        none = fit_emergence_law(flat, d0=1, n_boot=0)
        law = fit_emergence_law(df, d0=1, n_boot=0)
    assert none.lr_flat < 10 and law.lr_flat > 100
    # ... and that decides the verdict: no emergence point (NaN), not a point estimate
    assert none.verdict == "no emergence in range" and law.verdict == "emergence observed"
    assert np.isnan(none.few_shot["E"]) and np.isfinite(law.few_shot["E"])


# --------------------------------------------------------------------------
# D0, backtest
# --------------------------------------------------------------------------


def test_calibrate_d0_inverts_the_law():
    rng = np.random.default_rng(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = fit_emergence_law(make_sweep(rng), n_boot=0)
    e = float(r.emergence_loss([7.0])["E"].iloc[0])
    assert calibrate_d0(r, e) == pytest.approx(7.0, rel=1e-6)
    with pytest.raises(ValueError, match="below E\\(1\\)"):
        calibrate_d0(r, r.params["C"] - 0.1)


def test_backtest_predicts_few_shot_emergence_from_pre_emergence_checkpoints():
    # Few-shot rows follow the law at D0 = 1 (E = C = 2.4); checkpoints reach
    # L = 2.0, so few-shot emergence is observed; the law sees only the
    # checkpoints with L above the detected emergence point.  Over seeds
    # 21-25 the error was +0.14, +0.22, -0.06, -0.03, +0.06 nats.
    rng = np.random.default_rng(21)
    df = make_sweep(rng, losses=np.linspace(2.0, 3.6, 12), fewshot_d0=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bt = backtest_emergence(df, d0=1, n_boot=40, seed=0)
    assert bt.cutoff_detected and abs(bt.observed - 2.4) < 0.2
    used = df.groupby("checkpoint")["L"].first().loc[bt.checkpoints_used]
    assert (used > bt.cutoff).all() and len(used) < 12
    assert bt.law.nobs == 3 * len(used)  # finetuned rows of pre-emergence checkpoints only
    assert abs(bt.error_nats) < 0.3 and bt.error_nats == pytest.approx(bt.predicted - bt.observed)
    assert bt.predicted_interval[0] <= bt.predicted <= bt.predicted_interval[1]
    assert bt.lead_loss == pytest.approx(used.min() - bt.observed)
    assert bt.lead_loss > 0
    assert bt.verdict == "emergence observed" and bt.covered in (True, False)
    # flops = 1e18 exp(4 (3.6 - L)) is log-linear in L, so the interpolation is exact
    assert bt.lead_flops_ratio == pytest.approx(np.exp(4 * (used.min() - bt.observed)), rel=1e-6)
    d = bt.to_dict()
    json.dumps(d)
    assert "Emergence backtest" in bt.summary()
    # a given cutoff is used as given
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bt2 = backtest_emergence(df, d0=1, cutoff=3.0, n_boot=0)
    assert not bt2.cutoff_detected and all(df.groupby("checkpoint")["L"].first()[bt2.checkpoints_used] > 3.0)


# --------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------


def test_bad_input_is_a_clear_error():
    rng = np.random.default_rng(0)
    df = make_sweep(rng)
    with pytest.raises(ValueError, match="missing required column"):
        fit_emergence_law(df.drop(columns="D"), n_boot=0)
    with pytest.raises(ValueError, match="column L must be finite"):
        fit_emergence_law(df.assign(L=df["L"].astype(object).where(df.index != 3, "x")), n_boot=0)
    with pytest.raises(ValueError, match="D .* must be >= 0"):
        fit_emergence_law(df.assign(D=-df["D"]), n_boot=0)
    with pytest.raises(ValueError, match="0 \\(few-shot\\) or >= 1"):
        fit_emergence_law(df.assign(D=df["D"] / 1e4), n_boot=0)
    with pytest.raises(ValueError, match=">= 3 distinct"):
        fit_emergence_law(df[df["D"] < 1000], n_boot=0)
    with pytest.raises(ValueError, match="d0"):
        fit_emergence_law(df, d0=0.5, n_boot=0)
    with pytest.raises(ValueError, match="n \\(items evaluated\\) must be whole"):
        fit_emergence_law(df.assign(n=10.5), n_boot=0)
    with pytest.raises(ValueError, match="more than one loss L .*put the run in a column 'run'"):
        fit_emergence_law(df.assign(L=df["L"] + 0.01 * (df["D"] == 10)), n_boot=0)
    with pytest.raises(ValueError, match="needs a column n"):
        fit_emergence_law(df.drop(columns="n"), likelihood="binomial", n_boot=0)
    with pytest.raises(ValueError, match="tau"):
        fit_emergence_curve(df, tau=0)
    with pytest.raises(ValueError, match="bootstrap must be"):
        fit_emergence_curve(df, bootstrap="jackknife")
    with pytest.raises(ValueError, match="distinct losses"):
        fit_emergence_curve(df[df["checkpoint"].isin(["c0", "c1"])], n_boot=0)
    with pytest.raises(ValueError, match="DataFrame"):
        fit_emergence_curve([1, 2, 3])
    with pytest.raises(ValueError, match="few-shot rows"):
        backtest_emergence(df, d0=1)
    # few-shot rows are left out of the law, with a warning
    with pytest.warns(UserWarning, match="few-shot row"):
        fit_emergence_law(pd.concat([df, df.assign(D=0)]), n_boot=0)
