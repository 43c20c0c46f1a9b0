"""The paper's two-circuit alternative and the curve comparison (analysis.tasklaw.circuits)."""

import numpy as np
import pandas as pd
import pytest

from analysis.tasklaw.circuits import MODELS, compare_curves, fit_curve
from analysis.tasklaw.law import classify_curvature
from tests.analysis.tasklaw.test_scaling import LOG_C_EASY, make_counts

SIZES7 = np.geomspace(1e8, 1e10, 7)


def counts_from_pu(rng, pu, sizes, m=10, n_range=(2000, 10000)):
    n = rng.integers(n_range[0], n_range[1], size=(m, len(sizes)))
    c = rng.binomial(n, np.broadcast_to(pu, n.shape))
    return pd.DataFrame({"N": np.tile(sizes, m), "instance": np.repeat([f"i{i}" for i in range(m)], len(sizes)),
                         "n": n.ravel(), "c": c.ravel()})


def two_circuit_pu(sizes, w_steep=0.3, alpha_shallow=0.3, alpha_steep=1.5):
    # a shallow circuit used 70% of the time and a steep one that takes off
    # inside the range: PU 2e-4 -> 0.34 over 100x in N
    x = np.log(sizes) - np.log(sizes[0])
    return ((1 - w_steep) * np.exp(-np.exp(np.log(8.0) - alpha_shallow * x))
            + w_steep * np.exp(-np.exp(np.log(200.0) - alpha_steep * x)))


def test_two_circuit_data_are_concave_preferred_and_recovered():
    rng = np.random.default_rng(0)
    df = counts_from_pu(rng, two_circuit_pu(SIZES7), SIZES7)
    # The quadratic term has the concave sign but its test has little power
    # here (a switch between two lines is not a parabola: phi ~ 150); the
    # two-circuit fit leaves deviance ~0.7 on 2 df where the law leaves ~750.
    assert classify_curvature(df).quad_coef < 0
    comp = compare_curves(df, n_boot=99, random_state=1)
    assert comp.best == "two_circuit", comp.summary()
    assert comp.lr_pvalue <= 0.05, comp.summary()
    circ = comp.fits["two_circuit"].circuits()
    shallow, steep = circ.iloc[0], circ.iloc[1]
    assert shallow["alpha"] == pytest.approx(0.3, abs=0.05)
    assert steep["alpha"] == pytest.approx(1.5, rel=0.2)
    assert steep["weight"] == pytest.approx(0.3, rel=0.2)
    # the fitted curve goes through the data and extrapolates like the truth
    big = SIZES7[-1] * 3
    assert comp.fits["two_circuit"].predict([big])[0] == pytest.approx(two_circuit_pu(np.r_[SIZES7, big])[-1],
                                                                        rel=0.15)
    text = comp.summary()
    assert "two_circuit" in text and "preferred by QAIC: two_circuit" in text


def test_law_data_keep_the_law():
    # Law plus binomial noise, instances sharing c (so the task mean is a law
    # exactly): observed, the law preferred by QAIC in 8 of 8 sets and
    # bootstrap p-values 0.15-0.85.  (With instance spread in c_i the task
    # mean is a mixture and bends: see the analysis.tasklaw.circuits docstring.)
    rng = np.random.default_rng(5)
    best, reject = [], 0
    for i in range(8):
        df = make_counts(rng, log_c=LOG_C_EASY, sizes=SIZES7)
        comp = compare_curves(df, n_boot=19, random_state=i)
        best.append(comp.best)
        reject += comp.lr_pvalue <= 0.05
    assert best.count("law") >= 5, best
    assert reject <= 2, reject


def test_multi_step_product_is_convex_not_two_circuit():
    # PU = exp(-(c1 N^-a1 + c2 N^-a2)): the paper's multi-step hypothesis
    # bends the other way (sub-scaling), so it cannot explain accelerated
    # emergence.
    rng = np.random.default_rng(2)
    x = np.log(SIZES7) - np.log(SIZES7[0])
    pu = np.exp(-(np.exp(np.log(8.0) - 1.2 * x) + np.exp(np.log(0.4) - 0.1 * x)))
    df = counts_from_pu(rng, pu, SIZES7)
    assert classify_curvature(df).label == "convex"
    comp = compare_curves(df, n_boot=0)
    assert comp.best in ("multi_step", "quadratic"), comp.summary()
    aic = comp.table.set_index("model")["aic"]
    assert aic["multi_step"] < aic["law"]


def test_too_few_sizes_are_reported_not_compared():
    rng = np.random.default_rng(3)
    sizes = SIZES7[:4]
    df = counts_from_pu(rng, two_circuit_pu(sizes), sizes)
    comp = compare_curves(df, n_boot=19)
    row = comp.table.set_index("model").loc["two_circuit"]
    assert np.isnan(row["aic"]) and row["df_resid"] == -1
    assert np.isnan(comp.lr_pvalue) and comp.n_boot == 0
    assert any("two_circuit" in n for n in comp.notes)
    d = comp.to_dict()
    assert d["lr_pvalue"] is None and {m["model"] for m in d["models"]} == set(MODELS)


def test_fit_curve_rejects_unknown_model_and_too_few_sizes():
    rng = np.random.default_rng(4)
    df = counts_from_pu(rng, two_circuit_pu(SIZES7), SIZES7)
    with pytest.raises(ValueError, match="unknown model"):
        fit_curve(df, "three_circuit")
    with pytest.raises(ValueError, match="at least 3 distinct model sizes"):
        compare_curves(df[df["N"] <= SIZES7[1]])
    with pytest.raises(ValueError, match="n_boot"):
        compare_curves(df, n_boot=-1)
    law = fit_curve(df, "law")
    assert law.k == 2 and law.df_resid == 5 and law.circuits() is None
