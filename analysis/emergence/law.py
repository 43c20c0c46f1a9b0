"""Emergence laws by finetuning (Snell et al. 2024, *Predicting Emergent
Capabilities by Finetuning*).

The law
-------
Finetuning a pretrained checkpoint on ``D`` task examples moves the point of
emergence to weaker checkpoints (higher pretraining loss ``L``).  Performance
as a function of the checkpoint's pretraining loss is a ReLU::

    Perf(L, D) = A * ReLU(E(D) - L) + B,        E(D) = k * (log D)**alpha + C

``B`` is the floor (chance performance), ``A > 0`` the slope in performance per
nat once the loss falls below the emergence point ``E(D)`` (in nats), and
``E(D)`` rises with the amount of finetuning data (``k >= 0``).  The few-shot
(un-finetuned) setting is the law's low-data limit: its emergence point is
predicted as ``E(D0)`` for a small ``D0``.

``D0``.  ``log D`` diverges at ``D = 0``, so the few-shot setting cannot be the
law at ``D = 0``; Snell et al. place it at a small effective ``D0`` that they
pick empirically, by checking the extrapolation against tasks whose few-shot
emergence has already been observed, and then hold fixed.  Here ``D0`` is the
user's (``d0=``; it must be >= 1 so that ``log D0 >= 0``); :func:`calibrate_d0`
does the empirical step: on a task whose few-shot emergence point is observed,
it returns the ``D0`` at which the fitted law reaches it, to be reused on tasks
that have not emerged yet.

Fitting
-------
*Smoothing.*  The kink makes the likelihood non-differentiable in ``E``, so the
fit (and everything computed from it: fitted values, predictions) uses
``softplus_tau(x) = tau * log(1 + exp(x / tau))`` in place of ``ReLU(x)``.  It
differs from the ReLU by at most ``tau * log 2`` (at the kink) and by less than
``tau * exp(-|x| / tau)`` away from it; ``E`` keeps its meaning as the kink's
location.  ``tau`` is in nats; the default 0.05 is small against the loss
ranges of a checkpoint ladder (tenths to units of nats) and large enough for
the optimiser to feel the kink from a few checkpoints away.

*Likelihood.*  Accuracy on ``n`` items is a count of correct answers: given the
checkpoint, ``c = round(perf * n)`` is Binomial(``n``, ``Perf(L, D)``) when the
items are a sample from the task's population.  Its variance ``p(1-p)/n``
differs by a factor of ~3 between the chance floor of a 4-way task and 50%,
and the floor points are exactly the ones that pin down ``B`` and ``E``, so a
constant-variance Gaussian would weight them wrongly.  ``likelihood="auto"``
uses the binomial when a column ``n`` (items evaluated) is present for every
row and every ``perf * n`` is a whole number (acc, acc_norm, exact_match);
otherwise (``n`` unknown, or a metric that is not a proportion of items, e.g. a
mean F1) a Gaussian with one variance, estimated (least squares; the variance
is profiled out).  The binomial mean is kept in ``(0, 1)`` by bounds on ``B``
and a barrier (``Perf`` clipped at 1e-9 from 0 and 1 in the likelihood).

Checkpoints differ in more than their loss (data, seeds of finetuning), so the
binomial understates the scatter around the law; the fit reports the Pearson
dispersion ``phi`` and Wald covariances are multiplied by ``max(phi, 1)``
(quasi-likelihood).  The intervals that matter come from the bootstrap.

*Maximisation.*  Least squares on the deviance residuals (binomial) or the
raw residuals (Gaussian), which is the maximum-likelihood fit, by a bounded
Levenberg-Marquardt iteration with analytic Jacobians (Gauss-Newton on
deviance residuals is close to Fisher scoring: ~10 steps), from several
starts: a grid over the emergence point(s) with ``A``, ``B`` by least squares
at each, and for the law a grid over ``alpha`` with ``k``, ``C`` by least
squares through the per-``D`` grid estimates.  ``n_converged`` counts the
starts that reached the best optimum.  The law is optimised in the
coordinates ``E(D_min)``, ``E(D_max) - E(D_min)``, ``alpha`` (see ``_Model``),
which the data pin down far better than the correlated ``k`` and ``C``.

*Bounds that keep the law identified.*  ``A`` in ``[0, 1e3]``; ``B`` in
``(0, 1)`` (binomial) or within the data's range (Gaussian); the curve's
``E`` and the law's ``E(D_min)`` within ``s`` of the data's losses (``s``
their span), ``E(D_max) - E(D_min)`` in ``[0, 3 s]`` (so ``k >= 0``: more
data never delays emergence), ``alpha`` in ``[0.25, 4]`` (below ~0.25,
``E(D)`` behaves like ``log(log D)`` and runs off to minus infinity at
``D = 1``, so the few-shot extrapolation would be set by the bound; ``C``
follows from the others and is not bounded).  A law needs
``>= 3`` distinct ``D > 0`` (``k, alpha, C``), a curve ``>= 3`` distinct losses
(2 with a fixed floor).  Identification also needs checkpoints on both sides
of the kink: ``side_counts`` reports, per ``D``, how many rows lie above and
below the fitted ``E(D)``; a ``D`` with none past the kink gives ``E(D)`` only
through the law and a warning says so.

Verdict: is there an emergence point at all?
--------------------------------------------
A ReLU fitted to data with no kink still returns a kink (at a bound, or
wherever the noise puts it), and a bootstrap of it can collapse to a point
(constant scores: every refit returns the same ``E``).  So every fit carries
a ``verdict``: ``"no emergence in range"`` (:data:`NO_EMERGENCE`) when

1. the scores are constant, or
2. no row lies past the fitted kink at any ``D`` (the scores never rise above
   their floor within the losses fitted), or
3. the law is not clearly better than a flat line at the floor: the
   likelihood-ratio statistic ``lr_flat = 2 (llf - llf_flat)`` (divided by the
   dispersion ``phi`` when the binomial fit has ``phi > 1``, as for a
   quasi-likelihood) is below the 95% point of chi2 with ``df`` = the
   parameters the flat line lacks (``A`` and ``E``: 2 for a curve; ``A``,
   ``k``, ``alpha``, ``C``: 4 for a law).  Under ``A = 0`` the emergence point
   is not identified, so the chi2 reference is only a rule of thumb (Davies'
   problem); counting ``E`` as a degree of freedom is the usual allowance for
   it and the bound ``A >= 0`` makes it conservative.  On flat binomial data
   (8 checkpoints x 3 D, 400 items, 150 data sets) it declared emergence in
   0.7% (law), 0.7% (curve) and, for a Gaussian curve, 3% of the sets;

and ``"emergence observed"`` (:data:`EMERGENCE`) otherwise, with the reason
in ``verdict_reason``.  Without emergence there is no emergence point to
report: :meth:`~EmergenceLawResults.emergence_loss` and ``few_shot`` give
NaN for ``E`` and its bounds (the fitted kink stays in ``params``, where it
is a nuisance value), ``conf_int()`` gives NaN for the parameters of ``E``
and for any interval of zero width, ``predict`` gives no band below the
fitted losses, and :func:`backtest_emergence` reports the verdict instead of
an error and a coverage (both None).

Extrapolation.  ``predict`` at a loss below the strongest fitted checkpoint,
and an emergence point ``E(D)`` that lies there (the few-shot ``E(D0)``
usually does: that is the forecast), add a warning to the results'
``warnings`` (and the returned frame's ``attrs["warnings"]``) saying how far
below, in nats and as a share of the fitted loss span.

Intervals
---------
``bootstrap="checkpoint"`` resamples whole checkpoints with replacement and
refits: all rows of a checkpoint (every ``D``, every seed) share that
checkpoint's deviation from the law, so they are not independent, and
resampling clusters keeps that dependence without trusting the likelihood's
variance model.  Intermediate checkpoints of one training run share more
than that (the run's data order, seed and hyperparameters), so when the
input has a column ``run`` the cluster is the run: every checkpoint of a run
is drawn together (``bootstrap="run"``, which is also what
``"checkpoint"`` does when ``run`` is present; the results then say
``bootstrap == "run"``).  A cluster bootstrap over one run would return the
data unchanged every time, so it needs >= 2 runs (an error otherwise), and
``"auto"`` counts runs, not checkpoints, against the thresholds below.

A cluster bootstrap needs many clusters: with 10 checkpoints (x 4 D,
400 items, the law true, 100 data sets, 200 refits) its 95% intervals
covered A, B, k, alpha, C, E(1), E(10) 87, 80, 93, 95, 90, 90 and 84% of the
time, and a resample that drops the few checkpoints past the kink cannot
locate it at all.  ``bootstrap="parametric"`` simulates data from the fitted
law with its own noise model (binomial, or beta-binomial with the same mean
and variance ``phi * p(1-p)/n`` when ``phi > 1``; Gaussian with the
estimated variance) and refits; on the same data sets it covered 96, 92, 97,
98, 97, 97 and 98%.  Its blind spot is a checkpoint-level deviation shared by
all D of a checkpoint (or a run-level one shared by a run's checkpoints),
which it treats as independent noise (inflating ``phi``).  ``"auto"``
therefore resamples clusters (checkpoints, or runs) only with >= 20 of them
of which >= 4 lie past the fitted kink and >= 4 before it (at some D; e.g. a
model family scored against validation loss), and is parametric otherwise
(a finetuning sweep over a handful of checkpoints, or of runs).
Intervals are percentile intervals of the refits (``n_boot_failed`` counts
refits that failed and were left out).  ``conf_int(method="wald")``
gives the quasi-likelihood Wald intervals instead.  A run of a few hundred
refits takes seconds, so it is not checkpointed.

Entry points: :func:`fit_emergence_law` (Perf vs L and D),
:func:`fit_emergence_curve` (Perf vs L for one setting, the same code with a
constant ``E``), :func:`calibrate_d0`, :func:`backtest_emergence`.
Input is a tidy DataFrame, one row per evaluated model: ``checkpoint`` (the
base checkpoint), ``L`` (its pretraining loss, nats), ``D`` (finetuning
examples; 0 = not finetuned, the few-shot row), ``perf`` (the metric), and
optionally ``n`` (items evaluated), ``seed``, ``flops`` (pretraining FLOPs of
the checkpoint), ``run`` (the training run the checkpoint comes from: the
bootstrap's cluster).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pandas as pd
from scipy import special, stats

__all__ = [
    "EMERGENCE",
    "NO_EMERGENCE",
    "fit_emergence_law",
    "fit_emergence_curve",
    "EmergenceLawResults",
    "calibrate_d0",
    "backtest_emergence",
    "EmergenceBacktest",
    "softplus",
]

_EPS = 1e-9  # the binomial mean is kept this far from 0 and 1
_LIKELIHOODS = ("auto", "binomial", "gaussian")
_BOOTSTRAPS = ("auto", "checkpoint", "run", "parametric", "none")
_MIN_CKPT_CLUSTER_BOOT = 20
_MIN_CKPT_SIDE = 4
#: Verdicts (``EmergenceLawResults.verdict``); see "Verdict" in the module docstring.
EMERGENCE = "emergence observed"
NO_EMERGENCE = "no emergence in range"
# level of the likelihood-ratio check against a flat line (the verdict's rule 3)
_LR_LEVEL = 0.05
# alpha below ~0.25 makes E(D) ~ const + k*alpha*log(log D), which runs off to
# -inf at D = 1: the few-shot extrapolation would then be decided by the bound.
_ALPHA_MIN, _ALPHA_MAX = 0.25, 4.0


def softplus(x, tau: float):
    """``tau * log(1 + exp(x / tau))``: the ReLU smoothed at temperature ``tau`` (nats)."""
    return tau * np.logaddexp(0.0, np.asarray(x, float) / tau)


def _jf(x) -> Optional[float]:
    x = float(x)
    return x if math.isfinite(x) else None


# --------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------


def _validate(df, *, need_d: bool) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"expected a pandas DataFrame, got {type(df).__name__}")
    required = ["checkpoint", "L", "perf"] + (["D"] if need_d else [])
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"missing required column(s) {missing}; need {required} (checkpoint = base "
                         "checkpoint, L = its pretraining loss in nats, D = finetuning examples, "
                         "perf = the metric), optionally n (items evaluated)")
    if len(df) == 0:
        raise ValueError("no rows: the results table is empty")
    out = df.copy()
    if out["checkpoint"].isna().any():
        raise ValueError(f"column checkpoint has missing values (rows {list(out.index[out['checkpoint'].isna()][:5])})")
    cols = ["L", "perf"] + (["D"] if need_d else []) + (["n"] if "n" in out.columns else [])
    for col in cols:
        v = pd.to_numeric(out[col], errors="coerce")
        bad = v.isna() | ~np.isfinite(v.astype(float))
        if col == "n" and bad.all():
            out = out.drop(columns="n")  # n unknown everywhere: the Gaussian fit
            continue
        if bad.any():
            rows = out.loc[bad, ["checkpoint", col]].head(5).to_dict("records")
            raise ValueError(f"column {col} must be finite numbers; bad rows: {rows}")
        out[col] = v.astype(float)
    if need_d:
        bad = out["D"] < 0
        if bad.any():
            raise ValueError(f"column D (finetuning examples) must be >= 0; bad rows: "
                             f"{out.loc[bad, ['checkpoint', 'D']].head(5).to_dict('records')}")
    if "n" in out.columns:
        bad = (out["n"] < 1) | (out["n"] != np.floor(out["n"]))
        if bad.any():
            raise ValueError(f"column n (items evaluated) must be whole numbers >= 1; bad rows: "
                             f"{out.loc[bad, ['checkpoint', 'n']].head(5).to_dict('records')}")
    ck = out.groupby("checkpoint")["L"].nunique()
    if (ck > 1).any():
        bad = list(ck.index[ck > 1])
        vals = sorted(out.loc[out["checkpoint"] == bad[0], "L"].unique().tolist())
        shown = ", ".join(f"{v:.4g}" for v in vals[:6]) + (", ..." if len(vals) > 6 else "")
        raise ValueError(
            f"checkpoint(s) {bad[:5]} have more than one loss L (checkpoint {bad[0]!r}: {len(vals)} losses, "
            f"{shown}): L is the pretraining loss of the base checkpoint, one value per checkpoint. "
            f"If {bad[0]!r} names a training run whose intermediate checkpoints are separate rows, give each "
            "checkpoint its own label in 'checkpoint' (e.g. run and step) and put the run in a column 'run': "
            "the bootstrap then resamples whole runs")
    if "run" in out.columns:
        missing = out["run"].isna()
        if missing.all():
            out = out.drop(columns="run")  # no run known: checkpoints are the clusters
        else:
            if missing.any():
                raise ValueError(f"column run (training run) is empty for some rows (checkpoints "
                                 f"{sorted(map(str, out.loc[missing, 'checkpoint'].unique()))[:5]}): give every "
                                 "row its run, or drop the column")
            out["run"] = out["run"].map(str)
            runs = out.groupby("checkpoint")["run"].nunique()
            if (runs > 1).any():
                c = runs.index[runs > 1][0]
                raise ValueError(f"checkpoint {c!r} lies in several runs "
                                 f"({sorted(out.loc[out['checkpoint'] == c, 'run'].unique())}): a base "
                                 "checkpoint comes from one training run (column run)")
    return out.reset_index(drop=True)


def _choose_likelihood(d: pd.DataFrame, likelihood: str) -> str:
    if likelihood not in _LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {_LIKELIHOODS}, got {likelihood!r}")
    counts_ok = "n" in d.columns and bool(
        np.all((d["perf"] >= 0) & (d["perf"] <= 1))
        and np.all(np.abs(d["perf"] * d["n"] - np.round(d["perf"] * d["n"])) <= 1e-6 * d["n"] + 1e-6))
    if likelihood == "binomial":
        if "n" not in d.columns:
            raise ValueError("likelihood='binomial' needs a column n (items evaluated)")
        bad = ~((d["perf"] >= 0) & (d["perf"] <= 1))
        if bad.any():
            raise ValueError(f"likelihood='binomial' needs perf in [0, 1]; bad rows: "
                             f"{d.loc[bad, ['checkpoint', 'perf']].head(5).to_dict('records')}")
        return "binomial"
    if likelihood == "gaussian":
        return "gaussian"
    return "binomial" if counts_ok else "gaussian"


# --------------------------------------------------------------------------
# the model: Perf = A * softplus_tau(e - L) + B, e the emergence point
# --------------------------------------------------------------------------


@dataclass
class _Model:
    """Parameter layout and the law's value and gradient.

    kind "law": e = k * u**alpha + C with u = log D; kind "curve": e = E.
    ``floor``: B fixed (not a free parameter) when not None.

    The optimiser works on internal coordinates: for a law, ``(k, alpha, C)``
    becomes ``(e1, delta, alpha)`` with ``e1 = E`` at the smallest finetuned D
    of the data and ``e1 + delta = E`` at the largest (``u_ref``).  ``k`` and
    ``C`` are strongly correlated (both move every E(D)); ``e1`` and
    ``delta`` are what the data pin down directly, which cuts the optimiser's
    iterations several-fold, and ``k >= 0`` becomes the box bound ``delta >= 0``.
    """

    kind: str
    tau: float
    floor: Optional[float]
    u_ref: Optional[tuple] = None

    @property
    def e_names(self) -> list[str]:
        return ["k", "alpha", "C"] if self.kind == "law" else ["E"]

    @property
    def names(self) -> list[str]:
        return ["A"] + ([] if self.floor is not None else ["B"]) + self.e_names

    @property
    def internal_names(self) -> list[str]:
        e = ["E(D_min)", "E(D_max)-E(D_min)", "alpha"] if self.kind == "law" else ["E"]
        return ["A"] + ([] if self.floor is not None else ["B"]) + e

    def _g(self, alpha):
        """u**alpha at the two reference points, and their alpha-derivatives."""
        u1, u2 = self.u_ref
        p1 = u1 ** alpha if u1 > 0 else 0.0
        p2 = u2 ** alpha
        d1 = p1 * math.log(u1) if u1 > 0 else 0.0
        return p1, p2, d1, p2 * math.log(u2)

    def to_internal(self, theta):
        theta = np.array(theta, float)
        if self.kind == "curve":
            return theta
        k, alpha, C = theta[-3:]
        p1, p2, _, _ = self._g(alpha)
        theta[-3:] = [k * p1 + C, k * (p2 - p1), alpha]
        return theta

    def from_internal(self, z):
        """theta and d theta / d z."""
        z = np.array(z, float)
        J = np.eye(len(z))
        if self.kind == "curve":
            return z, J
        e1, delta, alpha = z[-3:]
        p1, p2, d1, d2 = self._g(alpha)
        g, dg = p2 - p1, d2 - d1
        k = delta / g
        dk_da = -delta * dg / g**2
        C = e1 - k * p1
        theta = z.copy()
        theta[-3:] = [k, alpha, C]
        # rows: k, alpha, C; columns: e1, delta, alpha
        J[-3:, -3:] = [[0.0, 1 / g, dk_da],
                       [0.0, 0.0, 1.0],
                       [1.0, -p1 / g, -(dk_da * p1 + k * d1)]]
        return theta, J

    def split(self, theta):
        theta = np.asarray(theta, float)
        if self.floor is None:
            return theta[0], theta[1], theta[2:]
        return theta[0], self.floor, theta[1:]

    def emergence(self, th_e, u, logu=None):
        """e and de/dth_e (rows x len(e_names)); u = log D (unused for a curve).
        ``logu``: log u where u > 0, else -inf (precomputed by the fit)."""
        u = np.asarray(u, float)
        if self.kind == "curve":
            return np.full(u.shape, th_e[0]), np.ones(u.shape + (1,))
        k, alpha, C = th_e
        if logu is None:
            logu = _log_u(u)
        ua = np.exp(alpha * logu)  # u**alpha, 0 at u = 0 (D = 1)
        dlog = ua * np.where(np.isfinite(logu), logu, 0.0)
        return k * ua + C, np.stack([ua, k * dlog, np.ones_like(u)], axis=-1)

    def mean(self, theta, L, u, logu=None):
        A, B, th_e = self.split(theta)
        e, _ = self.emergence(th_e, u, logu)
        return A * softplus(e - np.asarray(L, float), self.tau) + B

    def mean_and_jac(self, theta, L, u, logu=None):
        A, B, th_e = self.split(theta)
        e, de = self.emergence(th_e, u, logu)
        x = e - L
        s = softplus(x, self.tau)
        g = special.expit(x / self.tau)
        cols = [s] + ([] if self.floor is not None else [np.ones_like(s)])
        J = np.column_stack(cols + [A * g[:, None] * de])
        return A * s + B, J


def _log_u(u):
    u = np.asarray(u, float)
    with np.errstate(divide="ignore"):
        return np.where(u > 0, np.log(np.where(u > 0, u, 1.0)), -np.inf)


@dataclass
class _Data:
    L: np.ndarray
    u: np.ndarray
    y: np.ndarray
    n: Optional[np.ndarray]
    c: Optional[np.ndarray]

    def __post_init__(self):
        self.logu = _log_u(self.u)
        if self.n is not None:
            n, c = self.n, self.c
            self.sat = float(np.sum(special.xlogy(c, c / n) + special.xlogy(n - c, (n - c) / n)))

    def take(self, idx) -> "_Data":
        return _Data(self.L[idx], self.u[idx], self.y[idx], None if self.n is None else self.n[idx],
                     None if self.c is None else self.c[idx])


def _objective(theta, model: _Model, data: _Data, likelihood: str):
    """Negative log-likelihood up to a constant (half the deviance) and its gradient."""
    mu, J = model.mean_and_jac(theta, data.L, data.u, data.logu)
    if likelihood == "binomial":
        n, c = data.n, data.c
        inside = (mu > _EPS) & (mu < 1 - _EPS)
        m = np.clip(mu, _EPS, 1 - _EPS)
        # half the binomial deviance: the saturated log-likelihood minus this one
        f = data.sat - float(c @ np.log(m) + (n - c) @ np.log1p(-m))
        dmu = np.where(inside, -(c / m - (n - c) / (1 - m)), 0.0)
        return f, J.T @ dmu
    r = data.y - mu
    N = len(r)
    rss = max(float(r @ r), 1e-300)
    f = 0.5 * N * math.log(rss / N)
    return f, J.T @ (-(N / rss) * r)


def _bounds(model: _Model, data: _Data, likelihood: str):
    lo, hi = float(data.L.min()), float(data.L.max())
    span = max(hi - lo, 0.1)
    b = [(0.0, 1e3)]
    if model.floor is None:
        if likelihood == "binomial":
            b.append((1e-6, 1 - 1e-6))
        else:
            ylo, yhi = float(data.y.min()), float(data.y.max())
            b.append((ylo - max(yhi - ylo, 1e-3), yhi))
    if model.kind == "curve":
        b.append((lo - span, hi + span))
    else:
        b += [(lo - span, hi + span), (0.0, 3 * span), (_ALPHA_MIN, _ALPHA_MAX)]
    return b


def _ls_amp(S, y, floor, likelihood):
    """A, B by least squares of y on each row of S (A >= 0; B fixed when floor
    is given); returns arrays A, B and the residual sums of squares."""
    S = np.atleast_2d(S)
    if floor is not None:
        ss = np.einsum("gi,gi->g", S, S)
        A = np.maximum(S @ (y - floor) / np.where(ss > 0, ss, 1.0), 1e-6)
        B = np.full(len(S), float(floor))
    else:
        sm, ym = S.mean(axis=1), y.mean()
        Sc = S - sm[:, None]
        vs = np.einsum("gi,gi->g", Sc, Sc)
        A = np.where(vs > 0, Sc @ (y - ym) / np.where(vs > 0, vs, 1.0), 0.0)
        B = ym - A * sm
        neg = A <= 0
        A = np.where(neg, 1e-6, A)
        B = np.where(neg, ym, B)
        if likelihood == "binomial":
            B = np.clip(B, 1e-4, 1 - 1e-4)
    rss = np.sum((y[None, :] - A[:, None] * S - B[:, None]) ** 2, axis=1)
    return A, B, rss


def _grid_e(L, y, tau, floor, likelihood, lo, hi):
    """The emergence point of one curve by a grid (A, B by least squares)."""
    grid = np.linspace(lo, hi, 41)
    _, _, rss = _ls_amp(softplus(grid[:, None] - L[None, :], tau), y, floor, likelihood)
    return float(grid[int(np.argmin(rss))])


def _starts(model: _Model, data: _Data, likelihood: str, n_starts: int, bounds) -> list[np.ndarray]:
    L, y = data.L, data.y
    lo, hi = float(L.min()), float(L.max())
    span = max(hi - lo, 0.1)
    cands = []
    free_b = model.floor is None
    if model.kind == "curve":
        grid = np.linspace(lo - 0.5 * span, hi + 0.25 * span, 25)
        A, B, _ = _ls_amp(softplus(grid[:, None] - L[None, :], model.tau), y, model.floor, likelihood)
        cands = [[a] + ([b] if free_b else []) + [e] for a, b, e in zip(A, B, grid)]
    else:
        us = np.unique(data.u)
        e_d = np.array([_grid_e(L[data.u == u], y[data.u == u], model.tau, model.floor, likelihood,
                                lo - 0.5 * span, hi + 0.25 * span) for u in us])
        for alpha in (0.25, 0.5, 1.0, 1.5, 2.0, 3.0):
            ua = np.where(us > 0, us, 0.0) ** alpha
            X = np.column_stack([ua, np.ones_like(ua)])
            (k, _), *_ = np.linalg.lstsq(X, e_d, rcond=None)
            for kk in (max(float(k), 1e-3), 0.5 * span / max(float(ua.max()), 1e-9)):
                # C by least squares given k (the unconstrained C when k was not clipped)
                CC = float(np.mean(e_d - kk * ua))
                e_rows = kk * np.where(data.u > 0, data.u, 0.0) ** alpha + CC
                A, B, _ = _ls_amp(softplus(e_rows - L, model.tau)[None, :], y, model.floor, likelihood)
                cands.append([A[0]] + ([B[0]] if free_b else []) + [kk, alpha, CC])
    lo_b = np.array([b[0] for b in bounds])
    hi_b = np.array([b[1] for b in bounds])
    cands = [np.clip(model.to_internal(c), lo_b, hi_b) for c in cands]
    vals = np.array([_objective_z(c, model, data, likelihood)[0] for c in cands])
    order = np.argsort(vals)
    return [cands[i] for i in order[:max(1, n_starts)]]


def _objective_z(z, model, data, likelihood):
    """The objective in the optimiser's coordinates (see :class:`_Model`)."""
    theta, J = model.from_internal(z)
    f, grad = _objective(theta, model, data, likelihood)
    return f, J.T @ grad


def _residuals(z, model, data, likelihood):
    """Residuals whose sum of squares is twice the objective, and their Jacobian
    in the optimiser's coordinates: Gaussian, y - mu; binomial, the deviance
    residuals sign(y - mu) sqrt(d_i).  Least squares on them is the maximum
    likelihood fit, and Gauss-Newton on deviance residuals is close to Fisher
    scoring, which converges in a few steps where a quasi-Newton method on
    the likelihood needs a hundred."""
    theta, Jz = model.from_internal(z)
    mu, J = model.mean_and_jac(theta, data.L, data.u, data.logu)
    J = J @ Jz
    if likelihood == "gaussian":
        return data.y - mu, -J
    n, c, y = data.n, data.c, data.y
    inside = (mu > _EPS) & (mu < 1 - _EPS)
    m = np.clip(mu, _EPS, 1 - _EPS)
    dev = 2 * (special.xlogy(c, c / (n * m)) + special.xlogy(n - c, (n - c) / (n * (1 - m))))
    r = np.sign(y - m) * np.sqrt(np.maximum(dev, 0.0))
    diff = y - m
    small = np.abs(diff) < 1e-10
    with np.errstate(divide="ignore", invalid="ignore"):
        dr = np.where(small, -np.sqrt(n / (m * (1 - m))), -n * diff / (m * (1 - m) * np.where(small, 1.0, r)))
    dr = np.where(inside & np.isfinite(dr), dr, 0.0)
    return r, dr[:, None] * J


def _levenberg_marquardt(fun, x0, lo, hi, max_iter: int = 200):
    """Minimise ``0.5 |r(x)|^2`` within the box ``[lo, hi]``: Levenberg-Marquardt
    steps (Marquardt's diagonal scaling) projected onto the box, with the
    coordinates at a bound whose gradient points outwards held fixed.  Five
    parameters and tens of rows: scipy's trust-region solver spends most of
    its time in per-iteration overhead here, this loop converges in the same
    ~10 steps at a fraction of the cost (the bootstrap runs it hundreds of
    times).  Returns (x, cost)."""
    x = np.clip(np.asarray(x0, float), lo, hi)
    r, J = fun(x)
    cost = 0.5 * float(r @ r)
    if not np.isfinite(cost):
        raise ValueError("non-finite objective at the start")
    lam = 1e-3
    for _ in range(max_iter):
        g = J.T @ r
        H = J.T @ J
        free = ~(((x <= lo) & (g > 0)) | ((x >= hi) & (g < 0)))
        if not free.any():
            break
        Hf = H[np.ix_(free, free)]
        diag = np.maximum(np.diag(Hf), 1e-12)
        improved = False
        while lam < 1e12:
            try:
                step = np.linalg.solve(Hf + lam * np.diag(diag), -g[free])
            except np.linalg.LinAlgError:
                lam *= 4
                continue
            xn = x.copy()
            xn[free] += step
            xn = np.clip(xn, lo, hi)
            rn, Jn = fun(xn)
            cn = 0.5 * float(rn @ rn)
            if np.isfinite(cn) and cn <= cost:
                improved = True
                break
            lam *= 4
        if not improved:
            break
        # a relative change of 1e-8 in the log-likelihood (scipy's default
        # ftol) is far below anything statistical; along the flat ridges of a
        # weakly identified law (few checkpoints, alpha with few D values) a
        # stricter rule creeps on for hundreds of steps
        done = (cost - cn <= 1e-8 * (1 + cost)) or np.all(np.abs(xn - x) <= 1e-10 * (1 + np.abs(x)))
        x, r, J, cost = xn, rn, Jn, cn
        lam = max(lam / 5, 1e-12)
        if done:
            break
    return x, cost


def _maximise(model, data, likelihood, starts, bounds):
    lo_b = np.array([b[0] for b in bounds])
    hi_b = np.array([b[1] for b in bounds])
    best, fits = None, []
    for x0 in starts:
        x0 = np.clip(x0, lo_b, hi_b)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            try:
                x, _ = _levenberg_marquardt(lambda z: _residuals(z, model, data, likelihood), x0, lo_b, hi_b)
            except (ValueError, np.linalg.LinAlgError):
                continue
        if not np.all(np.isfinite(x)):
            continue
        fun = _objective_z(x, model, data, likelihood)[0]
        if np.isfinite(fun):
            fits.append(fun)
            if best is None or fun < best[0]:
                best = (fun, x)
    if best is None:
        raise ValueError("the maximum-likelihood fit failed from every start")
    n_conv = sum(1 for f in fits if f - best[0] <= 1e-6 * max(1.0, abs(best[0])))
    theta = model.from_internal(best[1])[0]
    return theta, best[1], float(best[0]), n_conv


def _hessian(model, data, likelihood, theta):
    """Central differences of the analytic gradient."""
    p = len(theta)
    H = np.zeros((p, p))
    for j in range(p):
        h = 1e-5 * max(1.0, abs(theta[j]))
        tp, tm = theta.copy(), theta.copy()
        tp[j] += h
        tm[j] -= h
        H[:, j] = (_objective(tp, model, data, likelihood)[1] - _objective(tm, model, data, likelihood)[1]) / (2 * h)
    return 0.5 * (H + H.T)


# --------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------


@dataclass
class EmergenceLawResults:
    """Fit of ``Perf = A * ReLU(E(D) - L) + B`` (``kind="law"``,
    ``E(D) = k (log D)^alpha + C``) or of one curve ``Perf = A * ReLU(E - L) + B``
    (``kind="curve"``); see the module docstring.

    Attributes: ``params`` (Series), ``bse`` (bootstrap standard deviation, or
    Wald when there is no bootstrap), ``cov_params()`` (quasi-likelihood Wald),
    ``boot`` (DataFrame of bootstrap refits, one row each), ``likelihood``,
    ``tau``, ``floor`` (B when fixed), ``dispersion`` (binomial: Pearson
    chi2/df; Gaussian: residual variance), ``llf`` (log-likelihood up to a
    constant), ``nobs``, ``n_checkpoints``, ``D_values``, ``d0``,
    ``n_converged``/``n_starts`` (multi-start agreement), ``side_counts``
    (rows above/below the kink per D), ``data`` (the rows fitted, with
    ``fitted``), ``warnings``; ``verdict`` (:data:`EMERGENCE` or
    :data:`NO_EMERGENCE`) and ``verdict_reason``, ``lr_flat`` with its
    threshold ``lr_flat_threshold`` (see "Verdict" in the module docstring);
    ``n_runs`` (runs, when the input has a ``run`` column: the bootstrap's
    clusters); ``L_range`` (the losses fitted, the range beyond which
    predictions are extrapolations).
    """

    kind: str
    params: pd.Series
    cov_params_: np.ndarray
    likelihood: str
    tau: float
    floor: Optional[float]
    dispersion: float
    llf: float
    nobs: int
    n_checkpoints: int
    D_values: list
    data: pd.DataFrame
    side_counts: pd.DataFrame
    n_starts: int
    n_converged: int
    d0: Optional[float] = None
    alpha_ci: float = 0.05
    boot: Optional[pd.DataFrame] = None
    bootstrap: str = "none"
    n_boot_failed: int = 0
    warnings: list = field(default_factory=list)
    llf_flat: float = float("nan")
    verdict: str = EMERGENCE
    verdict_reason: str = ""
    lr_flat_threshold: float = float("nan")
    n_runs: Optional[int] = None

    @property
    def lr_flat(self) -> float:
        """``2 (llf - llf_flat)``: how much better the law fits than a flat line
        at the floor (no emergence).  The verdict compares it (over the
        dispersion, binomial with ``phi > 1``) with ``lr_flat_threshold``, the
        95% point of chi2 with one df per parameter the flat line lacks; under
        ``A = 0`` the emergence point is not identified, so that reference is
        a rule of thumb (Davies' problem; see the module docstring)."""
        return 2.0 * (self.llf - self.llf_flat)

    @property
    def emerged(self) -> bool:
        """Whether the data show an emergence point (``verdict == EMERGENCE``)."""
        return self.verdict == EMERGENCE

    @property
    def L_range(self) -> tuple:
        """(min, max) of the pretraining losses fitted, nats."""
        L = self.data["L"].to_numpy(float)
        return float(L.min()), float(L.max())

    def _range_warning(self, values, labels) -> Optional[str]:
        """A warning for the losses among ``values`` below the fitted range
        (stronger checkpoints than any fitted: the law was never checked
        there), saying how far below in nats and as a share of the fitted
        loss span; None when none is."""
        lo, hi = self.L_range
        span = hi - lo
        v = np.asarray(values, float)
        below = np.isfinite(v) & (v < lo)
        if not below.any():
            return None
        i = int(np.nanargmin(np.where(below, v, np.nan)))
        gap = lo - float(v[i])
        many = len(np.unique(v[below]))  # distinct values: a loss asked at several D counts once
        what = labels[i] if many == 1 else f"{labels[i]} (the lowest of {many} below the range)"
        return (f"extrapolation: {what} lies {gap:.4g} nats below the strongest fitted checkpoint "
                f"(L = {lo:.4g}), {gap / span:.0%} of the fitted loss span ({lo:.4g} to {hi:.4g} nats, "
                f"{span:.4g}); the law is untested there")

    def _record(self, msgs) -> list:
        """Add ``msgs`` to ``warnings`` (once each) and issue them."""
        out = [m for m in msgs if m]
        for m in out:
            if m not in self.warnings:
                self.warnings.append(m)
            warnings.warn(m, UserWarning, stacklevel=3)
        return out

    def _e_mask(self) -> pd.Series:
        """Parameters without an interval: those of E when there is no
        emergence in range (E is then a nuisance value, set by a bound or
        the noise)."""
        idx = self.params.index
        if self.emerged:
            return pd.Series(False, index=idx)
        return pd.Series([n in self._model.e_names for n in idx], index=idx)

    @property
    def _model(self) -> _Model:
        return _Model(self.kind, self.tau, self.floor)

    # --- parameters -----------------------------------------------------
    def cov_params(self) -> pd.DataFrame:
        idx = self.params.index
        return pd.DataFrame(self.cov_params_, index=idx, columns=idx)

    @property
    def bse(self) -> pd.Series:
        """Bootstrap standard deviations (Wald without refits); NaN for the
        parameters of E when there is no emergence in range."""
        if self.boot is not None and len(self.boot) > 1:
            se = self.boot[list(self.params.index)].std(ddof=1)
        else:
            se = pd.Series(np.sqrt(np.abs(np.diag(self.cov_params_))), index=self.params.index)
        return se.mask(self._e_mask())

    def conf_int(self, alpha: Optional[float] = None, method: str = "auto") -> pd.DataFrame:
        """Percentile bootstrap intervals (``method="bootstrap"``; the default
        when there are refits) or quasi-likelihood Wald ones (``"wald"``).
        Without emergence in range (``verdict``) the parameters of E and any
        interval of zero width (constant scores: every refit the same) are
        NaN: a zero-width interval would claim a precision the data do not
        have."""
        a = _check_level(self.alpha_ci if alpha is None else alpha)
        if method not in ("auto", "bootstrap", "wald"):
            raise ValueError(f"method must be 'auto', 'bootstrap' or 'wald', got {method!r}")
        if method == "bootstrap" and (self.boot is None or len(self.boot) < 2):
            raise ValueError("no bootstrap refits: fit with n_boot > 0")
        if method != "wald" and self.boot is not None and len(self.boot) >= 2:
            b = self.boot[list(self.params.index)]
            ci = pd.DataFrame({"lower": b.quantile(a / 2), "upper": b.quantile(1 - a / 2)})
        else:
            q = float(stats.norm.ppf(1 - a / 2))
            se = pd.Series(np.sqrt(np.abs(np.diag(self.cov_params_))), index=self.params.index)
            ci = pd.DataFrame({"lower": self.params - q * se, "upper": self.params + q * se})
        if not self.emerged:
            drop = self._e_mask() | _zero_width(ci["lower"], ci["upper"])
            ci = ci.mask(drop, other=np.nan)
        return ci

    def _draws(self) -> Optional[np.ndarray]:
        if self.boot is None or len(self.boot) < 2:
            return None
        return self.boot[list(self.params.index)].to_numpy(float)

    # --- emergence points -------------------------------------------------
    def emergence_loss(self, D=None, alpha: Optional[float] = None) -> pd.DataFrame:
        """``E(D)`` in nats with its interval (percentile bootstrap; delta-method
        Wald without refits) and the fit's ``verdict``.  ``D`` >= 1; a curve
        fit has one ``E`` (D ignored).

        Without emergence in range (``verdict == NO_EMERGENCE``) ``E``,
        ``lower`` and ``upper`` are NaN: there is no emergence point to
        report, only the verdict.  An ``E`` below the fitted losses (an
        extrapolation, e.g. the few-shot ``E(D0)``) adds a warning to
        ``warnings`` and to the frame's ``attrs["warnings"]``."""
        out = self._emergence(D, alpha)
        labels = [f"E = {e:.4g} nats" if self.kind == "curve" else f"E(D={d:g}) = {e:.4g} nats"
                  for d, e in zip(out["D"], out["E"])]
        out.attrs["warnings"] = self._record([self._range_warning(out["E"], labels)])
        return out

    def _emergence(self, D=None, alpha: Optional[float] = None) -> pd.DataFrame:
        """:meth:`emergence_loss` without the range warning (the reports' use)."""
        a = _check_level(self.alpha_ci if alpha is None else alpha)
        m = self._model
        if self.kind == "curve":
            D = np.array([np.nan])
            u = np.zeros(1)
        else:
            if D is None:
                raise ValueError("emergence_loss needs D (>= 1) for a law fit")
            D = np.atleast_1d(np.asarray(D, float))
            if np.any(~np.isfinite(D)) or np.any(D < 1):
                raise ValueError(f"D must be >= 1 (log D >= 0), got {D.tolist()}")
            u = np.log(D)
        th = self.params.to_numpy()
        e = m.emergence(m.split(th)[2], u)[0]
        out = pd.DataFrame({"D": D, "E": e})
        draws = self._draws()
        if not self.emerged:
            # no emergence point: nothing to put an interval around (the
            # covariance of an unidentified E is meaningless, often not PSD)
            out[["E", "lower", "upper"]] = np.nan
        elif draws is not None:
            eb = np.array([m.emergence(m.split(t)[2], u)[0] for t in draws])
            out["lower"] = np.quantile(eb, a / 2, axis=0)
            out["upper"] = np.quantile(eb, 1 - a / 2, axis=0)
        else:
            _, de = m.emergence(m.split(th)[2], u)
            ne = len(m.e_names)
            cov = self.cov_params_[-ne:, -ne:]
            sd = np.sqrt(np.einsum("ij,jk,ik->i", de, cov, de))
            q = float(stats.norm.ppf(1 - a / 2))
            out["lower"], out["upper"] = e - q * sd, e + q * sd
        out["verdict"] = self.verdict
        return out

    @property
    def few_shot(self) -> Optional[pd.Series]:
        """``E(D0)`` with its interval and the verdict, when ``d0`` was given
        (law fits); NaN bounds (and ``E``) without emergence in range.  Its
        extrapolation warning, if any, is in ``warnings`` from the fit on."""
        if self.kind != "law" or self.d0 is None:
            return None
        return self._emergence([self.d0]).iloc[0]

    # --- prediction -----------------------------------------------------
    def predict(self, L, D=None, interval: bool = True, alpha: Optional[float] = None) -> pd.DataFrame:
        """The law's mean performance at losses ``L`` (and ``D`` >= 1 for a law;
        broadcast against ``L``): DataFrame L, D, perf (and lower, upper: a
        percentile-bootstrap confidence band of the mean curve, not of a new
        checkpoint's scatter).  With the binomial likelihood, or when every
        fitted ``perf`` lies in [0, 1], ``perf`` is a proportion and it and its
        band are clipped to [0, 1] (the linear part of the law is unbounded).

        A loss below the fitted range (``L_range``) is an extrapolation: a
        warning (how far below, in nats and as a share of the fitted loss
        span) goes to ``warnings`` and to the frame's ``attrs["warnings"]``.
        Without emergence in range the band is NaN below the fitted losses
        (the data do not say where the rise would start) and wherever it has
        zero width."""
        out = self._predict(L, D, interval, alpha)
        labels = [f"L = {v:.4g}" for v in out["L"]]
        out.attrs["warnings"] = self._record([self._range_warning(out["L"], labels)])
        return out

    def _predict(self, L, D=None, interval: bool = True, alpha: Optional[float] = None) -> pd.DataFrame:
        """:meth:`predict` without the range warning (plots, whose axis runs past the data)."""
        a = _check_level(self.alpha_ci if alpha is None else alpha)
        L = np.atleast_1d(np.asarray(L, float))
        if np.any(~np.isfinite(L)):
            raise ValueError("L must be finite")
        if self.kind == "law":
            if D is None:
                raise ValueError("predict needs D (>= 1) for a law fit")
            L, D = np.broadcast_arrays(L, np.asarray(D, float))
            if np.any(~np.isfinite(D)) or np.any(D < 1):
                raise ValueError("D must be >= 1 (log D >= 0)")
            u = np.log(D)
        else:
            D = np.full(L.shape, np.nan)
            u = np.zeros(L.shape)
        # A proportion stays in [0, 1]: the binomial likelihood's perf always,
        # the Gaussian's when every fitted perf is one (an accuracy); the
        # linear part of the law is unbounded either way.
        perf = self.data["perf"].to_numpy(float)
        bounded = self.likelihood == "binomial" or bool(np.all((perf >= 0) & (perf <= 1)))
        clip = (lambda v: np.clip(v, 0, 1)) if bounded else (lambda v: v)
        m = self._model
        out = pd.DataFrame({"L": L, "D": D, "perf": clip(m.mean(self.params.to_numpy(), L, u))})
        draws = self._draws()
        if interval and draws is not None:
            pb = clip(np.array([m.mean(t, L, u) for t in draws]))
            out["lower"] = np.quantile(pb, a / 2, axis=0)
            out["upper"] = np.quantile(pb, 1 - a / 2, axis=0)
            if not self.emerged:
                drop = (out["L"] < self.L_range[0]) | _zero_width(out["lower"], out["upper"])
                out.loc[drop, ["lower", "upper"]] = np.nan
        return out

    # --- reporting ------------------------------------------------------
    def summary(self) -> str:
        ci = self.conf_int()
        law = ("Perf = A*ReLU(E(D) - L) + B,  E(D) = k*(log D)^alpha + C" if self.kind == "law"
               else "Perf = A*ReLU(E - L) + B")
        lvl = int(round(100 * (1 - self.alpha_ci)))
        how = f"{self.bootstrap} bootstrap, {len(self.boot)} refits" if self.boot is not None else "Wald"
        disp = "dispersion (Pearson chi2/df)" if self.likelihood == "binomial" else "residual variance"
        lines = [
            f"Emergence {'law' if self.kind == 'law' else 'curve'}  {law}",
            "=" * 72,
            f"likelihood: {self.likelihood:<9} softplus tau: {self.tau:g} nats   rows: {self.nobs}   "
            f"checkpoints: {self.n_checkpoints}",
        ]
        if self.kind == "law":
            lines.append(f"D values: {[int(d) if float(d).is_integer() else d for d in self.D_values]}")
        lines.append(f"log-likelihood gain over a flat line (no emergence): 2*dllf = {self.lr_flat:.4g}   "
                     f"(emergence needs > {self.lr_flat_threshold:.3g})")
        lines.append(f"verdict: {self.verdict}" + (f": {self.verdict_reason}" if self.verdict_reason else ""))
        if self.n_runs is not None:
            lines.append(f"runs: {self.n_runs}")
        lines.append(f"{disp}: {self.dispersion:.4g}   starts at the optimum: {self.n_converged}/{self.n_starts}"
                     + (f"   failed refits: {self.n_boot_failed}" if self.boot is not None else ""))
        if self.floor is not None:
            lines.append(f"floor B fixed at {self.floor:g}")
        lines.append("-" * 72)
        lines.append(f"{'':<8}{'coef':>12}{'std err':>12}{f'[{lvl}% lower':>16}{'upper]':>12}   ({how})")
        for name in self.params.index:
            lines.append(f"{name:<8}{self.params[name]:>12.5g}{self.bse[name]:>12.4g}"
                         f"{ci.loc[name, 'lower']:>16.5g}{ci.loc[name, 'upper']:>12.5g}")
        lines.append("-" * 72)
        if not self.emerged:
            # no point with an interval: the fitted kink is a nuisance value
            what = "E(D) (and E(D0))" if self.kind == "law" else "emergence point E"
            lines.append(f"{what}: none, {self.verdict} (losses {self.L_range[0]:.4f} to "
                         f"{self.L_range[1]:.4f} nats)")
        elif self.kind == "law":
            em = self._emergence(self.D_values)
            for r in em.itertuples():
                lines.append(f"E(D={r.D:g}) = {r.E:.4f} nats  [{r.lower:.4f}, {r.upper:.4f}]")
            fs = self.few_shot
            if fs is not None:
                lines.append(f"few-shot emergence E(D0={self.d0:g}) = {fs['E']:.4f} nats  "
                             f"[{fs['lower']:.4f}, {fs['upper']:.4f}]")
        else:
            em = self._emergence().iloc[0]
            lines.append(f"emergence point E = {em['E']:.4f} nats  [{em['lower']:.4f}, {em['upper']:.4f}]")
        for w in self.warnings:
            lines.append(f"warning: {w}")
        lines.append("=" * 72)
        return "\n".join(lines)

    def __str__(self) -> str:  # pragma: no cover - convenience
        return self.summary()

    def to_dict(self) -> dict:
        ci = self.conf_int()
        d = {
            "law": ("Perf = A*ReLU(E(D) - L) + B, E(D) = k*(log D)^alpha + C" if self.kind == "law"
                    else "Perf = A*ReLU(E - L) + B"),
            "kind": self.kind,
            "likelihood": self.likelihood,
            "tau": float(self.tau),
            "floor": None if self.floor is None else float(self.floor),
            "params": {k: _jf(v) for k, v in self.params.items()},
            "bse": {k: _jf(v) for k, v in self.bse.items()},
            "conf_int": {k: [_jf(ci.loc[k, "lower"]), _jf(ci.loc[k, "upper"])] for k in ci.index},
            "alpha_ci": float(self.alpha_ci),
            "bootstrap": self.bootstrap,
            "n_boot": 0 if self.boot is None else int(len(self.boot)),
            "n_boot_failed": int(self.n_boot_failed),
            "dispersion": _jf(self.dispersion),
            "llf": _jf(self.llf),
            "lr_flat": _jf(self.lr_flat),
            "lr_flat_threshold": _jf(self.lr_flat_threshold),
            "verdict": self.verdict,
            "verdict_reason": self.verdict_reason,
            "L_range": [float(v) for v in self.L_range],
            "n_runs": self.n_runs,
            "nobs": int(self.nobs),
            "n_checkpoints": int(self.n_checkpoints),
            "n_starts": int(self.n_starts),
            "n_converged": int(self.n_converged),
            "warnings": list(self.warnings),
            "side_counts": self.side_counts.to_dict("records"),
        }
        if self.kind == "law":
            d["D_values"] = [float(v) for v in self.D_values]
            d["emergence"] = [_jrec(r) for r in self._emergence(self.D_values).to_dict("records")]
            d["d0"] = None if self.d0 is None else float(self.d0)
            fs = self.few_shot
            d["few_shot_emergence"] = None if fs is None else _jrec(fs.to_dict())
        else:
            d["emergence"] = {k: v for k, v in _jrec(self._emergence().iloc[0].to_dict()).items() if k != "D"}
        return d


def _zero_width(lower, upper):
    """Whether each interval is a point up to rounding (refits that all return
    the same value, within the optimiser's tolerance), or not finite."""
    lo, hi = np.asarray(lower, float), np.asarray(upper, float)
    with np.errstate(invalid="ignore"):
        return ~(hi - lo > 1e-7 * (1.0 + np.abs(lo) + np.abs(hi)))


def _jrec(rec: dict) -> dict:
    """A record for JSON: numbers as floats (None for NaN), text as is (the verdict)."""
    return {k: v if isinstance(v, str) else _jf(v) for k, v in rec.items()}


def _check_level(alpha) -> float:
    a = float(alpha)
    if not 0 < a < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return a


# --------------------------------------------------------------------------
# fitting
# --------------------------------------------------------------------------


def _arrays(d: pd.DataFrame, kind: str, likelihood: str) -> _Data:
    L = d["L"].to_numpy(float)
    u = np.log(d["D"].to_numpy(float)) if kind == "law" else np.zeros(len(d))
    y = d["perf"].to_numpy(float)
    if likelihood == "binomial":
        n = d["n"].to_numpy(float)
        return _Data(L, u, y, n, np.round(y * n))
    return _Data(L, u, y, None, None)


def _fit_point(model, data, likelihood, n_starts, extra_start=None):
    """The best of the fits from ``n_starts`` grid starts (and ``extra_start``,
    in the reported parameters).  With ``n_starts=0`` only ``extra_start`` is
    tried, and the grid only when that fails (the bootstrap: its refits start
    at the full-data estimate, which is near their optimum)."""
    bounds = _bounds(model, data, likelihood)
    lo_b = np.array([b[0] for b in bounds])
    hi_b = np.array([b[1] for b in bounds])
    starts = [] if n_starts <= 0 else _starts(model, data, likelihood, n_starts, bounds)
    if extra_start is not None:
        starts = [np.clip(model.to_internal(extra_start), lo_b, hi_b)] + starts
    try:
        theta, z, fun, n_conv = _maximise(model, data, likelihood, starts, bounds)
    except ValueError:
        if n_starts > 0:
            raise
        starts = _starts(model, data, likelihood, 4, bounds)
        theta, z, fun, n_conv = _maximise(model, data, likelihood, starts, bounds)
    return theta, z, fun, n_conv, len(starts), bounds


def _flat_objective(data, likelihood, floor) -> float:
    """The objective (as :func:`_objective`) of a flat line at the floor: B
    fixed when given, else its maximum-likelihood value."""
    if likelihood == "binomial":
        p0 = float(np.clip(floor if floor is not None else data.c.sum() / data.n.sum(), _EPS, 1 - _EPS))
        return data.sat - float(data.c.sum() * math.log(p0) + (data.n - data.c).sum() * math.log1p(-p0))
    r = data.y - (floor if floor is not None else data.y.mean())
    N = len(r)
    return 0.5 * N * math.log(max(float(r @ r), 1e-300) / N)


def _dispersion(model, data, likelihood, theta, p):
    mu = model.mean(theta, data.L, data.u)
    df = len(data.y) - p
    if likelihood == "binomial":
        m = np.clip(mu, _EPS, 1 - _EPS)
        x2 = float(np.sum((data.c - data.n * m) ** 2 / (data.n * m * (1 - m))))
        return x2 / df if df > 0 else float("nan"), mu
    r = data.y - mu
    return float(r @ r) / df if df > 0 else float("nan"), mu


def _simulate(model, data, likelihood, theta, dispersion, rng) -> _Data:
    mu = model.mean(theta, data.L, data.u)
    if likelihood == "binomial":
        p = np.clip(mu, _EPS, 1 - _EPS)
        n = data.n
        if np.isfinite(dispersion) and dispersion > 1:
            # beta-binomial with variance dispersion * p(1-p)/n on the proportion
            rho = np.clip((dispersion - 1) / np.maximum(n - 1, 1), 1e-12, 0.999)
            s = 1 / rho - 1
            p = rng.beta(p * s, (1 - p) * s)
        c = rng.binomial(n.astype(np.int64), p).astype(float)
        return _Data(data.L, data.u, c / n, n, c)
    sd = math.sqrt(dispersion) if np.isfinite(dispersion) else 0.0
    return _Data(data.L, data.u, mu + sd * rng.standard_normal(len(mu)), None, None)


def _fit(df, *, kind, tau, floor, likelihood, n_starts, n_boot, bootstrap, d0, alpha_ci, seed, progress):
    if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau > 0):
        raise ValueError(f"tau (softplus temperature, nats) must be > 0, got {tau!r}")
    if floor is not None and not (math.isfinite(float(floor))):
        raise ValueError(f"floor must be a finite number, got {floor!r}")
    if bootstrap not in _BOOTSTRAPS:
        raise ValueError(f"bootstrap must be one of {_BOOTSTRAPS}, got {bootstrap!r}")
    if int(n_boot) < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot!r}")
    alpha_ci = _check_level(alpha_ci)
    d = _validate(df, need_d=(kind == "law"))
    notes = []
    if kind == "law":
        few = d["D"] == 0
        if few.any():
            notes.append(f"{int(few.sum())} few-shot row(s) (D = 0) left out of the law: E(D) is defined for "
                         "D >= 1; fit them with fit_emergence_curve")
            d = d[~few].reset_index(drop=True)
        bad = d["D"] < 1
        if bad.any():
            raise ValueError(f"column D must be 0 (few-shot) or >= 1 (finetuning examples); bad rows: "
                             f"{d.loc[bad, ['checkpoint', 'D']].head(5).to_dict('records')}")
        nd = d["D"].nunique()
        if nd < 3:
            raise ValueError(f"E(D) = k*(log D)^alpha + C has 3 parameters: need finetuned rows at >= 3 distinct "
                             f"D >= 1, got {nd} ({sorted(d['D'].unique().tolist())})")
        if d0 is not None and not (math.isfinite(float(d0)) and float(d0) >= 1):
            raise ValueError(f"d0 (the few-shot limit) must be >= 1 so that log D0 >= 0, got {d0!r}")
    need = 2 if floor is not None else 3
    if d["L"].nunique() < need:
        raise ValueError(f"need checkpoints at >= {need} distinct losses L to locate a kink, "
                         f"got {d['L'].nunique()}")
    asked = likelihood
    likelihood = _choose_likelihood(d, likelihood)
    if asked == "auto" and likelihood == "gaussian" and "n" in d.columns:
        notes.append("column n is given but perf * n is not a whole number of items everywhere "
                     "(not a proportion of items): Gaussian likelihood")
    data = _arrays(d, kind, likelihood)
    u_ref = (float(data.u.min()), float(data.u.max())) if kind == "law" else None
    model = _Model(kind, float(tau), None if floor is None else float(floor), u_ref)
    theta, z, fun, n_conv, n_st, bounds = _fit_point(model, data, likelihood, n_starts)
    p = len(theta)
    disp, mu = _dispersion(model, data, likelihood, theta, p)
    try:
        H = _hessian(model, data, likelihood, theta)
        cov = np.linalg.pinv(H)
        if likelihood == "binomial" and np.isfinite(disp):
            cov = cov * max(1.0, disp)
    except (np.linalg.LinAlgError, ValueError):
        cov = np.full((p, p), np.nan)
    lo_b = np.array([b[0] for b in bounds])
    hi_b = np.array([b[1] for b in bounds])
    at_bound = [nm for nm, t, lo, hi in zip(model.internal_names, z, lo_b, hi_b)
                if np.isclose(t, lo, atol=1e-7) or np.isclose(t, hi, atol=1e-7)]
    if at_bound:
        notes.append(f"parameter(s) {at_bound} at a bound: Wald intervals do not apply to them")
    # which side of the kink each row lies on
    e_rows = model.emergence(model.split(theta)[2], data.u)[0]
    keys = d["D"] if kind == "law" else pd.Series(["all"] * len(d))
    side = pd.DataFrame({"D": keys.to_numpy(), "pre": data.L > e_rows, "post": data.L < e_rows})
    side = side.groupby("D", sort=True).agg(pre=("pre", "sum"), post=("post", "sum")).reset_index()
    side["pre"] = side["pre"].astype(int)
    side["post"] = side["post"].astype(int)
    llf_flat = -_flat_objective(data, likelihood, model.floor)
    verdict, reason, lr_thr = _verdict(data, side, kind, likelihood, -fun, llf_flat, disp, len(model.e_names) + 1)
    if verdict == NO_EMERGENCE:
        notes.append(f"{NO_EMERGENCE}: {reason}; no emergence point is reported (E and its interval are NaN)")
    elif kind == "law" and (side["post"] == 0).any():
        notes.append(f"no row past the kink at D = {side.loc[side['post'] == 0, 'D'].tolist()}: "
                     "E there comes from the law alone")
    if (side["pre"] == 0).all() and floor is None:
        notes.append("no row before the kink: the floor B and the emergence point trade off")
    ckpts = d["checkpoint"].unique()
    # The bootstrap's clusters: whole runs when the input says which run each
    # checkpoint comes from (its checkpoints share the run's data order and
    # seed), else whole checkpoints.
    by_run = "run" in d.columns
    unit = "run" if by_run else "checkpoint"
    if bootstrap == "run" and not by_run:
        raise ValueError("bootstrap='run' resamples training runs: it needs a column run (the run each "
                         "checkpoint comes from)")
    if bootstrap == "checkpoint" and by_run:
        bootstrap = "run"  # checkpoints of one run are not independent: resample them together
    if bootstrap == "run" and d["run"].nunique() < 2 and n_boot > 0:
        raise ValueError(f"a bootstrap over runs needs >= 2 runs, the data have 1 ({d['run'].iloc[0]!r}): every "
                         "resample would be the data themselves (a zero-width interval); use "
                         "bootstrap='parametric' (or 'auto')")
    if bootstrap == "auto":
        cl = d[unit].to_numpy()
        n_post = len(set(cl[data.L < e_rows]))
        n_pre = len(set(cl[data.L > e_rows]))
        cluster_ok = len(set(cl)) >= _MIN_CKPT_CLUSTER_BOOT and min(n_pre, n_post) >= _MIN_CKPT_SIDE
        bootstrap = unit if cluster_ok else "parametric"
    boot_df, n_fail = None, 0
    if n_boot > 0 and bootstrap != "none":
        boot_df, n_fail = _bootstrap(d, model, data, likelihood, theta, disp, bootstrap, int(n_boot),
                                     seed, progress)
        if n_fail > 0.1 * n_boot:
            notes.append(f"{n_fail} of {n_boot} bootstrap refits failed; the intervals condition on success")
    fitted = d.assign(fitted=np.clip(mu, 0, 1) if likelihood == "binomial" else mu)
    res = EmergenceLawResults(
        kind=kind, params=pd.Series(theta, index=model.names), cov_params_=cov, likelihood=likelihood,
        tau=float(tau), floor=model.floor, dispersion=disp, llf=-fun, llf_flat=llf_flat,
        verdict=verdict, verdict_reason=reason, lr_flat_threshold=lr_thr,
        n_runs=int(d["run"].nunique()) if by_run else None,
        nobs=len(d),
        n_checkpoints=len(ckpts),
        D_values=sorted(d["D"].unique().tolist()) if kind == "law" else [],
        data=fitted, side_counts=side, n_starts=n_st, n_converged=n_conv,
        d0=None if d0 is None or kind != "law" else float(d0), alpha_ci=alpha_ci, boot=boot_df,
        bootstrap=bootstrap if boot_df is not None else "none", n_boot_failed=n_fail, warnings=notes,
    )
    fs = res.few_shot
    if fs is not None:  # the forecast itself is usually an extrapolation: say how far
        w = res._range_warning([fs["E"]], [f"E(D0={res.d0:g}) = {fs['E']:.4g} nats"])
        if w:
            notes.append(w)
    for w in notes:
        warnings.warn(w, UserWarning, stacklevel=3)
    return res


def _verdict(data, side, kind, likelihood, llf, llf_flat, disp, df_lr):
    """(verdict, reason, threshold of lr_flat): see "Verdict" in the module docstring."""
    thr = float(stats.chi2.ppf(1 - _LR_LEVEL, df_lr))
    y = data.y
    if float(np.ptp(y)) <= 1e-12 * max(1.0, float(np.max(np.abs(y)))):
        return NO_EMERGENCE, f"every score is {y[0]:.6g}: constant scores have no emergence point", thr
    lo, hi = float(data.L.min()), float(data.L.max())
    if (side["post"] == 0).all():
        where = " at any D" if kind == "law" else ""
        return (NO_EMERGENCE, f"no checkpoint lies past the fitted kink{where}: the scores do not rise above "
                f"their floor within the losses fitted ({lo:.4g} to {hi:.4g} nats)", thr)
    lr = 2.0 * (llf - llf_flat)
    # binomial with extra-binomial scatter: the deviance difference over phi,
    # as for any quasi-likelihood comparison
    scale = max(1.0, disp) if likelihood == "binomial" and np.isfinite(disp) else 1.0
    stat = lr / scale
    if not stat > thr:
        how = f"2*dllf = {lr:.3g}" + (f" / dispersion {scale:.3g} = {stat:.3g}" if scale > 1 else "")
        return (NO_EMERGENCE, f"the law fits no better than a flat line at the floor: {how} <= {thr:.3g}, "
                f"the 95% point of chi2({df_lr})", thr)
    return EMERGENCE, "", thr


def _bootstrap(d, model, data, likelihood, theta, disp, how, n_boot, seed, progress):
    from lm_eval_ext.conventions.console import progress_bar

    rng = np.random.default_rng(seed)
    # clusters resampled whole: runs (how == "run") or checkpoints
    key = d["run" if how == "run" else "checkpoint"].to_numpy()
    groups = [np.flatnonzero(key == c) for c in pd.unique(key)]
    rows, n_fail = [], 0
    for _ in progress_bar(range(n_boot), desc=f"{how} bootstrap", enabled=progress, leave=False):
        if how in ("checkpoint", "run"):
            pick = rng.integers(0, len(groups), size=len(groups))
            idx = np.concatenate([groups[i] for i in pick])
            sub = data.take(idx)
            if len(np.unique(sub.L)) < (2 if model.floor is not None else 3) or (
                    model.kind == "law" and len(np.unique(sub.u)) < 3):
                n_fail += 1
                continue
        else:
            sub = _simulate(model, data, likelihood, theta, disp, rng)
        try:
            th, _, _, _, _, _ = _fit_point(model, sub, likelihood, n_starts=0, extra_start=theta)
        except ValueError:
            n_fail += 1
            continue
        rows.append(th)
    if len(rows) < 2:
        return None, n_fail
    return pd.DataFrame(np.array(rows), columns=model.names), n_fail


def fit_emergence_law(df: pd.DataFrame, *, d0: Optional[float] = None, tau: float = 0.05,
                      floor: Optional[float] = None, likelihood: str = "auto", n_starts: int = 8,
                      n_boot: int = 200, bootstrap: str = "auto", alpha_ci: float = 0.05, seed: int = 0,
                      progress: bool = False) -> EmergenceLawResults:
    """Fit ``Perf = A*ReLU(E(D) - L) + B`` with ``E(D) = k (log D)^alpha + C``
    by maximum likelihood over every finetuned (checkpoint, D, seed) row.

    ``df``: columns checkpoint, L, D, perf, optionally n (see the module
    docstring); rows with D = 0 (few-shot) are left out with a warning.
    ``d0``: the few-shot limit (>= 1) at which ``E(D0)`` is reported.
    ``tau``: softplus temperature in nats.  ``floor``: fix B (e.g. chance
    accuracy).  ``likelihood``: "auto", "binomial" or "gaussian".
    ``bootstrap``: "auto" (clusters when >= 20 with >= 4 on each side of
    the kink, else parametric), "checkpoint", "run", "parametric" or "none";
    with a column ``run`` the clusters are runs (all checkpoints of a run
    drawn together; "checkpoint" then means "run"); ``n_boot`` refits,
    seeded by ``seed``; ``progress`` shows a tqdm bar.  The results carry a
    ``verdict`` (see the module docstring): without emergence in range there
    is no emergence point, and ``emergence_loss``/``few_shot`` are NaN.
    """
    return _fit(df, kind="law", tau=tau, floor=floor, likelihood=likelihood, n_starts=n_starts,
                n_boot=n_boot, bootstrap=bootstrap, d0=d0, alpha_ci=alpha_ci, seed=seed, progress=progress)


def fit_emergence_curve(df: pd.DataFrame, *, tau: float = 0.05, floor: Optional[float] = None,
                        likelihood: str = "auto", n_starts: int = 8, n_boot: int = 200,
                        bootstrap: str = "auto", alpha_ci: float = 0.05, seed: int = 0,
                        progress: bool = False) -> EmergenceLawResults:
    """Fit one curve ``Perf = A*ReLU(E - L) + B`` (no D: e.g. the few-shot rows,
    or accuracy against validation loss across a model family).  Same
    likelihoods, bounds, starts and bootstrap as :func:`fit_emergence_law`;
    column D, if present, is ignored.

    To *predict* a new model's score from its loss, use
    :func:`analysis.forecast.lossacc.fit_loss_forecast` (``python -m analysis
    backtest --x loss``): its intervals are for a new model (scatter between
    models, extrapolation error calibrated by forward chaining), where this
    curve's bootstrap bands are for the mean curve, and a line above the
    kink cannot follow accuracy that saturates or keeps accelerating (on Gadre
    et al.'s ladders, fit <= 411M and predict 1.4B/6.9B: mean absolute error
    0.077 here against 0.042 there; bench/loss_coverage.py)."""
    return _fit(df, kind="curve", tau=tau, floor=floor, likelihood=likelihood, n_starts=n_starts,
                n_boot=n_boot, bootstrap=bootstrap, d0=None, alpha_ci=alpha_ci, seed=seed, progress=progress)


# --------------------------------------------------------------------------
# D0 and backtests
# --------------------------------------------------------------------------


def calibrate_d0(fit: EmergenceLawResults, emergence_loss: float) -> float:
    """The ``D0`` at which the fitted ``E(D)`` equals an observed few-shot
    emergence point: ``(log D0) = ((E_obs - C) / k)^(1/alpha)``.  Raises when
    the observed point is below ``C = E(1)`` (no ``D0 >= 1`` reaches it) or
    ``k = 0``."""
    if fit.kind != "law":
        raise ValueError("calibrate_d0 needs a law fit (fit_emergence_law)")
    if not fit.emerged:
        raise ValueError(f"the law fit shows {NO_EMERGENCE} ({fit.verdict_reason}): no E(D) to calibrate against")
    k, alpha, C = (float(fit.params[n]) for n in ("k", "alpha", "C"))
    e = float(emergence_loss)
    if not math.isfinite(e):
        raise ValueError(f"emergence_loss must be finite, got {emergence_loss!r}")
    if k <= 0:
        raise ValueError("the fitted law has k = 0 (E does not move with D): no D0 to calibrate")
    if e < C:
        raise ValueError(f"the observed emergence loss {e:.4g} is below E(1) = C = {C:.4g}: "
                         "no D0 >= 1 reaches it")
    return float(math.exp(((e - C) / k) ** (1.0 / alpha)))


@dataclass
class EmergenceBacktest:
    """Fit the law on checkpoints before few-shot emergence; compare its
    ``E(D0)`` with the emergence point of the observed few-shot curve.

    ``error_nats = predicted - observed`` (positive: emergence predicted at a
    higher loss, i.e. earlier, than it happened); ``covered``: whether the
    observed point lies in the predicted interval.  ``lead_loss``: how far
    the loss still had to fall from the strongest checkpoint used to the
    observed emergence point (nats).  ``lead_flops_ratio``: pretraining FLOPs
    at the observed emergence point (log-linear interpolation of FLOPs
    against loss over the checkpoints) over the FLOPs of the strongest
    checkpoint used; None without a flops column or when the point lies
    outside the checkpoints' losses.

    ``verdict``: :data:`EMERGENCE` when the few-shot curve shows its
    emergence point and the law fitted before it shows one too; else
    :data:`NO_EMERGENCE` with ``verdict_reason``.  Then there is nothing to
    compare: ``error_nats``, ``covered`` and ``lead_loss`` are None and
    ``observed``/``predicted`` NaN where missing (a flat few-shot curve has no
    emergence point to score the prediction against).
    """

    cutoff: float
    cutoff_detected: bool
    checkpoints_used: list
    fewshot: EmergenceLawResults
    law: EmergenceLawResults
    observed: float
    observed_interval: tuple
    predicted: float
    predicted_interval: tuple
    error_nats: Optional[float]
    covered: Optional[bool]
    lead_loss: Optional[float]
    lead_flops_ratio: Optional[float]
    predicted_flops: Optional[float]
    observed_flops: Optional[float]
    verdict: str = EMERGENCE
    verdict_reason: str = ""

    def summary(self) -> str:
        if math.isfinite(self.cutoff):
            how = "detected (few-shot emergence point)" if self.cutoff_detected else "given"
            cut = f"cutoff L > {self.cutoff:.4f} nats ({how})"
        else:
            cut = "cutoff: none (no few-shot emergence in range: every checkpoint used)"

        def point(v, iv):
            if not math.isfinite(v):
                return "none (no emergence in range)"
            return f"{v:.4f} nats  [{iv[0]:.4f}, {iv[1]:.4f}]"

        lines = [
            "Emergence backtest: law fitted on pre-emergence checkpoints only",
            "=" * 72,
            f"{cut}; checkpoints used: {len(self.checkpoints_used)}",
            f"observed few-shot emergence: {point(self.observed, self.observed_interval)}",
            f"predicted E(D0={self.law.d0:g}):        {point(self.predicted, self.predicted_interval)}",
            f"verdict: {self.verdict}" + (f": {self.verdict_reason}" if self.verdict_reason else ""),
        ]
        if self.error_nats is None:
            lines.append("error, coverage: not scored (nothing to compare)")
        else:
            lines.append(f"error: {self.error_nats:+.4f} nats "
                         f"({'inside' if self.covered else 'outside'} the interval)")
        if self.lead_loss is not None:
            lines.append(f"lead: the strongest checkpoint used is {self.lead_loss:.4f} nats of pretraining loss "
                         "above the observed emergence point")
            if self.lead_flops_ratio is not None:
                lines.append(f"      which took {self.lead_flops_ratio:.3g}x its pretraining FLOPs to reach")
        lines.append("=" * 72)
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "cutoff": _jf(self.cutoff), "cutoff_detected": bool(self.cutoff_detected),
            "checkpoints_used": [str(c) for c in self.checkpoints_used],
            "verdict": self.verdict, "verdict_reason": self.verdict_reason,
            "observed": _jf(self.observed), "observed_interval": [_jf(v) for v in self.observed_interval],
            "predicted": _jf(self.predicted), "predicted_interval": [_jf(v) for v in self.predicted_interval],
            "d0": float(self.law.d0),
            "error_nats": None if self.error_nats is None else _jf(self.error_nats),
            "covered": None if self.covered is None else bool(self.covered),
            "lead_loss": None if self.lead_loss is None else _jf(self.lead_loss),
            "lead_flops_ratio": None if self.lead_flops_ratio is None else _jf(self.lead_flops_ratio),
            "observed_flops": None if self.observed_flops is None else _jf(self.observed_flops),
            "predicted_flops": None if self.predicted_flops is None else _jf(self.predicted_flops),
            "law": self.law.to_dict(), "fewshot": self.fewshot.to_dict(),
        }


def _flops_at(loss: float, ck: pd.DataFrame) -> Optional[float]:
    """log FLOPs interpolated linearly in the loss between checkpoints; None
    outside their range or without FLOPs."""
    if "flops" not in ck.columns:
        return None
    c = ck.dropna(subset=["flops"])
    c = c[c["flops"] > 0].sort_values("L")
    if len(c) < 2 or not (c["L"].min() <= loss <= c["L"].max()):
        return None
    return float(np.exp(np.interp(loss, c["L"].to_numpy(), np.log(c["flops"].to_numpy()))))


def backtest_emergence(df: pd.DataFrame, *, d0: float, cutoff: Optional[float] = None,
                       **fit_kwargs) -> EmergenceBacktest:
    """Backtest the few-shot emergence prediction.

    ``df`` has the columns of :func:`fit_emergence_law` (D = 0 rows are the
    few-shot evaluations) and optionally ``flops`` per checkpoint.  The
    observed few-shot emergence point is the kink of
    :func:`fit_emergence_curve` on the D = 0 rows of every checkpoint;
    ``cutoff`` (nats) defaults to it.  The law is fitted on the finetuned rows
    of the checkpoints with ``L > cutoff`` only (those that have not emerged
    few-shot), and its ``E(d0)`` is compared with the observed point.
    ``fit_kwargs`` (tau, floor, likelihood, n_boot, bootstrap, seed, ...) go
    to both fits.

    When the few-shot curve shows no emergence in range (a flat curve:
    nothing has emerged, so every checkpoint is used unless ``cutoff`` is
    given) or the law fitted before the cutoff shows none, the result's
    ``verdict`` says so and there is no error or coverage (None): a
    prediction cannot be scored against an emergence point that was not
    observed.
    """
    d = _validate(df, need_d=True)
    few = d[d["D"] == 0]
    if few["checkpoint"].nunique() < 3:
        raise ValueError(f"the backtest needs few-shot rows (D = 0) for >= 3 checkpoints to locate the observed "
                         f"emergence point; got {few['checkpoint'].nunique()}")
    fs = fit_emergence_curve(few, **fit_kwargs)
    obs = fs._emergence().iloc[0]
    ck = d.groupby("checkpoint", sort=False).agg(L=("L", "first"),
                                                 **({"flops": ("flops", "first")} if "flops" in d.columns else {}))
    detected = cutoff is None and fs.emerged
    if cutoff is not None:
        cut = float(cutoff)
        used = ck.index[ck["L"] > cut].tolist()
    elif fs.emerged:
        cut = float(obs["E"])
        used = ck.index[ck["L"] > cut].tolist()
    else:
        # no few-shot emergence in range: no checkpoint has emerged, all are "before" it
        cut = float("nan")
        used = ck.index.tolist()
    train = d[d["checkpoint"].isin(used) & (d["D"] > 0)]
    if train["checkpoint"].nunique() < 2:
        raise ValueError(f"fewer than 2 checkpoints with L > cutoff {cut:.4g} have finetuned rows: "
                         f"{used}; nothing to fit the law on")
    law = fit_emergence_law(train, d0=d0, **fit_kwargs)
    pred = law.few_shot
    if not fs.emerged:
        verdict, reason = NO_EMERGENCE, f"the observed few-shot curve: {fs.verdict_reason}"
    elif not law.emerged:
        verdict, reason = NO_EMERGENCE, f"the law fitted on the checkpoints before the cutoff: {law.verdict_reason}"
    else:
        verdict, reason = EMERGENCE, ""
    scored = verdict == EMERGENCE
    strongest = float(ck.loc[used, "L"].min())
    f_obs = _flops_at(float(obs["E"]), ck.reset_index()) if fs.emerged else None
    f_pred = _flops_at(float(pred["E"]), ck.reset_index()) if law.emerged else None
    f_used = None
    if "flops" in ck.columns:
        fu = ck.loc[used, "flops"].dropna()
        f_used = float(fu.max()) if len(fu) else None
    ratio = f_obs / f_used if (f_obs is not None and f_used) else None
    return EmergenceBacktest(
        cutoff=cut, cutoff_detected=detected, checkpoints_used=used, fewshot=fs, law=law,
        observed=float(obs["E"]), observed_interval=(float(obs["lower"]), float(obs["upper"])),
        predicted=float(pred["E"]), predicted_interval=(float(pred["lower"]), float(pred["upper"])),
        error_nats=float(pred["E"] - obs["E"]) if scored else None,
        covered=bool(pred["lower"] <= obs["E"] <= pred["upper"]) if scored else None,
        lead_loss=strongest - float(obs["E"]) if fs.emerged else None, lead_flops_ratio=ratio,
        predicted_flops=f_pred, observed_flops=f_obs, verdict=verdict, verdict_reason=reason,
    )
