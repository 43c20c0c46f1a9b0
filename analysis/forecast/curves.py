"""Score against loss: the nonlinear forms of the loss -> accuracy step.

A model's downstream score is, to a good approximation, a function of its
loss (pretraining or task loss), whatever its size and data: the second step
of the model-ladder method (Bhagia et al. 2024) and the axis of the
emergence law (Snell et al. 2024).  The forms, with ``L`` the loss:

- ``sigmoid``: ``b + (u - b) / (1 + exp(k (L - L0)))``, floor ``b`` and
  ceiling ``u`` fitted (``0 <= b <= u <= 1``, ``k >= 0``): the form of the
  model-ladder papers;
- ``sigmoid_chance``: the same with the floor at the task's chance accuracy
  (known for multiple choice, 0 for generation): one parameter fewer, which
  matters on a short ladder that has not left the floor for long;
- ``softplus``: ``b + A * softplus_s(E - L)``, the (smoothed) ReLU of Snell
  et al. with its floor ``b`` fitted; ``s`` (the smoothing) is a twentieth
  of the fitted loss span, so the form is the same in nats or bits;
- ``flat``: a constant, what a task that does not move with loss does.

The model behind each (as in :mod:`.regression`, on the score scale)::

    score_j = f(L_j; theta) + u_j + e_j,  e_j ~ N(0, v_j),  u_j ~ N(0, tau^2)

``v_j`` the binomial sampling variance of the score over its items, ``u_j``
what makes one trained model differ from the curve beyond sampling noise.
``theta`` is weighted nonlinear least squares with weights ``1/(v + tau^2)``
and ``tau^2`` the Paule-Mandel estimate (the weighted residual sum of squares
equals its degrees of freedom ``n - p``: the nonlinear counterpart of the
REML correction that matters on a short ladder), the two iterated; ``tau``
has a floor of :data:`TAU_FLOOR` (models always scatter a little; without it
two precise models can set a curve alone).

Covariance of ``theta``: the inverse Fisher information ``(J' W J)^-1``.
Checkpoints of one training run share their data order, so their deviations
from the curve are correlated; with a ``run`` per model (>= 4 runs) the
covariance is the larger of that and the cluster-robust sandwich (CR1) by
run.  Parameters at a bound (a ceiling at 1, a floor at 0) are held there
and carry no variance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize, special

__all__ = ["CURVE_FORMS", "FittedCurve", "fit_curve", "curve_min_models", "cluster_cov"]

#: name -> description
CURVE_FORMS = {
    "sigmoid": "floor + (ceiling - floor) / (1 + exp(k (L - L0))), floor and ceiling fitted",
    "sigmoid_chance": "the sigmoid with its floor at the task's chance score",
    "softplus": "floor + A softplus(E - L): the (smoothed) ReLU of Snell et al.",
    "flat": "a constant",
}
_NPAR = {"sigmoid": 4, "sigmoid_chance": 3, "softplus": 3, "flat": 1}
_NAMES = {"sigmoid": ["floor", "ceiling", "k", "L0"], "sigmoid_chance": ["ceiling", "k", "L0"],
          "softplus": ["floor", "A", "E"], "flat": ["level"]}
#: floor on the between-model scatter, score units (0.3 points of accuracy)
TAU_FLOOR = 0.003


def curve_min_models(form: str) -> int:
    """Distinct losses a form needs: its parameters plus two (for tau^2 and a
    residual degree of freedom)."""
    return _NPAR[form] + 2


def _softplus(z):
    return np.logaddexp(0.0, z)


@dataclass
class FittedCurve:
    form: str
    theta: np.ndarray  # internal parameters (see _f)
    cov: np.ndarray
    tau2: float
    chance: float
    smooth: float  # softplus smoothing, loss units
    L_min: float
    L_max: float
    n_models: int
    notes: list = field(default_factory=list)

    # internal parameters -> curve --------------------------------------
    def _f(self, th, L):
        return _eval(self.form, th, L, self.chance, self.smooth)

    def mean(self, L) -> np.ndarray:
        return self._f(self.theta, np.asarray(L, float))

    def jac(self, L) -> np.ndarray:
        return _jac(self.form, self.theta, np.asarray(L, float), self.chance, self.smooth)

    def predict(self, L) -> tuple[np.ndarray, np.ndarray]:
        """Mean score at losses ``L`` and its variance (estimation only)."""
        L = np.atleast_1d(np.asarray(L, float))
        J = self.jac(L)
        return self.mean(L), np.einsum("ij,jk,ik->i", J, self.cov, J)

    @property
    def params(self) -> pd.Series:
        """The form's parameters on their natural scale."""
        th = self.theta
        if self.form == "sigmoid":
            b, s, k, L0 = th
            vals = [b, b + (1 - b) * s, k, L0]
        elif self.form == "sigmoid_chance":
            s, k, L0 = th
            vals = [self.chance + (1 - self.chance) * s, k, L0]
        else:
            vals = list(th)
        return pd.Series(vals, index=_NAMES[self.form], dtype=float)


def _eval(form, th, L, chance, smooth):
    L = np.asarray(L, float)
    if form == "flat":
        return np.full(L.shape, th[0])
    if form == "sigmoid":
        b, s, k, L0 = th
        return b + (1 - b) * s * special.expit(k * (L0 - L))
    if form == "sigmoid_chance":
        s, k, L0 = th
        return chance + (1 - chance) * s * special.expit(k * (L0 - L))
    if form == "softplus":
        b, A, E = th
        return b + A * smooth * _softplus((E - L) / smooth)
    raise ValueError(f"unknown curve form {form!r}; choose from {list(CURVE_FORMS)}")


def _jac(form, th, L, chance, smooth):
    L = np.asarray(L, float)
    if form == "flat":
        return np.ones((L.size, 1))
    if form in ("sigmoid", "sigmoid_chance"):
        if form == "sigmoid":
            b, s, k, L0 = th
            scale = 1 - b
        else:
            s, k, L0 = th
            scale = 1 - chance
        g = special.expit(k * (L0 - L))
        dg = g * (1 - g)
        cols = [scale * g, scale * s * dg * (L0 - L), scale * s * dg * k]
        if form == "sigmoid":
            cols = [1 - s * g] + cols
        return np.column_stack(cols)
    if form == "softplus":
        b, A, E = th
        z = (E - L) / smooth
        return np.column_stack([np.ones_like(L), smooth * _softplus(z), A * special.expit(z)])
    raise ValueError(f"unknown curve form {form!r}")


def _bounds(form, L):
    span = max(float(L.max() - L.min()), 1e-6)
    lo_L, hi_L = float(L.min()) - 3 * span, float(L.max()) + 3 * span
    kmax = 60.0 / span
    if form == "flat":
        return [0.0], [1.0]
    if form == "sigmoid":
        return [0.0, 0.0, 0.0, lo_L], [1.0, 1.0, kmax, hi_L]
    if form == "sigmoid_chance":
        return [0.0, 0.0, lo_L], [1.0, kmax, hi_L]
    # softplus: slope per unit loss up to 40 full-scale rises per span
    return [0.0, 0.0, lo_L], [1.0, 40.0 / span, hi_L]


def _starts(form, L, y, w, chance, smooth):
    """Grid over the nonlinear parameters; the linear ones by weighted least
    squares at each grid point; the best few are starting values."""
    span = max(float(L.max() - L.min()), 1e-6)
    if form == "flat":
        return [np.array([float(np.sum(w * y) / np.sum(w))])]
    cands = []
    grid_pos = np.linspace(L.min() - span, L.max() + 0.5 * span, 13)
    if form in ("sigmoid", "sigmoid_chance"):
        for k in (2.0 / span, 5.0 / span, 12.0 / span, 30.0 / span):
            for L0 in grid_pos:
                g = special.expit(k * (L0 - L))
                if form == "sigmoid":
                    X = np.column_stack([1 - g, g])  # b (1 - g) + u g
                    beta = _wls_solve(X, y, w)
                    b, u = np.clip(beta, 0, 1)
                    u = max(u, b)
                    s = 0.0 if b >= 1 else (u - b) / (1 - b)
                    th = np.array([b, s, k, L0])
                else:
                    X = ((1 - chance) * g)[:, None]
                    s = float(np.clip(_wls_solve(X, y - chance, w)[0], 0, 1))
                    th = np.array([s, k, L0])
                r = y - _eval(form, th, L, chance, smooth)
                cands.append((float(np.sum(w * r * r)), th))
    else:
        for E in grid_pos:
            h = smooth * _softplus((E - L) / smooth)
            X = np.column_stack([np.ones_like(L), h])
            b, A = _wls_solve(X, y, w)
            th = np.array([float(np.clip(b, 0, 1)), float(max(A, 0.0)), E])
            r = y - _eval(form, th, L, chance, smooth)
            cands.append((float(np.sum(w * r * r)), th))
    cands.sort(key=lambda c: c[0])
    return [c[1] for c in cands[:4]]


def _wls_solve(X, y, w):
    sw = np.sqrt(w)
    return np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)[0]


def _nls(form, L, y, w, chance, smooth, starts, lo, hi):
    best = None
    sw = np.sqrt(w)
    for th0 in starts:
        th0 = np.clip(th0, np.array(lo) + 1e-9, np.array(hi) - 1e-9)
        try:
            r = optimize.least_squares(
                lambda th: sw * (_eval(form, th, L, chance, smooth) - y), th0,
                jac=lambda th: sw[:, None] * _jac(form, th, L, chance, smooth),
                bounds=(lo, hi), method="trf", x_scale="jac", max_nfev=400)
        except ValueError:
            continue
        if best is None or r.cost < best.cost:
            best = r
    return best


def _paule_mandel(r2, v, dof):
    """tau^2 with sum r^2 / (v + tau^2) = dof (0 when already below)."""
    f = lambda t2: np.sum(r2 / (v + t2)) - dof  # noqa: E731
    if dof <= 0 or f(0.0) <= 0:
        return 0.0
    hi = max(float(np.max(r2)), 1e-8)
    while f(hi) > 0:
        hi *= 4
    return float(optimize.brentq(f, 0.0, hi, xtol=1e-12))


def cluster_cov(JW, resid, runs, bread, info) -> tuple[np.ndarray, str]:
    """The covariance of a (weighted) least-squares fit given checkpoints of
    training runs: the model-based ``bread`` = ``info^-1``, or the
    cluster-robust sandwich by run (CR1) where that is larger on average
    relative to it (clustering must not make a curve look better determined
    than the model says).  ``JW``: the Jacobian rows times their weights
    (the score contributions are ``JW' r``).  Needs >= 4 runs and some run
    with several models; returns (covariance, a note or "")."""
    if runs is None:
        return bread, ""
    runs = np.asarray(runs, dtype=object)
    labels = pd.unique(runs)
    G = len(labels)
    if G >= len(runs):
        return bread, ""
    if G < 4:
        return bread, f"only {G} training runs: checkpoints treated as independent models"
    meat = np.zeros_like(info)
    for g in labels:
        m = runs == g
        sg = JW[m].T @ resid[m]
        meat += np.outer(sg, sg)
    robust = bread @ meat @ bread * G / (G - 1)
    if np.trace(robust @ info) > len(info):
        return robust, f"covariance clustered by training run ({G} runs)"
    return bread, ""


def fit_curve(L, y, v, form: str, *, chance: float = 0.0, runs=None, smooth: float | None = None) -> FittedCurve:
    """Fit one form to per-model losses ``L``, scores ``y`` and their
    sampling variances ``v`` (0 where unknown: the scatter absorbs it).
    ``runs``: a training-run label per model (clustered covariance)."""
    if form not in CURVE_FORMS:
        raise ValueError(f"unknown curve form {form!r}; choose from {list(CURVE_FORMS)}")
    L, y, v = (np.asarray(a, float) for a in (L, y, v))
    n = len(L)
    if len(np.unique(L)) < curve_min_models(form):
        raise ValueError(f"form {form!r} needs {curve_min_models(form)} models with distinct losses, "
                         f"got {len(np.unique(L))}")
    span = max(float(L.max() - L.min()), 1e-6)
    smooth = span / 20 if smooth is None else smooth
    lo, hi = _bounds(form, L)
    tau2 = max(float(np.var(y)) * 0.1, TAU_FLOOR**2)
    fit = None
    starts = None
    for _ in range(30):
        w = 1.0 / (v + tau2)
        if starts is None:
            starts = _starts(form, L, y, w, chance, smooth)
        else:
            starts = [fit.x] + starts[:1]
        fit = _nls(form, L, y, w, chance, smooth, starts, lo, hi)
        if fit is None:
            raise ValueError(f"form {form!r}: the least-squares fit failed")
        r2 = (y - _eval(form, fit.x, L, chance, smooth)) ** 2
        new = max(_paule_mandel(r2, v, n - _NPAR[form]), TAU_FLOOR**2)
        if abs(new - tau2) <= 1e-3 * tau2:
            tau2 = new
            break
        tau2 = new
    th = fit.x
    w = 1.0 / (v + tau2)
    J = _jac(form, th, L, chance, smooth)
    # parameters held at a bound carry no variance (and would make J'WJ singular)
    free = ~((np.abs(th - np.array(lo)) < 1e-7) | (np.abs(th - np.array(hi)) < 1e-7))
    cov = np.zeros((len(th), len(th)))
    notes = []
    if free.any():
        Jf = J[:, free]
        info = (Jf.T * w) @ Jf
        bread = np.linalg.pinv(info)
        r = y - _eval(form, th, L, chance, smooth)
        covf, note = cluster_cov(Jf * w[:, None], r, runs, bread, info)
        if note:
            notes.append(note)
        cov[np.ix_(free, free)] = covf
    return FittedCurve(form=form, theta=th, cov=cov, tau2=float(tau2), chance=float(chance), smooth=float(smooth),
                       L_min=float(L.min()), L_max=float(L.max()), n_models=n, notes=notes)


def score_interval(mean, var, var_new, alpha, extra: dict) -> pd.DataFrame:
    """The prediction table of a score: the mean and its normal interval at
    1 - alpha from the forecast's variance and a new model's sampling
    variance, cut to [0, 1] (a score is a proportion)."""
    from scipy import stats

    z = stats.norm.ppf(1 - alpha / 2)
    sd = np.sqrt(var + var_new)
    m = np.clip(mean, 0.0, 1.0)
    return pd.DataFrame({**extra, "predicted": m, "lower": np.clip(mean - z * sd, 0.0, 1.0),
                         "upper": np.clip(mean + z * sd, 0.0, 1.0), "sd": sd})
