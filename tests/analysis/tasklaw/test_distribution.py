"""Tests for analysis.tasklaw.distribution against simulated ground truth.

Instances get p_i ~ Beta(a_N, b_N) with a known trend (logit mean and
log(a+b) linear in log N), n_i drawn unequal in 50..500, c_i ~ Binomial.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import betaln, expit

from analysis.tasklaw.distribution import (
    BetaBinomialFit,
    BetaBinomialTrend,
    beta_never_solved,
    beta_pass_at_k,
    fit_beta_binomial,
    fit_beta_binomial_trend,
)

# ----------------------------------------------------------------------------
# the simulated world: mean 0.029 -> 0.27 and a+b 3 -> 1 from N = 1e8 to 3e10
# (a small, i.e. a heavy left tail as Schaeffer et al. report)
# ----------------------------------------------------------------------------

TRAIN = np.array([1e8, 3e8, 1e9, 3e9, 1e10])
HOLD = 3e10  # held out, 3x beyond the largest training size
_L = np.log
U1 = 2.5 / (_L(HOLD) - _L(1e8))
U0 = -3.5 - U1 * _L(1e8)
V1 = -_L(3.0) / (_L(HOLD) - _L(1e8))
V0 = _L(3.0) - V1 * _L(1e8)
TRUE = np.array([U0, U1, V0, V1])


def true_ab(N):
    mu = expit(U0 + U1 * _L(N))
    s = np.exp(V0 + V1 * _L(N))
    return mu * s, (1 - mu) * s


def true_never(N, k):
    a, b = true_ab(N)
    return float(np.exp(betaln(a, b + k) - betaln(a, b)))


def simulate(seed, m=100, sizes=TRAIN, shared=False, ab=true_ab):
    """Counts table.  shared=False: fresh instances at each size (unique ids);
    shared=True: the same m instances everywhere, each keeping its quantile
    U_i of the Beta (an easy instance stays easy) and its n_i."""
    rng = np.random.default_rng(seed)
    U = rng.random(m)
    n_inst = rng.integers(50, 501, m)
    rows = []
    for N in sizes:
        a, b = ab(N)
        if shared:
            p, n, ids = stats.beta.ppf(U, a, b), n_inst, np.arange(m)
        else:
            p, n, ids = rng.beta(a, b, m), rng.integers(50, 501, m), [f"{N:g}-{i}" for i in range(m)]
        rows.append(pd.DataFrame({"N": N, "instance": ids, "n": n, "c": rng.binomial(n, p)}))
    return pd.concat(rows, ignore_index=True)


# ----------------------------------------------------------------------------
# closed forms
# ----------------------------------------------------------------------------


def test_closed_form_pass_at_k_equals_brute_force_over_beta_sample():
    a, b = 0.3, 2.5
    p = np.random.default_rng(0).beta(a, b, 2_000_000)
    for k in (1, 10, 100, 1000):
        fail = (1 - p) ** k
        se = fail.std() / np.sqrt(len(p))
        got = beta_pass_at_k(a, b, k)
        assert abs(got - (1 - fail.mean())) < 4 * se, (k, got, 1 - fail.mean(), se)
        assert beta_never_solved(a, b, k) == pytest.approx(1 - got, abs=1e-15)


def test_large_k_is_stable_and_follows_the_beta_left_tail_power_law():
    a, b = 0.35, 4.0
    fit = BetaBinomialFit(pd.Series({"a": a, "b": b, "mean": a / (a + b), "rho": 1 / (a + b + 1)}),
                          np.eye(2), "", 0.0, m=1, n_total=1)
    k = np.logspace(0, 9, 37)
    pk = fit.pass_at_k(k)
    assert np.all(np.isfinite(pk)) and np.all((pk > 0) & (pk < 1))
    assert np.all(np.diff(pk) > 0)
    tail = fit.power_law_tail()
    assert tail["exponent"] == a
    # E[(1-p)^k] / (C k^-a) = 1 + O(1/k); -log pass@k ~ never_solved for large k
    for kk in (1e6, 1e9):
        ratio = fit.never_solved(kk) / (tail["C"] * kk ** -a)
        assert abs(ratio - 1) < 1e-4, (kk, ratio)
        assert -np.log(fit.pass_at_k(kk)) == pytest.approx(fit.never_solved(kk), rel=1e-2)
    # and not at small k: the asymptote is a tail statement
    assert abs(fit.never_solved(1.0) / tail["C"] - 1) > 0.05


# ----------------------------------------------------------------------------
# one size
# ----------------------------------------------------------------------------


def _one_size(seed, a, b, m):
    rng = np.random.default_rng(seed)
    p = rng.beta(a, b, m)
    n = rng.integers(50, 501, m)
    return p, pd.DataFrame({"n": n, "c": rng.binomial(n, p)})


def test_single_size_recovers_a_b_with_calibrated_standard_errors():
    a, b, R = 0.4, 3.0, 40
    z, covered = [], 0
    for seed in range(R):
        _, df = _one_size(seed, a, b, 200)
        fit = fit_beta_binomial(df)
        assert fit.boundary == "" and fit.converged
        est, se = fit.params, fit.bse
        z.append([(est["a"] - a) / se["a"], (est["b"] - b) / se["b"]])
        ci = fit.conf_int()
        covered += ci.loc["a", "lower"] <= a <= ci.loc["a", "upper"]
        assert ci.loc["mean", "lower"] < est["mean"] < ci.loc["mean", "upper"]
    z = np.array(z)
    assert np.all(np.abs(z) < 4), z[np.abs(z).max(axis=1) >= 4]
    sd = z.std(axis=0)
    assert np.all((sd > 0.7) & (sd < 1.35)), f"z-score sd of (a, b) = {sd}"
    assert covered / R >= 0.85, f"95% CI for a covered {covered}/{R}"


def test_single_size_pass_at_k_matches_monte_carlo_over_the_simulated_instances():
    p, df = _one_size(7, 0.25, 2.0, 2000)
    fit = fit_beta_binomial(df)
    for k in (1, 10, 100, 1000, 10_000):
        solved = 1 - (1 - p) ** k
        tol = 4 * solved.std() / np.sqrt(len(p))
        assert abs(fit.pass_at_k(k) - solved.mean()) < tol, (k, fit.pass_at_k(k), solved.mean(), tol)
        assert fit.never_solved(k) == pytest.approx(1 - solved.mean(), abs=tol)
    assert fit.pass_at_k(1) == pytest.approx(fit.params["mean"], rel=1e-12)


def test_single_size_boundaries_do_not_crash():
    m = 8
    zero = fit_beta_binomial(pd.DataFrame({"n": np.full(m, 100), "c": np.zeros(m, int)}))
    assert zero.boundary == "all_zero" and zero.params["mean"] == 0.0
    # P(all zero) <= (1 - mean)^m for any Beta: a dispersion-free bound
    assert zero.conf_int().loc["mean", "upper"] == pytest.approx(1 - 0.025 ** (1 / m))
    assert np.all(zero.pass_at_k([1, 10]) == 0) and zero.never_solved(5) == 1.0

    full = fit_beta_binomial(pd.DataFrame({"n": np.full(m, 50), "c": np.full(m, 50)}))
    assert full.boundary == "all_solved" and full.params["mean"] == 1.0
    assert full.conf_int().loc["mean", "lower"] == pytest.approx(0.025 ** (1 / m))

    one = fit_beta_binomial(pd.DataFrame({"n": [200], "c": [30]}))
    assert one.boundary == "no_overdispersion" and one.params["rho"] == 0.0
    assert one.params["mean"] == pytest.approx(0.15)
    assert one.pass_at_k(10) == pytest.approx(1 - 0.85**10)
    lo, hi = one.conf_int().loc["mean"]
    assert lo < 0.15 < hi

    # identical rates everywhere: the MLE is the binomial limit, not a+b = 1e12
    same = fit_beta_binomial(pd.DataFrame({"n": np.full(30, 100), "c": np.full(30, 10)}))
    assert same.boundary == "no_overdispersion" and same.params["mean"] == pytest.approx(0.1)

    for f in (zero, full, one, same):
        assert "boundary" in f.summary()
        json.dumps(f.to_dict(), allow_nan=False)


def test_single_size_input_checks():
    with pytest.raises(ValueError, match="one model size"):
        fit_beta_binomial(simulate(0, m=5))
    with pytest.raises(ValueError):
        fit_beta_binomial(pd.DataFrame({"n": [10, 10], "c": [3, 11]}))  # c > n


# ----------------------------------------------------------------------------
# across sizes
# ----------------------------------------------------------------------------


def test_trend_recovers_parameters_and_covers_heldout_never_solved():
    """Fresh instances per size (the model's own assumption), 50 data sets:
    the 95% interval for never_solved@k at the held-out 3x larger size must
    cover the true population value in >= 85% of them."""
    R, ks = 50, (10, 100, 1000)
    truth = {k: true_never(HOLD, k) for k in ks}
    hits = {k: 0 for k in ks}
    z, lr = [], []
    for seed in range(R):
        res = fit_beta_binomial_trend(simulate(seed))
        assert res.cov_type == "nonrobust" and res.converged
        z.append((res.params.to_numpy() - TRUE) / res.bse.to_numpy())
        lr.append(res.lack_of_fit["statistic"])
        pred = res.predict(HOLD, k=ks)
        for k in ks:
            hits[k] += pred[f"never_solved@{k}_lower"][0] <= truth[k] <= pred[f"never_solved@{k}_upper"][0]
    z = np.array(z)
    coverage = {k: hits[k] / R for k in ks}
    msg = f"observed coverage of the 95% interval over {R} seeds: {coverage}"
    assert all(c >= 0.85 for c in coverage.values()), msg
    assert np.all(np.abs(z) < 4.5), z
    sd = z.std(axis=0)
    assert np.all((sd > 0.7) & (sd < 1.4)), f"z-score sd of (u0, u1, v0, v1) = {sd}; {msg}"
    # the trend is true here, so the LR vs per-size fits is ~chi2(2*5 - 4 = 6)
    assert 4.5 < np.mean(lr) < 7.7, np.mean(lr)


def test_shared_instances_use_cluster_covariance_and_cover_interpolated_size():
    """Same instances at every size, easy ones staying easy: the
    independent-sizes information is too narrow for the curve's level, so
    cov_type="auto" picks the cluster sandwich; over 50 data sets it must
    cover never_solved@100 at an unseen in-range size in >= 85% of them,
    and the nonrobust interval is shown to fall short (premise of the default)."""
    R, N0, k = 50, 2e9, 100
    truth = true_never(N0, k)
    hits = {"auto": 0, "nonrobust": 0}
    for seed in range(R):
        df = simulate(1000 + seed, m=40, shared=True)
        for cov_type in hits:
            res = fit_beta_binomial_trend(df, cov_type=cov_type)
            assert res.cov_type == ("cluster" if cov_type == "auto" else "nonrobust")
            p = res.predict(N0, k=(k,))
            hits[cov_type] += p[f"never_solved@{k}_lower"][0] <= truth <= p[f"never_solved@{k}_upper"][0]
    coverage = {c: h / R for c, h in hits.items()}
    assert coverage["auto"] >= 0.85, f"observed coverage of the 95% interval: {coverage}"
    assert coverage["nonrobust"] <= 0.80, f"observed coverage of the 95% interval: {coverage}"


def test_trend_with_an_all_zero_size_gives_a_tiny_mean_there():
    df = simulate(3, m=60, sizes=np.array([1e7, 1e8, 1e9, 1e10, 1e11]))
    df.loc[df["N"] == 1e7, "c"] = 0
    res = fit_beta_binomial_trend(df)
    row = res.per_size.set_index("N").loc[1e7]
    assert row["boundary"] == "all_zero" and row["mean"] == 0.0 and row["pu"] == 0.0
    assert 0 < row["trend_mean"] < 0.01
    assert res.converged and np.all(np.isfinite(res.bse))
    assert res.predict(1e6)["mean"][0] < row["trend_mean"]  # and extrapolating down works

    df["c"] = 0
    with pytest.raises(ValueError, match="not identified"):
        fit_beta_binomial_trend(df)


def test_trend_without_finite_mle_warns_and_gives_no_band():
    """Passes only at the largest size: the slope runs to infinity (separation)."""
    df = simulate(4, m=50)
    df.loc[df["N"] < TRAIN[-1], "c"] = 0
    with pytest.warns(RuntimeWarning, match="not identified"):
        res = fit_beta_binomial_trend(df)
    assert not res.converged
    pred = res.predict(HOLD)
    assert pred["mean_lower"].isna().all() and pred["never_solved@100_upper"].isna().all()


def test_lack_of_fit_flags_a_curved_trend():
    sizes = np.array([1e8, 3e8, 1e9, 3e9, 1e10, 3e10])

    def curved(N):  # logit mean bends sharply upward: not linear in log N
        x = _L(N) - _L(1e8)
        mu = expit(-4.0 + 0.6 * x ** 2 / 2)
        return mu * 2.0, (1 - mu) * 2.0

    res = fit_beta_binomial_trend(simulate(5, m=150, sizes=sizes, ab=curved))
    assert res.lack_of_fit["df"] == 8
    assert res.lack_of_fit["pvalue"] < 1e-3, res.lack_of_fit


def test_trend_results_api():
    res = fit_beta_binomial_trend(simulate(11))
    assert isinstance(res, BetaBinomialTrend)
    assert list(res.params.index) == ["u0", "u1", "v0", "v1"]
    cov = res.cov_params().to_numpy()
    assert np.allclose(cov, cov.T) and np.all(np.linalg.eigvalsh(cov) > 0)
    ci = res.conf_int()
    assert np.all(ci["lower"] < res.params) and np.all(res.params < ci["upper"])
    assert list(res.per_size.columns) == [
        "N", "m", "pu", "a", "b", "mean", "rho", "boundary", "trend_a", "trend_b", "trend_mean"]
    assert np.allclose(res.per_size["trend_mean"], expit(res.params["u0"] + res.params["u1"] * _L(TRAIN)))

    pred = res.predict([5e7, 1e9, 1e11], k=(1, 10))
    base = ["N", "a", "b", "mean", "pass@1", "pass@10", "never_solved@1", "never_solved@10"]
    with_band = [[name] if name in {"N", "a", "b"} else [name, f"{name}_lower", f"{name}_upper"]
                 for name in base]
    assert list(pred.columns) == sum(with_band, [])
    assert np.allclose(pred["mean"], pred["pass@1"])
    assert np.allclose(pred["pass@10"], 1 - pred["never_solved@10"])
    for name in ("mean", "pass@10", "never_solved@10"):
        assert np.all(pred[f"{name}_lower"] <= pred[name])
        assert np.all(pred[name] <= pred[f"{name}_upper"])
    assert pred["mean"].is_monotonic_increasing  # the simulated trend rises in N
    # seeded draws: the same call twice gives the same band
    assert pred.equals(res.predict([5e7, 1e9, 1e11], k=(1, 10)))
    tail = res.power_law_tail([1e9])
    assert tail["exponent"][0] == pytest.approx(pred["a"][1])

    assert "u1" in res.summary() and "trend_mean" in res.summary()
    d = res.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["params"]["u1"] == pytest.approx(res.params["u1"]) and len(d["per_size"]) == 5

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="at least 2"):
            fit_beta_binomial_trend(simulate(0, m=5, sizes=TRAIN[:1]))
    with pytest.raises(ValueError, match="finite and > 0"):
        res.predict(-1.0)
