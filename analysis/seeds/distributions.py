"""Distributions of a metric across random seeds, per model size (Zhao et al. 2025).

A sharp "emergent" jump in the *average* of a metric over training runs can be
the *probability that a run succeeds* moving smoothly with scale while each
run's result is bimodal (it either got it or it did not).  This module
decomposes the per-size distribution of a metric over seeds into those parts.

Input is a tidy DataFrame with one row per training run: its size (column
``N`` by default), its seed and the metric's value.  Higher values are taken
to be better (negate a loss first).

Entry point (statsmodels style: a function of data that returns results):
:func:`seed_distributions` -> :class:`SeedDistributionResults`.

What is computed per size
-------------------------
``mean`` and ``mean_success`` (the mean of the successful runs) with
    Student t intervals, and the ``mode`` with a percentile-bootstrap interval
    (``n_boot`` resamples of that size's runs).  The means do not use the
    bootstrap: with a handful of seeds its percentile interval is too short
    and its bootstrap-t unstable (see :func:`_t_ci`).  For a bounded metric
    (``bounds``, by default (0, 1) when every value lies in [0, 1]: an
    accuracy or pass rate) the t interval is built on the logit of the mean
    rescaled to the bounds, with the delta-method standard error, and mapped
    back, so it never leaves the metric's range (a plain t interval for an
    accuracy near 0 reaches below 0).  The mode is the
    maximum of a Gaussian kernel density estimate with Silverman's bandwidth
    (recomputed in every resample); the bootstrap of a mode is rough with few
    runs: it is reported, not relied on.  It lies within the runs' range, so
    its interval does too.  Fewer than 3 runs: no mode.
``p_success``: the fraction of runs with ``value >= threshold``, with the
    Wilson score interval rather than a bootstrap one: the percentile
    bootstrap of 0/n or n/n successes is the degenerate interval [0, 0] or
    [1, 1], exactly where a size has few seeds.  The interval treats the
    threshold as fixed (it is: either given, or chosen once from all sizes).
Bimodality: Hartigan's dip test (``diptest`` package, p-value interpolated
    from its tables; the null is the least favourable unimodal distribution,
    the uniform, so the test is conservative for e.g. Gaussian data).  A size
    is called ``bimodal`` when the dip p-value is below ``level``; with fewer
    than :data:`MIN_DIP_SEEDS` runs it is not tested (None).
Mixture: one vs two Gaussian components by BIC (2 and 5 parameters), the
    two-component fit by EM from several starts; components are ordered by
    mean (component 2 = the better one).  Each component's sd is floored at
    :data:`SD_FLOOR` times the size's overall sd so that a component cannot
    collapse onto one repeated value (discrete metrics such as accuracy on a
    few items) and win on an unbounded likelihood.  Needs
    :data:`MIN_MIXTURE_SEEDS` runs.
``wasserstein_next``: the 1-Wasserstein distance between this size's values
    and the next larger size's, with a permutation p-value (``n_perm``
    relabelings of the pooled runs) for "same distribution", and
    ``wasserstein_min_pvalue``, the smallest p-value that test can give with
    these runs (:func:`permutation_min_pvalue`): 3 vs 3 runs have only 20
    relabelings, so p >= 0.1 and the test cannot reject at 0.05.

The threshold
-------------
Given explicitly, it is used as is.  ``threshold=None`` fits a two-component
Gaussian mixture to the values of *all* runs pooled over sizes and takes its
**antimode**: the minimum of the mixture density between the two component
means (the natural "failed / succeeded" boundary of a bimodal population).
If that density has no minimum there (the pooled mixture is unimodal), the
point between the means where both components are equally likely is used
instead, and a warning says that "success" then splits one mode.  The rule
used is reported in ``threshold_rule``.

Across sizes
------------
``psuccess_fit`` (:class:`PSuccessFit`): a binomial GLM (logit link,
    statsmodels) of the successes at each size on ``log N``.  Seeds are
    independent runs, so the binomial variance is exact at each size; what
    can add variance is the logistic shape not fitting the sizes.  When the
    Pearson lack-of-fit test over the sizes rejects at ``level`` the
    covariance is scaled by the dispersion (Pearson chi2 / df) and
    intervals use t quantiles on the residual df (quasi-binomial);
    otherwise the binomial covariance stands (estimating a dispersion from
    the 1-3 residual df typical here would, through t(2) quantiles, make
    every interval uninformative).  When the sizes separate perfectly (no
    success below some size, no failure above it; or all or no runs
    successful) the maximum
    likelihood estimate does not exist, and Firth's penalized likelihood
    (the Jeffreys-prior penalty, finite by construction) is used instead;
    ``method`` says which.  ``predict(N)`` gives P(success) at unseen sizes
    with a Wald interval on the logit scale and, given ``n_seeds``, an
    interval for the fraction of that many new seeds that would succeed.
``inverse_scaling`` (:class:`InverseScaling`): P(success) falls with size
    (GLM slope < 0, one-sided test) *while* the successful runs improve
    (OLS slope of the successful runs' values on ``log N`` > 0, one-sided).
    Both must hold, so the evidence is the intersection-union test: its
    p-value is the larger of the two one-sided p-values, and the pattern is
    flagged when that is below ``level``.

Few seeds
---------
Whatever cannot be estimated is None/NaN, not a number with false precision,
and ``warnings`` lists what the data cannot tell: sizes with fewer than
:data:`LOW_POWER_SEEDS` runs (the dip test has almost no power there, so
"not bimodal" means "not shown bimodal"), sizes too small for a mixture,
fewer than two successful runs, a GLM with no residual degrees of freedom, a
separated GLM, and tests that cannot reach ``level`` with the runs given
(a permutation test of 3 vs 3 runs; a trend in P(success) from a handful of
runs, see :func:`trend_min_pvalue`).

Sizes, not runs
---------------
The decomposition is about *runs*: a size whose seeds split into failed and
successful runs.  When instead each size's runs sit close together and the
sizes lie apart (e.g. 3 seeds per size with sd 0.002 at 0.30, 0.35, 0.47:
evaluation seeds of one checkpoint, not training seeds), the pooled values
are "bimodal" because the sizes are, any threshold falls between sizes, and
P(success) is 0 or 1 at every size: the logistic curve then fits the gap
between sizes, not run-to-run variation.  A warning says so when no size has
runs on both sides of the threshold, or when the largest within-size sd is
below 1/:data:`SIZE_GAP_SDS` of the distance between the failed and the
successful runs' means (the threshold then mostly splits sizes even where it
cuts through one).
"""

from __future__ import annotations

import math
import re
import warnings as _warnings
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import optimize, special, stats

from lm_eval_ext.passuntil.stats import wilson

__all__ = [
    "seed_distributions",
    "permutation_min_pvalue",
    "trend_min_pvalue",
    "SeedDistributionResults",
    "PSuccessFit",
    "fit_psuccess",
    "InverseScaling",
    "Mixture",
    "fit_mixture",
    "kde_mode",
    "dip_test",
    "wasserstein_test",
    "parse_seed",
]

#: Fewer runs than this at a size: no dip test (the statistic is degenerate).
MIN_DIP_SEEDS = 4
#: Fewer runs than this at a size: no 1- vs 2-component mixture comparison
#: (5 parameters for the 2-component fit).
MIN_MIXTURE_SEEDS = 6
#: Below this many runs the dip test has almost no power (a warning says so).
LOW_POWER_SEEDS = 10
#: Component sds are floored at this fraction of the data's sd.
SD_FLOOR = 0.2
#: "Sizes, not runs": warn when the largest within-size sd is below the distance
#: between the failed and the successful runs' means divided by this.  Two
#: equal-sd clusters need a separation of 2 sd to be bimodal at all; 4 sd means
#: each size is plainly its own cluster next to that distance.
SIZE_GAP_SDS = 4.0


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------


def _jf(x) -> Optional[float]:
    """A JSON float: None for NaN/inf/None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _check_level(level) -> float:
    a = float(level)
    if not 0 < a < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return a


def _describe(df: pd.DataFrame, mask, cols, limit: int = 5) -> str:
    bad = df.loc[mask, [c for c in cols if c in df.columns]]
    text = "; ".join(f"row {i}: " + ", ".join(f"{c}={r[c]!r}" for c in bad.columns)
                     for i, r in bad.head(limit).iterrows())
    return text + (f"; ... ({len(bad)} rows)" if len(bad) > limit else "")


def _validate(df, value: str, size: str, seed: str) -> pd.DataFrame:
    """Clean copy with columns N (float), seed, value (float), sorted by N, seed."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in (value, size, seed) if c not in df.columns]
    if missing:
        raise ValueError(f"missing column(s) {missing}; need one row per run with columns "
                         f"{size!r} (model size), {seed!r} (seed) and {value!r} (metric value); "
                         f"have {list(map(str, df.columns))}")
    if len(df) == 0:
        raise ValueError("no rows: the table of runs is empty")
    show = [c for c in ("model", size, seed, value, "file", "line") if c in df.columns]
    for col, what in ((size, "model size"), (value, "metric value")):
        conv = pd.to_numeric(df[col], errors="coerce")
        bad = conv.isna() | ~np.isfinite(conv.to_numpy(dtype=float, na_value=np.nan))
        if bad.any():
            raise ValueError(f"column {col!r} ({what}) must be a finite number: {_describe(df, bad, show)}")
    # A score held as text ("0.41" from a JSON string) is a sign the producer
    # wrote something other than a number; to_numeric would quietly read it, and
    # "n/a" in the same column would be NaN.  Refuse it, naming the runs, so the
    # file gets fixed rather than half-read.
    text = df[value].map(lambda v: isinstance(v, (str, bytes)))
    if text.any():
        raise ValueError(f"column {value!r} (metric value) must be a finite number, not text: "
                         f"{_describe(df, text, show)}; convert it explicitly (e.g. pd.to_numeric) "
                         "once you have checked where the text came from")
    n = pd.to_numeric(df[size]).to_numpy(float)
    if np.any(n <= 0):
        raise ValueError(f"column {size!r} (model size) must be > 0: {_describe(df, n <= 0, show)}")
    if df[seed].isna().any():
        raise ValueError(f"column {seed!r} has missing seeds: {_describe(df, df[seed].isna(), show)}")
    out = pd.DataFrame({"N": n, "seed": df[seed].to_numpy(), "value": pd.to_numeric(df[value]).to_numpy(float)},
                       index=df.index)
    dup = out.duplicated(["N", "seed"], keep=False)
    if dup.any():
        raise ValueError(f"several rows for the same (size, seed) run: {_describe(df, dup, show)}; "
                         "one row per run expected (pick one task/metric/filter, or average first)")
    return out.sort_values(["N", "seed"], kind="stable").reset_index(drop=True)


def _percentile_ci(samples: np.ndarray, level: float) -> tuple[float, float]:
    s = np.asarray(samples, float)
    s = s[np.isfinite(s)]
    if s.size < 2:
        return math.nan, math.nan
    lo, hi = np.quantile(s, [level / 2, 1 - level / 2])
    return float(lo), float(hi)


def _t_ci(x: np.ndarray, level: float, bounds: Optional[tuple[float, float]] = None) -> tuple[float, float]:
    """Student t interval for the mean of the runs ``x``.

    Used for the two means instead of a bootstrap interval: with the few
    seeds typical here the percentile bootstrap is too short (it behaves
    like mean +- z sd/sqrt(n) with the biased sd; in tests/analysis/seeds/test_seeds.py it
    covered the mean of successful runs 84% of the time at a nominal 95%)
    and the bootstrap-t is unstable (resamples drawn from one mode of a
    bimodal size have a tiny se*, giving intervals far outside the data).
    Exact for Gaussian runs, and by the central limit theorem close for
    many runs.  Fewer than 2 runs, or no spread at all: no interval (NaN).

    ``bounds = (lo, hi)``: the runs' values are known to lie in [lo, hi] (an
    accuracy: (0, 1)).  The interval is then the t interval for
    logit(u), u = (mean - lo) / (hi - lo), with the delta-method standard
    error se / ((hi - lo) u (1 - u)), mapped back: it stays strictly inside
    the bounds, is asymmetric near them (where a bounded metric's mean is
    skewed away from the bound), and equals the plain t interval to first
    order in the middle of the range.  Simulated at 95% (accuracies on 20-50
    items near 0.05 or 0.97, 5-10 seeds) it covered 0.96-0.98 where the plain
    t interval covered 0.90 and crossed the bound; in the middle (bimodal
    0.2/0.7 runs) the two agree.  Clipping the plain interval to [lo, hi]
    would keep its coverage but not repair its under-coverage on the far
    side.  A mean at a bound has no spread, hence no interval, as above.
    """
    n = x.size
    if n < 2:
        return math.nan, math.nan
    se = float(x.std(ddof=1)) / math.sqrt(n)
    if not se > 0:
        return math.nan, math.nan
    q = float(stats.t.isf(level / 2, n - 1))
    m = float(x.mean())
    if bounds is None:
        return m - q * se, m + q * se
    lo, hi = bounds
    u = (m - lo) / (hi - lo)
    if not 0 < u < 1:  # spread but a mean at a bound: values outside the bounds (checked earlier)
        return math.nan, math.nan
    se_logit = se / ((hi - lo) * u * (1 - u))
    eta = float(special.logit(u))
    return (lo + (hi - lo) * float(special.expit(eta - q * se_logit)),
            lo + (hi - lo) * float(special.expit(eta + q * se_logit)))


def _resolve_bounds(bounds, values: np.ndarray) -> Optional[tuple[float, float]]:
    """``bounds`` of :func:`seed_distributions`: "auto" -> (0, 1) when every value
    lies in [0, 1] (accuracies, pass rates, exact match; a metric that only
    happens to fall there loses nothing: the logit interval is still a valid
    large-sample interval for a mean inside (0, 1)), else None; None -> None;
    a pair -> itself, checked against the values."""
    if bounds is None:
        return None
    if isinstance(bounds, str):
        if bounds != "auto":
            raise ValueError(f"bounds must be 'auto', None or a pair (lo, hi), got {bounds!r}")
        return (0.0, 1.0) if np.all((values >= 0) & (values <= 1)) else None
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ValueError(f"bounds must be 'auto', None or a pair (lo, hi), got {bounds!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"bounds must be finite with lo < hi, got {bounds!r}")
    out = (values < lo) | (values > hi)
    if out.any():
        raise ValueError(f"bounds {bounds!r}: {int(out.sum())} value(s) outside, e.g. {values[out][0]:.6g}")
    return lo, hi


# --------------------------------------------------------------------------
# kernel density mode
# --------------------------------------------------------------------------


def _silverman(x: np.ndarray) -> np.ndarray:
    """Silverman's rule-of-thumb bandwidth along the last axis (0 if no spread)."""
    n = x.shape[-1]
    sd = x.std(axis=-1, ddof=1) if n > 1 else np.zeros(x.shape[:-1])
    q75, q25 = np.quantile(x, [0.75, 0.25], axis=-1)
    iqr = (q75 - q25) / 1.34
    spread = np.where(iqr > 0, np.minimum(sd, iqr), sd)
    return 0.9 * spread * n ** (-0.2)


def _kde_modes(samples: np.ndarray, grid_size: int = 256) -> np.ndarray:
    """KDE mode of each row of ``samples`` (rows = resamples)."""
    samples = np.atleast_2d(np.asarray(samples, float))
    h = _silverman(samples)
    out = np.empty(samples.shape[0])
    lo = samples.min(axis=1)
    hi = samples.max(axis=1)
    # one common grid over all rows (a mode lies within the data's range
    # plus a little; clipping the grid to the data is fine for a maximum)
    glo, ghi = float(lo.min()), float(hi.max())
    grid = np.linspace(glo, ghi, grid_size) if ghi > glo else np.array([glo])
    for start in range(0, samples.shape[0], 256):
        s = samples[start:start + 256]
        hh = h[start:start + 256]
        flat = hh <= 0
        hh = np.where(flat, 1.0, hh)
        z = (grid[None, :, None] - s[:, None, :]) / hh[:, None, None]
        dens = np.exp(-0.5 * z * z).sum(axis=2)
        # a grid point outside a row's own range is not a mode of that row
        dens[(grid[None, :] < lo[start:start + 256, None]) | (grid[None, :] > hi[start:start + 256, None])] = -1
        m = grid[np.argmax(dens, axis=1)]
        out[start:start + 256] = np.where(flat, s[:, 0], m)
    return out


def kde_mode(x) -> float:
    """Mode of a Gaussian KDE (Silverman bandwidth) of the values ``x``."""
    x = np.asarray(x, float)
    if x.size == 0:
        return math.nan
    if x.size == 1:
        return float(x[0])
    return float(_kde_modes(x[None, :], grid_size=1024)[0])


# --------------------------------------------------------------------------
# Gaussian mixtures
# --------------------------------------------------------------------------


@dataclass
class Mixture:
    """A 1- vs 2-component Gaussian mixture comparison on one sample.

    ``weights``, ``means``, ``sds``: the 2-component fit, ordered by mean
    (index 1 = the higher, "successful" component).  ``bic1``/``bic2``:
    BIC of the 1- and 2-component fits; ``n_components``: the one with the
    lower BIC.  ``loglik1``/``loglik2``: maximized log-likelihoods.
    """

    n: int
    weights: np.ndarray
    means: np.ndarray
    sds: np.ndarray
    loglik1: float
    loglik2: float
    converged: bool

    @property
    def bic1(self) -> float:
        return -2 * self.loglik1 + 2 * math.log(self.n)

    @property
    def bic2(self) -> float:
        return -2 * self.loglik2 + 5 * math.log(self.n)

    @property
    def n_components(self) -> int:
        return 2 if self.bic2 < self.bic1 else 1

    def pdf(self, x) -> np.ndarray:
        x = np.asarray(x, float)
        return sum(w * stats.norm.pdf(x, m, s) for w, m, s in zip(self.weights, self.means, self.sds))

    def component_pdfs(self, x) -> list[np.ndarray]:
        x = np.asarray(x, float)
        return [w * stats.norm.pdf(x, m, s) for w, m, s in zip(self.weights, self.means, self.sds)]

    def antimode(self) -> tuple[float, str]:
        """The density minimum strictly between the component means, with the
        rule used; when the density has none there (unimodal mixture), the
        point between the means where both components are equally likely."""
        m1, m2 = float(self.means[0]), float(self.means[1])
        if not m2 > m1:
            return m1, "component means coincide: threshold at the common mean"
        grid = np.linspace(m1, m2, 2001)
        dens = self.pdf(grid)
        i = int(np.argmin(dens))
        if 0 < i < len(grid) - 1 and dens[i] < min(dens[0], dens[-1]):
            lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
            r = optimize.minimize_scalar(lambda t: float(self.pdf(t)), bounds=(lo, hi), method="bounded",
                                         options={"xatol": 1e-10 * max(1.0, abs(m2 - m1))})
            return float(r.x), "antimode of the pooled 2-component Gaussian mixture"
        c1, c2 = self.component_pdfs(grid)
        diff = np.log(c2 + 1e-300) - np.log(c1 + 1e-300)
        j = np.flatnonzero(np.diff(np.sign(diff)) != 0)
        if j.size:
            a, b = grid[j[0]], grid[j[0] + 1]
            t = optimize.brentq(lambda t: float(np.log(self.component_pdfs(t)[1] + 1e-300)
                                                - np.log(self.component_pdfs(t)[0] + 1e-300)), a, b)
            return float(t), ("equal-posterior point of the pooled 2-component Gaussian mixture "
                              "(its density has no antimode)")
        return 0.5 * (m1 + m2), "midpoint of the pooled 2-component mixture's means (no antimode)"

    def to_dict(self) -> dict:
        return {
            "n": int(self.n),
            "weights": [_jf(v) for v in self.weights],
            "means": [_jf(v) for v in self.means],
            "sds": [_jf(v) for v in self.sds],
            "loglik1": _jf(self.loglik1),
            "loglik2": _jf(self.loglik2),
            "bic1": _jf(self.bic1),
            "bic2": _jf(self.bic2),
            "n_components": int(self.n_components),
            "converged": bool(self.converged),
        }


_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _em2(x, w, mu, sd, sd_min, max_iter=2000, tol=1e-6):
    """EM for a 2-component Gaussian mixture from several starts at once.

    ``w``, ``mu``, ``sd``: (starts, 2) initial values.  Plain numpy over all
    starts together (per-iteration overhead dominates at these sample sizes).
    Stops when the log-likelihood gains less than ``tol`` (absolute: BIC
    differences that matter are far larger).
    Returns (w, mu, sd, loglik, converged, degenerate) per start; a start is
    degenerate when a component empties.
    """
    n = x.size
    w, mu, sd = (np.array(a, float) for a in (w, mu, sd))
    S = w.shape[0]
    ll_prev = np.full(S, -np.inf)
    ll = np.full(S, -np.inf)
    conv = np.zeros(S, bool)
    bad = np.zeros(S, bool)
    for _ in range(max_iter):
        z = (x[None, :, None] - mu[:, None, :]) / sd[:, None, :]
        logp = np.log(w)[:, None, :] - np.log(sd)[:, None, :] - _LOG_SQRT_2PI - 0.5 * z * z
        m = logp.max(axis=2)
        lse = m + np.log(np.exp(logp - m[..., None]).sum(axis=2))
        ll = lse.sum(axis=1)
        r = np.exp(logp - lse[..., None])
        nk = r.sum(axis=1)
        bad |= np.any(nk < 1e-6 * n, axis=1)
        conv |= ~bad & (ll - ll_prev < tol)
        upd = ~(conv | bad)
        if not upd.any():
            break
        nk_u = nk[upd]
        r_u = r[upd]
        w[upd] = nk_u / n
        mu[upd] = (r_u * x[None, :, None]).sum(axis=1) / nk_u
        var = (r_u * (x[None, :, None] - mu[upd][:, None, :]) ** 2).sum(axis=1) / nk_u
        sd[upd] = np.maximum(np.sqrt(var), sd_min)
        ll_prev = ll
    return w, mu, sd, ll, conv, bad


def fit_mixture(x, *, sd_floor: float = SD_FLOOR) -> Mixture:
    """1- and 2-component Gaussian mixtures of the values ``x`` (maximum
    likelihood; the 2-component fit by EM from splits at the 25/50/75%
    quantiles and at the largest gap, keeping the best).  Component sds are
    floored at ``sd_floor`` times the sample sd (see the module docstring).
    Raises ValueError for fewer than 2 values or no spread."""
    x = np.asarray(x, float)
    n = x.size
    if n < 2:
        raise ValueError(f"a mixture needs at least 2 values, got {n}")
    sd_all = float(x.std())
    if not sd_all > 0:
        raise ValueError("all values are equal: no mixture to fit")
    ll1 = float(stats.norm.logpdf(x, x.mean(), sd_all).sum())
    sd_min = sd_floor * sd_all
    xs = np.sort(x)
    cuts = {int(round(q * n)) for q in (0.25, 0.5, 0.75)}
    cuts.add(int(np.argmax(np.diff(xs))) + 1)
    cuts = sorted(c for c in cuts if 1 <= c <= n - 1)
    w0 = np.array([[c / n, 1 - c / n] for c in cuts])
    mu0 = np.array([[xs[:c].mean(), xs[c:].mean()] for c in cuts])
    sd0 = np.maximum(np.array([[xs[:c].std(), xs[c:].std()] for c in cuts]), max(sd_min, 0.1 * sd_all))
    w, mu, sd, ll, conv, bad = _em2(x, w0, mu0, sd0, sd_min)
    if bad.all():  # every start degenerated: report the 1-component fit twice
        best = (np.array([1.0, 0.0]), np.array([x.mean(), x.mean()]), np.array([sd_all, sd_all]), ll1, False)
    else:
        i = int(np.argmax(np.where(bad, -np.inf, ll)))
        best = (w[i], mu[i], sd[i], float(ll[i]), bool(conv[i]))
    w, mu, sd, ll2, conv = best
    order = np.argsort(mu)
    return Mixture(n=n, weights=w[order], means=mu[order], sds=sd[order], loglik1=ll1,
                   loglik2=max(ll2, ll1), converged=bool(conv))


# --------------------------------------------------------------------------
# Wasserstein distance with a permutation test
# --------------------------------------------------------------------------


def _w1_labels(z_sorted: np.ndarray, in_first: np.ndarray, n1: int, n2: int) -> np.ndarray:
    """W1 between the two groups of each row of the boolean label matrix
    ``in_first`` (columns follow ``z_sorted``): the integral of |F1 - F2|."""
    f1 = np.cumsum(in_first, axis=-1) / n1
    f2 = np.cumsum(~in_first, axis=-1) / n2
    return (np.abs(f1 - f2)[..., :-1] * np.diff(z_sorted)).sum(axis=-1)


def wasserstein_test(x, y, *, n_perm: int = 999, rng=None) -> tuple[float, float]:
    """1-Wasserstein distance between the samples ``x`` and ``y`` and the
    permutation p-value of "same distribution" ((1 + #{W_perm >= W}) /
    (1 + n_perm)); p is NaN when ``n_perm`` is 0."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    if x.size == 0 or y.size == 0:
        raise ValueError("wasserstein_test needs two non-empty samples")
    z = np.concatenate([x, y])
    order = np.argsort(z, kind="stable")
    zs = z[order]
    lab = np.zeros(z.size, bool)
    lab[: x.size] = True
    w = float(_w1_labels(zs, lab[order], x.size, y.size))
    if n_perm <= 0:
        return w, math.nan
    rng = np.random.default_rng(rng)
    hits = 0
    for start in range(0, n_perm, 1000):
        m = min(1000, n_perm - start)
        perm = rng.permuted(np.broadcast_to(lab, (m, z.size)), axis=1)
        wp = _w1_labels(zs, perm[:, order], x.size, y.size)
        hits += int(np.sum(wp >= w - 1e-12 * max(1.0, w)))
    return w, (1 + hits) / (1 + n_perm)


def permutation_min_pvalue(n1: int, n2: int, n_perm: Optional[int] = None, *, symmetric: bool = True) -> float:
    """The smallest p-value a permutation test of two groups of ``n1`` and
    ``n2`` runs can give.

    Exact test: of the C(n1 + n2, n1) relabelings the observed one always
    counts, and for a statistic that does not care which group is which (a
    distance, such as :func:`wasserstein_test`'s W1: ``symmetric``) with
    ``n1 == n2`` so does its mirror image, so p >= 1/C or 2/C: 3 vs 3 runs
    give C(6, 3) = 20 relabelings and p >= 2/20 = 0.1, above any usual level.
    ``n_perm=None``: the exact test.  Monte Carlo with ``n_perm`` random
    relabelings: its p = (1 + hits) / (1 + n_perm) >= 1/(1 + n_perm) as
    well, and it estimates the exact p, so the larger of the two bounds is
    what it can reach.  ``n_perm`` <= 0: no test (NaN), as in
    :func:`wasserstein_test`.
    """
    n1, n2 = int(n1), int(n2)
    if n1 < 1 or n2 < 1:
        raise ValueError(f"two non-empty groups needed, got {n1} and {n2}")
    if n_perm is not None and n_perm <= 0:
        return math.nan
    m = 2 if symmetric and n1 == n2 else 1
    exact = m / math.comb(n1 + n2, n1)
    return exact if n_perm is None else max(exact, 1.0 / (1 + n_perm))


def _permutation_limit_text(n1: int, n2: int, n_perm: int) -> str:
    """Why :func:`permutation_min_pvalue` is what it is, in words."""
    c = math.comb(n1 + n2, n1)
    m = 2 if n1 == n2 else 1
    exact = m / c
    if n_perm > 0 and 1.0 / (1 + n_perm) > exact:
        return f"{n_perm} random relabelings: p >= 1/{n_perm + 1} = {1 / (n_perm + 1):.2g}"
    mirror = ", the observed split and its mirror image both as extreme" if m == 2 else ""
    return f"C({n1 + n2},{n1}) = {c} relabelings{mirror}: p >= {m}/{c} = {exact:.2g}"


# --------------------------------------------------------------------------
# P(success) vs log size
# --------------------------------------------------------------------------


def trend_min_pvalue(n, k) -> tuple[float, float]:
    """Smallest one-sided p-values (rising, falling) an exact test of a trend in
    P(success) with size can give, for ``k`` successes of ``n`` runs per size
    (sizes in ascending order).

    The exact (conditional) test of the logistic slope fixes the total number
    of successes K (sufficient for the intercept) and places them among the
    N runs at random: C(N, K) equally likely placements.  The most extreme
    "rising" outcome puts the K successes at the largest sizes; its
    probability, C(n_g, j) / C(N, K) with j of the n_g runs at the size where
    the successes run out, is the smallest p any outcome can give (likewise
    "falling" at the smallest sizes).  2 sizes x 3 seeds with 3 successes:
    1/20 = 0.05 one-sided.  K = 0 or K = N: nothing to test, (1, 1).
    The Wald p-values of :class:`PSuccessFit` are large-sample
    approximations that can fall below these bounds; the bounds say what the
    runs themselves can show.
    """
    n = np.asarray(n, dtype=np.int64)
    k = np.asarray(k, dtype=np.int64)
    K, total = int(k.sum()), int(n.sum())
    if K == 0 or K == total:
        return 1.0, 1.0
    denom = math.comb(total, K)

    def extreme(groups) -> float:
        rem, ways = K, 1
        for m in groups:
            take = min(rem, int(m))
            ways *= math.comb(int(m), take)
            rem -= take
            if rem == 0:
                break
        return ways / denom

    return extreme(n[::-1]), extreme(n)


def _separated(k: np.ndarray, n: np.ndarray) -> bool:
    """Whether (quasi-)complete separation holds for a logistic fit on sizes
    sorted ascending: no success before the last failure's size (or the
    reverse), which includes all-success and all-failure data."""
    f = n - k
    succ = np.flatnonzero(k > 0)
    fail = np.flatnonzero(f > 0)
    if succ.size == 0 or fail.size == 0:
        return True
    return bool(fail.max() <= succ.min() or succ.max() <= fail.min())


def _firth_logit(X: np.ndarray, k: np.ndarray, n: np.ndarray):
    """Firth's penalized binomial logistic fit: maximizes loglik + 0.5 log|I(b)|.
    Returns (params, covariance = I(b)^-1, converged)."""

    def info(b):
        p = special.expit(X @ b)
        return (X.T * (n * p * (1 - p))) @ X

    def negpl(b):
        eta = X @ b
        ll = float(np.sum(k * special.log_expit(eta) + (n - k) * special.log_expit(-eta)))
        sign, logdet = np.linalg.slogdet(info(b))
        return -(ll + 0.5 * logdet) if sign > 0 else np.inf

    res = optimize.minimize(negpl, np.zeros(X.shape[1]), method="Nelder-Mead",
                            options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 20000})
    res2 = optimize.minimize(negpl, res.x, method="BFGS")
    b = res2.x if res2.fun <= res.fun else res.x
    return b, np.linalg.inv(info(b)), bool(res.success or res2.success)


@dataclass
class PSuccessFit:
    """Binomial GLM (logit) of P(success) on log N.

    ``params``/``bse``: Series ``const``, ``log_N`` (P = expit(const + log_N *
    log N)); ``cov_params()``; ``conf_int(alpha)``; ``pvalues`` (two-sided);
    ``method``: "glm" (statsmodels maximum likelihood) or "firth" (penalized,
    used under separation); ``dispersion`` (Pearson chi2 / df_resid, NaN with
    no residual df); ``lack_of_fit_pvalue`` (Pearson chi2 vs chi2(df_resid));
    ``scaled``: whether the covariance was scaled by the dispersion;
    ``sizes``: N, n (runs), k (successes), observed, fitted.
    """

    params: pd.Series
    cov_params_: np.ndarray
    df_resid: int
    dispersion: float
    lack_of_fit_pvalue: float
    scaled: bool
    method: str
    sizes: pd.DataFrame
    alpha: float = 0.05
    converged: bool = True

    @property
    def _scaled(self) -> bool:
        return bool(self.scaled)

    def _q(self, alpha: float, two_sided: bool = True) -> float:
        a = alpha / 2 if two_sided else alpha
        if self._scaled and self.df_resid >= 1:
            return float(stats.t.isf(a, self.df_resid))
        return float(stats.norm.isf(a))

    @property
    def bse(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.cov_params_)), index=self.params.index)

    @property
    def tvalues(self) -> pd.Series:
        return self.params / self.bse

    @property
    def pvalues(self) -> pd.Series:
        t = np.abs(self.tvalues.to_numpy())
        if self._scaled and self.df_resid >= 1:
            p = 2 * stats.t.sf(t, self.df_resid)
        else:
            p = 2 * stats.norm.sf(t)
        return pd.Series(p, index=self.params.index)

    def slope_pvalue(self, alternative: str) -> float:
        """One-sided p-value for the log N slope: "less" (P falls with size)
        or "greater" (P rises)."""
        t = float(self.tvalues["log_N"])
        if alternative not in ("less", "greater"):
            raise ValueError("alternative must be 'less' or 'greater'")
        t = t if alternative == "greater" else -t
        if self._scaled and self.df_resid >= 1:
            return float(stats.t.sf(t, self.df_resid))
        return float(stats.norm.sf(t))

    def cov_params(self) -> pd.DataFrame:
        idx = self.params.index
        return pd.DataFrame(self.cov_params_, index=idx, columns=idx)

    def conf_int(self, alpha: Optional[float] = None) -> pd.DataFrame:
        a = _check_level(self.alpha if alpha is None else alpha)
        q = self._q(a)
        return pd.DataFrame({"lower": self.params - q * self.bse, "upper": self.params + q * self.bse})

    def predict(self, N, *, interval: bool = True, alpha: Optional[float] = None,
                n_seeds: Optional[int] = None) -> pd.DataFrame:
        """P(success) at sizes ``N``: DataFrame N, p (and lower, upper: a Wald
        interval on the logit scale mapped back).  With ``n_seeds``, also
        ``obs_lower``/``obs_upper``: the range of the fraction of ``n_seeds``
        new runs that would succeed (binomial quantiles at the interval's
        ends, so it covers both the uncertainty in P and the binomial draw,
        conservatively)."""
        a = _check_level(self.alpha if alpha is None else alpha)
        N = np.atleast_1d(np.asarray(N, float))
        if np.any(~np.isfinite(N)) or np.any(N <= 0):
            raise ValueError("N must be finite and > 0")
        X = np.column_stack([np.ones_like(N), np.log(N)])
        eta = X @ self.params.to_numpy()
        out = pd.DataFrame({"N": N, "p": special.expit(eta)})
        if not interval:
            return out
        se = np.sqrt(np.einsum("ij,jk,ik->i", X, self.cov_params_, X))
        q = self._q(a)
        out["lower"] = special.expit(eta - q * se)
        out["upper"] = special.expit(eta + q * se)
        if n_seeds is not None:
            m = int(n_seeds)
            if m < 1:
                raise ValueError(f"n_seeds must be >= 1, got {n_seeds!r}")
            out["obs_lower"] = stats.binom.ppf(a / 2, m, out["lower"]) / m
            out["obs_upper"] = stats.binom.ppf(1 - a / 2, m, out["upper"]) / m
        return out

    def n50(self, alpha: Optional[float] = None) -> dict:
        """The size at which half the runs succeed, exp(-const/slope), with a
        delta-method interval on log N (None when the slope's interval
        includes 0: the size is then not bounded by the data)."""
        a = _check_level(self.alpha if alpha is None else alpha)
        b0, b1 = self.params["const"], self.params["log_N"]
        if b1 == 0:
            return {"N": None, "lower": None, "upper": None}
        x50 = -b0 / b1
        g = np.array([-1.0 / b1, b0 / b1**2])
        se = float(np.sqrt(g @ self.cov_params_ @ g))
        ci = self.conf_int(a).loc["log_N"]
        if ci["lower"] <= 0 <= ci["upper"]:
            return {"N": _jf(math.exp(x50)) if abs(x50) < 700 else None, "lower": None, "upper": None}
        q = self._q(a)
        return {"N": _jf(math.exp(x50)), "lower": _jf(math.exp(x50 - q * se)), "upper": _jf(math.exp(x50 + q * se))}

    def summary(self) -> str:
        ci = self.conf_int()
        lvl = int(round(100 * (1 - self.alpha)))
        lines = ["P(success) = expit(const + log_N * log N)   "
                 f"[{'binomial GLM, logit' if self.method == 'glm' else 'Firth-penalized logistic (separation)'}]",
                 f"sizes: {len(self.sizes)}   df_resid: {self.df_resid}   dispersion: "
                 f"{self.dispersion:.4g}   lack of fit p: {self.lack_of_fit_pvalue:.3g}"
                 + ("  (covariance scaled by the dispersion)" if self._scaled else ""),
                 f"{'':<8}{'coef':>12}{'std err':>12}{'p':>10}{f'[{lvl}% lower':>14}{'upper]':>12}"]
        pv = self.pvalues
        for name in self.params.index:
            lines.append(f"{name:<8}{self.params[name]:>12.5g}{self.bse[name]:>12.4g}{pv[name]:>10.3g}"
                         f"{ci.loc[name, 'lower']:>14.5g}{ci.loc[name, 'upper']:>12.5g}")
        n50 = self.n50()
        if n50["N"] is not None:
            rng = (f" [{n50['lower']:.3g}, {n50['upper']:.3g}]" if n50["lower"] is not None
                   else " (interval unbounded: slope not distinguishable from 0)")
            lines.append(f"size with P(success) = 0.5: {n50['N']:.3g}{rng}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        ci = self.conf_int()
        return {
            "model": "P(success) = expit(const + log_N * log N)",
            "method": self.method,
            "params": {k: _jf(v) for k, v in self.params.items()},
            "bse": {k: _jf(v) for k, v in self.bse.items()},
            "pvalues": {k: _jf(v) for k, v in self.pvalues.items()},
            "conf_int": {k: [_jf(ci.loc[k, "lower"]), _jf(ci.loc[k, "upper"])] for k in ci.index},
            "alpha": float(self.alpha),
            "df_resid": int(self.df_resid),
            "dispersion": _jf(self.dispersion),
            "lack_of_fit_pvalue": _jf(self.lack_of_fit_pvalue),
            "scaled": bool(self.scaled),
            "converged": bool(self.converged),
            "n50": self.n50(),
            "sizes": [{"N": float(r["N"]), "n": int(r["n"]), "k": int(r["k"]),
                       "observed": _jf(r["observed"]), "fitted": _jf(r["fitted"])}
                      for r in self.sizes.to_dict("records")],
        }


def fit_psuccess(N, n, k, *, alpha: float = 0.05) -> PSuccessFit:
    """Fit :class:`PSuccessFit` to ``k`` successes of ``n`` runs at sizes ``N``
    (one entry per distinct size; at least 2 sizes)."""
    N = np.asarray(N, float)
    n = np.asarray(n, float)
    k = np.asarray(k, float)
    if N.size < 2:
        raise ValueError(f"a P(success) curve needs at least 2 sizes, got {N.size}")
    order = np.argsort(N)
    N, n, k = N[order], n[order], k[order]
    x = np.log(N)
    xbar = float(x.mean())
    X = np.column_stack([np.ones_like(x), x - xbar])
    S = N.size
    df_resid = S - 2
    if _separated(k, n):
        b, cov, conv = _firth_logit(X, k, n)
        method = "firth"
    else:
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore")
            res = sm.GLM(np.column_stack([k, n - k]), X, family=sm.families.Binomial()).fit(scale=1.0)
        b, cov, conv = np.asarray(res.params), np.asarray(res.cov_params()), bool(res.converged)
        method = "glm"
    p_hat = special.expit(X @ b)
    with np.errstate(all="ignore"):
        pearson = float(np.sum((k - n * p_hat) ** 2 / (n * p_hat * (1 - p_hat))))
    level = _check_level(alpha)
    dispersion = pearson / df_resid if df_resid > 0 and np.isfinite(pearson) else math.nan
    lof_p = float(stats.chi2.sf(pearson, df_resid)) if np.isfinite(dispersion) else math.nan
    scaled = bool(method == "glm" and np.isfinite(lof_p) and lof_p < level and dispersion > 1)
    if scaled:
        cov = cov * dispersion
    # centered (a, b) -> (const, log_N): const = a - b * xbar
    J = np.array([[1.0, -xbar], [0.0, 1.0]])
    theta = J @ b
    cov = J @ cov @ J.T
    sizes = pd.DataFrame({"N": N, "n": n.astype(np.int64), "k": k.astype(np.int64), "observed": k / n,
                          "fitted": p_hat})
    return PSuccessFit(params=pd.Series(theta, index=["const", "log_N"]), cov_params_=cov, df_resid=df_resid,
                       dispersion=dispersion, lack_of_fit_pvalue=lof_p, scaled=scaled, method=method,
                       sizes=sizes, alpha=level,
                       converged=conv)


# --------------------------------------------------------------------------
# inverse scaling
# --------------------------------------------------------------------------


@dataclass
class InverseScaling:
    """P(success) falls with size while the successful runs improve.

    ``pvalue_psuccess``: one-sided p of the GLM slope < 0;
    ``pvalue_success_mean``: one-sided p of the OLS slope > 0 of the
    successful runs' values on log N; ``pvalue``: their maximum (the
    intersection-union test of "both"); ``flagged``: ``pvalue < level``;
    ``confidence``: 1 - pvalue; ``reason``: why it could not be assessed
    (``assessed`` False) or a one-line verdict.
    """

    assessed: bool
    flagged: bool
    pvalue: float
    pvalue_psuccess: float
    pvalue_success_mean: float
    slope_psuccess: float
    slope_success_mean: float
    level: float
    reason: str

    @property
    def confidence(self) -> float:
        return 1.0 - self.pvalue if np.isfinite(self.pvalue) else math.nan

    def to_dict(self) -> dict:
        return {
            "assessed": bool(self.assessed),
            "flagged": bool(self.flagged),
            "pvalue": _jf(self.pvalue),
            "confidence": _jf(self.confidence),
            "pvalue_psuccess_falls": _jf(self.pvalue_psuccess),
            "pvalue_success_mean_rises": _jf(self.pvalue_success_mean),
            "slope_logit_psuccess_per_log_N": _jf(self.slope_psuccess),
            "slope_success_mean_per_log_N": _jf(self.slope_success_mean),
            "level": float(self.level),
            "test": "intersection-union: max of the two one-sided p-values",
            "reason": self.reason,
        }


def _inverse_scaling(fit: Optional[PSuccessFit], runs: pd.DataFrame, threshold: float,
                     level: float) -> InverseScaling:
    nan = math.nan
    if fit is None:
        return InverseScaling(False, False, nan, nan, nan, nan, nan, level,
                              "not assessed: fewer than 2 sizes")
    p1 = fit.slope_pvalue("less")
    s1 = float(fit.params["log_N"])
    succ = runs[runs["value"] >= threshold]
    if succ["N"].nunique() < 2 or len(succ) < 3:
        return InverseScaling(False, False, nan, p1, nan, s1, nan, level,
                              "not assessed: successful runs at fewer than 2 sizes (or fewer than 3 in all)")
    x = np.log(succ["N"].to_numpy())
    y = succ["value"].to_numpy()
    ols = sm.OLS(y, sm.add_constant(x - x.mean(), has_constant="add")).fit()
    s2 = float(ols.params[1])
    if not np.isfinite(ols.bse[1]) or ols.bse[1] == 0:
        # no scatter at all among the successful runs: the sign is all there is
        p2 = 0.0 if s2 > 0 else 1.0
    else:
        p2 = float(stats.t.sf(s2 / ols.bse[1], ols.df_resid)) if ols.df_resid >= 1 else nan
    if not np.isfinite(p2):
        return InverseScaling(False, False, nan, p1, nan, s1, s2, level,
                              "not assessed: too few successful runs for a slope with an error")
    p = max(p1, p2)
    flagged = bool(p < level)
    verdict = ("flagged: P(success) falls with size while successful runs improve" if flagged else
               "not flagged: " + ("P(success) does not clearly fall" if p1 >= level else
                                  "successful runs do not clearly improve"))
    return InverseScaling(True, flagged, p, p1, p2, s1, s2, level, verdict + f" (p = {p:.3g})")


# --------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------


@dataclass
class SeedDistributionResults:
    """What :func:`seed_distributions` found; see the module docstring.

    ``table``: one row per size (columns in :data:`TABLE_COLUMNS`);
    ``psuccess_fit``: :class:`PSuccessFit` or None (fewer than 2 sizes);
    ``inverse_scaling``: :class:`InverseScaling`; ``threshold`` and
    ``threshold_rule``; ``pooled_mixture`` (:class:`Mixture` of all runs, or
    None); ``mixtures``: the per-size :class:`Mixture` fits by N;
    ``runs``: the validated runs (N, seed, value, success); ``warnings``;
    ``bounds``: the metric's range used for the means' intervals (None:
    unbounded), see :func:`_t_ci`; ``n_perm``: permutations per
    Wasserstein test; ``sizes_not_runs``: the "sizes, not runs" warning
    (module docstring) when it applies, else None (it is also in
    ``warnings``).
    """

    table: pd.DataFrame
    psuccess_fit: Optional[PSuccessFit]
    inverse_scaling: InverseScaling
    threshold: float
    threshold_rule: str
    pooled_mixture: Optional[Mixture]
    mixtures: dict
    runs: pd.DataFrame
    warnings: list = field(default_factory=list)
    level: float = 0.05
    n_boot: int = 2000
    value_name: str = "value"
    bounds: Optional[tuple] = None
    n_perm: int = 999
    sizes_not_runs: Optional[str] = None

    def _mean_interval_text(self) -> str:
        if self.bounds is None:
            return "Student t"
        lo, hi = self.bounds
        return f"Student t on the logit scale within [{lo:g}, {hi:g}]"

    def summary(self) -> str:
        lvl = int(round(100 * (1 - self.level)))
        t = self.table
        lines = [f"Distributions of {self.value_name!r} across seeds (Zhao et al. 2025)", "=" * 78,
                 f"success: {self.value_name} >= {self.threshold:.4g}  ({self.threshold_rule})",
                 f"intervals: {lvl}%  (P(success): Wilson; means: {self._mean_interval_text()}; "
                 f"mode: percentile bootstrap, {self.n_boot} resamples)",
                 "-" * 78]

        def ci(v, lo, hi, fmt=".3g"):
            if not np.isfinite(v):
                return "-"
            if not (np.isfinite(lo) and np.isfinite(hi)):
                return f"{v:{fmt}} [no interval]"
            return f"{v:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"

        rows = []
        for r in t.to_dict("records"):
            dip = "-" if r["dip_pvalue"] is None or not np.isfinite(r["dip_pvalue"]) else (
                f"{r['dip_pvalue']:.3g}" + ("*" if r["n_seeds"] < LOW_POWER_SEEDS else ""))
            comps = "-" if not np.isfinite(r["bic1"]) else str(int(r["n_components"]))
            w = "-" if not np.isfinite(r["wasserstein_next"]) else (
                f"{r['wasserstein_next']:.3g} (p={r['wasserstein_pvalue']:.2g})"
                + ("^" if r["wasserstein_min_pvalue"] >= self.level else ""))
            rows.append({"N": f"{r['N']:.4g}", "seeds": str(int(r["n_seeds"])),
                         "mean": ci(r["mean"], r["mean_lower"], r["mean_upper"]),
                         "mode": ci(r["mode"], r["mode_lower"], r["mode_upper"]),
                         "P(success)": f"{int(r['n_success'])}/{int(r['n_seeds'])} "
                                       + ci(r["p_success"], r["p_success_lower"], r["p_success_upper"], ".2f"),
                         "mean|success": ci(r["mean_success"], r["mean_success_lower"], r["mean_success_upper"]),
                         "dip p": dip, "BIC k": comps, "W to next": w})
        lines.append(pd.DataFrame(rows).to_string(index=False))
        if (t["n_seeds"] < LOW_POWER_SEEDS).any():
            lines.append(f"* fewer than {LOW_POWER_SEEDS} seeds: the dip test can hardly reject unimodality")
        if (t["wasserstein_min_pvalue"] >= self.level).any():
            lines.append(f"^ too few runs for this permutation test to reach p < {self.level:g}")
        lines.append("-" * 78)
        if self.psuccess_fit is not None:
            lines.append(self.psuccess_fit.summary())
        else:
            lines.append("P(success) vs size: not fitted (fewer than 2 sizes)")
        inv = self.inverse_scaling
        lines.append(f"inverse scaling: {inv.reason}")
        if self.warnings:
            lines.append("-" * 78)
            lines.append("what these data cannot tell:")
            lines.extend(f"  - {w}" for w in self.warnings)
        lines.append("=" * 78)
        return "\n".join(lines)

    def __str__(self) -> str:  # pragma: no cover - convenience
        return self.summary()

    def to_dict(self) -> dict:
        def cell(v):
            if v is None or v is pd.NA:
                return None
            if isinstance(v, (bool, np.bool_)):
                return bool(v)
            if isinstance(v, (int, np.integer)):
                return int(v)
            if isinstance(v, (float, np.floating)):
                return _jf(v)
            return v

        return {
            "analysis": "seed distributions (Zhao et al. 2025)",
            "value": self.value_name,
            "threshold": _jf(self.threshold),
            "threshold_rule": self.threshold_rule,
            "level": float(self.level),
            "n_boot": int(self.n_boot),
            "n_perm": int(self.n_perm),
            "bounds": None if self.bounds is None else [float(b) for b in self.bounds],
            "mean_interval": self._mean_interval_text(),
            "sizes_not_runs": self.sizes_not_runs,
            "sizes": [{k: cell(v) for k, v in r.items()} for r in self.table.to_dict("records")],
            "pooled_mixture": None if self.pooled_mixture is None else self.pooled_mixture.to_dict(),
            "psuccess_fit": None if self.psuccess_fit is None else self.psuccess_fit.to_dict(),
            "inverse_scaling": self.inverse_scaling.to_dict(),
            "runs": [{"N": float(r["N"]), "seed": cell(r["seed"]) if not isinstance(r["seed"], str) else r["seed"],
                      "value": _jf(r["value"]), "success": bool(r["success"])}
                     for r in self.runs.to_dict("records")],
            "warnings": list(self.warnings),
        }


TABLE_COLUMNS = [
    "N", "n_seeds", "mean", "mean_lower", "mean_upper", "mode", "mode_lower", "mode_upper",
    "n_success", "p_success", "p_success_lower", "p_success_upper",
    "mean_success", "mean_success_lower", "mean_success_upper",
    "dip", "dip_pvalue", "bimodal", "bic1", "bic2", "n_components",
    "mix_w1", "mix_w2", "mix_mu1", "mix_mu2", "mix_sd1", "mix_sd2",
    "wasserstein_next", "wasserstein_pvalue", "wasserstein_min_pvalue",
]


def _sizes_list(Ns) -> str:
    return ", ".join(f"{N:.4g}" for N in Ns)


def _sizes_not_runs(runs: pd.DataFrame, thr: float) -> Optional[str]:
    """The "sizes, not runs" warning (module docstring), or None.

    ``runs``: validated runs with ``success``.  Two findings, the first
    structural, the second about spread: (a) no size has runs on both sides
    of the threshold while some sizes succeed and others fail; (b) the
    threshold cuts through a size, yet every size's runs sit far closer
    together than the failed and successful runs' means are apart.
    """
    g = runs.groupby("N", sort=True)
    n = g["value"].size()
    if len(n) < 2:
        return None
    k = g["success"].sum()
    all_fail, all_succ = n.index[k == 0], n.index[k == n]
    mixed = n.index[(k > 0) & (k < n)]
    succ_v = runs.loc[runs["success"], "value"]
    fail_v = runs.loc[~runs["success"], "value"]
    if succ_v.empty or fail_v.empty:
        return None  # nothing is separated (the Firth warning covers 0 or 1 everywhere)
    means = g["value"].mean().to_numpy()
    gaps = np.abs(np.diff(means))
    sds = g["value"].std(ddof=1).dropna()  # sizes with >= 2 runs
    dist = float(succ_v.mean() - fail_v.mean())
    v = runs["value"].to_numpy()
    ss_tot = float(np.sum((v - v.mean()) ** 2))
    ss_within = float(sum(np.sum((x - x.mean()) ** 2) for _, x in g["value"]))
    share = 1 - ss_within / ss_tot if ss_tot > 0 else math.nan
    if sds.empty:
        spread = "one run per size: nothing here shows how much runs of one size vary"
    else:
        max_sd = float(sds.max())
        size_word = "small" if max_sd * SIZE_GAP_SDS < dist else "not small"
        spread = (f"within-size spread (largest sd {max_sd:.2g}) is {size_word} against the "
                  f"{dist:.2g} between the failed and successful runs' means and the gaps of "
                  f"{gaps.min():.2g} to {gaps.max():.2g} between adjacent sizes' means; size accounts "
                  f"for {100 * share:.4g}% of the variance across runs")
    if mixed.empty:
        return (f"the threshold {thr:.4g} separates model sizes, not runs: no size has runs on both sides "
                f"(all runs fail at N = {_sizes_list(all_fail)}, all succeed at N = {_sizes_list(all_succ)}), "
                "so P(success) is 0 or 1 at every size and the logistic fit describes the gap between "
                f"sizes, not run-to-run variation; {spread}.  Read P(success) as run success only with "
                "sizes whose seeds split")
    if sds.empty or len(sds) < len(n) or not float(sds.max()) * SIZE_GAP_SDS < dist:
        return None
    return (f"the runs cluster by size: {spread}.  So the threshold {thr:.4g} mostly separates model sizes; "
            f"where it cuts through a size (N = {_sizes_list(mixed)}) it splits runs that differ far less "
            "than the sizes do, and two modes in the pooled values are sizes, not failed and successful "
            "runs")


def _choose_threshold(values: np.ndarray, warns: list) -> tuple[float, str, Optional[Mixture]]:
    if values.size < MIN_MIXTURE_SEEDS:
        raise ValueError(f"only {values.size} runs in all: too few to choose a success threshold from the "
                         "data; pass threshold= explicitly")
    try:
        mix = fit_mixture(values)
    except ValueError as exc:
        raise ValueError(f"cannot choose a success threshold from the data ({exc}); "
                         "pass threshold= explicitly") from None
    t, rule = mix.antimode()
    if mix.n_components == 1:
        warns.append("the pooled values show no two clusters (BIC prefers one Gaussian): the chosen threshold "
                     "splits one population, so 'success' is arbitrary; set the threshold explicitly")
    elif not rule.startswith("antimode"):
        warns.append(f"threshold: {rule}")
    return t, rule, mix


def seed_distributions(df: pd.DataFrame, *, value: str = "value", size: str = "N", seed: str = "seed",
                       threshold: Optional[float] = None, n_boot: int = 2000, level: float = 0.05,
                       random_state=0, n_perm: int = 999, bounds="auto") -> SeedDistributionResults:
    """Per-size distributions of ``value`` across seeds, and how they move with size.

    ``df``: one row per (size, seed) run with the columns named by
    ``value``, ``size`` and ``seed``.  ``threshold``: success means
    ``value >= threshold``; None chooses it by the antimode rule (module
    docstring).  ``n_boot``: bootstrap resamples for the mode's interval
    (0: none); ``n_perm``: permutations
    for the Wasserstein tests; ``level``: 1 - the intervals' coverage and the
    tests' level; ``random_state``: seed of the resampling (the results are
    a function of the data and this seed).  ``bounds``: the range the
    metric's values are known to lie in, for the means' intervals ("auto":
    (0, 1) when every value lies in [0, 1]; None: unbounded; or (lo, hi));
    see :func:`_t_ci`.

    Raises ValueError on missing or non-numeric columns (text such as a
    JSON string "0.41" included), sizes <= 0, missing seeds, two rows for
    the same (size, seed), or values outside given ``bounds``; the message
    names the runs (model, size, seed, file where the table has them).
    """
    level = _check_level(level)
    n_boot = int(n_boot)
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    runs = _validate(df, value, size, seed)
    bnd = _resolve_bounds(bounds, runs["value"].to_numpy())
    rng = np.random.default_rng(random_state)
    warns: list[str] = []
    if threshold is None:
        thr, rule, pooled = _choose_threshold(runs["value"].to_numpy(), warns)
    else:
        thr = float(threshold)
        if not math.isfinite(thr):
            raise ValueError(f"threshold must be a finite number, got {threshold!r}")
        rule, pooled = "given", None
    runs["success"] = runs["value"] >= thr
    sizes = np.sort(runs["N"].unique())
    groups = {N: runs.loc[runs["N"] == N, "value"].to_numpy() for N in sizes}
    rows, mixtures = [], {}
    few_dip, few_mix, one_succ = [], [], []
    perm_short: dict[str, list[str]] = {}  # why the test cannot reach the level -> size pairs
    for i, N in enumerate(sizes):
        x = groups[N]
        n = x.size
        row = dict.fromkeys(TABLE_COLUMNS, math.nan)
        row.update(N=float(N), n_seeds=n, bimodal=None)
        row["mean"] = float(x.mean())
        row["mode"] = kde_mode(x) if n >= 3 else math.nan
        k = int(np.sum(x >= thr))
        row["n_success"] = k
        row["p_success"] = k / n
        lo, hi = wilson(n, k, level)
        row["p_success_lower"], row["p_success_upper"] = float(lo), float(hi)
        xs = x[x >= thr]
        row["mean_success"] = float(xs.mean()) if k else math.nan
        row["mean_lower"], row["mean_upper"] = _t_ci(x, level, bnd)
        row["mean_success_lower"], row["mean_success_upper"] = _t_ci(xs, level, bnd)
        if n_boot and n >= 3:
            boot = x[rng.integers(0, n, size=(n_boot, n))]
            row["mode_lower"], row["mode_upper"] = _percentile_ci(_kde_modes(boot, grid_size=128), level)
        if k == 1:
            one_succ.append(N)
        row["dip"], row["dip_pvalue"], row["bimodal"] = dip_test(x, level)
        if n < LOW_POWER_SEEDS:
            few_dip.append((N, n))
        if n >= MIN_MIXTURE_SEEDS and np.ptp(x) > 0:
            mix = fit_mixture(x)
            mixtures[float(N)] = mix
            row.update(bic1=mix.bic1, bic2=mix.bic2, n_components=mix.n_components,
                       mix_w1=mix.weights[0], mix_w2=mix.weights[1], mix_mu1=mix.means[0],
                       mix_mu2=mix.means[1], mix_sd1=mix.sds[0], mix_sd2=mix.sds[1])
        elif n < MIN_MIXTURE_SEEDS:
            few_mix.append((N, n))
        if i + 1 < len(sizes):
            y = groups[sizes[i + 1]]
            w, p = wasserstein_test(x, y, n_perm=n_perm, rng=rng)
            row["wasserstein_next"], row["wasserstein_pvalue"] = w, p
            row["wasserstein_min_pvalue"] = permutation_min_pvalue(n, y.size, n_perm)
            if row["wasserstein_min_pvalue"] >= level:
                why = f"{n} vs {y.size} runs: {_permutation_limit_text(n, y.size, n_perm)}"
                perm_short.setdefault(why, []).append(f"N = {N:.4g} vs {sizes[i + 1]:.4g}")
        rows.append(row)
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    table["n_seeds"] = table["n_seeds"].astype(np.int64)
    table["n_success"] = table["n_success"].astype(np.int64)
    table["bimodal"] = table["bimodal"].astype(object)
    if few_dip:
        warns.append("only " + ", ".join(f"{n} seeds at size {N:.4g}" for N, n in few_dip)
                     + f": the dip test has almost no power below {LOW_POWER_SEEDS} seeds "
                     "(not bimodal here means not shown bimodal)"
                     + (f"; below {MIN_DIP_SEEDS} it is not run" if any(n < MIN_DIP_SEEDS for _, n in few_dip) else ""))
    if few_mix:
        warns.append(f"no mixture fit at size(s) {', '.join(f'{N:.4g}' for N, _ in few_mix)}: "
                     f"fewer than {MIN_MIXTURE_SEEDS} seeds for 5 mixture parameters")
    if one_succ:
        warns.append(f"a single successful run at size(s) {', '.join(f'{N:.4g}' for N in one_succ)}: "
                     "no interval for the mean of successful runs")
    if perm_short:
        warns.append(f"the permutation test of 'same distribution' between adjacent sizes cannot reach "
                     f"p < {level:g} with these runs: "
                     + "; ".join(f"{' and '.join(pairs)} ({why})" for why, pairs in perm_short.items())
                     + ": a p-value above the level there is no evidence that the sizes agree")
    sizes_warning = _sizes_not_runs(runs, thr)
    if sizes_warning is not None:
        warns.append(sizes_warning)
    fit = None
    if len(sizes) >= 2:
        n_arr = table["n_seeds"].to_numpy()
        k_arr = table["n_success"].to_numpy()
        fit = fit_psuccess(sizes, n_arr, k_arr, alpha=level)
        if fit.method == "firth":
            warns.append("P(success) separates perfectly across sizes (or is 0 or 1 everywhere): "
                         "no maximum-likelihood fit exists; Firth's penalized fit is shown, and its "
                         "slope is set by the penalty as much as by the data")
        if fit.df_resid == 0:
            warns.append("only 2 sizes: the P(success) curve passes through both exactly; "
                         "nothing checks its logistic shape")
        up, down = trend_min_pvalue(n_arr, k_arr)
        K, total = int(k_arr.sum()), int(n_arr.sum())
        if 0 < K < total and min(1.0, 2 * min(up, down)) >= level:
            warns.append(f"with {K} successful of {total} runs at these sizes, an exact test of a trend in "
                         f"P(success) with size cannot give p below {min(up, down):.2g} one-sided "
                         f"({min(1.0, 2 * min(up, down)):.2g} two-sided), not below the level {level:g}: "
                         "the fit's p-values for log_N (and the inverse-scaling check built on them) are "
                         "large-sample approximations these runs cannot back")
        if (n_arr.sum() < 20):
            warns.append(f"only {int(n_arr.sum())} runs in all: every interval above is wide, "
                         "and point estimates say little on their own")
    else:
        warns.append("a single size: no P(success) curve, no Wasserstein distances, no inverse-scaling check")
    inv = _inverse_scaling(fit, runs, thr, level)
    return SeedDistributionResults(table=table, psuccess_fit=fit, inverse_scaling=inv, threshold=float(thr),
                                   threshold_rule=rule, pooled_mixture=pooled, mixtures=mixtures, runs=runs,
                                   warnings=warns, level=level, n_boot=n_boot, value_name=value,
                                   bounds=bnd, n_perm=int(n_perm), sizes_not_runs=sizes_warning)


def dip_test(x, level: float = 0.05) -> tuple[float, float, Optional[bool]]:
    """Hartigan's dip test of unimodality: (dip, p-value, bimodal).

    ``bimodal`` is ``p < level``; with fewer than :data:`MIN_DIP_SEEDS`
    values the test is not run and the result is (NaN, NaN, None).  The
    p-value is interpolated from the ``diptest`` package's tables, which are
    computed under the uniform (least favourable unimodal) null.
    """
    import diptest

    x = np.asarray(x, float)
    level = _check_level(level)
    if x.size < MIN_DIP_SEEDS:
        return math.nan, math.nan, None
    dip, p = diptest.diptest(x)
    return float(dip), float(p), bool(p < level)


# --------------------------------------------------------------------------
# seeds from run names
# --------------------------------------------------------------------------

_SEED_RE = re.compile(r"(?:^|[^a-z0-9])seed[-_=]?(\d+)(?![0-9])", re.IGNORECASE)


def parse_seed(name: str) -> Optional[int]:
    """The training seed written in a model name or path, or None.

    Recognizes ``seed`` followed by an optional ``-``, ``_`` or ``=`` and
    digits, not preceded by a letter or digit: ``pythia-160m-seed3``,
    ``runs/seed_2/final``, ``model,seed=7``.  The last match wins (the
    innermost path component names the run).  ``s3`` alone is not read: too
    easy to confuse with a step or a size.
    """
    found = _SEED_RE.findall(str(name))
    return int(found[-1]) if found else None
