"""Tests for lm_eval_ext.passuntil.stats: exactness, bias, coverage, censoring, input checks."""

from __future__ import annotations

import json
import math
import statistics
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from lm_eval_ext.passuntil.stats import (
    InstanceEstimate,
    TaskEstimate,
    clopper_pearson,
    estimate_instance,
    negbin_interval,
    pass_at_k,
    pass_at_k_all,
    pu_fixed,
    pu_paper,
    pu_unbiased,
    samples_to_r_passes,
    task_pu,
    wilson,
)


# --------------------------------------------------------------------------
# pass@k
# --------------------------------------------------------------------------


def exact_pass_at_k(n: int, c: int, k: int) -> Fraction:
    """1 - C(n-c, k)/C(n, k) as an exact Fraction (math.comb is 0 when n-c < k)."""
    return 1 - Fraction(math.comb(n - c, k), math.comb(n, k))


def exact_pass_at_k_product(n: int, c: int, k: int) -> Fraction:
    """Same quantity via prod_{j<c} (n-k-j)/(n-j): exact and cheap for small c at huge n."""
    if n - c < k:
        return Fraction(1)
    ratio = Fraction(1)
    for j in range(c):
        ratio *= Fraction(n - k - j, n - j)
    return 1 - ratio


def assert_rel(got: float, ref: Fraction, rtol: float = 1e-12) -> None:
    ref_f = float(ref)  # correctly rounded
    if ref == 0:
        assert got == 0.0
    else:
        assert abs(got - ref_f) <= rtol * abs(ref_f), (got, ref_f)


EDGE_CASES = [
    (1, 0, 1),  # n = 1, no pass
    (1, 1, 1),  # n = 1, pass
    (10, 0, 1),  # c = 0
    (10, 0, 10),  # c = 0, k = n
    (10, 10, 1),  # c = n
    (10, 10, 10),  # c = n, k = n
    (10, 3, 10),  # k = n
    (10, 3, 7),  # n - c == k  (boundary: exactly one all-fail draw)
    (10, 3, 8),  # n - c < k   -> 1
    (10, 9, 2),  # n - c < k
    (200, 1, 1),
    (200, 1, 199),
    (200, 100, 100),
    (1000, 400, 300),  # min(c, k) > 256: pairwise-sum branch
    (57, 13, 29),
]


@pytest.mark.parametrize("n,c,k", EDGE_CASES)
def test_pass_at_k_matches_exact_fraction_on_edge_cases(n, c, k):
    got = pass_at_k(n, c, k)
    assert isinstance(got, float)
    assert_rel(got, exact_pass_at_k(n, c, k))


def test_pass_at_k_exact_on_full_small_grid_vectorised():
    ns, cs, ks = [], [], []
    for n in range(1, 26):
        for c in range(n + 1):
            for k in range(1, n + 1):
                ns.append(n), cs.append(c), ks.append(k)
    got = pass_at_k(np.array(ns), np.array(cs), np.array(ks))
    assert got.shape == (len(ns),)
    ref = np.array([float(exact_pass_at_k(n, c, k)) for n, c, k in zip(ns, cs, ks)])
    zero = ref == 0
    assert np.all(got[zero] == 0.0)
    rel = np.abs(got[~zero] - ref[~zero]) / ref[~zero]
    assert rel.max() <= 1e-12


def test_pass_at_k_broadcasts_scalar_and_array():
    got = pass_at_k(20, np.array([[0], [5]]), np.array([1, 2, 3]))
    assert got.shape == (2, 3)
    assert np.all(got[0] == 0.0)
    for j, k in enumerate([1, 2, 3]):
        assert_rel(got[1, j], exact_pass_at_k(20, 5, k))


def test_pass_at_k_stable_at_one_million():
    n = 10**6
    # c = 1, k = 1 is exactly 1e-6; the log-gamma formula keeps only ~3 digits here.
    got = pass_at_k(n, 1, 1)
    assert abs(got - 1e-6) <= 1e-12 * 1e-6

    got = pass_at_k(n, 10, 1000)
    assert np.isfinite(got) and 0.0 <= got <= 1.0
    assert_rel(got, exact_pass_at_k_product(n, 10, 1000))
    # an independent log-space reference (lgamma), accurate here to ~1e-8 relative
    log_ratio = (
        math.lgamma(n - 10 + 1) - math.lgamma(n - 10 - 1000 + 1)
        - math.lgamma(n + 1) + math.lgamma(n - 1000 + 1)
    )
    assert got == pytest.approx(-math.expm1(log_ratio), rel=1e-6)

    # many factors (pairwise-sum branch) at huge n, still exact to 1e-12
    got = pass_at_k(n, 300, 50)
    assert_rel(got, exact_pass_at_k_product(n, 300, 50))

    arr = pass_at_k(n, np.array([0, 1, 10, 1000, 500_000, n]), np.array([1, 7, 1000, 1000, 500_000, 1]))
    assert np.all(np.isfinite(arr)) and np.all((arr >= 0) & (arr <= 1))
    assert arr[0] == 0.0 and arr[-1] == 1.0


@pytest.mark.parametrize("n,c", [(1, 0), (1, 1), (7, 3), (50, 1), (50, 49), (3000, 17)])
def test_pass_at_k_all_matches_pass_at_k(n, c):
    allk = pass_at_k_all(n, c)
    assert allk.shape == (n,)
    each = pass_at_k(n, c, np.arange(1, n + 1))
    np.testing.assert_allclose(allk, each, rtol=1e-12, atol=0)
    assert np.all(np.diff(allk) >= 0)  # more draws never hurt


def test_pass_at_k_all_small_case_exact():
    got = pass_at_k_all(6, 2)
    for k in range(1, 7):
        assert_rel(got[k - 1], exact_pass_at_k(6, 2, k))


# --------------------------------------------------------------------------
# point estimators
# --------------------------------------------------------------------------


def test_point_estimators_values_and_shapes():
    assert pu_fixed(8, 2) == 0.25
    assert pu_paper(2, 8) == 0.25
    assert pu_unbiased(2, 8) == pytest.approx(1 / 7)
    assert pu_unbiased(3, 3) == 1.0
    np.testing.assert_allclose(pu_unbiased([2, 3], [11, 21]), [0.1, 0.1])
    assert isinstance(pu_fixed(np.array([4, 8]), 2), np.ndarray)


def test_samples_to_r_passes_replays_sequence():
    seq = [0, 1, 0, 0, 1, 1, 0]
    assert samples_to_r_passes(seq, 1) == 2
    assert samples_to_r_passes(seq, 2) == 5
    assert samples_to_r_passes(seq, 3) == 6
    assert samples_to_r_passes(seq, 4) is None
    assert samples_to_r_passes([], 1) is None
    assert samples_to_r_passes(np.array([False, True, True]), 2) == 3


@pytest.mark.parametrize("p", [0.01, 0.1, 0.3])
@pytest.mark.parametrize("r", [2, 3])
def test_sequential_bias_simulation(p, r):
    """r/K is biased upward; (r-1)/(K-1) is unbiased (Monte Carlo, fixed seed)."""
    rng = np.random.default_rng(20231 + int(1000 * p) + r)
    draws = 200_000
    K = rng.negative_binomial(r, p, size=draws) + r  # failures + r = index of r-th pass

    paper = pu_paper(r, K)
    se_paper = paper.std(ddof=1) / math.sqrt(draws)
    assert paper.mean() - p > 5 * se_paper

    unbiased = pu_unbiased(r, K)
    se_unb = unbiased.std(ddof=1) / math.sqrt(draws)
    assert abs(unbiased.mean() - p) < 4 * se_unb


@pytest.mark.parametrize("p", [0.002, 0.05, 0.4])
def test_truncated_sequential_design_is_exactly_unbiased(p):
    """Stop at the r-th pass or at budget N: (r-1)/(K-1) if reached, else c/N.

    Exact expectation by enumeration of the stopping points (no simulation).
    """
    r, N = 3, 60
    Ks = np.arange(r, N + 1)
    p_stop = stats.nbinom.pmf(Ks - r, r, p)  # r-th pass at sample K
    cs = np.arange(r)
    p_budget = stats.binom.pmf(cs, N, p)  # budget exhausted with c < r passes
    assert p_stop.sum() + p_budget.sum() == pytest.approx(1.0, abs=1e-12)
    expectation = (p_stop * pu_unbiased(r, Ks)).sum() + (p_budget * cs / N).sum()
    assert expectation == pytest.approx(p, rel=1e-10)
    # the paper's estimator under the same design is not
    expectation_paper = (p_stop * pu_paper(r, Ks)).sum() + (p_budget * cs / N).sum()
    assert expectation_paper > p * (1 + 1e-3)


# --------------------------------------------------------------------------
# intervals
# --------------------------------------------------------------------------


def exact_coverage(interval, n: int, ps: np.ndarray) -> np.ndarray:
    c = np.arange(n + 1)
    lo, hi = interval(n, c)
    pmf = stats.binom.pmf(c[None, :], n, ps[:, None])
    inside = (lo[None, :] <= ps[:, None]) & (ps[:, None] <= hi[None, :])
    return (pmf * inside).sum(axis=1)


@pytest.mark.parametrize("n", [1, 5, 20, 100, 400])
def test_clopper_pearson_exact_coverage_at_least_nominal(n):
    ps = np.linspace(0.0005, 0.9995, 400)
    cov = exact_coverage(clopper_pearson, n, ps)
    assert cov.min() >= 0.95 - 1e-9


@pytest.mark.parametrize("n", [20, 50, 100])
def test_wilson_coverage_close_to_nominal(n):
    ps = np.linspace(0.0005, 0.9995, 400)
    cov = exact_coverage(wilson, n, ps)
    assert abs(cov.mean() - 0.95) < 0.01
    central = (ps > 0.05) & (ps < 0.95)
    assert cov[central].min() > 0.89


def test_intervals_match_scipy_binomtest():
    for n, c in [(20, 7), (50, 1), (13, 12), (100, 50)]:
        ci = stats.binomtest(c, n).proportion_ci(confidence_level=0.9, method="exact")
        lo, hi = clopper_pearson(n, c, alpha=0.1)
        assert lo == pytest.approx(ci.low, rel=1e-10) and hi == pytest.approx(ci.high, rel=1e-10)
        ci = stats.binomtest(c, n).proportion_ci(method="wilson")
        lo, hi = wilson(n, c)
        assert lo == pytest.approx(ci.low, rel=1e-10) and hi == pytest.approx(ci.high, rel=1e-10)


def test_interval_endpoints_at_extremes():
    assert clopper_pearson(10, 0)[0] == 0.0
    assert clopper_pearson(10, 10)[1] == 1.0
    assert clopper_pearson(10, 0)[1] == pytest.approx(1 - 0.025 ** (1 / 10), rel=1e-12)
    assert clopper_pearson(10, 10)[0] == pytest.approx(0.025 ** (1 / 10), rel=1e-12)
    assert wilson(10, 0)[0] == 0.0 and wilson(10, 10)[1] == 1.0
    lo, hi = clopper_pearson(10, 3, alternative="less")
    assert lo == 0.0 and hi < clopper_pearson(10, 3)[1]
    lo, hi = clopper_pearson(10, 3, alternative="greater")
    assert hi == 1.0 and lo > clopper_pearson(10, 3)[0]


def test_negbin_identity_and_interval_inversion():
    # P(K <= k) == P(Binomial(k, p) >= r)
    for r, k, p in [(1, 5, 0.2), (3, 40, 0.05), (2, 2, 0.7)]:
        assert stats.nbinom.cdf(k - r, r, p) == pytest.approx(stats.binom.sf(r - 1, k, p), rel=1e-12)
    alpha = 0.05
    for r, K in [(1, 1), (1, 37), (2, 10), (3, 400), (5, 5)]:
        lo, hi = negbin_interval(r, K, alpha)
        assert 0.0 < lo < hi <= 1.0
        # lower: observing the r-th pass this early is an alpha/2 event
        assert stats.nbinom.cdf(K - r, r, lo) == pytest.approx(alpha / 2, rel=1e-8)
        if K > r:
            # upper: observing it this late is an alpha/2 event
            assert stats.nbinom.sf(K - r - 1, r, hi) == pytest.approx(alpha / 2, rel=1e-8)
        else:
            assert hi == 1.0


@pytest.mark.parametrize("r", [1, 2, 4])
def test_negbin_interval_exact_coverage(r):
    for p in [0.003, 0.02, 0.1, 0.35, 0.8]:
        k_max = r + int(stats.nbinom.ppf(1 - 1e-13, r, p)) + 1
        Ks = np.arange(r, k_max + 1)
        lo, hi = negbin_interval(r, Ks)
        pmf = stats.nbinom.pmf(Ks - r, r, p)
        cov = (pmf * ((lo <= p) & (p <= hi))).sum()
        assert cov >= 0.95 - 1e-9


# --------------------------------------------------------------------------
# instance estimates and censoring
# --------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 10, 1000])
@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_censored_instance(n, alpha):
    est = estimate_instance(n, 0, alpha=alpha)
    assert est.censored is True
    assert est.estimate is None
    assert est.lower == 0.0
    assert est.upper == pytest.approx(1 - alpha ** (1 / n), rel=1e-12)
    # one-sided bound is tighter than the two-sided one
    assert est.upper < clopper_pearson(n, 0, alpha)[1]
    json.dumps(est.to_dict(), allow_nan=False)


def test_censored_instance_wilson_upper():
    est = estimate_instance(50, 0, method="wilson")
    z = stats.norm.isf(0.05)
    assert est.estimate is None and est.censored
    assert est.upper == pytest.approx(z * z / (50 + z * z), rel=1e-12)


def test_instance_estimates_fixed_and_sequential():
    fixed = estimate_instance(40, 4)
    assert fixed.estimate == 0.1 and not fixed.censored
    assert (fixed.lower, fixed.upper) == clopper_pearson(40, 4)

    seq = estimate_instance(30, 2, r=2, K=30)
    assert seq.estimate == pytest.approx(1 / 29)
    assert (seq.lower, seq.upper) == negbin_interval(2, 30)

    first = estimate_instance(10, 1, r=1, K=10)
    assert first.estimate == 0.1  # r = 1: the paper's r/K

    replay = estimate_instance(1000, 9, r=2, K=101)  # fixed run replayed sequentially
    assert replay.estimate == pytest.approx(0.01)

    budget_out = estimate_instance(60, 2, r=3)  # r-th pass never came
    assert budget_out.estimate == pytest.approx(2 / 60) and budget_out.K is None

    w = estimate_instance(40, 4, method="wilson")
    assert (w.lower, w.upper) == wilson(40, 4)


def test_to_dict_json_safe_and_frozen():
    for est in [
        estimate_instance(40, 4),
        estimate_instance(40, 40),
        estimate_instance(30, 2, r=2, K=30),
        estimate_instance(7, 0, r=2),
    ]:
        d = est.to_dict()
        text = json.dumps(d, allow_nan=False)
        assert json.loads(text) == d
        assert all(type(v) in (int, float, bool, str, type(None)) for v in d.values())
    with pytest.raises(Exception):
        est.c = 3  # frozen dataclass


# --------------------------------------------------------------------------
# task level
# --------------------------------------------------------------------------


def test_task_pu_mean_and_stderr_by_hand():
    ests = [
        estimate_instance(10, 5),  # 0.5
        estimate_instance(20, 5),  # 0.25
        estimate_instance(100, 0),  # censored -> contributes 0
        estimate_instance(11, 2, r=2, K=11),  # (2-1)/(11-1) = 0.1
    ]
    task = task_pu(ests)
    values = [0.5, 0.25, 0.0, 0.1]
    assert isinstance(task, TaskEstimate)
    assert task.mean == pytest.approx(0.2125, rel=1e-14)
    assert task.stderr == pytest.approx(statistics.stdev(values) / 2.0, rel=1e-12)
    assert task.n_instances == 4
    assert task.n_censored == 1
    assert task.total_samples == 141
    assert task.stderr_note is None
    json.dumps(task.to_dict(), allow_nan=False)


def test_task_pu_is_mean_not_pooled():
    # easy instance stops early; hard instance burns the budget
    ests = [estimate_instance(10, 9), estimate_instance(1000, 1)]
    task = task_pu(ests)
    pooled = (9 + 1) / (10 + 1000)
    assert task.mean == pytest.approx((0.9 + 0.001) / 2, rel=1e-14)
    assert pooled < 0.01
    assert task.mean > 40 * pooled


def test_task_pu_single_instance_has_no_stderr():
    task = task_pu([estimate_instance(10, 3)])
    assert task.mean == pytest.approx(0.3)
    assert task.stderr is None
    assert "at least 2" in task.stderr_note
    assert json.loads(json.dumps(task.to_dict(), allow_nan=False))["stderr"] is None


def test_task_pu_all_censored_mean_zero():
    task = task_pu([estimate_instance(10, 0), estimate_instance(20, 0)])
    assert task.mean == 0.0 and task.n_censored == 2 and task.stderr == 0.0


# --------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: pass_at_k(10, -1, 1), r"c must be >= 0"),
        (lambda: pass_at_k(-3, 0, 1), r"n must be >= 1"),
        (lambda: pass_at_k(5, 6, 1), r"c must be <= n"),
        (lambda: pass_at_k(5, 2, 6), r"k must be <= n"),
        (lambda: pass_at_k(5, 2, 0), r"k must be >= 1"),
        (lambda: pass_at_k(5, 2.5, 1), r"c must be an integer"),
        (lambda: pass_at_k(5, float("nan"), 1), r"c must be a finite integer"),
        (lambda: pass_at_k(np.array([5, 5]), np.array([1, 7]), 1), r"c=7 > n=5"),
        (lambda: pass_at_k(5, True, 1), r"boolean"),
        (lambda: pass_at_k(np.ones(2, int) * 5, 1, np.array([1, 2, 3])), r"broadcast"),
        (lambda: pass_at_k_all(5, 6), r"c must be <= n"),
        (lambda: pass_at_k_all([5, 6], 1), r"n must be a scalar"),
        (lambda: pu_fixed(0, 0), r"n must be >= 1"),
        (lambda: pu_paper(0, 5), r"r must be >= 1"),
        (lambda: pu_paper(3, 2), r"K must be >= r"),
        (lambda: pu_unbiased(1, 5), r"requires r >= 2"),
        (lambda: samples_to_r_passes([0, 1, 2], 1), r"0/1"),
        (lambda: samples_to_r_passes([0, 1], 0), r"r must be >= 1"),
        (lambda: clopper_pearson(10, 3, alpha=1.5), r"alpha must be in \(0, 1\)"),
        (lambda: clopper_pearson(10, 3, alternative="both"), r"alternative must be"),
        (lambda: wilson(10, 11), r"c must be <= n"),
        (lambda: negbin_interval(0, 5), r"r must be >= 1"),
        (lambda: negbin_interval(4, 3), r"K must be >= r"),
        (lambda: estimate_instance(10, 3, method="wald"), r"method must be"),
        (lambda: estimate_instance(10, 3, K=4), r"K was given without r"),
        (lambda: estimate_instance(10, 3, r=2), r"K .* must be given"),
        (lambda: estimate_instance(10, 3, r=2, K=11), r"K must be <= n"),
        (lambda: estimate_instance(10, 1, r=2, K=5), r"r must be <= c"),
        (lambda: estimate_instance(10, 3, r=0), r"r must be >= 1"),
        (lambda: task_pu([]), r"at least one"),
        (lambda: task_pu([0.5]), r"InstanceEstimate"),
    ],
)
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_instance_estimate_is_public_dataclass():
    est = InstanceEstimate(n=5, c=1, estimate=0.2, lower=0.0, upper=0.7, censored=False)
    assert est.to_dict()["estimate"] == 0.2 and est.r is None


# ---------------------------------------------------------------- the engine's estimator


def _engine_stop(rule, seq):
    """Run the adaptive engine on a fixed outcome sequence; return the instance."""
    from lm_eval_ext.sampling.adaptive import AdaptiveState

    st = AdaptiveState([0], rule, seed=0)
    pos = 0
    while not st.finished:
        plan = st.plan()
        if plan:
            m = plan[0]
            st.record({0: seq[pos:pos + m]})
            pos += m
        st.end_round()
    return st.instances[0]


@pytest.mark.parametrize("rule_kw", [dict(r=2, cap=8, first=1), dict(r=3, cap=8, first=2),
                                     dict(r=2, cap=8, first=1, rel_precision=0.9)])
def test_engine_estimate_is_exactly_unbiased(rule_kw):
    """Every outcome sequence of length cap, driven through the engine: the
    reported PU averages to p exactly, while c/n under the same stopping is biased."""
    import itertools

    from lm_eval_ext.sampling.adaptive import StopRule

    rule = StopRule(**rule_kw)
    cap = rule.cap
    rows = []
    for seq in itertools.product([False, True], repeat=cap):
        inst = _engine_stop(rule, list(seq))
        e = inst.estimate(rule)
        assert e.estimator == "rao-blackwell"
        rows.append((sum(seq), 0.0 if e.censored else e.estimate, inst.c / inst.n))
    total, est, cn = map(np.array, zip(*rows))
    for p in (0.03, 0.2, 0.5, 0.9):
        w = p ** total * (1 - p) ** (cap - total)
        assert w.sum() == pytest.approx(1.0)
        assert (w * est).sum() == pytest.approx(p, abs=1e-12)
    w = 0.2 ** total * 0.8 ** (cap - total)
    assert (w * cn).sum() > 0.2 * 1.05  # c/n is biased upward under this stopping rule


class _OneAtATime:
    """Sampling one at a time until the r-th pass or the cap: the classical design."""

    def __init__(self, r, cap):
        self.r, self.cap = r, cap

    def batch(self, round_index, n, c):
        return 1

    def stops(self, n, c):
        return c >= self.r or n >= self.cap

    def __hash__(self):
        return hash((type(self), self.r, self.cap))

    def __eq__(self, other):
        return type(other) is type(self) and (other.r, other.cap) == (self.r, self.cap)


class _Fixed(_OneAtATime):
    def batch(self, round_index, n, c):
        return self.cap

    def stops(self, n, c):
        return n >= self.cap


def test_pu_sequential_reduces_to_known_estimators():
    from lm_eval_ext.passuntil.stats import pu_sequential

    d = _OneAtATime(r=3, cap=50)
    for K in (3, 4, 10, 50):
        assert pu_sequential(K, 3, d) == pytest.approx(pu_unbiased(3, K), rel=1e-12)
    assert pu_sequential(50, 2, d) == pytest.approx(2 / 50, rel=1e-12)  # cap stop: c/n (GMS)
    assert pu_sequential(20, 7, _Fixed(r=99, cap=20)) == pytest.approx(7 / 20, rel=1e-12)
    with pytest.raises(ValueError, match="does not stop"):
        pu_sequential(10, 2, d)
    from lm_eval_ext.sampling.adaptive import StopRule

    with pytest.raises(ValueError, match="no sampling path"):
        pu_sequential(5, 2, StopRule(r=2, cap=64, first=8))  # rounds draw 8, 16, ...: never n = 5
