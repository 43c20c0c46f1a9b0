"""Scale -> loss, and the two-step chain scale -> loss -> accuracy.

Step one fits the loss of the ladder's models against their scale:

- ``chinchilla`` (when the table has parameters ``N`` and ``tokens`` and the
  token counts are not a fixed multiple of N): ``L = E + A N^-a + B D^-b``
  (Hoffmann et al. 2022), D the training tokens;
- ``power`` otherwise: ``L = E + A x^-a`` in the scale ``x`` (compute, N or
  tokens).

Both are fitted by least squares on ``log L`` (relative errors: the same in
nats and bits), with a between-model scatter ``tau^2`` (residual variance,
degrees of freedom counted) and Wald covariance, clustered by training run
when checkpoints of >= 4 runs are given.  Extrapolation error is calibrated
as in the core: forward chaining over the distinct sizes (fit the smaller,
predict the larger), ``e ~ N(0, V + kappa^2 d^2)`` with ``d`` the log
distance in N (and in tokens, where beyond) past the largest fitted model,
under the prior :data:`PRIOR` (``bench/loss_coverage.py --measure-prior``).

Step two is :mod:`.lossacc`.  :func:`chain_predict` carries both steps'
uncertainty into one interval: the predicted log-loss is normal (mean m,
variance s^2), and the score's mean and variance are integrated over it by
Gauss-Hermite quadrature (the score-from-loss curve is nonlinear, so the
delta method would understate a steep curve's spread).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize, stats

from .calibration import Calibration, calibrate
from .curves import cluster_cov, score_interval

__all__ = ["PRIOR", "LossLaw", "fit_loss_law", "forward_chain_loss_law", "chain_predict"]

#: Extrapolation error of the loss law on log L per unit of log-scale
#: distance, measured by forward chaining on real ladders.
PRIOR = {"kappa0": {"chinchilla": 0.0197, "power": 0.0197}, "nu0": 4.0,
         "source": "bench/loss_coverage.py --measure-prior (2026-11-29): forward chaining over sizes on Gadre "
                   "et al. (3 data sets, C4 loss) and Pythia deduped checkpoints (LAMBADA loss), 269 errors"}
_TAU_FLOOR = 0.002  # log-loss units (0.2%)


def _design_kind(df: pd.DataFrame, x: str) -> str:
    if {"N", "tokens"} <= set(df.columns) and x in ("N", "tokens", "compute"):
        N, D = df["N"].to_numpy(float), df["tokens"].to_numpy(float)
        if np.all(np.isfinite(N)) and np.all(np.isfinite(D)) and np.all(D > 0):
            ratio = np.log(D / N)
            if np.unique(np.round(ratio, 6)).size > 1 and np.unique(N).size >= 2 and np.unique(D).size >= 2:
                return "chinchilla"
    return "power"


def _mean_logL(kind, th, X):
    if kind == "chinchilla":
        lE, lA, a, lB, b = th
        return np.log(np.exp(lE) + np.exp(lA - a * X[:, 0]) + np.exp(lB - b * X[:, 1]))
    lE, lA, a = th
    return np.log(np.exp(lE) + np.exp(lA - a * X[:, 0]))


def _jac_logL(kind, th, X):
    L = np.exp(_mean_logL(kind, th, X))
    if kind == "chinchilla":
        lE, lA, a, lB, b = th
        tA, tB = np.exp(lA - a * X[:, 0]), np.exp(lB - b * X[:, 1])
        return np.column_stack([np.full_like(tA, np.exp(lE)), tA, -X[:, 0] * tA, tB, -X[:, 1] * tB]) / L[:, None]
    lE, lA, a = th
    tA = np.exp(lA - a * X[:, 0])
    return np.column_stack([np.full_like(tA, np.exp(lE)), tA, -X[:, 0] * tA]) / L[:, None]


@dataclass
class LossLaw:
    kind: str
    x: str
    theta: np.ndarray
    cov: np.ndarray
    tau2: float
    logN_max: float  # largest fitted scale (log), and tokens (log) for chinchilla
    logD_max: float
    n_models: int
    calibration: Calibration = None
    notes: list = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        """The scale columns a model needs for this law."""
        return ["N", "tokens"] if self.kind == "chinchilla" else [self.x]

    def design(self, df: pd.DataFrame) -> np.ndarray:
        if self.kind == "chinchilla":
            return np.column_stack([np.log(df["N"].to_numpy(float)), np.log(df["tokens"].to_numpy(float))])
        return np.log(df[self.x].to_numpy(float))[:, None]

    def distance(self, df: pd.DataFrame) -> np.ndarray:
        X = self.design(df)
        d = np.maximum(X[:, 0] - self.logN_max, 0.0)
        if self.kind == "chinchilla":
            d = np.maximum(d, X[:, 1] - self.logD_max)
        return d

    def predict_log(self, df: pd.DataFrame, *, calibrated: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of a new model's log loss (parameters, scatter
        and, when ``calibrated``, the extrapolation error)."""
        X = self.design(df)
        J = _jac_logL(self.kind, self.theta, X)
        var = np.einsum("ij,jk,ik->i", J, self.cov, J) + self.tau2
        if calibrated and self.calibration is not None:
            var = var + self.calibration.extra_var(self.distance(df))
        return _mean_logL(self.kind, self.theta, X), var

    @property
    def params(self) -> pd.Series:
        th = self.theta
        if self.kind == "chinchilla":
            return pd.Series({"E": math.exp(th[0]), "A": math.exp(th[1]), "alpha": th[2], "B": math.exp(th[3]),
                              "beta": th[4], "tau": math.sqrt(self.tau2)})
        return pd.Series({"E": math.exp(th[0]), "A": math.exp(th[1]), "alpha": th[2], "tau": math.sqrt(self.tau2)})

    def summary(self) -> str:
        form = "L = E + A N^-alpha + B D^-beta" if self.kind == "chinchilla" else f"L = E + A {self.x}^-alpha"
        ptxt = ", ".join(f"{k}={v:.4g}" for k, v in self.params.items())
        cal = self.calibration
        extra = "" if cal is None else (f"; extrapolation error kappa = {cal.kappa:.3g} per unit of log scale "
                                        f"({cal.source}, {cal.n_errors} forward-chaining errors)")
        return f"loss law ({form}) over {self.n_models} models: {ptxt}{extra}"


def fit_loss_law(df: pd.DataFrame, *, x: str = "N", loss: str = "loss", kind: str | None = None,
                 runs=None) -> LossLaw:
    """Fit the loss law to one row per model (columns ``loss`` and ``x``, or
    ``N`` and ``tokens`` for the Chinchilla form)."""
    kind = kind or _design_kind(df, x)
    cols = ["N", "tokens"] if kind == "chinchilla" else [x]
    for c in cols + [loss]:
        if c not in df.columns:
            raise ValueError(f"the loss law needs a column {c!r}")
        v = df[c].to_numpy(float)
        if not np.all(np.isfinite(v) & (v > 0)):
            bad = df.loc[~(np.isfinite(v) & (v > 0)), "model"].tolist()[:5] if "model" in df.columns else []
            raise ValueError(f"column {c!r} must be finite and > 0 for the loss law; bad models: {bad}")
    npar = 5 if kind == "chinchilla" else 3
    if len(df) < npar + 2:
        raise ValueError(f"the {kind} loss law needs at least {npar + 2} models, got {len(df)}")
    law = LossLaw(kind, x, None, None, 0.0, 0.0, 0.0, len(df))
    X = law.design(df)
    y = np.log(df[loss].to_numpy(float))
    Lmin = float(np.exp(y.min()))
    best = None
    alphas = (0.1, 0.25, 0.4, 0.6)
    for a in alphas:
        for b in (alphas if kind == "chinchilla" else (None,)):
            cols_ = [np.ones(len(y)), np.exp(-a * X[:, 0])] + ([np.exp(-b * X[:, 1])] if b is not None else [])
            coef, _ = optimize.nnls(np.column_stack(cols_), np.exp(y))
            coef = np.maximum(coef, 1e-6)
            coef[0] = min(coef[0], Lmin * 0.999)
            th0 = [math.log(coef[0]), math.log(coef[1]), a] + ([math.log(coef[2]), b] if b is not None else [])
            lo = [-20, -20, 0.0] + ([-20, 0.0] if b is not None else [])
            hi = [math.log(Lmin), 60, 3.0] + ([60, 3.0] if b is not None else [])
            th0 = np.clip(th0, np.array(lo) + 1e-6, np.array(hi) - 1e-6)
            try:
                r = optimize.least_squares(lambda th: _mean_logL(kind, th, X) - y, th0,
                                           jac=lambda th: _jac_logL(kind, th, X), bounds=(lo, hi), method="trf")
            except ValueError:
                continue
            if best is None or r.cost < best.cost:
                best = r
    if best is None:
        raise ValueError("the loss law could not be fitted")
    th = best.x
    res = y - _mean_logL(kind, th, X)
    J = _jac_logL(kind, th, X)
    tau2 = max(float(np.sum(res**2) / max(len(y) - npar, 1)), _TAU_FLOOR**2)
    info = J.T @ J / tau2
    bread = np.linalg.pinv(info)
    cov, note = cluster_cov(J / tau2, res, runs, bread, info)
    if note:
        law.notes.append("loss law: " + note)
    law.theta, law.cov, law.tau2 = th, cov, tau2
    law.logN_max = float(X[:, 0].max())
    law.logD_max = float(X[:, 1].max()) if kind == "chinchilla" else 0.0
    return law


def forward_chain_loss_law(df: pd.DataFrame, *, x: str = "N", loss: str = "loss", kind: str | None = None,
                           runs_col: str | None = "run", max_origins: int = 8) -> pd.DataFrame:
    """Errors on log L of the loss law fitted on the models up to each
    distinct size (``N`` for the Chinchilla form, else ``x``), predicting the
    larger ones: origin, model, d, r, mu, y, e, V, w (one per run and origin)."""
    kind = kind or _design_kind(df, x)
    size = "N" if kind == "chinchilla" else x
    sizes = np.sort(df[size].unique())
    rows = []
    # an origin needs the law identified in its size direction: 3 distinct
    # sizes for the N term of the Chinchilla form (E, A, alpha), 4 for the
    # power law in x, and enough models for the parameters
    need_sizes, npar = (3, 5) if kind == "chinchilla" else (4, 3)
    cuts = [s for s in sizes[:-1] if (sizes <= s).sum() >= need_sizes and (df[size] <= s).sum() >= npar + 2]
    if len(cuts) > max_origins:
        cuts = [cuts[i] for i in np.unique(np.round(np.linspace(0, len(cuts) - 1, max_origins)).astype(int))]
    for cut in cuts:
        train, test = df[df[size] <= cut], df[df[size] > cut]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                law = fit_loss_law(train, x=x, loss=loss, kind=kind,
                                   runs=train[runs_col].to_numpy() if runs_col in train.columns else None)
        except (ValueError, np.linalg.LinAlgError):
            continue
        mu, V = law.predict_log(test, calibrated=False)
        d = law.distance(test)
        y = np.log(test[loss].to_numpy(float))
        run = test[runs_col].astype(str).to_numpy() if runs_col in test.columns else test["model"].astype(str).to_numpy()
        cnt = pd.Series(run).map(pd.Series(run).value_counts()).to_numpy(float)
        for j in range(len(test)):
            rows.append(dict(origin=float(cut), model=test["model"].iloc[j], d=d[j], r=d[j], mu=mu[j], y=y[j],
                             e=y[j] - mu[j], V=V[j], w=1.0 / cnt[j]))
    cols = ["origin", "model", "d", "r", "mu", "y", "e", "V", "w"]
    return pd.DataFrame(rows, columns=cols).astype({c: float for c in cols if c != "model"})


def calibrated_loss_law(df: pd.DataFrame, *, x: str = "N", loss: str = "loss", prior: dict | None = None,
                        runs_col: str = "run") -> LossLaw:
    """:func:`fit_loss_law` with its extrapolation error calibrated by
    forward chaining (and :data:`PRIOR`)."""
    prior = PRIOR if prior is None else prior
    law = fit_loss_law(df, x=x, loss=loss, runs=df[runs_col].to_numpy() if runs_col in df.columns else None)
    errs = forward_chain_loss_law(df, x=x, loss=loss, kind=law.kind, runs_col=runs_col)
    law.calibration = calibrate(errs, prior, law.kind)
    return law


_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(9)
_GH_W = _GH_W / _GH_W.sum()


def chain_predict(law: LossLaw, curve, new: pd.DataFrame, *, n_items=None, alpha: float | None = None) -> pd.DataFrame:
    """Score of new models (rows of ``new`` with the scale columns) through
    the predicted loss: ``curve`` is a :class:`.lossacc.LossForecastResults`.
    Returns predicted, lower, upper, sd (score), and loss_pred, loss_lower,
    loss_upper (the loss step's own interval)."""

    a = curve.level if alpha is None else alpha
    m, s2 = law.predict_log(new)
    s = np.sqrt(s2)
    means, seconds = 0.0, 0.0
    for xi, wi in zip(_GH_X, _GH_W):
        mu, _, var = curve.predict_moments(np.exp(m + s * xi))
        means = means + wi * mu
        seconds = seconds + wi * (var + mu**2)
    var = np.maximum(seconds - means**2, 0.0)
    z = stats.norm.ppf(1 - a / 2)
    out = score_interval(means, var, curve._new_var(means, n_items, means.shape), a,
                    {"loss_pred": np.exp(m), "loss_lower": np.exp(m - z * s), "loss_upper": np.exp(m + z * s)})
    return out
