"""A line (or curve) through per-model observations with between-model scatter.

The model behind every form of the core:

    y_j = X_j beta + e_j + u_j,   e_j ~ N(0, v_j),   u_j ~ N(0, tau^2)

``v_j`` is model j's known sampling variance on the y scale, ``u_j`` what
makes one trained model differ from the law beyond sampling noise (data
order, seed, a slightly different recipe): the between-model scatter that a
new model will have too.  This is a random-effects meta-regression; tau^2
is estimated by restricted maximum likelihood (REML: the ML estimate is
biased low by about (n - p) / n, which matters on a ladder of 5 sizes).

A censored model (``y_j > y_cens_j``: nothing resolved) enters as the
probability of that event (a Tobit term), so a size where nothing passed
still pulls the curve up there without pretending to know its value.

Not handled here: correlation between models (checkpoints of one run share
their data order); the calibration layer absorbs what that costs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

__all__ = ["MetaFit", "fit_meta"]

_TAU_MIN = 1e-4
#: Scale of a soft floor on tau: real models always scatter a little around
#: any smooth law (full-ladder fits on ../shared/data give a median tau of
#: 0.06-0.1 on the y scale); without it a 3-size origin often estimates
#: tau = 0 and lets the two most precise models set the slope alone.
TAU_PRIOR_MODE = 0.05
# A censoring bound is itself approximate (it assumes exchangeable
# instances); its variance on the y scale.
_CENS_VAR = 0.05


@dataclass
class MetaFit:
    beta: np.ndarray
    cov_beta: np.ndarray
    tau2: float
    loglik: float
    n_obs: int
    n_censored: int
    converged: bool

    def mean(self, X) -> np.ndarray:
        return np.asarray(X, float) @ self.beta

    def var_mean(self, X) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, float))
        return np.einsum("ij,jk,ik->i", X, self.cov_beta, X)


def _log_ndtr(z):
    return special.log_ndtr(z)


def _mills(z):
    """phi(z) / Phi(z), stable for very negative z."""
    return np.exp(stats.norm.logpdf(z) - special.log_ndtr(z))


def _wls(y, v, X, tau2):
    w = 1.0 / (v + tau2)
    XtW = X.T * w
    A = XtW @ X
    beta = np.linalg.lstsq(A, XtW @ y, rcond=None)[0]
    return beta, A


def fit_meta(y, v, X, *, y_cens=None, X_cens=None, reml: bool = True) -> MetaFit:
    """Fit ``beta`` and ``tau^2`` (see the module docstring).

    ``y, v, X``: resolved observations, their sampling variances and design
    rows; ``y_cens, X_cens``: censored ones (``y > y_cens``).  Needs at least
    ``p`` resolved observations for ``p`` columns of X.
    """
    y = np.asarray(y, float)
    v = np.asarray(v, float)
    X = np.atleast_2d(np.asarray(X, float))
    p = X.shape[1]
    yc = np.asarray([] if y_cens is None else y_cens, float)
    Xc = np.zeros((0, p)) if X_cens is None or len(yc) == 0 else np.atleast_2d(np.asarray(X_cens, float))
    if len(y) < p:
        raise ValueError(f"need at least {p} resolved models for this form, got {len(y)}")

    def nll(theta):
        beta, s = theta[:p], theta[p]
        tau2 = np.exp(2 * s)
        tot = v + tau2
        r = y - X @ beta
        out = 0.5 * np.sum(np.log(tot) + r * r / tot)
        if len(yc):
            z = (Xc @ beta - yc) / np.sqrt(tau2 + _CENS_VAR)
            out -= np.sum(_log_ndtr(z))
        if TAU_PRIOR_MODE > 0:
            # a soft floor, exp(-TAU_PRIOR_MODE^2 / tau^2): 1 nat at tau =
            # TAU_PRIOR_MODE, 4 at half of it, nothing for large tau.  (An
            # inverse-gamma(1) prior also has a 2 log tau^2 term, which acts like
            # 4 pseudo-observations at tau ~ 0 and shrank a true tau of 0.2-0.3 to
            # ~0.13 on 5-6 sizes: simulated coverage 0.87 instead of 0.94.)
            out += TAU_PRIOR_MODE**2 / tau2
        if reml:
            A = (X.T / tot) @ X
            sign, logdet = np.linalg.slogdet(A)
            out += 0.5 * logdet if sign > 0 else 1e10
        return out

    # Profile tau: for a given tau^2 the best beta is weighted least squares,
    # so the (restricted) likelihood is a function of tau alone.  Censored
    # models then get a joint refinement from that start.
    def prof(s):
        b, _ = _wls(y, v, X, np.exp(2 * s))
        return nll(np.concatenate([b, [s]]))

    lo, hi = np.log(_TAU_MIN), np.log(50.0)
    grid = np.linspace(lo, hi, 25)
    vals = [prof(g) for g in grid]
    i = int(np.argmin(vals))
    r = optimize.minimize_scalar(prof, bounds=(grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]),
                                 method="bounded", options={"xatol": 1e-6})
    s_best = float(r.x) if r.fun <= vals[i] else float(grid[i])
    b_best, _ = _wls(y, v, X, np.exp(2 * s_best))
    th = np.concatenate([b_best, [s_best]])
    best = optimize.OptimizeResult(x=th, fun=nll(th), success=True)
    if len(yc):
        res = optimize.minimize(nll, th, method="L-BFGS-B", bounds=[(None, None)] * p + [(lo, hi)])
        if res.fun < best.fun:
            best = res
    beta, s = best.x[:p], best.x[p]
    tau2 = float(np.exp(2 * s))
    if tau2 <= _TAU_MIN**2 * 1.01:
        tau2 = 0.0
    tot = v + tau2
    info = (X.T / tot) @ X
    if len(yc):
        sc = np.sqrt(tau2 + _CENS_VAR)
        z = (Xc @ beta - yc) / sc
        lam = _mills(z)
        wc = lam * (z + lam) / sc**2
        info = info + (Xc.T * wc) @ Xc
    cov = np.linalg.pinv(info)
    return MetaFit(beta=beta, cov_beta=cov, tau2=tau2, loglik=-float(best.fun), n_obs=len(y),
                   n_censored=len(yc), converged=bool(best.success))
