"""Alternatives to the task scaling law: the paper's two-circuit mixture.

Hu et al. (2023, Sec. 6) explain *accelerated emergence* -- a task curve
that is concave in ``y = log(-log PU)`` vs ``x = log N`` -- with two
hypotheses and keep the second:

* **multi-step reasoning**: the task needs ``k`` steps, each obeying its own
  law, and passes only when every step passes:
  ``PU = prod_j exp(-c_j N^-a_j) = exp(-sum_j c_j N^-a_j)``.  Then
  ``y = log(sum_j exp(log c_j - a_j x))`` is a log-sum-exp of lines, which is
  *convex* in ``x``: this cannot produce accelerated emergence.
* **multiple circuits**: the task can be solved by either of two circuits
  (mechanisms), used with weights ``w`` and ``1 - w``, each with its own law:
  ``PU = w exp(-c1 N^-a1) + (1 - w) exp(-c2 N^-a2)``.  While PU is small,
  ``-log PU`` is about the smaller of ``c_j N^-a_j - log w_j``, so the
  curve switches from the circuit that is better at small N to the steeper
  one: ``y`` falls faster as N grows (concave).

:func:`compare_curves` fits four curves to the same task-level data and
likelihood and compares them:

=============  ==  ==========================================================
model          k   PU(N), with xc = log N - mean(log N)
=============  ==  ==========================================================
law            2   exp(-exp(a - b xc))                  (the task scaling law)
quadratic      3   exp(-exp(a - b xc + q xc^2))         (a local bend)
multi_step     4   exp(-exp(a1 - b1 xc) - exp(a2 - b2 xc))
two_circuit    5   w exp(-exp(a1 - b1 xc)) + (1 - w) exp(-exp(a2 - b2 xc))
=============  ==  ==========================================================

Data and likelihood are those of the task-level fit of
:func:`analysis.tasklaw.law.fit_task_law` (``level="task"``): the task PU per
size (mean over instances of c/n) with binomial weight ``n_eff``, the size
whose binomial variance equals the sampling variance of that mean.  So the
``law`` row reproduces the task-level GLM's deviance.

Comparison
----------
* ``aic = deviance / phi + 2 k`` (QAIC when ``phi > 1``).  ``phi`` is the
  Pearson dispersion of the global model (Burnham & Anderson's c-hat): the
  two-circuit fit when it leaves at least 2 residual df (``S >= 7`` sizes),
  else the quadratic bend; floored at 1 (binomial noise is known).  Between-
  size scatter beyond sampling noise then raises ``phi`` instead of being
  mistaken for curvature.
* A model needs at least one residual degree of freedom (``S > k``) to be
  compared; with fewer sizes its row is kept with ``aic = NaN`` and a note.
* ``lr_pvalue``: the likelihood-ratio test of the law against the two-circuit
  model.  The law is nested in it at ``w = 1`` (a boundary, so the LR
  statistic is not chi2), hence a **parametric bootstrap**: data sets are
  simulated from the fitted law with quasi-binomial noise of dispersion
  ``phi`` (binomial with size ``n_eff / phi``), both models are refitted,
  and the p-value is ``(1 + #{LR* >= LR / phi}) / (1 + B)``.

Instances are circuits too: the task PU is the mean over instances, and a
mean of laws with different ``c_i`` is itself a mixture, concave in ``y``.
With many samples per instance the comparison therefore prefers a bent curve
for a task whose instances each follow the law but differ in difficulty
(observed: 39 of 40 simulated tasks with instance spread sd 0.3 in
``log c_i``).  To ask whether single instances bend, use the per-instance
lack of fit of ``fit_task_law(level="instance")``.

Limits: the two-circuit model has five parameters; with six sizes it leaves
one residual degree of freedom, and the weights and the shallow circuit are
poorly determined unless the curve visibly bends inside the data.  Its
``predict`` gives point predictions only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pandas as pd
from scipy import optimize, special

from .base import _by_size, _validate

__all__ = ["compare_curves", "CurveComparison", "CurveFit", "fit_curve", "MODELS"]

MODELS = {"law": 2, "quadratic": 3, "multi_step": 4, "two_circuit": 5}
_EPS = 1e-300


def _pu_jac(model: str, theta: np.ndarray, xc: np.ndarray):
    """PU at each size and its Jacobian with respect to ``theta`` (S x k)."""
    theta = np.asarray(theta, float)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        if model in ("law", "quadratic"):
            a, b = theta[0], theta[1]
            q = theta[2] if model == "quadratic" else 0.0
            u = np.exp(a - b * xc + q * xc**2)
            p = np.exp(-u)
            cols = [-p * u, p * u * xc] + ([-p * u * xc**2] if model == "quadratic" else [])
            return p, np.column_stack(cols)
        if model == "multi_step":
            a1, b1, a2, b2 = theta
            u1, u2 = np.exp(a1 - b1 * xc), np.exp(a2 - b2 * xc)
            p = np.exp(-u1 - u2)
            return p, np.column_stack([-p * u1, p * u1 * xc, -p * u2, p * u2 * xc])
        if model == "two_circuit":
            a1, b1, a2, b2, om = theta
            w = special.expit(om)
            u1, u2 = np.exp(a1 - b1 * xc), np.exp(a2 - b2 * xc)
            e1, e2 = np.exp(-u1), np.exp(-u2)
            p = w * e1 + (1 - w) * e2
            return p, np.column_stack([-w * e1 * u1, w * e1 * u1 * xc, -(1 - w) * e2 * u2,
                                       (1 - w) * e2 * u2 * xc, (e1 - e2) * w * (1 - w)])
    raise ValueError(f"unknown model {model!r}; choose from {sorted(MODELS)}")


def _pu(model: str, theta: np.ndarray, xc: np.ndarray) -> np.ndarray:
    return _pu_jac(model, theta, xc)[0]


def _nll(theta, model, xc, y, w):
    """Negative binomial log-likelihood (weights w) and its gradient."""
    p, J = _pu_jac(model, theta, xc)
    inside = (p > 1e-300) & (p < 1 - 1e-16)
    p = np.clip(p, 1e-300, 1 - 1e-16)
    nll = -float(np.sum(w * (y * np.log(p) + (1 - y) * np.log1p(-p))))
    dp = np.where(inside, -w * (y / p - (1 - y) / (1 - p)), 0.0)
    return nll, np.nan_to_num(dp @ J)


def _saturated_ll(y, w):
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(y > 0, y * np.log(np.maximum(y, _EPS)), 0.0)
        t = t + np.where(y < 1, (1 - y) * np.log(np.maximum(1 - y, _EPS)), 0.0)
    return float(np.sum(w * t))


def _starts(model, law, rng, xc, n_random):
    """Starting points: the law itself (every alternative contains it or gets
    close to it), splits into an early and a late line, and random jitter."""
    a, b = law
    span = max(float(np.ptp(xc)), 1e-6)
    starts = []
    if model == "law":
        return [np.array([a, b])]
    if model == "quadratic":
        return [np.array([a, b, 0.0]), np.array([a, b, 0.1 / span]), np.array([a, b, -0.1 / span])]
    if model == "multi_step":
        # split c into two equal steps, then one dominant step plus a minor one
        starts = [np.array([a - np.log(2), b, a - np.log(2), b]),
                  np.array([a, b, a - 3.0, 0.5 * b]), np.array([a - 3.0, 2 * b, a, b])]
    else:  # two_circuit: a shallow circuit and a steep one, various weights
        for om in (0.0, 2.0, -2.0):
            starts.append(np.array([a, 0.5 * b, a + 1.0, 2.0 * b, om]))
            starts.append(np.array([a + 1.0, 2.0 * b, a, 0.5 * b, om]))
        starts.append(np.array([a, b, a, b, 5.0]))
    k = MODELS[model]
    for _ in range(n_random):
        base = starts[rng.integers(len(starts))]
        starts.append(base + rng.normal(0, 1.0, size=k) * np.r_[np.ones(k - 1), 2.0][:k])
    return starts


def _bounds(model):
    # slopes and intercepts on the y scale stay finite; |omega| <= 12 keeps
    # each circuit's weight above ~6e-6 so both remain identifiable numbers
    big = (-60.0, 60.0)
    slope = (-30.0, 30.0)
    return {"law": [big, slope], "quadratic": [big, slope, (-20.0, 20.0)],
            "multi_step": [big, slope, big, slope],
            "two_circuit": [big, slope, big, slope, (-12.0, 12.0)]}[model]


@dataclass
class CurveFit:
    """One curve fitted by maximum (quasi-)likelihood to task-level PU."""

    model: str
    params: pd.Series
    deviance: float
    pearson_chi2: float
    k: int
    n_sizes: int
    xbar: float
    converged: bool

    @property
    def df_resid(self) -> int:
        return self.n_sizes - self.k

    def predict(self, N) -> np.ndarray:
        """Point prediction of task PU at sizes ``N`` (no interval)."""
        N = np.atleast_1d(np.asarray(N, float))
        if np.any(~np.isfinite(N)) or np.any(N <= 0):
            raise ValueError("N must be finite and > 0")
        return _pu(self.model, self.params.to_numpy(), np.log(N) - self.xbar)

    def circuits(self) -> Optional[pd.DataFrame]:
        """For the two-circuit model: each circuit's weight, log c and alpha
        (``PU_j = exp(-c_j N^-alpha_j)``), ordered by alpha."""
        if self.model != "two_circuit":
            return None
        a1, b1, a2, b2, om = self.params.to_numpy()
        w = float(special.expit(om))
        rows = [{"weight": w, "log_c": a1 + b1 * self.xbar, "alpha": b1},
                {"weight": 1 - w, "log_c": a2 + b2 * self.xbar, "alpha": b2}]
        return pd.DataFrame(rows).sort_values("alpha").reset_index(drop=True)


def _fit_from(model, xc, y, w, start):
    return optimize.minimize(_nll, start, args=(model, xc, y, w), jac=True, method="L-BFGS-B",
                             bounds=_bounds(model))


def _fit(model, xc, y, w, law, rng, n_random=8) -> CurveFit:
    best = None
    for s in _starts(model, law, rng, xc, n_random):
        r = _fit_from(model, xc, y, w, s)
        if best is None or r.fun < best.fun:
            best = r
    theta = best.x
    p = np.clip(_pu(model, theta, xc), 1e-300, 1 - 1e-16)
    dev = max(0.0, 2.0 * (_saturated_ll(y, w) + best.fun))
    pearson = float(np.sum(w * (y - p) ** 2 / (p * (1 - p))))
    names = {"law": ["a", "b"], "quadratic": ["a", "b", "q"], "multi_step": ["a1", "b1", "a2", "b2"],
             "two_circuit": ["a1", "b1", "a2", "b2", "omega"]}[model]
    return CurveFit(model=model, params=pd.Series(theta, index=names), deviance=dev,
                    pearson_chi2=pearson, k=MODELS[model], n_sizes=len(y), xbar=0.0,
                    converged=bool(best.success))


def _prepare(df):
    d = _validate(df, min_sizes=3)
    s = _by_size(d)
    x = np.log(s["N"].to_numpy())
    xbar = float(x.mean())
    return d, s, x - xbar, xbar


def _law_start(xc, y, w):
    """The law on the centred scale from a weighted LS of y=log(-log ybar)."""
    ok = (y > 0) & (y < 1)
    if ok.sum() >= 2:
        eta = np.log(-np.log(y[ok]))
        b, a = np.polyfit(xc[ok], eta, 1, w=np.sqrt(w[ok]))
        return np.array([a, -b])
    return np.array([0.0, 1.0])


def fit_curve(df: pd.DataFrame, model: str = "two_circuit", *, random_state=0) -> CurveFit:
    """Fit one of :data:`MODELS` to the task-level PU of a counts table
    (columns N, instance, n, c; see :mod:`analysis.tasklaw.law`)."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose from {sorted(MODELS)}")
    _, s, xc, xbar = _prepare(df)
    y, w = s["pu"].to_numpy(), s["n_eff"].to_numpy()
    rng = np.random.default_rng(random_state)
    law = _fit("law", xc, y, w, _law_start(xc, y, w), rng).params.to_numpy()
    f = _fit(model, xc, y, w, law, rng)
    f.xbar = xbar
    return f


@dataclass
class CurveComparison:
    """:func:`compare_curves` output: one row per model in ``table``."""

    table: pd.DataFrame
    fits: dict
    phi: float
    lr_statistic: float
    lr_pvalue: float
    n_boot: int
    best: str
    notes: list = field(default_factory=list)

    def summary(self) -> str:
        lines = ["Task curve: law vs alternatives (task-level quasi-likelihood)",
                 f"dispersion phi used for QAIC: {self.phi:.3g}"]
        lines.append(self.table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        if np.isfinite(self.lr_pvalue):
            lines.append(f"law vs two-circuit: LR = {self.lr_statistic:.3g}, parametric-bootstrap "
                         f"p = {self.lr_pvalue:.3g} ({self.n_boot} simulations)")
        circ = self.fits["two_circuit"].circuits() if "two_circuit" in self.fits else None
        if circ is not None:
            lines.append("two-circuit components (PU_j = exp(-c_j N^-alpha_j)):")
            lines.append(circ.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        lines.append(f"preferred by QAIC: {self.best}")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)

    def to_dict(self) -> dict:
        def f(v):
            return None if v is None or (isinstance(v, float) and not np.isfinite(v)) else v
        out = {
            "phi": f(self.phi), "best": self.best, "lr_statistic": f(self.lr_statistic),
            "lr_pvalue": f(self.lr_pvalue), "n_boot": self.n_boot, "notes": list(self.notes),
            "models": [{k: (f(float(v)) if isinstance(v, (float, np.floating)) else v)
                        for k, v in row.items()} for row in self.table.to_dict("records")],
            "params": {m: {k: float(v) for k, v in fit.params.items()} for m, fit in self.fits.items()},
        }
        circ = self.fits["two_circuit"].circuits() if "two_circuit" in self.fits else None
        if circ is not None:
            out["two_circuit_components"] = circ.to_dict("records")
        return out


def _lr(xc, y, w, rng, two_start):
    law = _fit("law", xc, y, w, _law_start(xc, y, w), rng)
    a, b = law.params.to_numpy()
    # fewer starts than the main fit: the observed two-circuit estimate, the
    # law itself and one shallow/steep split (a bootstrap replicate is near
    # one of them)
    starts = [two_start, np.array([a, b, a, b, 5.0]), np.array([a, 0.5 * b, a + 1.0, 2.0 * b, 0.0])]
    two = min((_fit_from("two_circuit", xc, y, w, s0) for s0 in starts), key=lambda r: r.fun)
    return max(0.0, law.deviance - 2.0 * (_saturated_ll(y, w) + two.fun))
    return max(0.0, law.deviance - two.deviance)


def compare_curves(df: pd.DataFrame, *, n_boot: int = 199, random_state: int = 0,
                   progress: bool = False) -> CurveComparison:
    """Fit the law, a quadratic bend, the multi-step and the two-circuit
    curves to the task-level PU and compare them (see the module docstring).

    ``n_boot``: parametric-bootstrap simulations for the law-vs-two-circuit
    LR test (0 skips it).  Needs at least 3 sizes; models with no residual
    degree of freedom are listed but not compared.
    """
    if int(n_boot) < 0:
        raise ValueError("n_boot must be >= 0")
    d, s, xc, xbar = _prepare(df)
    y, w = s["pu"].to_numpy(), s["n_eff"].to_numpy()
    S = len(s)
    rng = np.random.default_rng(random_state)
    notes = []
    law0 = _law_start(xc, y, w)
    fits = {}
    for m in MODELS:
        start = law0 if m == "law" else fits["law"].params.to_numpy()
        f = _fit(m, xc, y, w, start, rng)
        f.xbar = xbar
        fits[m] = f
    # c-hat from the global model (Burnham & Anderson): the two-circuit one
    # when it leaves >= 2 df, else the quadratic bend
    glob = fits["two_circuit"] if fits["two_circuit"].df_resid >= 2 else fits["quadratic"]
    phi = max(1.0, glob.pearson_chi2 / glob.df_resid) if glob.df_resid >= 1 else 1.0
    if glob.df_resid < 2:
        notes.append(f"only {S} sizes: the dispersion phi rests on {max(glob.df_resid, 0)} df")
    rows = []
    for m, f in fits.items():
        ok = f.df_resid >= 1
        rows.append({"model": m, "k": f.k, "df_resid": f.df_resid, "deviance": f.deviance,
                     "aic": f.deviance / phi + 2 * f.k if ok else np.nan,
                     "converged": f.converged})
        if not ok:
            notes.append(f"{m}: {f.k} parameters for {S} sizes (no residual df); not compared")
    table = pd.DataFrame(rows)
    comparable = table.dropna(subset=["aic"])
    table["delta_aic"] = table["aic"] - comparable["aic"].min()
    best = str(comparable.loc[comparable["aic"].idxmin(), "model"])

    lr_stat, lr_p = float("nan"), float("nan")
    if n_boot and fits["two_circuit"].df_resid >= 1:
        lr_stat = max(0.0, fits["law"].deviance - fits["two_circuit"].deviance)
        # Null: the fitted law with quasi-binomial noise of dispersion phi
        # (the global model's), i.e. binomial with n_eff / phi; on that scale
        # the observed statistic is lr_stat / phi.  Estimating the scatter
        # from the law's own residuals instead would absorb a real bend into
        # the noise and leave the test without power.
        a, b = fits["law"].params.to_numpy()
        p_law = np.exp(-np.exp(a - b * xc))
        nn = np.maximum(np.round(w / phi).astype(np.int64), 1)
        target = lr_stat / phi
        it = range(int(n_boot))
        if progress:
            from lm_eval_ext.conventions.console import progress_bar
            it = progress_bar(it, desc="two-circuit LR bootstrap", unit="sim")
        exceed = 0
        two_start = fits["two_circuit"].params.to_numpy()
        for _ in it:
            y_sim = rng.binomial(nn, p_law) / nn
            exceed += _lr(xc, y_sim, nn.astype(float), rng, two_start) >= target - 1e-9
        lr_p = (1 + exceed) / (1 + int(n_boot))
    elif n_boot:
        notes.append("LR test skipped: the two-circuit model needs at least 6 sizes")
    return CurveComparison(table=table, fits=fits, phi=phi, lr_statistic=lr_stat, lr_pvalue=lr_p,
                           n_boot=int(n_boot) if np.isfinite(lr_p) else 0, best=best, notes=notes)
