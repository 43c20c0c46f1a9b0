"""Hierarchical (partially pooled) instance-level PassUntil task law.

Model
-----
Instance ``i`` at model size ``N`` passes ``c_iN`` of ``n_iN`` samples,

    c_iN ~ Binomial(n_iN, p_iN),
    log(-log p_iN) = (a + u_i) - (alpha + v_i) * (log N - log N0),
    (u_i, v_i) ~ N(0, Sigma),

with ``log N0`` the mean of ``log N`` over the rows (centring keeps ``a`` and
``alpha`` nearly uncorrelated).  Each instance follows the law
``PU_i(N) = exp(-c_i N**-alpha_i)`` with ``log c_i = a + u_i + (alpha + v_i)
log N0`` and ``alpha_i = alpha + v_i``; the fixed effects ``(log c, alpha) =
(a + alpha log N0, alpha)`` describe the *typical* instance (u = v = 0).
``Sigma`` is a full 2x2 covariance; when the data do not identify the slope
variance (its maximum-likelihood value is 0) the fit falls back to a random
intercept only, and when the correlation runs to +-1 and a diagonal ``Sigma``
fits as well (likelihood within 1.92) to a diagonal one (``structure``).

Instances that never pass, or pass every sample, at every size are kept: their
posterior is the prior moved by their counts (all-zero counts say the instance
is hard), so they shrink towards the tail of the instance distribution
instead of being dropped or bounded.  An instance with one pass at one size
no longer gets a runaway law of its own: its slope is the typical slope unless
its data say otherwise.

Fitting
-------
Maximum marginal likelihood with the Laplace approximation, parameterised
like lme4: ``Sigma = L L'`` with ``L`` lower triangular, ``(u_i, v_i) = L
w_i``, ``w_i ~ N(0, I)``.  For given ``(a, alpha, L)`` the posterior modes
``w_i`` of all instances are found together by a vectorised 2-parameter
Newton iteration with step halving (the binomial cloglog log-likelihood is
concave, so it converges from any start), and the Laplace log-likelihood
``sum_i [l_i(mode) - |w_i|^2 / 2 - log det(I + L' A_i L) / 2]`` (``A_i`` the
observed information at the mode) is maximised over the 5 parameters by a
trust-region Newton method with its exact gradient (the log-determinant's
dependence on the modes included, through the third derivative of the cell
log-likelihood) and a finite-difference Hessian of that gradient.  With
``structure="auto"`` the random-intercept-only model is fitted too and
chosen when its likelihood is within 0.05 of the full one.  The covariance of
the fixed effects is the inverse Hessian of the Laplace log-likelihood in
``(a, alpha)`` at the fitted ``Sigma`` (central differences of the exact
gradient), i.e. conditional on ``Sigma``.  2,000 instances x 8 sizes take
about a second.

Prediction
----------
Each instance's posterior of ``(u_i, v_i)`` is approximated by the Gaussian
with its *exact* posterior mean and covariance (given the fitted ``a, alpha,
Sigma``), computed by adaptive Gauss-Hermite quadrature (9 x 9 nodes around
the mode).  The Laplace Gaussian around the mode is not used there: where PU
is near 0 or 1 the likelihood is skewed, the mode is a biased stand-in for
the mean, and that bias does not average out over instances while the noise
does (simulated: the interval below then covered the true task PU at 10x
beyond the data in 21 of 60 sets with 100 instances; 54-55 with the means).

``predict(N)`` is the task PU: the mean over the instances of ``E[p_i(N) |
data]`` under those posteriors -- ``log(-log p_i(N))`` is normal, so each
expectation is a 1-d integral (Gauss-Hermite for posterior SD < 0.5, else
quadrature over the Gumbel variable ``log E``, ``E ~ Exp(1)``, error < 1e-9).
Its variance on the ``y = log(-log PU)`` scale (``predict_y``) is the delta
method for the fixed effects (through each instance's shrinkage, ``d
theta_i / d(a, alpha) = (I + Sigma A_i)^-1``) plus the posterior variance of
the mean of the m instances' ``p_i(N)`` (independent given the fixed
effects).  Not included: the uncertainty of ``Sigma`` and any between-size
scatter (a shift shared by all instances at one size), so the interval is
an estimation interval for the task PU of these instances under the model,
not a prediction interval for a new size's observed PU.  Simulated coverage
of the nominal 95% interval for the true mean PU of the instances (no
scatter; 100 sets each, 6 sizes, n 50-500, alpha 0.3, m 30/100/300): 93/94/92
at the largest size, 91/89/91 at ten times beyond it; (60 sets, fit on 5
sizes with n 200-2000, m 20/100): 55/56 of 60 at the held-out size, 55/55 at
ten times beyond it.  The shortfall at 10x is Sigma's uncertainty
(z-scores there have SD ~1.1-1.15).

Lack of fit: a score test of one common curvature term ``q (log N -
log N0)^2`` added to every instance's ``log(-log p)`` (chi2(1), conditional on
``Sigma``), i.e. whether instances bend the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pandas as pd
from scipy import optimize, stats
from scipy.special import gammaln, ndtr

from .base import CovParams, LackOfFit, _by_size, _check_level, _jf, _validate

__all__ = ["fit_hierarchical_law", "HierarchicalLawResults"]

_STRUCTURES = ("auto", "full", "diagonal", "intercept")
_ETA_LO, _ETA_HI = -300.0, 35.0  # log(-log p): p = 1 - 5e-131 .. exp(-1.6e15)
# |a|, |alpha|, |l11|, |l21|, |l22| beyond these: the fit ran off (not identified)
_LIMITS = np.array([60.0, 30.0, 15.0, 10.0, 10.0])
_FREE = {
    "full": np.array([True, True, True, True, True]),
    "diagonal": np.array([True, True, True, False, True]),
    "intercept": np.array([True, True, True, False, False]),
}
_GH_Z, _GH_W = np.polynomial.hermite_e.hermegauss(24)
_GH_W = _GH_W / _GH_W.sum()
_G_STEP = 0.35
_G_GRID = np.arange(-36.0, 3.5 + 1e-9, _G_STEP)  # the Gumbel variable log E, E ~ Exp(1)
_G_W = np.exp(_G_GRID - np.exp(_G_GRID))
_G_W = _G_W / _G_W.sum()
_SMALL_SD = 0.5  # posterior SD of log(-log p) below which Gauss-Hermite is used
_AGQ_Z, _AGQ_W = np.polynomial.hermite_e.hermegauss(9)  # adaptive quadrature of the posteriors
_AGQ_W = _AGQ_W / _AGQ_W.sum()


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------


@dataclass
class _Data:
    labels: np.ndarray
    sizes: np.ndarray
    n: np.ndarray  # (m, S) float, 0 where the instance was not run at that size
    c: np.ndarray
    xc: np.ndarray  # log N - xbar per size
    xbar: float
    const: float  # sum of log binomial coefficients

    @property
    def m(self) -> int:
        return self.n.shape[0]


def _prepare(d: pd.DataFrame) -> _Data:
    try:
        code, labels = pd.factorize(d["instance"], sort=True)
    except TypeError:  # unorderable mixed labels
        code, labels = pd.factorize(d["instance"], sort=False)
    sizes, j = np.unique(d["N"].to_numpy(float), return_inverse=True)
    m, S = len(labels), len(sizes)
    n = np.zeros((m, S))
    c = np.zeros((m, S))
    nn = d["n"].to_numpy(float)
    cc = d["c"].to_numpy(float)
    n[code, j] = nn
    c[code, j] = cc
    xbar = float(np.log(d["N"].to_numpy(float)).mean())
    const = float(np.sum(gammaln(nn + 1) - gammaln(cc + 1) - gammaln(nn - cc + 1)))
    return _Data(np.asarray(labels, dtype=object), sizes, n, c, np.log(sizes) - xbar, xbar, const)


# --------------------------------------------------------------------------
# cell log-likelihood and its derivatives in eta = log(-log p)
# --------------------------------------------------------------------------


def _cells(eta, n, c, third: bool = False):
    """l = c log p + (n - c) log(1 - p), p = exp(-exp(eta)); returns l, dl/deta,
    -d2l/deta2 (>= 0: the cloglog likelihood is concave) and optionally
    -d3l/deta3."""
    with np.errstate(all="ignore"):
        eta = np.clip(eta, _ETA_LO, _ETA_HI)
        mu = np.exp(eta)
        em = np.exp(-mu)
        om = -np.expm1(-mu)  # 1 - p
        h = mu * em / om  # mu / (exp(mu) - 1)
        k = np.where(mu < 1e-4, -0.5 * mu - mu * mu / 12.0, 1.0 - h - mu)  # dh/deta = h k
        f = n - c
        ll = -c * mu + f * np.log(om)
        d1 = -c * mu + f * h
        d2 = c * mu - f * h * k
        if not third:
            return ll, d1, d2
        d3 = c * mu - f * h * (k * k - h * k - mu)
        return ll, d1, d2, d3


def _mm(a, b):
    """Matrix product of (stacks of) small matrices without BLAS (whose thread
    start-up costs more than these 2x2 products on a busy machine)."""
    return np.einsum("...ij,...jk->...ik", a, b)


def _grad_info(d1, d2, xc):
    """Gradient (m, 2) and information (m, 2, 2) in theta = (a_i, alpha_i) from
    the cell derivatives; eta = a_i - alpha_i xc."""
    g = np.column_stack([d1.sum(1), -(d1 * xc).sum(1)])
    A = np.empty((d1.shape[0], 2, 2))
    A[:, 0, 0] = d2.sum(1)
    A[:, 0, 1] = A[:, 1, 0] = -(d2 * xc).sum(1)
    A[:, 1, 1] = (d2 * (xc * xc)).sum(1)
    return g, A


def _chol(p) -> np.ndarray:
    return np.array([[p[2], 0.0], [p[3], p[4]]])


def _inv2(H):
    """Inverse and determinant of the 2x2 matrices H = I + L'AL (A >= 0), so
    det >= 1 + trace(L'AL); that bound guards against cancellation when A is
    astronomically large at absurd parameter values."""
    with np.errstate(all="ignore"):
        det = H[:, 0, 0] * H[:, 1, 1] - H[:, 0, 1] * H[:, 1, 0]
        det = np.maximum(det, H[:, 0, 0] + H[:, 1, 1] - 1.0)
    inv = np.empty_like(H)
    inv[:, 0, 0] = H[:, 1, 1] / det
    inv[:, 1, 1] = H[:, 0, 0] / det
    inv[:, 0, 1] = -H[:, 0, 1] / det
    inv[:, 1, 0] = -H[:, 1, 0] / det
    return inv, det


@dataclass
class _Mode:
    w: np.ndarray  # (m, 2) posterior modes in the whitened scale
    theta: np.ndarray  # (m, 2) (a_i, alpha_i) at the mode
    eta: np.ndarray  # (m, S)
    f: np.ndarray  # (m,) l_i - |w|^2 / 2
    g: np.ndarray  # (m, 2) data gradient in theta
    A: np.ndarray  # (m, 2, 2) data information in theta
    d1: np.ndarray
    d2: np.ndarray
    H: np.ndarray  # (m, 2, 2) I + L'AL
    Hinv: np.ndarray
    logdet: np.ndarray
    converged: bool


def _evaluate(beta, L, D: _Data, w):
    theta = beta[None, :] + _mm(w, L.T)
    eta = theta[:, :1] - theta[:, 1:] * D.xc[None, :]
    ll, d1, d2 = _cells(eta, D.n, D.c)
    f = ll.sum(1) - 0.5 * np.einsum("ij,ij->i", w, w)
    return theta, eta, ll, d1, d2, f


def _modes(beta, L, D: _Data, w0, tol: float = 1e-18, max_iter: int = 200) -> _Mode:
    """Posterior modes of all instances at once (vectorised Newton, step halving)."""
    w = np.array(w0, float, copy=True)
    xc = D.xc
    theta, eta, _, d1, d2, f = _evaluate(beta, L, D, w)
    converged = False
    for _ in range(max_iter):
        g, A = _grad_info(d1, d2, xc)
        H = _mm(_mm(L.T, A), L)
        H[:, 0, 0] += 1.0
        H[:, 1, 1] += 1.0
        Hinv, det = _inv2(H)
        gw = _mm(g, L) - w
        step = np.einsum("mij,mj->mi", Hinv, gw)
        dec = np.einsum("mi,mi->m", gw, step)
        if not np.all(np.isfinite(dec)):
            break
        if dec.max() < tol:
            converged = True
            break
        t = np.ones(D.m)
        active = dec >= tol
        for _half in range(60):
            w_try = w + (t * active)[:, None] * step
            th2, eta2, _, d1b, d2b, f2 = _evaluate(beta, L, D, w_try)
            bad = active & ~(f2 >= f - 1e-12 * (1.0 + np.abs(f)))
            if not bad.any():
                break
            t = np.where(bad, t * 0.5, t)
        else:  # no ascent possible: numerically at the mode
            converged = True
            break
        w, theta, eta, d1, d2, f = w_try, th2, eta2, d1b, d2b, f2
    # quantities at the final w
    g, A = _grad_info(d1, d2, xc)
    H = _mm(_mm(L.T, A), L)
    H[:, 0, 0] += 1.0
    H[:, 1, 1] += 1.0
    Hinv, det = _inv2(H)
    return _Mode(w, theta, eta, f, g, A, d1, d2, H, Hinv, np.log(det), converged)


# --------------------------------------------------------------------------
# the Laplace log-likelihood and its gradient
# --------------------------------------------------------------------------


class _Objective:
    """-(Laplace log-likelihood) / m as a function of the free parameters,
    with the exact gradient; keeps the last modes as the next warm start."""

    def __init__(self, D: _Data, p_full: np.ndarray, free: np.ndarray):
        self.D = D
        self.p = np.array(p_full, float)
        self.free = np.asarray(free, bool)
        self.w = np.zeros((D.m, 2))
        self.n_eval = 0

    def full(self, q) -> np.ndarray:
        p = self.p.copy()
        p[self.free] = q
        return p

    def laplace(self, p, grad: bool = True):
        D = self.D
        beta, L = np.asarray(p[:2], float), _chol(p)
        md = _modes(beta, L, D, self.w)
        self.n_eval += 1
        if np.all(np.isfinite(md.w)):
            self.w = md.w
        lam = md.f - 0.5 * md.logdet
        F = -float(lam.sum())
        if not grad:
            return F, None, md
        xc = D.xc
        P = _mm(_mm(L, md.Hinv), L.T)  # posterior covariance of theta_i
        s2 = P[:, 0, 0, None] - 2 * P[:, 0, 1, None] * xc + P[:, 1, 1, None] * xc * xc
        d3 = _cells(md.eta, D.n, D.c, third=True)[3]
        t = d3 * s2
        r = np.column_stack([t.sum(1), -(t * xc).sum(1)])  # d logdet / d theta
        B = np.eye(2)[None] - _mm(P, md.A)  # d mode / d beta
        q = np.einsum("mji,mj->mi", B, r)  # B' r
        G = np.empty(5)
        G[:2] = (md.g - 0.5 * q).sum(0)
        ALH = _mm(_mm(md.A, L), md.Hinv)
        w, g = md.w, md.g
        for idx, (k, l) in zip((2, 3, 4), ((0, 0), (1, 0), (1, 1))):
            qL = q[:, 0] * L[0, l] + q[:, 1] * L[1, l]
            G[idx] = np.sum(g[:, k] * w[:, l] - ALH[:, k, l]
                            - 0.5 * (q[:, k] * w[:, l] + qL * g[:, k]))
        return F, -G, md

    def __call__(self, q):
        F, G, _ = self.laplace(self.full(q))
        m = self.D.m
        if not np.isfinite(F):
            return 1e300, np.zeros(int(self.free.sum()))
        return F / m, G[self.free] / m


def _pooled_start(D: _Data) -> np.ndarray:
    """(a, alpha) of one common curve (Sigma = 0), by Newton on the pooled data."""
    n_tot, c_tot = D.n.sum(0), D.c.sum(0)
    pu = (c_tot + 0.5) / (n_tot + 1.0)
    ok = n_tot > 0
    y = np.log(-np.log(pu[ok]))
    X = np.column_stack([np.ones(ok.sum()), -D.xc[ok]])
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    for _ in range(100):
        eta = beta[0] - beta[1] * D.xc
        ll, d1, d2 = _cells(eta, n_tot, c_tot)
        g = np.array([d1.sum(), -(d1 @ D.xc)])
        A = np.array([[d2.sum(), -(d2 @ D.xc)], [-(d2 @ D.xc), d2 @ D.xc**2]])
        try:
            step = np.linalg.solve(A + 1e-10 * np.eye(2), g)
        except np.linalg.LinAlgError:
            break
        t = 1.0
        f0 = ll.sum()
        while t > 1e-8:
            b2 = beta + t * step
            if _cells(b2[0] - b2[1] * D.xc, n_tot, c_tot)[0].sum() >= f0 - 1e-12 * abs(f0):
                break
            t /= 2
        beta = b2
        if abs(g @ step) < 1e-12:
            break
    return np.clip(beta, -_LIMITS[:2] + 1, _LIMITS[:2] - 1)


@dataclass
class _Fit:
    p: np.ndarray
    F: float
    obj: _Objective
    md: _Mode
    converged: bool
    n_iter: int
    message: str


def _tr_step(G, lam, V, radius):
    """Trust-region step: d = -(H + mu I)^-1 G with H = V diag(lam) V', the
    smallest mu >= 0 keeping H + mu I positive definite and |d| <= radius."""
    gv = V.T @ G
    lo = max(0.0, -float(lam.min())) + 1e-12 * max(1.0, float(np.abs(lam).max()))

    def step(mu):
        return -V @ (gv / (lam + mu))

    d = step(lo)
    if np.linalg.norm(d) <= radius:
        return d
    hi = lo + 1.0
    while np.linalg.norm(step(hi)) > radius:
        hi = lo + 2 * (hi - lo)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if np.linalg.norm(step(mid)) > radius:
            lo = mid
        else:
            hi = mid
    return step(hi)


def _optimize(D: _Data, p0: np.ndarray, free: np.ndarray, w0=None,
              max_iter: int = 200) -> _Fit:
    """Minimise -(Laplace log-likelihood) over the free parameters by a
    trust-region Newton method: exact gradient, Hessian by forward
    differences of it, steps restarted from the last accepted modes.
    Unconstrained: the signs of L's columns do not change Sigma and are made
    non-negative on the diagonal at the end."""
    obj = _Objective(D, p0, free)
    if w0 is not None:
        obj.w = np.array(w0, float)
    q = np.array(p0[free], float)
    k = len(q)
    F, G = obj(q)
    w_acc = obj.w
    converged, message, it = False, "iteration limit", 0
    lim = _LIMITS[free]
    radius = 1.0
    need_hessian = True
    for it in range(1, max_iter + 1):
        if need_hessian:
            Hs = np.empty((k, k))
            for j in range(k):
                h = 1e-5 * max(1.0, abs(q[j]))
                qj = q.copy()
                qj[j] += h
                obj.w = w_acc
                Hs[:, j] = (obj(qj)[1] - G) / h
            Hs = 0.5 * (Hs + Hs.T)
            if not np.all(np.isfinite(Hs)):
                message = "non-finite Hessian"
                break
            lam, V = np.linalg.eigh(Hs)
            pd_ = bool(lam.min() > 0)
            if pd_:
                dec = float(G @ (V @ ((V.T @ G) / lam)))  # Newton decrement^2
                if dec * D.m < 1e-10:
                    converged, message = True, "Newton decrement below tolerance"
                    break
            elif np.max(np.abs(G)) * D.m < 1e-7:
                converged, message = True, "gradient below tolerance (Hessian not positive definite)"
                break
        d = _tr_step(G, lam, V, radius)
        pred = -float(G @ d + 0.5 * d @ Hs @ d)
        obj.w = w_acc
        F_new, G_new = obj(q + d)
        act = F - F_new
        rho = act / pred if pred > 0 else -1.0
        if rho < 0.25:
            radius = 0.25 * np.linalg.norm(d)
        elif rho > 0.75 and np.linalg.norm(d) > 0.99 * radius:
            radius = min(2.0 * radius, 10.0)
        if rho > 1e-4 and np.isfinite(F_new):
            q, F, G, w_acc = q + d, F_new, G_new, obj.w
            need_hessian = True
            if np.any(np.abs(q) > lim):
                message = "parameters ran off (not identified)"
                break
        else:
            need_hessian = False
            if radius < 1e-12:
                converged = pred * D.m < 1e-8
                message = "trust region collapsed" + (" at the optimum" if converged else "")
                break
    obj.w = w_acc
    p = obj.full(q)
    if p[2] < 0:
        p[2:4] = -p[2:4]
    p[4] = abs(p[4])
    obj.w = np.zeros((D.m, 2)) if not np.array_equal(p, obj.full(q)) else w_acc
    F, _, md = obj.laplace(p, grad=False)
    return _Fit(p, F, obj, md, converged and md.converged, it, message)


def _beta_cov(D: _Data, fit: _Fit) -> np.ndarray:
    """Inverse Hessian of -(Laplace log-likelihood) in (a, alpha) at fixed Sigma,
    by central differences of the exact gradient; the analytic information
    sum_i (A_i - A_i P_i A_i) if that is not positive definite."""
    obj = _Objective(D, fit.p, np.array([True, True, False, False, False]))
    obj.w = fit.md.w
    Hs = np.empty((2, 2))
    for k in range(2):
        h = 1e-5 * max(1.0, abs(fit.p[k]))
        gp = obj.laplace(fit.p + h * np.eye(5)[k])[1][:2]
        gm = obj.laplace(fit.p - h * np.eye(5)[k])[1][:2]
        Hs[k] = (gp - gm) / (2 * h)
    Hs = 0.5 * (Hs + Hs.T)
    if not (np.all(np.linalg.eigvalsh(Hs) > 0) and np.all(np.isfinite(Hs))):
        L = _chol(fit.p)
        P = L[None] @ fit.md.Hinv @ L.T[None]
        Hs = (fit.md.A - fit.md.A @ P @ fit.md.A).sum(0)
    return np.linalg.inv(Hs)


def _posterior_moments(D: _Data, fit: _Fit, chunk: int = 1000):
    """Mean and covariance of each instance's posterior of theta_i = (a_i,
    alpha_i) given the fitted (a, alpha, Sigma), by adaptive Gauss-Hermite
    quadrature (9 x 9 nodes on the Laplace approximation of the whitened
    w_i).  The mode is a biased stand-in for the mean when the binomial
    likelihood is skewed (PU near 0 or 1); that bias does not average out over
    instances, the noise does."""
    p, md = fit.p, fit.md
    beta, L = p[:2], _chol(p)
    Z = np.array([(a, b) for a in _AGQ_Z for b in _AGQ_Z])  # (K, 2)
    W = np.array([a * b for a in _AGQ_W for b in _AGQ_W])
    log_phi = -0.5 * (Z * Z).sum(1)
    # Cholesky factor of each H_w^-1 (2x2, positive definite)
    Hi = md.Hinv
    c00 = np.sqrt(Hi[:, 0, 0])
    c10 = Hi[:, 1, 0] / c00
    c11 = np.sqrt(np.maximum(Hi[:, 1, 1] - c10 * c10, 0.0))
    mean = np.empty((D.m, 2))
    cov = np.empty((D.m, 2, 2))
    with np.errstate(all="ignore"):
        for s0 in range(0, D.m, chunk):
            sl = slice(s0, min(D.m, s0 + chunk))
            w = np.stack([md.w[sl, None, 0] + c00[sl, None] * Z[None, :, 0],
                          md.w[sl, None, 1] + c10[sl, None] * Z[None, :, 0] + c11[sl, None] * Z[None, :, 1]],
                         axis=-1)  # (b, K, 2)
            th = beta[None, None, :] + np.einsum("bki,ji->bkj", w, L)
            eta = th[:, :, :1] - th[:, :, 1:] * D.xc[None, None, :]
            ll = _cells(eta, D.n[sl, None, :], D.c[sl, None, :])[0].sum(-1)
            lr = ll - 0.5 * (w * w).sum(-1) - log_phi[None, :]
            lr -= lr.max(1, keepdims=True)
            r = W[None, :] * np.exp(lr)
            r /= r.sum(1, keepdims=True)
            mu = np.einsum("bk,bki->bi", r, th)
            dev = th - mu[:, None, :]
            mean[sl] = mu
            cov[sl] = np.einsum("bk,bki,bkj->bij", r, dev, dev)
    bad = ~(np.all(np.isfinite(mean), axis=1) & np.all(np.isfinite(cov), axis=(1, 2)))
    if bad.any():  # fall back to the Laplace approximation
        P = _mm(_mm(L, md.Hinv), L.T)
        mean[bad], cov[bad] = md.theta[bad], P[bad]
    return mean, cov


def _curvature_score_test(D: _Data, fit: _Fit) -> LackOfFit:
    """Score test of q in eta_iN = ... + q (log N - log N0)^2, Sigma fixed."""
    md, L = fit.md, _chol(fit.p)
    z = D.xc**2 - np.mean(D.xc**2)
    X3 = np.column_stack([np.ones_like(D.xc), -D.xc, z])
    U = np.column_stack([md.d1 @ X3[:, 0], md.d1 @ X3[:, 1], md.d1 @ X3[:, 2]]).sum(0)
    A3 = np.einsum("ms,sa,sb->mab", md.d2, X3, X3)
    L3 = np.vstack([L, np.zeros((1, 2))])
    I3 = (A3 - A3 @ L3[None] @ md.Hinv @ L3.T[None] @ A3).sum(0)
    Ibb, Ibq, Iqq = I3[:2, :2], I3[:2, 2], I3[2, 2]
    try:
        sol = np.linalg.solve(Ibb, np.column_stack([Ibq, U[:2]]))
        u_eff = U[2] - Ibq @ sol[:, 1]
        i_eff = Iqq - Ibq @ sol[:, 0]
        stat = float(u_eff**2 / i_eff) if i_eff > 0 else float("nan")
    except np.linalg.LinAlgError:
        stat = float("nan")
    p = float(stats.chi2.sf(stat, 1)) if np.isfinite(stat) else float("nan")
    return LackOfFit(stat, 1, p, "score test of a common (log N - log N0)^2 term vs chi2(1)")


# --------------------------------------------------------------------------
# posterior expectations of p = exp(-exp(eta)), eta ~ N(mu, s^2)
# --------------------------------------------------------------------------


def _expect(mu, s):
    """E[p], E[p^2] and E[p exp(eta)] for eta ~ N(mu, s^2), elementwise.

    Gauss-Hermite (24 nodes) in the normal variable when s < 0.5; otherwise
    E[p] = P(G > eta) = E_G[Phi((G - mu)/s)] with G = log E, E ~ Exp(1) (a
    Gumbel variable), integrated on a fixed grid (step 0.35; error < 1e-10 for
    s >= 0.5, where the Hermite rule would need hundreds of nodes).
    """
    mu = np.asarray(mu, float).ravel()
    s = np.asarray(s, float).ravel()
    e1, e2, em = np.empty_like(mu), np.empty_like(mu), np.empty_like(mu)
    small = s < _SMALL_SD
    chunk = 40000
    log2 = math.log(2.0)
    with np.errstate(all="ignore"):
        for idx, hermite in ((np.flatnonzero(small), True), (np.flatnonzero(~small), False)):
            for start in range(0, len(idx), chunk):
                ii = idx[start:start + chunk]
                m_, s_ = mu[ii, None], s[ii, None]
                if hermite:
                    eta = np.clip(m_ + s_ * _GH_Z[None, :], -700.0, 50.0)
                    ex = np.exp(eta)
                    p = np.exp(-ex)
                    e1[ii] = p @ _GH_W
                    e2[ii] = (p * p) @ _GH_W
                    em[ii] = (p * ex) @ _GH_W
                else:
                    zz = (_G_GRID[None, :] - m_) / s_
                    e1[ii] = ndtr(zz) @ _G_W
                    e2[ii] = ndtr(zz - log2 / s_) @ _G_W
                    em[ii] = (np.exp(-0.5 * zz * zz) @ _G_W) / (s[ii] * math.sqrt(2 * math.pi))
    return e1, e2, em


# --------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------


@dataclass
class HierarchicalLawResults(CovParams):
    """Hierarchical instance-level fit; see the module docstring.

    ``params``/``bse``/``cov_params()``/``conf_int()``: the fixed effects
    ``log_c`` and ``alpha`` of the typical instance.  ``sigma``: covariance of
    the random effects ``(u, v)`` = (deviation of ``log(-log PU_i)`` at ``N0``,
    deviation of ``alpha_i``); ``sigma_law`` the same for ``(log c_i,
    alpha_i)``.  ``instance_params``: per instance its status, counts, the
    posterior mode (``log_c``, ``alpha``), SD (``sd_log_c``, ``sd_alpha``) and
    mean (``mean_log_c``, ``mean_alpha``) of ``log c_i`` and ``alpha_i``, given
    the fitted fixed effects and Sigma.  ``predict``/``predict_y``: task PU =
    mean of the instances' posterior expected PU, and its estimation variance;
    ``predict_instances``: the per-instance terms of that mean.
    """

    params: pd.Series
    cov_params_: np.ndarray
    sigma: pd.DataFrame
    structure: str
    structure_note: str
    instance_params: pd.DataFrame
    lack_of_fit: LackOfFit
    loglik: float
    converged: bool
    n_iter: int
    n_sizes: int
    n_instances: int
    n_never_solved: int
    n_saturated: int
    xbar: float
    sizes: pd.DataFrame
    alpha_ci: float = 0.05
    level: str = "instance"
    method: str = "glm"
    model: str = "hierarchical"
    _state: dict = field(default_factory=dict, repr=False)

    # --- parameters -----------------------------------------------------
    @property
    def N0(self) -> float:
        return float(math.exp(self.xbar))


    @property
    def sd_random(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.sigma.to_numpy())), index=self.sigma.index)

    @property
    def corr_random(self) -> float:
        S = self.sigma.to_numpy()
        den = math.sqrt(S[0, 0] * S[1, 1])
        return float(S[0, 1] / den) if den > 1e-300 else float("nan")

    @property
    def sigma_law(self) -> pd.DataFrame:
        """Random-effects covariance of (log c_i, alpha_i) = J (u, v), J = [[1, log N0], [0, 1]]."""
        J = np.array([[1.0, self.xbar], [0.0, 1.0]])
        idx = ["log_c", "alpha"]
        return pd.DataFrame(J @ self.sigma.to_numpy() @ J.T, index=idx, columns=idx)

    def conf_int(self, alpha: Optional[float] = None, method: Optional[str] = None) -> pd.DataFrame:
        """Normal-quantile intervals for the fixed effects.

        ``method``: "wald" (default) or "profile": for ``alpha``, the profile
        Laplace likelihood (``log_c`` keeps the Wald interval); the other
        parameters, Sigma's included, are re-maximised at each alpha.
        """
        a = _check_level(self.alpha_ci if alpha is None else alpha)
        method = method or "wald"
        if method not in ("wald", "profile"):
            raise ValueError(f"method must be 'wald' or 'profile', got {method!r}")
        q = float(stats.norm.ppf(1 - a / 2))
        out = pd.DataFrame({"lower": self.params - q * self.bse, "upper": self.params + q * self.bse})
        if method == "profile":
            out.loc["alpha"] = self._profile_alpha(q)
        return out

    def _profile_alpha(self, q: float):
        st = self._state
        D, fit = st["data"], st["fit"]
        free = _FREE[self.structure].copy()
        free[1] = False
        F_hat = fit.F

        def excess(b):
            p0 = fit.p.copy()
            p0[1] = b
            r = _optimize(D, p0, free, w0=fit.md.w)
            return 2.0 * (r.F - F_hat) - q * q

        b0 = float(fit.p[1])
        step = max(float(self.bse["alpha"]), 1e-6) * q
        bounds = []
        for sign in (-1.0, 1.0):
            lo, hi = b0, b0 + sign * step
            tries = 0
            while excess(hi) < 0 and tries < 12:
                lo, hi = hi, b0 + sign * step * 2 ** (tries + 1)
                tries += 1
            if tries == 12:
                bounds.append(sign * np.inf)
                continue
            a_, b_ = sorted((lo, hi))
            bounds.append(float(optimize.brentq(excess, a_, b_, xtol=1e-8)))
        return bounds[0], bounds[1]

    # --- prediction -----------------------------------------------------
    def _task_moments(self, N):
        """Task PU T(N) and Var(T) (fixed effects by the delta method + the
        instances' posterior variance)."""
        st = self._state
        theta, P, B = st["theta"], st["P"], st["B"]
        m = theta.shape[0]
        x = np.log(N) - self.xbar  # (K,)
        mu = theta[:, :1] - theta[:, 1:] * x[None, :]
        s2 = P[:, 0, 0, None] - 2 * P[:, 0, 1, None] * x + P[:, 1, 1, None] * x * x
        s = np.sqrt(np.maximum(s2, 0.0))
        e1, e2, em = (v.reshape(mu.shape) for v in _expect(mu, s))
        T = e1.mean(0)
        v_post = np.maximum(e2 - e1 * e1, 0.0).sum(0) / m**2
        # dT/dbeta = mean_i -E[p exp(eta)] x0' B_i,  x0 = (1, -x)
        B_x = np.stack([B[:, 0, 0, None] - x * B[:, 1, 0, None],
                        B[:, 0, 1, None] - x * B[:, 1, 1, None]], axis=-1)  # (m, K, 2): x0' B_i
        grad = -(em[:, :, None] * B_x).sum(0) / m  # (K, 2)
        v_beta = np.einsum("ki,ij,kj->k", grad, st["cov_ab"], grad)
        return T, v_beta + v_post

    def predict_instances(self, N) -> pd.DataFrame:
        """E[PU_i(N) | data] per instance (rows, by instance label) and size
        (columns): the terms whose mean is :meth:`predict`'s task PU."""
        N = _check_N(N)
        st = self._state
        theta, P = st["theta"], st["P"]
        x = np.log(N) - self.xbar
        mu = theta[:, :1] - theta[:, 1:] * x[None, :]
        s2 = P[:, 0, 0, None] - 2 * P[:, 0, 1, None] * x + P[:, 1, 1, None] * x * x
        e1 = _expect(mu, np.sqrt(np.maximum(s2, 0.0)))[0].reshape(mu.shape)
        return pd.DataFrame(e1, index=pd.Index(self.instance_params["instance"], name="instance"),
                            columns=pd.Index(N, name="N"))

    def predict_y(self, N):
        """(mean_y, var_y): y = log(-log task PU) at sizes N and its estimation
        variance (fixed effects + instance posteriors; no between-size scatter)."""
        N = _check_N(N)
        T, v = self._task_moments(N)
        Tc = np.clip(T, 1e-300, 1 - 1e-16)
        with np.errstate(all="ignore"):
            y = np.log(-np.log(Tc))
            dy = 1.0 / (Tc * np.log(Tc))
        return y, v * dy * dy

    def predict(self, N, interval: bool = True, alpha: float = 0.05, n_eff=None) -> pd.DataFrame:
        """Task PU at sizes ``N`` = mean over instances of E[PU_i(N) | data].

        The interval (normal quantile on the y = log(-log PU) scale, mapped
        back) covers the estimation uncertainty of that mean under the model
        (see the module docstring); with ``n_eff`` (effective sample size of
        an observed task PU at N) the new observation's binomial noise is
        added.  It does not cover between-size scatter.
        """
        a = _check_level(alpha)
        N = _check_N(N)
        T, v = self._task_moments(N)
        out = pd.DataFrame({"N": N, "pu": T})
        if not interval:
            return out
        Tc = np.clip(T, 1e-300, 1 - 1e-16)
        with np.errstate(all="ignore"):
            y = np.log(-np.log(Tc))
            dy = 1.0 / (Tc * np.log(Tc))
            vy = v * dy * dy
            if n_eff is not None:
                ne = np.broadcast_to(np.asarray(n_eff, float), N.shape)
                s0 = Tc * (1 - Tc) / ne * dy * dy
                vy = vy + np.where(np.isfinite(s0), s0, 0.0)
        q = float(stats.norm.ppf(1 - a / 2))
        sd = np.sqrt(np.where(np.isfinite(vy), vy, 0.0))
        out["lower"] = np.exp(-np.exp(y + q * sd))
        out["upper"] = np.exp(-np.exp(y - q * sd))
        return out

    # --- reporting ------------------------------------------------------
    def summary(self) -> str:
        ci = self.conf_int()
        sd = self.sd_random
        lvl = int(round(100 * (1 - self.alpha_ci)))
        lf = self.lack_of_fit
        lines = [
            "PassUntil task scaling law, hierarchical instance level",
            "  PU_i(N) = exp(-c_i N^-alpha_i),  log c_i = log_c + u_i + v_i log N0,  alpha_i = alpha + v_i",
            f"  (u_i, v_i) ~ N(0, Sigma),  N0 = exp(mean log N) = {self.N0:.4g}",
            "  predict(): task PU(N) = mean over the instances of E[PU_i(N) | data], each (u_i, v_i)",
            "  Gaussian with its posterior mean and covariance; fixed effects and Sigma at their estimates",
            "=" * 72,
            f"instances: {self.n_instances}  (never solved: {self.n_never_solved}, "
            f"saturated: {self.n_saturated})   sizes: {self.n_sizes}",
            f"fit: Laplace marginal likelihood, loglik = {self.loglik:.6g}, "
            f"{'converged' if self.converged else 'NOT converged'} ({self.n_iter} iterations)",
            f"random effects: {self.structure} ({self.structure_note})",
            "-" * 72,
            f"fixed effects (typical instance){'':<1}{'coef':>10}{'std err':>11}"
            f"{f'[{lvl}% lower':>12}{'upper]':>10}",
        ]
        for name in self.params.index:
            lines.append(f"  {name:<30}{self.params[name]:>10.5g}{self.bse[name]:>11.4g}"
                         f"{ci.loc[name, 'lower']:>12.5g}{ci.loc[name, 'upper']:>10.5g}")
        corr = self.corr_random
        lines += [
            "random effects",
            f"  sd(u) (log(-log PU_i) at N0)   {sd.iloc[0]:>10.4g}",
            f"  sd(v) (alpha_i)                {sd.iloc[1]:>10.4g}",
            f"  corr(u, v)                     {corr:>10.4g}" if self.structure == "full"
            else f"  corr(u, v)                     {'fixed at 0' if self.structure == 'diagonal' else 'n/a':>10}",
            f"  implied sd(log c_i)            {math.sqrt(self.sigma_law.iloc[0, 0]):>10.4g}",
            f"lack of fit ({lf.method}): stat={lf.statistic:.4g} p={lf.pvalue:.4g}"
            f"{'  << curvature' if lf.flagged else ''}",
            "intervals of predict(): fixed-effect estimation error (delta method) + the instances'",
            "  posterior spread; not Sigma's uncertainty, not between-size scatter",
            "=" * 72,
        ]
        return "\n".join(lines)

    def __str__(self) -> str:  # pragma: no cover - convenience
        return self.summary()

    def to_dict(self) -> dict:
        ci = self.conf_int()
        S = self.sigma.to_numpy()
        return {
            "law": "PU_i(N) = exp(-c_i * N^-alpha_i), (log c_i, alpha_i) random around (log_c, alpha)",
            "level": self.level,
            "method": self.method,
            "model": self.model,
            "params": {k: _jf(v) for k, v in self.params.items()},
            "bse": {k: _jf(v) for k, v in self.bse.items()},
            "conf_int": {k: [_jf(ci.loc[k, "lower"]), _jf(ci.loc[k, "upper"])] for k in ci.index},
            "alpha_ci": float(self.alpha_ci),
            "N0": _jf(self.N0),
            "sigma": [[_jf(S[0, 0]), _jf(S[0, 1])], [_jf(S[1, 0]), _jf(S[1, 1])]],
            "sd_u": _jf(self.sd_random.iloc[0]),
            "sd_alpha": _jf(self.sd_random.iloc[1]),
            "corr_u_alpha": _jf(self.corr_random),
            "structure": self.structure,
            "structure_note": self.structure_note,
            "loglik": _jf(self.loglik),
            "converged": bool(self.converged),
            "lack_of_fit": self.lack_of_fit.to_dict(),
            "n_sizes": int(self.n_sizes),
            "n_instances": int(self.n_instances),
            "n_never_solved": int(self.n_never_solved),
            "n_saturated": int(self.n_saturated),
            "sizes": [
                {k: (_jf(v) if isinstance(v, (float, np.floating)) else int(v)) for k, v in row.items()}
                for row in self.sizes[["N", "m", "pu", "fitted"]].to_dict("records")
            ],
            "instances": [
                {"instance": str(r["instance"]), "status": r["status"], "log_c": _jf(r["log_c"]),
                 "alpha": _jf(r["alpha"]), "sd_log_c": _jf(r["sd_log_c"]), "sd_alpha": _jf(r["sd_alpha"])}
                for r in self.instance_params.to_dict("records")
            ],
        }


def _check_N(N) -> np.ndarray:
    N = np.atleast_1d(np.asarray(N, float))
    if np.any(~np.isfinite(N)) or np.any(N <= 0):
        raise ValueError("N must be finite and > 0")
    return N


# --------------------------------------------------------------------------
# the fit
# --------------------------------------------------------------------------


def fit_hierarchical_law(df: pd.DataFrame, *, alpha_ci: float = 0.05,
                         structure: str = "auto") -> HierarchicalLawResults:
    """Fit the hierarchical instance-level law (see the module docstring).

    ``df``: one row per (model size, instance) with columns N, instance, n, c
    (unbalanced designs are fine).  ``structure``: "auto" (full Sigma, with
    the fallbacks described in the module docstring), "full", "diagonal" or
    "intercept" (random intercept only).

    Raises ValueError on invalid input, when every instance is never solved
    (or every one saturated), or when the typical curve is not identified
    (passes and failures together at fewer than two sizes).
    """
    alpha_ci = _check_level(alpha_ci)
    if structure not in _STRUCTURES:
        raise ValueError(f"structure must be one of {_STRUCTURES}, got {structure!r}")
    d = _validate(df)
    D = _prepare(d)
    observed = D.n > 0
    never = np.all(D.c == 0, axis=1)
    sat = np.all((D.c == D.n), axis=1)
    if never.all():
        raise ValueError(f"every instance is never solved (no pass at any size, {D.m} instances): "
                         "the law is not identified")
    if sat.all():
        raise ValueError(f"every instance is saturated (passes every sample, {D.m} instances): "
                         "the law is not identified")
    c_tot, n_tot = D.c.sum(0), D.n.sum(0)
    interior = int(np.sum((c_tot > 0) & (c_tot < n_tot)))
    if interior < 2:
        raise ValueError(
            "the typical curve is not identified: passes and failures occur together at "
            f"{interior} size(s) (need 2); pass counts per size: {dict(zip(D.sizes.tolist(), c_tot.tolist()))}")

    beta0 = _pooled_start(D)
    p0 = np.array([beta0[0], beta0[1], 1.0, 0.0, 0.1])
    want = "full" if structure == "auto" else structure
    if want != "full":
        p0[~_FREE[want]] = 0.0
    fit = _optimize(D, p0, _FREE[want])
    chosen, note = want, "requested" if structure != "auto" else "slope variance and correlation estimated"
    if structure == "auto":
        sd_v = math.hypot(fit.p[3], fit.p[4])
        sd_u = fit.p[2]
        corr = fit.p[2] * fit.p[3] / (sd_u * sd_v) if sd_u * sd_v > 1e-12 else 0.0
        # is the slope variance identified?  Refit without it: if the
        # likelihood is no worse, its maximum-likelihood value is 0.
        p1 = fit.p.copy()
        p1[3:] = 0.0
        alt = _optimize(D, p1, _FREE["intercept"])
        if alt.F - fit.F < 0.05:
            fit, chosen = alt, "intercept"
            note = "slope variance not identified (maximum likelihood at 0): random intercept only"
        elif abs(corr) > 0.99:
            # Sigma singular: is the +-1 correlation identified?
            p1 = fit.p.copy()
            p1[3], p1[4] = 0.0, sd_v
            diag = _optimize(D, p1, _FREE["diagonal"])
            if diag.F - fit.F < 1.92:
                if alt.F - diag.F < 0.05:
                    fit, chosen = alt, "intercept"
                    note = (f"correlation ran to {corr:+.3f} (not identified: a diagonal Sigma fits "
                            "within 1.92 loglik), and then the slope variance is 0: random intercept only")
                else:
                    fit, chosen = diag, "diagonal"
                    note = (f"correlation ran to {corr:+.3f}, not identified: diagonal Sigma "
                            "(loglik within 1.92 of the full fit)")
    p = fit.p
    if np.any(np.abs(p) > _LIMITS):
        raise ValueError(
            f"the law is not identified: the fit ran off to a = {p[0]:.3g}, alpha = {p[1]:.3g}, "
            f"chol(Sigma) = {p[2:].round(3).tolist()} (e.g. every instance is either never solved "
            "or saturated, or passes appear at a single size)")
    L = _chol(p)
    Sigma = L @ L.T
    md = fit.md
    P = L[None] @ md.Hinv @ L.T[None]
    B = np.eye(2)[None] - P @ md.A
    cov_ab = _beta_cov(D, fit)
    J = np.array([[1.0, D.xbar], [0.0, 1.0]])  # (a, alpha) -> (log_c, alpha)
    params = pd.Series(J @ p[:2], index=["log_c", "alpha"])
    cov = J @ cov_ab @ J.T
    theta = md.theta
    post_mean, post_cov = _posterior_moments(D, fit)
    var_lc = post_cov[:, 0, 0] + 2 * D.xbar * post_cov[:, 0, 1] + D.xbar**2 * post_cov[:, 1, 1]
    status = np.where(never, "never_solved", np.where(sat, "saturated", "partial"))
    ip = pd.DataFrame({
        "instance": D.labels,
        "status": status,
        "n_sizes": observed.sum(1),
        "c": D.c.sum(1).astype(np.int64),
        "n": D.n.sum(1).astype(np.int64),
        "log_c": theta[:, 0] + D.xbar * theta[:, 1],
        "alpha": theta[:, 1],
        "sd_log_c": np.sqrt(np.maximum(var_lc, 0.0)),
        "sd_alpha": np.sqrt(np.maximum(post_cov[:, 1, 1], 0.0)),
        "mean_log_c": post_mean[:, 0] + D.xbar * post_mean[:, 1],
        "mean_alpha": post_mean[:, 1],
    })
    res = HierarchicalLawResults(
        params=params,
        cov_params_=cov,
        sigma=pd.DataFrame(Sigma, index=["u", "v"], columns=["u", "v"]),
        structure=chosen,
        structure_note=note,
        instance_params=ip,
        lack_of_fit=_curvature_score_test(D, fit),
        loglik=-fit.F + D.const,
        converged=fit.converged,
        n_iter=fit.n_iter,
        n_sizes=len(D.sizes),
        n_instances=D.m,
        n_never_solved=int(never.sum()),
        n_saturated=int(sat.sum()),
        xbar=D.xbar,
        sizes=_by_size(d),
        alpha_ci=alpha_ci,
        _state={"data": D, "fit": fit, "theta": post_mean, "P": post_cov, "B": B, "cov_ab": cov_ab},
    )
    res.sizes["fitted"] = res.predict(res.sizes["N"].to_numpy(), interval=False)["pu"].to_numpy()
    return res
