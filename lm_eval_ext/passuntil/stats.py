"""Statistics for PassUntil (Hu et al. 2023, "Predicting Emergent Abilities
with Infinite Resolution Evaluation").

PassUntil estimates a per-instance pass probability ``p`` ("PU") that may be
far below the ``1/n`` resolution of an ordinary fixed-budget evaluation, by
sampling until a passing sample appears.  This module holds only the
statistics: estimators, exact intervals and the task-level aggregate.  It
depends on numpy and scipy only and keeps no global state (apart from a cache
of each sequential design's table of open states).

Two sampling designs appear here:

* **fixed budget**: draw ``n`` samples, observe ``c`` passes.  ``c ~
  Binomial(n, p)``; ``c/n`` is unbiased and Clopper-Pearson is the exact
  interval.
* **sequential ("sample until r passes")**: draw until the ``r``-th pass,
  which happens at sample ``K``.  ``K - r ~ NegativeBinomial(r, p)``.  The
  paper's ``r/K`` is biased upward; ``(r-1)/(K-1)`` (Haldane 1945, called
  ``pu_rK`` in outputs) is unbiased for ``r >= 2``.
* **group-sequential** (what the adaptive engine does): samples are drawn in
  rounds whose sizes depend on what was seen, and the stopping rule is checked
  only at the end of a round, so samples after the r-th pass are drawn too.
  :func:`pu_sequential` is the estimator the product reports for it: the
  Rao-Blackwellisation of Haldane's estimator given the sufficient statistic
  ``(n, c)`` and the design.  It uses every sample, is exactly unbiased, and
  its SD is at most Haldane's; ``c/n`` (the MLE) is biased upward there by
  10-65% (exact enumeration, r = 2-3, p = 1e-3..0.3;
  ``bench/pu_estimators.py``).

All counting arguments must be whole numbers.  Python ints, numpy integer
arrays and integer-valued floats (e.g. counts that went through a pandas
column with missing values) are accepted; ``2.5``, NaN, inf and booleans are
rejected with a ``ValueError`` naming the argument, so a bad count never turns
into a silent NaN.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Iterable, Optional, Protocol, Sequence

import numpy as np
from scipy import special, stats

__all__ = [
    "pass_at_k",
    "pass_at_k_all",
    "pu_fixed",
    "pu_paper",
    "pu_unbiased",
    "pu_sequential",
    "SequentialDesign",
    "DesignTooLarge",
    "samples_to_r_passes",
    "clopper_pearson",
    "wilson",
    "negbin_interval",
    "InstanceEstimate",
    "estimate_instance",
    "TaskEstimate",
    "task_pu",
]

_ALTERNATIVES = ("two-sided", "less", "greater")
_METHODS = ("clopper-pearson", "wilson")

# Above this many factors a single pass@k product is summed with numpy's
# pairwise summation (error ~ log2(m) eps); below it, many small products are
# summed together in one flat, vectorised pass.
_PAIRWISE_THRESHOLD = 256
_FLAT_CHUNK_ELEMENTS = 16384  # <= 16384 * 256 = 4M terms per flat chunk


# --------------------------------------------------------------------------
# input validation
# --------------------------------------------------------------------------


def _as_int_array(value, name: str) -> np.ndarray:
    """Return ``value`` as an int64 array, or raise a ValueError naming it.

    Integer-valued floats are accepted because counts often pass through
    float columns; anything else that is not a whole number is an error rather
    than something to round, since a fractional count means the caller mixed
    up arguments.
    """
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be an integer, got a boolean ({value!r})")
    try:
        arr = np.asarray(value)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise ValueError(f"{name} must be an integer or array of integers") from exc
    if arr.dtype == bool:
        raise ValueError(f"{name} must be an integer, got a boolean array")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty")
    if np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.int64, copy=False)
    if np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr)
        if bad.any():
            raise ValueError(
                f"{name} must be a finite integer, got {arr[bad].flat[0]!r}"
            )
        frac = arr != np.floor(arr)
        if frac.any():
            raise ValueError(
                f"{name} must be an integer, got non-integer {arr[frac].flat[0]!r}"
            )
        if np.abs(arr).max() > 2**53:
            raise ValueError(f"{name} is too large to be represented exactly")
        return arr.astype(np.int64)
    raise ValueError(
        f"{name} must be an integer or array of integers, got dtype {arr.dtype}"
    )


def _as_int(value, name: str) -> int:
    """Scalar version of :func:`_as_int_array`."""
    arr = _as_int_array(value, name)
    if arr.ndim != 0:
        raise ValueError(f"{name} must be a scalar integer, got shape {arr.shape}")
    return int(arr)


def _require(cond: np.ndarray, message: str, *values: np.ndarray) -> None:
    """Raise ``ValueError(message)`` if ``cond`` fails anywhere.

    ``message`` is formatted with the first offending element of each of
    ``values`` so an array error still names concrete numbers.
    """
    cond = np.asarray(cond)
    if not cond.all():
        idx = np.flatnonzero(~cond.ravel())[0]
        shown = [
            int(np.broadcast_to(v, cond.shape).ravel()[idx]) for v in values
        ]
        raise ValueError(message.format(*shown))


def _check_alpha(alpha) -> float:
    """Reject alphas for which an interval is meaningless (and would be NaN)."""
    try:
        a = float(alpha)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}") from exc
    if not (0.0 < a < 1.0):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return a


def _tail_levels(alpha: float, alternative: str) -> tuple[float, float]:
    """Probability left in the (lower, upper) tail for an interval.

    ``alternative`` follows scipy.stats.binomtest: "less" gives ``[0, upper]``
    at one-sided level ``1 - alpha``; "greater" gives ``[lower, 1]``.
    """
    if alternative == "two-sided":
        return alpha / 2.0, alpha / 2.0
    if alternative == "less":
        return 0.0, alpha
    if alternative == "greater":
        return alpha, 0.0
    raise ValueError(
        f"alternative must be one of {_ALTERNATIVES}, got {alternative!r}"
    )


def _out(x: np.ndarray, scalar: bool):
    """Return a Python float for scalar inputs, else the array."""
    return float(x) if scalar else x


def _broadcast_counts(**named) -> tuple[list[np.ndarray], bool]:
    """Validate integer arguments and broadcast them together."""
    arrays = [_as_int_array(v, k) for k, v in named.items()]
    scalar = all(a.ndim == 0 for a in arrays)
    try:
        arrays = list(np.broadcast_arrays(*arrays))
    except ValueError as exc:
        raise ValueError(
            f"{', '.join(named)} have shapes that cannot be broadcast together: "
            f"{[a.shape for a in arrays]}"
        ) from exc
    return arrays, scalar


def _check_n_c(n: np.ndarray, c: np.ndarray) -> None:
    _require(n >= 1, "n must be >= 1 (number of samples), got n={}", n)
    _require(c >= 0, "c must be >= 0 (number of passes), got negative c={}", c)
    _require(c <= n, "c must be <= n (more passes than samples): c={} > n={}", c, n)


# --------------------------------------------------------------------------
# pass@k
# --------------------------------------------------------------------------


def _log1m_ratio(a: np.ndarray, i: np.ndarray) -> np.ndarray:
    """``log(1 - a/i)`` for integers ``0 <= a < i``, accurate to a few ulp.

    ``log1p(-a/i)`` is accurate while ``a/i`` is small but loses digits as
    ``a/i -> 1`` (``1 - a/i`` cancels); there ``log((i-a)/i)`` is exact up to
    rounding because ``i - a`` is an exact integer.  (This only matters for
    the complement ``1 - pass@k``, which is then tiny; pass@k itself is near 1
    in that regime and would be fine either way.)
    """
    a = a.astype(np.float64)
    i = i.astype(np.float64)
    x = a / i
    return np.where(x < 0.5, np.log1p(-x), np.log((i - a) / i))


def _sum_log_ratio(n: np.ndarray, m: np.ndarray, big_m: np.ndarray) -> np.ndarray:
    """``sum_{i=n-m+1}^{n} log(1 - M/i)`` per element (1-D inputs, m >= 1)."""
    out = np.empty(n.shape, dtype=np.float64)
    big = m > _PAIRWISE_THRESHOLD
    for j in np.flatnonzero(big):  # few elements, each O(m) work anyway
        i = np.arange(n[j] - m[j] + 1, n[j] + 1, dtype=np.int64)
        out[j] = np.sum(_log1m_ratio(np.full(i.shape, big_m[j]), i))
    small = np.flatnonzero(~big)
    for start in range(0, small.size, _FLAT_CHUNK_ELEMENTS):
        idx = small[start : start + _FLAT_CHUNK_ELEMENTS]
        mm = m[idx]
        total = int(mm.sum())
        owner = np.repeat(np.arange(idx.size), mm)
        offset = np.arange(total) - np.repeat(np.cumsum(mm) - mm, mm)
        i = np.repeat(n[idx] - mm + 1, mm) + offset
        terms = _log1m_ratio(np.repeat(big_m[idx], mm), i)
        out[idx] = np.bincount(owner, weights=terms, minlength=idx.size)
    return out


def pass_at_k(n, c, k):
    """Unbiased pass@k of Chen et al. (2021): ``1 - C(n-c, k) / C(n, k)``.

    The probability that at least one of ``k`` samples drawn without
    replacement from ``n`` samples (``c`` of them passing) passes.  Inputs
    broadcast; scalars give a float, arrays an ndarray.

    Why not the textbook formula: the binomials overflow, and the log-gamma
    form ``1 - exp(lgamma(...) - ...)`` cancels catastrophically when the
    answer is small (n = 10**6, c = 1, k = 1 would keep ~3 digits).  We use

        C(n-c, k) / C(n, k) = prod_{i=n-m+1}^{n} (1 - M/i),
        m = min(c, k), M = max(c, k),

    (the product is symmetric in c and k, so only ``min(c, k)`` factors are
    needed), sum the logs of the factors, and return ``-expm1(sum)``.  Every
    term has relative error of a few ulp and all terms share a sign, so the
    result is accurate to ~1e-13 relative even when it is ~1e-6.  When
    ``n - c < k`` every draw of ``k`` contains a pass and the result is 1.
    """
    (n, c, k), scalar = _broadcast_counts(n=n, c=c, k=k)
    _check_n_c(n, c)
    _require(k >= 1, "k must be >= 1, got k={}", k)
    _require(k <= n, "k must be <= n (cannot draw more samples than exist): k={} > n={}", k, n)

    shape = n.shape
    n, c, k = n.ravel(), c.ravel(), k.ravel()
    out = np.zeros(n.shape, dtype=np.float64)  # c == 0 -> 0 exactly
    certain = n - c < k
    out[certain] = 1.0
    todo = np.flatnonzero(~certain & (c > 0))
    if todo.size:
        m = np.minimum(c[todo], k[todo])
        big_m = np.maximum(c[todo], k[todo])
        out[todo] = -np.expm1(_sum_log_ratio(n[todo], m, big_m))
    return _out(out.reshape(shape), scalar)


def pass_at_k_all(n, c) -> np.ndarray:
    """pass@k for every ``k = 1..n`` at once, in O(n); ``result[k-1]`` is pass@k.

    Uses ``C(n-c, k)/C(n, k) = prod_{j=0}^{k-1} (1 - c/(n-j))``: the log of
    the ratio for successive k is a cumulative sum, so the whole curve costs
    one pass instead of n separate products.  Terms are summed from the
    smallest magnitude up; the relative error grows at most like ``k * eps``
    (in practice far less), which is ample for plotting or fitting.  For
    ``k > n - c`` the value is exactly 1.
    """
    n = _as_int(n, "n")
    c = _as_int(c, "c")
    _check_n_c(np.asarray(n), np.asarray(c))
    out = np.ones(n, dtype=np.float64)
    if c == 0:
        out[:] = 0.0
        return out
    i = np.arange(n, c, -1, dtype=np.int64)  # n, n-1, ..., c+1  (n - c terms)
    log_ratio = np.cumsum(_log1m_ratio(np.full(i.shape, c), i))
    out[: n - c] = -np.expm1(log_ratio)
    return out


# --------------------------------------------------------------------------
# per-instance point estimators
# --------------------------------------------------------------------------


def pu_fixed(n, c):
    """Fixed-budget estimator ``c / n``: unbiased for p when n is fixed in advance.

    Its resolution is ``1/n``: any p well below that is usually estimated as 0,
    which is the problem PassUntil addresses.
    """
    (n, c), scalar = _broadcast_counts(n=n, c=c)
    _check_n_c(n, c)
    return _out(c / n, scalar)


def _check_r_k(r: np.ndarray, K: np.ndarray) -> None:
    _require(r >= 1, "r must be >= 1 (number of passes to wait for), got r={}", r)
    _require(
        K >= r,
        "K must be >= r (the r-th pass cannot come before sample r): K={} < r={}",
        K,
        r,
    )


def pu_paper(r, K):
    """The paper's sequential estimator ``r / K``.

    ``K`` is the (1-based) index of the sample giving the r-th pass.  This is
    the maximum-likelihood estimate, but because ``E[1/K] > 1/E[K]`` (Jensen)
    it is biased upward, badly so for small r (for r = 1 the bias is of order
    ``p log(1/p)``).  Kept for reproducing the paper; prefer
    :func:`pu_unbiased`.
    """
    (r, K), scalar = _broadcast_counts(r=r, K=K)
    _check_r_k(r, K)
    return _out(r / K, scalar)


def pu_unbiased(r, K):
    """Unbiased sequential estimator ``(r - 1) / (K - 1)`` (Haldane 1945).

    For inverse binomial sampling (stop at the r-th pass, which is sample K)
    this is the minimum-variance unbiased estimator of p, valid for r >= 2.

    r = 1 is rejected: with a single pass the only unbiased estimator is the
    indicator ``1{K == 1}`` (0 or 1), useless for PU, and the formula itself
    is 0/0 at K = 1.  Use ``pu_paper(1, K)`` knowingly, or sample to r >= 2.
    """
    (r, K), scalar = _broadcast_counts(r=r, K=K)
    _require(
        r >= 2,
        "pu_unbiased requires r >= 2, got r={}: with one pass the only unbiased "
        "estimator of p is the 0/1 indicator 1{{K == 1}} (and (r-1)/(K-1) is 0/0 "
        "at K = 1); sample until r >= 2 passes or use pu_paper(1, K)",
        r,
    )
    _check_r_k(r, K)
    return _out((r - 1) / (K - 1), scalar)


class SequentialDesign(Protocol):
    """A per-instance group-sequential design, as the adaptive engine runs it.

    ``batch(round, n, c)``: samples the round draws when ``n`` samples with
    ``c`` passes are in hand (> 0 while the instance is open);
    ``stops(n, c)``: whether the instance stops at the end of a round with
    ``(n, c)``.  It must stop whenever ``c >= r`` (so an open instance has
    fewer than ``r`` passes) and whenever ``n`` reaches a finite cap.
    ``r_or_cap``: True when it stops *only* then (no other rule, batches cut
    at the cap), which lets :func:`pu_sequential` start from Haldane's
    estimator.  The design must be hashable (a frozen dataclass): its table of
    open states is computed once and cached.
    """

    r: int
    r_or_cap: bool

    def batch(self, round_index: int, n: int, c: int) -> int: ...

    def stops(self, n: int, c: int) -> bool: ...


_MAX_ROUNDS = 200
# Path counting costs about (open states) x r transitions; designs beyond
# this (r in the hundreds, e.g. precision-only rules) are refused, and the
# caller reports c/n, whose bias is O(1/c) when c is that large.
_MAX_TRANSITIONS = 200_000
_OPEN_STATES: dict = {}


class DesignTooLarge(ValueError):
    """The design has too many open states for exact path counting."""


def _open_states(design) -> list[dict]:
    """Per round, the open states ``(n, c) -> [m, N, N1]``: the round's batch
    ``m``, the number of outcome sequences reaching the state, and of those
    whose first sample passed (``N1``; None at the start, before any sample).
    Counts are exact integers: they are binomial coefficients' products."""
    table = _OPEN_STATES.get(design)
    if isinstance(table, Exception):
        raise table
    if table is not None:
        return table
    table, states, work = [], {(0, 0): [None, 1, None]}, 0
    for k in range(_MAX_ROUNDS):
        work += len(states) * design.r
        if work > _MAX_TRANSITIONS:
            _OPEN_STATES[design] = DesignTooLarge(
                f"the design has too many open states for exact path counting (r = {design.r})")
            raise _OPEN_STATES[design]
        if not states:
            break
        nxt: dict = {}
        for (n, c), st in states.items():
            m = int(design.batch(k, n, c))
            if m < 1:
                raise ValueError(f"the design draws {m} samples at round {k} with n={n}, c={c}; "
                                 "an open instance must draw at least one")
            st[0] = m
            _, N, N1 = st
            for j in range(0, min(m, design.r - 1 - c) + 1):
                if design.stops(n + m, c + j):
                    continue
                w = math.comb(m, j)
                a = N * w
                b = (math.comb(m - 1, j - 1) if j else 0) if n == 0 else N1 * w
                cur = nxt.setdefault((n + m, c + j), [None, 0, 0])
                cur[1] += a
                cur[2] += b
        table.append(states)
        states = nxt
    else:
        raise ValueError(f"the design never stops within {_MAX_ROUNDS} rounds (no finite cap?)")
    _OPEN_STATES[design] = table
    return table


def pu_sequential(n, c, design: SequentialDesign) -> float:
    """Unbiased PU of one instance sampled by a group-sequential design.

    ``(n, c)`` is sufficient for p whatever the stopping rule (the likelihood
    is ``p^c (1-p)^(n-c)``), so conditioning any unbiased estimator on it
    gives an unbiased one that uses every sample, including those a round
    drew after the r-th pass (Rao-Blackwell).  The sufficient statistic is not
    complete under such designs, so the starting estimator matters:

    * designs that stop only at the r-th pass or at a cap (``r_or_cap``, the
      engine's default): ``E[T | n, c]`` with ``T`` Haldane's
      ``(r-1)/(K-1)`` when the r-th pass came and ``c/n`` at the cap, which
      is unbiased for every design with these stops (Girshick, Mosteller and
      Savage 1946).  Its SD is at most T's (0.63-0.92 of it for r = 2, 0.82-0.98 for r = 3, exact
      enumeration in ``bench/pu_estimators.py``).  The average runs over the
      sampling paths the design stops at ``(n, c)``: where in the last round
      the r-th pass fell.
    * other designs (e.g. a precision rule): ``E[X_1 | n, c]``, the fraction of
      those paths whose first sample passed.

    For a fixed budget both are ``c/n``; for one-at-a-time sampling until the
    r-th pass, ``(r-1)/(K-1)``.  Raises ValueError when the design cannot stop
    at ``(n, c)`` (e.g. a global budget cut the instance's schedule short):
    the estimator is then undefined.
    """
    n = _as_int(n, "n")
    c = _as_int(c, "c")
    _check_n_c(np.asarray(n), np.asarray(c))
    if not design.stops(n, c):
        raise ValueError(f"the design does not stop at n={n}, c={c}")
    return _pu_sequential(design, n, c)


@functools.lru_cache(maxsize=None)
def _open_states_ending_at(design: SequentialDesign) -> dict[int, list[tuple]]:
    """:func:`_open_states` indexed by where the state's round ends (n0 + m)."""
    ends: dict[int, list[tuple]] = {}
    for states in _open_states(design):
        for (n0, c0), (m, N, N1) in states.items():
            ends.setdefault(n0 + m, []).append((n0, c0, m, N, N1))
    return ends


@functools.lru_cache(maxsize=1 << 16)  # instances of a task share (n, c) often
def _pu_sequential(design: SequentialDesign, n: int, c: int) -> float:
    r = design.r
    haldane = bool(getattr(design, "r_or_cap", False))
    if haldane and c < r:
        return c / n  # a cap stop: T = c/n on every path here
    weights, values = [], []  # per open state leading here: its paths, and E[T | them]
    for n0, c0, m, N, N1 in _open_states_ending_at(design).get(n, ()):
        j = c - c0
        if not 0 <= j <= m:
            continue
        w = N * math.comb(m, j)
        weights.append(w)
        if not haldane:
            values.append(j / m if n0 == 0 else N1 / N)  # the first-pass paths' share (N = 1 at the start)
            continue
        # The r-th pass is the s-th pass of this round, at its position i:
        # comb(i-1, s-1) comb(m-i, j-s) of the comb(m, j) arrangements.
        s = r - c0
        i = np.arange(s, m - (j - s) + 1, dtype=np.float64)
        logw = (special.gammaln(i) - special.gammaln(s) - special.gammaln(i - s + 1)
                + special.gammaln(m - i + 1) - special.gammaln(j - s + 1) - special.gammaln(m - i - j + s + 1)
                - (special.gammaln(m + 1) - special.gammaln(j + 1) - special.gammaln(m - j + 1)))
        values.append(float(np.sum(np.exp(logw) * (r - 1) / (n0 + i - 1))))
    total = sum(weights)
    if total == 0:
        raise ValueError(f"the design cannot stop at n={n}, c={c}: no sampling path leads there")
    return float(sum((w / total) * v for w, v in zip(weights, values)))  # w / total: exact ints, rounded once


def samples_to_r_passes(outcomes: Sequence, r) -> Optional[int]:
    """1-based index ``K`` of the r-th pass in an ordered 0/1 outcome sequence.

    Returns None if the sequence has fewer than r passes.  This replays a
    fixed-budget run (samples in generation order) as the sequential design,
    so the two designs can be compared on the same samples.  Only the order
    of generation is meaningful: shuffling first changes K.
    """
    r = _as_int(r, "r")
    if r < 1:
        raise ValueError(f"r must be >= 1 (number of passes to wait for), got r={r}")
    arr = np.asarray(outcomes)
    if arr.ndim != 1:
        raise ValueError(f"outcomes must be a 1-D sequence of 0/1, got shape {arr.shape}")
    if arr.size == 0:
        return None
    if arr.dtype != bool:
        if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise ValueError(f"outcomes must be 0/1 values, got dtype {arr.dtype}")
        bad = (arr != 0) & (arr != 1)
        if bad.any():
            raise ValueError(
                f"outcomes must be 0/1 values, got {arr[bad][0]!r} at index "
                f"{int(np.flatnonzero(bad)[0])}"
            )
    passes = np.flatnonzero(arr.astype(bool))
    if passes.size < r:
        return None
    return int(passes[r - 1]) + 1


# --------------------------------------------------------------------------
# intervals
# --------------------------------------------------------------------------


def clopper_pearson(n, c, alpha: float = 0.05, *, alternative: str = "two-sided"):
    """Exact (Clopper-Pearson) interval for a binomial p from ``c`` of ``n``.

    Inverts the two one-sided binomial tests, so coverage is at least
    ``1 - alpha`` for every p (conservative).  Bounds are beta quantiles:
    ``lower = Beta(c, n-c+1).ppf(a_lo)`` (0 when c = 0) and
    ``upper = Beta(c+1, n-c).isf(a_hi)`` (1 when c = n), with ``a_lo = a_hi =
    alpha/2`` two-sided.  ``alternative="less"`` gives the one-sided
    ``[0, upper]`` at level ``1 - alpha``; for c = 0 that upper bound is
    ``1 - alpha**(1/n)``.  Returns ``(lower, upper)``; inputs broadcast.
    """
    alpha = _check_alpha(alpha)
    a_lo, a_hi = _tail_levels(alpha, alternative)
    (n, c), scalar = _broadcast_counts(n=n, c=c)
    _check_n_c(n, c)
    with np.errstate(all="ignore"):
        if a_lo > 0:
            lower = stats.beta.ppf(a_lo, np.maximum(c, 1), n - c + 1)
            lower = np.where(c == 0, 0.0, lower)
        else:
            lower = np.zeros(n.shape)
        if a_hi > 0:
            upper = stats.beta.isf(a_hi, c + 1, np.maximum(n - c, 1))
            upper = np.where(c == n, 1.0, upper)
        else:
            upper = np.ones(n.shape)
    return _out(np.asarray(lower, float), scalar), _out(np.asarray(upper, float), scalar)


def wilson(n, c, alpha: float = 0.05, *, alternative: str = "two-sided"):
    """Wilson score interval for a binomial p from ``c`` of ``n``.

    Approximate, but its coverage stays near nominal (unlike the Wald interval)
    and it is never degenerate at c = 0 or c = n.  Unlike Clopper-Pearson it
    can under-cover for some p, so it is offered as the shorter alternative,
    not the default.  ``alternative`` as in :func:`clopper_pearson`.
    Returns ``(lower, upper)``; inputs broadcast.
    """
    alpha = _check_alpha(alpha)
    a_lo, a_hi = _tail_levels(alpha, alternative)
    (n, c), scalar = _broadcast_counts(n=n, c=c)
    _check_n_c(n, c)
    n_f, c_f = n.astype(float), c.astype(float)

    def bounds(a):
        z = stats.norm.isf(a)
        z2 = z * z
        denom = n_f + z2
        centre = (c_f + z2 / 2.0) / denom
        half = z * np.sqrt(c_f * (n_f - c_f) / n_f + z2 / 4.0) / denom
        return centre - half, centre + half

    lower = np.zeros(n.shape)
    upper = np.ones(n.shape)
    if a_lo > 0:
        lower = np.where(c == 0, 0.0, np.clip(bounds(a_lo)[0], 0.0, 1.0))
    if a_hi > 0:
        upper = np.where(c == n, 1.0, np.clip(bounds(a_hi)[1], 0.0, 1.0))
    return _out(np.asarray(lower, float), scalar), _out(np.asarray(upper, float), scalar)


def negbin_interval(r, K, alpha: float = 0.05, *, alternative: str = "two-sided"):
    """Exact interval for p from the sequential design (r-th pass at sample K).

    ``K - r`` is negative binomial.  The identity ``P(K <= k) = P(Binomial(k,
    p) >= r)`` (the r-th pass is by sample k iff the first k samples hold at
    least r passes) turns each one-sided negative-binomial test into a
    binomial tail, so the exact (Clopper-Pearson-type) inversion is:

    * lower: ``P_p(K <= K_obs) = a_lo``, i.e. the Clopper-Pearson lower bound
      for ``r`` passes in ``K`` samples, ``Beta(r, K-r+1).ppf(a_lo)``;
    * upper: ``P_p(K >= K_obs) = a_hi``, i.e. ``P(Binomial(K-1, p) <= r-1) =
      a_hi``, the Clopper-Pearson upper bound for ``r-1`` passes in ``K-1``
      samples, ``Beta(r, K-r).isf(a_hi)`` (1 when K = r).

    Note this is *not* Clopper-Pearson on (K, r): the upper bound uses
    (K-1, r-1) because the last sample is a pass by construction.  Coverage is
    at least ``1 - alpha`` for every p.  Returns ``(lower, upper)``.
    """
    alpha = _check_alpha(alpha)
    a_lo, a_hi = _tail_levels(alpha, alternative)
    (r, K), scalar = _broadcast_counts(r=r, K=K)
    _check_r_k(r, K)
    with np.errstate(all="ignore"):
        if a_lo > 0:
            lower = stats.beta.ppf(a_lo, r, K - r + 1)
        else:
            lower = np.zeros(r.shape)
        if a_hi > 0:
            upper = stats.beta.isf(a_hi, r, np.maximum(K - r, 1))
            upper = np.where(K == r, 1.0, upper)
        else:
            upper = np.ones(r.shape)
    return _out(np.asarray(lower, float), scalar), _out(np.asarray(upper, float), scalar)


# --------------------------------------------------------------------------
# per-instance estimate
# --------------------------------------------------------------------------


def _json_float(x) -> Optional[float]:
    if x is None:
        return None
    x = float(x)
    if not math.isfinite(x):  # defensive: constructors never produce this
        raise ValueError(f"non-finite value {x!r} cannot be written as JSON")
    return x


@dataclass(frozen=True)
class InstanceEstimate:
    """PU estimate for one instance (one prompt).

    ``estimate`` is None exactly when the instance is censored (no pass seen):
    a 0 would be a claim that p = 0 and would make ``log(-log PU)`` infinite
    downstream.  Censored instances carry only the one-sided upper bound.
    ``r``/``K`` are set when the sequential design was used (``K`` is None if
    the budget ran out before the r-th pass).  ``alpha`` and ``method``
    record how ``lower``/``upper`` were computed.
    """

    n: int
    c: int
    estimate: Optional[float]
    lower: float
    upper: float
    censored: bool
    r: Optional[int] = None
    K: Optional[int] = None
    alpha: float = 0.05
    method: str = "clopper-pearson"
    #: which point estimator ``estimate`` is: "c/n", "(r-1)/(K-1)", "r/K" or
    #: "rao-blackwell" (:func:`pu_sequential`, the engine's)
    estimator: str = "c/n"

    def to_dict(self) -> dict:
        """Plain-JSON dict (ints, floats, None, bool, str; never NaN/inf)."""
        d = asdict(self)
        for key in ("estimate", "lower", "upper", "alpha"):
            d[key] = _json_float(d[key])
        for key in ("n", "c", "r", "K"):
            d[key] = None if d[key] is None else int(d[key])
        d["censored"] = bool(d["censored"])
        return d


def estimate_instance(
    n,
    c,
    *,
    r=None,
    K=None,
    design: Optional[SequentialDesign] = None,
    alpha: float = 0.05,
    method: str = "clopper-pearson",
) -> InstanceEstimate:
    """Point estimate and interval for one instance with ``c`` passes in ``n`` samples.

    Rules:

    * ``c == 0``: **censored**.  ``estimate`` is None, ``lower`` is 0 and
      ``upper`` is the *one-sided* ``1 - alpha`` upper bound (for
      Clopper-Pearson ``1 - alpha**(1/n)``; for Wilson ``z^2/(n+z^2)`` with
      ``z = Phi^-1(1-alpha)``).  One-sided because with no pass there is no
      lower tail to spend alpha on; a two-sided bound would be needlessly
      loose (``1 - (alpha/2)**(1/n)``).
    * ``r`` and ``K`` given (sequential design, r-th pass at sample K):
      ``(r-1)/(K-1)`` for r >= 2 (unbiased), ``r/K`` for r = 1 (the paper's;
      no useful unbiased estimator exists).  The interval is
      :func:`negbin_interval` for "clopper-pearson" (exact for this design)
      and Wilson on (K, r) for "wilson" (approximate).  ``n``/``c`` may
      exceed ``K``/``r`` when a fixed-budget run is replayed; the estimate
      then uses only the first K samples, which keeps it unbiased.
    * otherwise (fixed budget, or ``r`` given with ``K=None`` because the
      budget ran out before the r-th pass): ``c/n`` with the chosen two-sided
      interval on (n, c).  With a stop-at-r-or-budget design, using
      ``(r-1)/(K-1)`` when the r-th pass came and ``c/n`` when the budget ran
      out is exactly unbiased (Girshick-Mosteller-Savage path counting).
    * ``design`` given (the adaptive engine's group-sequential design, which
      stopped at ``(n, c)``): the point estimate is :func:`pu_sequential`,
      unbiased and using every sample; the interval is as above (on (r, K)
      when those are given, else on (n, c)).
    """
    n = _as_int(n, "n")
    c = _as_int(c, "c")
    _check_n_c(np.asarray(n), np.asarray(c))
    alpha = _check_alpha(alpha)
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if K is not None and r is None:
        raise ValueError("K was given without r: K is the sample index of the r-th pass")
    if r is not None:
        r = _as_int(r, "r")
        if r < 1:
            raise ValueError(f"r must be >= 1 (number of passes to wait for), got r={r}")
        if K is not None:
            K = _as_int(K, "K")
            if K < r:
                raise ValueError(
                    f"K must be >= r (the r-th pass cannot come before sample r): K={K} < r={r}"
                )
            if K > n:
                raise ValueError(f"K must be <= n (K={K} samples drawn of n={n})")
            if r > c:
                raise ValueError(f"r must be <= c (r={r} passes claimed, c={c} observed)")
        elif c >= r:
            raise ValueError(
                f"c={c} >= r={r}: the r-th pass was observed, so K (its sample "
                "index) must be given"
            )

    interval = clopper_pearson if method == "clopper-pearson" else wilson
    if c == 0:
        _, upper = interval(n, 0, alpha, alternative="less")
        return InstanceEstimate(
            n=n, c=c, estimate=None, lower=0.0, upper=float(upper), censored=True,
            r=r, K=K, alpha=alpha, method=method, estimator="c/n" if design is None else "rao-blackwell",
        )
    if r is not None and K is not None:
        if method == "clopper-pearson":
            lower, upper = negbin_interval(r, K, alpha)
        else:
            lower, upper = wilson(K, r, alpha)
    else:
        lower, upper = interval(n, c, alpha)
    if design is not None:
        estimate, estimator = pu_sequential(n, c, design), "rao-blackwell"
    elif r is not None and K is not None:
        estimate, estimator = (pu_unbiased(r, K), "(r-1)/(K-1)") if r >= 2 else (pu_paper(r, K), "r/K")
    else:
        estimate, estimator = c / n, "c/n"
    return InstanceEstimate(
        n=n, c=c, estimate=float(estimate), lower=float(lower), upper=float(upper),
        censored=False, r=r, K=K, alpha=alpha, method=method, estimator=estimator,
    )


# --------------------------------------------------------------------------
# task level
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskEstimate:
    """Task-level PU: the mean of per-instance estimates.

    ``stderr`` is the across-instance standard error (sample std, ddof=1,
    over sqrt(n_instances)); it is None when there are fewer than 2
    instances, with the reason in ``stderr_note``.  ``mean`` can be 0 when
    every instance is censored; check ``n_censored`` before taking
    ``log(-log PU)``.
    """

    mean: float
    stderr: Optional[float]
    n_instances: int
    n_censored: int
    total_samples: int
    stderr_note: Optional[str] = None

    def to_dict(self) -> dict:
        """Plain-JSON dict (never NaN/inf)."""
        d = asdict(self)
        d["mean"] = _json_float(d["mean"])
        d["stderr"] = _json_float(d["stderr"])
        return d


def task_pu(estimates: Iterable[InstanceEstimate]) -> TaskEstimate:
    """Aggregate instance estimates into the task PU (mean over instances).

    The task-level quantity is the average pass probability of a random
    instance, ``mean_i p_i``, so the estimator is the mean of per-instance
    unbiased estimates.  Censored instances contribute their fixed-budget
    value ``c/n = 0``: dropping them, or using their upper bound, would bias
    the mean, while 0 keeps it unbiased; they are counted in ``n_censored``.

    Why not pooled ``sum(c) / sum(n)``: pooling weights each instance by its
    sample count.  Under PassUntil's adaptive budgets the instances that got
    the most samples are the hard ones (low p; sampling continued because no
    pass came), so pooling is pulled toward the hardest instances and
    estimates neither the mean p nor anything stable across budgets.
    """
    items = list(estimates)
    if not items:
        raise ValueError("task_pu needs at least one InstanceEstimate, got none")
    for i, e in enumerate(items):
        if not isinstance(e, InstanceEstimate):
            raise ValueError(
                f"estimates must be InstanceEstimate objects; item {i} is {type(e).__name__}"
            )
    values = np.array(
        [e.c / e.n if e.censored else e.estimate for e in items], dtype=np.float64
    )
    m = values.size
    mean = float(values.mean())
    if m >= 2:
        stderr = float(values.std(ddof=1) / math.sqrt(m))
        note = None
    else:
        stderr = None
        note = "stderr needs at least 2 instances (got 1): across-instance variance is undefined"
    return TaskEstimate(
        mean=mean,
        stderr=stderr,
        n_instances=m,
        n_censored=int(sum(e.censored for e in items)),
        total_samples=int(sum(e.n for e in items)),
        stderr_note=note,
    )
