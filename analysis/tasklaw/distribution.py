"""The distributional view of PassUntil counts (Schaeffer et al. 2025).

At one model size the per-instance pass rates ``p_i`` are treated as draws
from a Beta(a, b) across instances, so the counts are beta-binomial,
``c_i ~ BetaBinomial(n_i, a, b)``.  Everything the task cares about is then
a functional of the Beta:

* pass@k (the expected fraction of instances solved by k samples)
  ``= 1 - E[(1-p)^k] = 1 - B(a, b+k)/B(a, b)``, computed with
  ``scipy.special.betaln`` (stable for k up to 1e9 and beyond);
* never_solved@k ``= E[(1-p)^k]``, the expected fraction of instances with
  no pass in k samples; pass@1 is the mean ``a/(a+b)``;
* the power-law tail: the Beta's left tail ``f(p) ~ p^(a-1)/B(a,b)`` gives
  ``E[(1-p)^k] ~ Gamma(a+b)/Gamma(b) * k^-a`` for ``k >> b``, so
  ``-log pass@k ~ 1 - pass@k ~ C k^-a`` with ``C = Gamma(a+b)/Gamma(b)``:
  the aggregate is a power law in k with exponent ``a``, although every
  single instance's failure rate falls exponentially in k.

Input is the tidy counts table of :mod:`.law` (columns ``N``, ``instance``,
``n``, ``c``; extra columns are ignored).

Entry points (statsmodels style):

* :func:`fit_beta_binomial` (one size) -> :class:`BetaBinomialFit`
* :func:`fit_beta_binomial_trend` (all sizes) -> :class:`BetaBinomialTrend`

Both maximise the beta-binomial likelihood in ``eta = logit(mean)`` and
``lam = log(a + b)`` (unconstrained, analytic gradient, BFGS from several
starts around the method of moments); mean and concentration are nearly
orthogonal in the information, which conditions the problem better than
``(log a, log b)``.  Covariances are the inverse observed information (a
central-difference Hessian of the analytic gradient).

Assumptions, to be read with every number this module returns:

* instances are exchangeable draws from one population, and at a size their
  pass rates follow a Beta (one mode at 0 or 1 or one interior mode; a
  mixture of "impossible" and "easy" instances is not a Beta);
* the trend fit assumes ``logit(mean)`` and ``log(a+b)`` linear in ``log N``;
  its likelihood treats sizes as independent, and when the same instances
  are scored at every size its covariance is made cluster-robust by
  instance (see :func:`fit_beta_binomial_trend`, ``cov_type``);
* intervals are for the population (mean) curve, not for the scatter of
  one new model's observed task score around it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pandas as pd

from ..ingest.tables import instance_pu
from scipy import stats
from scipy.optimize import minimize
from scipy.special import betaln, digamma, expit, gammaln, logit

from .base import CovParams, _jf, _validate

__all__ = [
    "fit_beta_binomial",
    "BetaBinomialFit",
    "fit_beta_binomial_trend",
    "BetaBinomialTrend",
    "beta_pass_at_k",
    "beta_never_solved",
]

# Clips keep exp/expit finite while BFGS explores; the gradient is zeroed
# outside them so the objective stays consistent (flat) there.
_ETA_CLIP = 40.0  # |logit mean| <= 40: mean in (4e-18, 1 - 4e-18)
# a + b in (1.4e-11, 4.9e8): beyond ~1e8 betaln(a, b) loses the digits that
# pass@k and the likelihood need (both are differences of huge numbers).
_LAM_LO, _LAM_HI = -25.0, 20.0
# rho = 1/(a+b+1) below 1e-6 inflates the binomial variance by under 1% for
# n up to 1e4: report it as the binomial limit (rho = 0).  A log-lik gain
# below _BOUNDARY_TOL over that limit is treated the same way.
_S_BINOMIAL = 1e6
_BOUNDARY_TOL = 1e-6


# --------------------------------------------------------------------------
# closed forms
# --------------------------------------------------------------------------


def _check_k(k) -> np.ndarray:
    k = np.asarray(k, float)
    if np.any(~np.isfinite(k)) or np.any(k < 0):
        raise ValueError("k (samples) must be finite and >= 0")
    return k


def beta_never_solved(a, b, k):
    """``E[(1-p)^k] = B(a, b+k)/B(a, b)`` for p ~ Beta(a, b); inputs broadcast."""
    k = _check_k(k)
    with np.errstate(all="ignore"):
        return np.exp(betaln(a, np.add(b, k)) - betaln(a, b))


def beta_pass_at_k(a, b, k):
    """``1 - E[(1-p)^k]`` for p ~ Beta(a, b); ``-expm1`` keeps tiny values exact."""
    k = _check_k(k)
    with np.errstate(all="ignore"):
        return 0.0 - np.expm1(betaln(a, np.add(b, k)) - betaln(a, b))  # 0.0 - : no -0.0


def _tail_constant(a, b):
    """C in ``E[(1-p)^k] ~ C k^-a``: Gamma(a+b)/Gamma(b) (from the left tail)."""
    return np.exp(gammaln(np.add(a, b)) - gammaln(b))


# --------------------------------------------------------------------------
# likelihood engine: eta = Xm @ beta_m (logit mean), lam = Xs @ beta_s (log a+b)
# --------------------------------------------------------------------------


def _ab(eta, lam):
    eta = np.clip(eta, -_ETA_CLIP, _ETA_CLIP)
    lam = np.clip(lam, _LAM_LO, _LAM_HI)
    s = np.exp(lam)
    # expit(-eta) rather than 1 - expit(eta): b stays accurate when mean -> 1
    return expit(eta) * s, expit(-eta) * s, s


def _loglik_parts(theta, n, c, Xm, Xs):
    """Row log-likelihoods (binomial coefficient dropped) and row scores."""
    pm = Xm.shape[1]
    eta, lam = Xm @ theta[:pm], Xs @ theta[pm:]
    a, b, s = _ab(eta, lam)
    ll = betaln(c + a, n - c + b) - betaln(a, b)
    common = digamma(n + s) - digamma(s)
    ga = digamma(c + a) - digamma(a) - common  # d ll / d a
    gb = digamma(n - c + b) - digamma(b) - common  # d ll / d b
    # chain rule: da/deta = ab/s = -db/deta; da/dlam = a, db/dlam = b
    d_eta = np.where(np.abs(eta) < _ETA_CLIP, (ga - gb) * a * b / s, 0.0)
    d_lam = np.where((lam > _LAM_LO) & (lam < _LAM_HI), ga * a + gb * b, 0.0)
    scores = np.hstack([Xm * d_eta[:, None], Xs * d_lam[:, None]])
    return ll, scores


def _negll(theta, n, c, Xm, Xs):
    ll, sc = _loglik_parts(theta, n, c, Xm, Xs)
    f = -float(np.sum(ll))
    if not np.isfinite(f):
        return np.inf, np.zeros_like(theta)
    return f, -sc.sum(axis=0)


def _maximize(n, c, Xm, Xs, starts):
    """Best of BFGS runs from ``starts`` (a flat or multi-modal surface is
    possible near the boundaries, so one start is not trusted)."""
    best = None
    for t0 in starts:
        with np.errstate(all="ignore"):
            r = minimize(_negll, np.asarray(t0, float), args=(n, c, Xm, Xs), jac=True,
                         method="BFGS", options={"gtol": 1e-5, "maxiter": 1000})
        if np.isfinite(r.fun) and (best is None or r.fun < best.fun):
            best = r
    if best is None:
        raise RuntimeError("beta-binomial likelihood could not be evaluated at any start")
    return best


def _information(theta, n, c, Xm, Xs, h=1e-4):
    """Observed information: central differences of the analytic gradient."""
    k = len(theta)
    H = np.empty((k, k))
    for j in range(k):
        e = np.zeros(k)
        e[j] = h
        H[:, j] = (_negll(theta + e, n, c, Xm, Xs)[1] - _negll(theta - e, n, c, Xm, Xs)[1]) / (2 * h)
    return (H + H.T) / 2


def _invert(H, what):
    """Inverse of the information, NaN (with a warning) when not positive definite."""
    try:
        np.linalg.cholesky(H)
        return np.linalg.inv(H)
    except np.linalg.LinAlgError:
        warnings.warn(f"{what}: observed information is not positive definite "
                      "(parameters not identified); covariance set to NaN", RuntimeWarning)
        return np.full(H.shape, np.nan)


def _moments(n, c):
    """Method-of-moments (logit mean, log(a+b)): a start, never the answer.

    Var(c_i/n_i) = mu(1-mu) (rho + (1-rho)/n_i) with rho = 1/(a+b+1).
    """
    p = c / n
    mu = np.clip(p.mean(), 0.5 / n.sum(), 1 - 0.5 / n.sum())
    v = p.var(ddof=1) if len(p) > 1 else 0.0
    h = float(np.mean(1.0 / n))
    rho = (v / (mu * (1 - mu)) - h) / (1 - h) if h < 1 else 0.5
    rho = float(np.clip(rho, 1e-3, 0.95))
    return float(logit(mu)), float(np.log(1 / rho - 1))


def _binomial_ll(n, c):
    """Log-likelihood of the a+b -> inf limit (every instance has p = pooled c/n)."""
    p = c.sum() / n.sum()
    with np.errstate(all="ignore"):
        return float(np.sum(np.where(c > 0, c * np.log(p), 0.0)
                            + np.where(n > c, (n - c) * np.log1p(-p), 0.0)))


# --------------------------------------------------------------------------
# one size
# --------------------------------------------------------------------------


@dataclass
class BetaBinomialFit:
    """Beta(a, b) across instances at one size, fitted by maximum likelihood.

    ``params``: Series a, b, mean = a/(a+b) (= pass@1), rho = 1/(a+b+1) (the
    intra-instance correlation; 0 = every instance has the same p).
    ``boundary`` says when the MLE sits on the edge of the parameter space:

    * ``""``: interior, the usual Wald inference (on the log/logit scales);
    * ``"all_zero"``: no instance ever passed; the MLE is a -> 0 (mean 0,
      b unidentified, NaN).  ``conf_int`` gives ``[0, U]`` with
      ``U = 1 - (alpha/2)**(1/m)``: for any Beta, P(all zero) =
      prod_i E[(1-p)^n_i] <= (1 - mean)^m, so U holds whatever the dispersion.
      The same U bounds pass@k for every k <= min n_i (E[(1-p)^k] >=
      E[(1-p)^n_i] there); nothing bounds pass@k for larger k;
    * ``"all_solved"``: the mirror image (b -> 0, mean 1, lower bound
      ``(alpha/2)**(1/m)``);
    * ``"no_overdispersion"``: the likelihood is maximised as a+b -> inf
      (a single instance always lands here; so does under-dispersed data):
      a = b = inf, rho = 0, mean = pooled c/n with its binomial standard
      error, pass@k = 1 - (1-mean)^k.
    """

    params: pd.Series
    cov_internal: np.ndarray  # covariance of (logit mean, log(a+b)), 2x2
    boundary: str
    loglik: float
    m: int
    n_total: int
    N: float = float("nan")
    converged: bool = True
    alpha_ci: float = 0.05

    # --- parameters -----------------------------------------------------
    def _jacobian(self) -> np.ndarray:
        """d(a, b, mean, rho)/d(eta, lam) at the estimate."""
        a, b, mu = self.params["a"], self.params["b"], self.params["mean"]
        s = a + b
        return np.array([
            [a * (1 - mu), a],
            [-b * mu, b],
            [mu * (1 - mu), 0.0],
            [0.0, -s / (s + 1) ** 2],
        ])

    def cov_params(self) -> pd.DataFrame:
        """Delta-method covariance of (a, b, mean, rho) (rank 2; NaN at boundaries)."""
        idx = self.params.index
        if self.boundary == "no_overdispersion":
            cov = np.full((4, 4), np.nan)
            mu = self.params["mean"]
            cov[2, 2] = self.cov_internal[0, 0] * (mu * (1 - mu)) ** 2
        elif self.boundary:
            cov = np.full((4, 4), np.nan)
        else:
            J = self._jacobian()
            cov = J @ self.cov_internal @ J.T
        return pd.DataFrame(cov, index=idx, columns=idx)

    @property
    def bse(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.cov_params().to_numpy())), index=self.params.index)

    def conf_int(self, alpha: Optional[float] = None) -> pd.DataFrame:
        """Wald intervals built on log a, log b, logit mean, log(a+b) and mapped
        back (so they stay inside the parameter space); bounds at boundaries."""
        al = _check_alpha(self.alpha_ci if alpha is None else alpha)
        z = stats.norm.ppf(1 - al / 2)
        out = pd.DataFrame(np.nan, index=self.params.index, columns=["lower", "upper"])
        mu = self.params["mean"]
        if self.boundary == "all_zero":
            out.loc["mean"] = [0.0, 1 - (al / 2) ** (1 / self.m)]
            out.loc["a"] = [0.0, np.nan]
        elif self.boundary == "all_solved":
            out.loc["mean"] = [(al / 2) ** (1 / self.m), 1.0]
            out.loc["b"] = [0.0, np.nan]
        elif self.boundary == "no_overdispersion":
            se = math.sqrt(self.cov_internal[0, 0])
            out.loc["mean"] = expit(logit(mu) + np.array([-z, z]) * se)
            out.loc["rho"] = [0.0, np.nan]
        else:
            C = self.cov_internal
            eta, lam = logit(mu), math.log(self.params["a"] + self.params["b"])
            for name, g, centre, back in (
                ("a", [1 - mu, 1.0], math.log(self.params["a"]), np.exp),
                ("b", [-mu, 1.0], math.log(self.params["b"]), np.exp),
                ("mean", [1.0, 0.0], eta, expit),
                ("rho", [0.0, -1.0], -lam, expit),  # logit(rho) = -log(a+b)
            ):
                g = np.asarray(g)
                se = math.sqrt(max(g @ C @ g, 0.0))
                out.loc[name] = back(centre + np.array([-z, z]) * se)
        return out

    # --- functionals ----------------------------------------------------
    def never_solved(self, k):
        """Expected fraction of instances with no pass in k samples, E[(1-p)^k]."""
        k = _check_k(k)
        a, b, mu = self.params["a"], self.params["b"], self.params["mean"]
        if self.boundary == "all_zero":
            return np.ones_like(k) if k.ndim else 1.0
        if self.boundary == "all_solved":
            return np.where(k > 0, 0.0, 1.0) if k.ndim else float(k == 0)
        if self.boundary == "no_overdispersion":
            out = np.exp(k * np.log1p(-mu))  # 0 < mu < 1 here (the all-0/1 cases are above)
        else:
            out = beta_never_solved(a, b, k)
        return out if np.ndim(out) else float(out)

    def pass_at_k(self, k):
        """Expected fraction of instances solved with k samples, 1 - E[(1-p)^k]."""
        k = _check_k(k)
        if self.boundary == "no_overdispersion":
            out = -np.expm1(k * np.log1p(-self.params["mean"]))
        elif self.boundary:
            out = 1.0 - np.asarray(self.never_solved(k), float)
        else:
            out = beta_pass_at_k(self.params["a"], self.params["b"], k)
        return out if np.ndim(out) else float(out)

    def power_law_tail(self) -> pd.Series:
        """``-log pass@k ~ C * k**-exponent`` for k >> b (exponent = a).

        NaN at boundaries (no Beta left tail to speak of)."""
        if self.boundary:
            return pd.Series({"C": np.nan, "exponent": np.nan})
        a, b = self.params["a"], self.params["b"]
        return pd.Series({"C": float(_tail_constant(a, b)), "exponent": float(a)})

    # --- reporting ------------------------------------------------------
    def summary(self) -> str:
        ci = self.conf_int()
        lvl = int(round(100 * (1 - self.alpha_ci)))
        lines = [
            "Beta-binomial fit across instances  c_i ~ BetaBinomial(n_i, a, b)",
            "=" * 66,
            f"N: {self.N:<12.4g} instances: {self.m:<6} samples: {self.n_total:<8} "
            f"loglik: {self.loglik:.6g}",
            f"boundary: {self.boundary or 'none'}   converged: {self.converged}",
            "-" * 66,
            f"{'':<8}{'coef':>12}{'std err':>12}{f'[{lvl}% lower':>16}{'upper]':>12}",
        ]
        bse = self.bse
        for name in self.params.index:
            lines.append(f"{name:<8}{self.params[name]:>12.5g}{bse[name]:>12.4g}"
                         f"{ci.loc[name, 'lower']:>16.5g}{ci.loc[name, 'upper']:>12.5g}")
        lines.append("-" * 66)
        ks = np.array([1, 10, 100, 1000])
        lines.append("pass@k       " + "  ".join(f"k={k:<5d}{v:.4g}" for k, v in zip(ks, self.pass_at_k(ks))))
        lines.append("never_solved " + "  ".join(f"k={k:<5d}{v:.4g}" for k, v in zip(ks, self.never_solved(ks))))
        t = self.power_law_tail()
        if np.isfinite(t["exponent"]):
            lines.append(f"tail: -log pass@k ~ {t['C']:.4g} * k^-{t['exponent']:.4g} (k >> b)")
        lines.append("=" * 66)
        return "\n".join(lines)

    def __str__(self) -> str:  # pragma: no cover - convenience
        return self.summary()

    def to_dict(self) -> dict:
        ci = self.conf_int()
        t = self.power_law_tail()
        ks = [1, 10, 100, 1000]
        return {
            "model": "c_i ~ BetaBinomial(n_i, a, b)",
            "N": _jf(self.N),
            "params": {k: _jf(v) for k, v in self.params.items()},
            "bse": {k: _jf(v) for k, v in self.bse.items()},
            "conf_int": {k: [_jf(ci.loc[k, "lower"]), _jf(ci.loc[k, "upper"])] for k in ci.index},
            "alpha_ci": float(self.alpha_ci),
            "boundary": self.boundary,
            "converged": bool(self.converged),
            "loglik": _jf(self.loglik),
            "m": int(self.m),
            "n_total": int(self.n_total),
            "pass_at_k": {str(k): _jf(v) for k, v in zip(ks, self.pass_at_k(ks))},
            "never_solved": {str(k): _jf(v) for k, v in zip(ks, self.never_solved(ks))},
            "power_law_tail": {k: _jf(v) for k, v in t.items()},
        }


def _check_alpha(alpha) -> float:
    a = float(alpha)
    if not 0 < a < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return a


def _params(a, b, mean, rho) -> pd.Series:
    return pd.Series({"a": float(a), "b": float(b), "mean": float(mean), "rho": float(rho)})


def _fit_one(n, c, N=float("nan"), alpha=0.05) -> BetaBinomialFit:
    n = np.asarray(n, float)
    c = np.asarray(c, float)
    m, n_total = len(n), int(n.sum())
    common = dict(m=m, n_total=n_total, N=float(N), alpha_ci=alpha)
    nan2 = np.full((2, 2), np.nan)
    # The two degenerate data sets have no interior MLE: report the limit.
    if c.sum() == 0:
        return BetaBinomialFit(_params(0.0, np.nan, 0.0, np.nan), nan2, "all_zero", 0.0, **common)
    if np.all(c == n):
        return BetaBinomialFit(_params(np.nan, 0.0, 1.0, np.nan), nan2, "all_solved", 0.0, **common)
    ll_bin = _binomial_ll(n, c)
    X = np.ones((m, 1))
    fit = None
    if m >= 2:  # one instance carries no information on the spread
        eta0, lam0 = _moments(n, c)
        fit = _maximize(n, c, X, X, [(eta0, lam0), (eta0, lam0 - 2.5), (eta0, lam0 + 2.5)])
    if (fit is None or -fit.fun <= ll_bin + _BOUNDARY_TOL
            or float(_ab(fit.x[0], fit.x[1])[2]) > _S_BINOMIAL):
        p = c.sum() / n.sum()
        cov = nan2.copy()
        cov[0, 0] = 1.0 / (n.sum() * p * (1 - p))  # binomial information for logit p
        return BetaBinomialFit(_params(np.inf, np.inf, p, 0.0), cov, "no_overdispersion", ll_bin, **common)
    theta = fit.x
    a, b, s = (float(v) for v in _ab(theta[0], theta[1]))
    cov = _invert(_information(theta, n, c, X, X), "beta-binomial fit")
    converged = bool(fit.success or np.max(np.abs(fit.jac)) < 1e-3)
    return BetaBinomialFit(_params(a, b, a / s, 1 / (s + 1)), cov, "", -float(fit.fun),
                           converged=converged, **common)


def _prepare(df) -> pd.DataFrame:
    if isinstance(df, pd.DataFrame):
        df = df.copy()
        if "N" not in df.columns:  # one size: N is only a label here
            df["N"] = 1.0
        if "instance" not in df.columns:
            df["instance"] = np.arange(len(df))
    return _validate(df, min_sizes=1)


def fit_beta_binomial(df, alpha: float = 0.05) -> BetaBinomialFit:
    """Fit c_i ~ BetaBinomial(n_i, a, b) to one size's counts (unequal n_i ok).

    ``df``: rows = instances with columns ``n`` and ``c`` (``N`` and
    ``instance`` optional; if ``N`` is present it must be a single size).
    Boundary data (no pass at all, every sample passing, one instance, no
    overdispersion) give a :class:`BetaBinomialFit` with ``boundary`` set
    instead of an error.  Assumes exchangeable instances and a Beta across
    them; the interval for the mean is for the population of instances.
    """
    al = _check_alpha(alpha)
    d = _prepare(df)
    if d["N"].nunique() > 1:
        raise ValueError(f"fit_beta_binomial takes one model size, got {d['N'].nunique()} "
                         "distinct N; filter the table or use fit_beta_binomial_trend")
    return _fit_one(d["n"].to_numpy(), d["c"].to_numpy(), float(d["N"].iloc[0]), al)


# --------------------------------------------------------------------------
# across sizes
# --------------------------------------------------------------------------

_TREND_NAMES = ["u0", "u1", "v0", "v1"]
_MIN_CLUSTERS = 10  # the sandwich's middle has rank <= clusters - 1; 4 parameters


@dataclass
class BetaBinomialTrend(CovParams):
    """Beta(a_N, b_N) across instances with ``logit mean_N = u0 + u1 log N``
    and ``log(a_N + b_N) = v0 + v1 log N`` (one joint ML fit of all sizes).

    Attributes: ``params`` (Series u0, u1, v0, v1 for natural-log N),
    ``cov_params()``, ``bse``, ``conf_int()``, ``per_size`` (each size's own
    :func:`fit_beta_binomial` next to the trend there), ``lack_of_fit``
    (likelihood ratio of the per-size fits against the trend: chi2 on
    ``2S - 4`` df; approximate when sizes sit on a boundary or share
    instances), ``cov_type``, ``loglik``.  Internally the fit is centred at
    ``xc`` = mean log N of the sizes (``theta_c``, ``cov_c``) for
    conditioning and drawing; ``params`` is the exact linear map of it.
    """

    params: pd.Series
    cov_params_: np.ndarray
    theta_c: np.ndarray
    cov_c: np.ndarray
    xc: float
    per_size: pd.DataFrame
    loglik: float
    lack_of_fit: dict
    cov_type: str
    n_sizes: int
    n_instances: int
    converged: bool = True
    alpha_ci: float = 0.05
    fits: dict = field(default_factory=dict, repr=False)  # N -> BetaBinomialFit


    def conf_int(self, alpha: Optional[float] = None) -> pd.DataFrame:
        z = stats.norm.ppf(1 - _check_alpha(self.alpha_ci if alpha is None else alpha) / 2)
        return pd.DataFrame({"lower": self.params - z * self.bse, "upper": self.params + z * self.bse})

    def _ab_at(self, N, theta_c):
        """a, b at sizes N for centred parameter rows theta_c (draws x 4)."""
        x = np.log(np.asarray(N, float)) - self.xc
        theta_c = np.atleast_2d(theta_c)
        eta = theta_c[:, [0]] + theta_c[:, [1]] * x
        lam = theta_c[:, [2]] + theta_c[:, [3]] * x
        a, b, _ = _ab(eta, lam)
        return a, b

    def predict(self, N, k=(1, 10, 100), alpha: Optional[float] = None,
                n_draws: int = 2000, seed: int = 0) -> pd.DataFrame:
        """The trend's task curve at sizes ``N`` (unseen sizes, larger or smaller, ok).

        Columns: ``N``, ``a``, ``b``, ``mean`` (= pass@1), ``pass@k`` and
        ``never_solved@k`` for each k (the expected fraction of instances
        with no pass in k samples), each followed by ``_lower``/``_upper``:
        the ``1 - alpha`` percentile interval over ``n_draws`` parametric
        draws of the four parameters from N(theta, cov) (seeded).  Point
        values are at the MLE.  The interval is for the population curve
        under the model (linear trends in log N, a Beta across exchangeable
        instances); it says nothing about how far one new model's observed
        score scatters around that curve, nor about the trend failing to
        hold beyond the sizes fitted.
        """
        al = _check_alpha(self.alpha_ci if alpha is None else alpha)
        N = np.atleast_1d(np.asarray(N, float))
        if np.any(~np.isfinite(N)) or np.any(N <= 0):
            raise ValueError("N must be finite and > 0")
        ks = np.atleast_1d(_check_k(k))
        a_hat, b_hat = (v[0] for v in self._ab_at(N, self.theta_c))
        rng = np.random.default_rng(seed)
        has_cov = bool(np.all(np.isfinite(self.cov_c)))
        if has_cov:
            draws = rng.multivariate_normal(self.theta_c, self.cov_c, size=int(n_draws), method="eigh")
        else:  # parameters not identified: no band rather than a zero-width one
            draws = self.theta_c[None, :]
        a_d, b_d = self._ab_at(N, draws)
        q = [100 * al / 2, 100 * (1 - al / 2)]

        out = pd.DataFrame({"N": N, "a": a_hat, "b": b_hat})

        def put(name, point, sample):
            lo, hi = np.percentile(sample, q, axis=0) if has_cov else np.full((2, len(N)), np.nan)
            out[name], out[f"{name}_lower"], out[f"{name}_upper"] = point, lo, hi

        put("mean", a_hat / (a_hat + b_hat), a_d / (a_d + b_d))
        for kk in ks:
            put(f"pass@{_klabel(kk)}", beta_pass_at_k(a_hat, b_hat, kk), beta_pass_at_k(a_d, b_d, kk))
        for kk in ks:
            put(f"never_solved@{_klabel(kk)}", beta_never_solved(a_hat, b_hat, kk),
                beta_never_solved(a_d, b_d, kk))
        return out

    def power_law_tail(self, N) -> pd.DataFrame:
        """``-log pass@k ~ C k^-exponent`` (k >> b) at sizes N: columns N, C, exponent (= a)."""
        N = np.atleast_1d(np.asarray(N, float))
        a, b = (v[0] for v in self._ab_at(N, self.theta_c))
        return pd.DataFrame({"N": N, "C": _tail_constant(a, b), "exponent": a})

    # --- reporting ------------------------------------------------------
    def summary(self) -> str:
        ci = self.conf_int()
        lvl = int(round(100 * (1 - self.alpha_ci)))
        lf = self.lack_of_fit
        lines = [
            "Beta-binomial trend  logit mean = u0 + u1 log N,  log(a+b) = v0 + v1 log N",
            "=" * 72,
            f"sizes: {self.n_sizes:<4} instances: {self.n_instances:<6} loglik: {self.loglik:.6g}"
            f"   cov: {self.cov_type}   converged: {self.converged}",
            f"lack of fit (LR vs per-size fits): stat={lf['statistic']:.4g} df={lf['df']} "
            f"p={lf['pvalue']:.4g}",
            "-" * 72,
            f"{'':<8}{'coef':>12}{'std err':>12}{f'[{lvl}% lower':>16}{'upper]':>12}",
        ]
        for name in self.params.index:
            lines.append(f"{name:<8}{self.params[name]:>12.5g}{self.bse[name]:>12.4g}"
                         f"{ci.loc[name, 'lower']:>16.5g}{ci.loc[name, 'upper']:>12.5g}")
        lines.append("-" * 72)
        cols = ["N", "m", "pu", "mean", "a", "b", "trend_mean", "trend_a", "trend_b", "boundary"]
        lines.append(self.per_size[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        lines.append("=" * 72)
        return "\n".join(lines)

    def __str__(self) -> str:  # pragma: no cover - convenience
        return self.summary()

    def to_dict(self) -> dict:
        ci = self.conf_int()
        rows = []
        for r in self.per_size.to_dict("records"):
            rows.append({k: (v if isinstance(v, str) else (int(v) if k == "m" else _jf(v)))
                         for k, v in r.items()})
        return {
            "model": "logit mean = u0 + u1 log N, log(a+b) = v0 + v1 log N, c_i ~ BetaBinomial(n_i, a_N, b_N)",
            "params": {k: _jf(v) for k, v in self.params.items()},
            "bse": {k: _jf(v) for k, v in self.bse.items()},
            "conf_int": {k: [_jf(ci.loc[k, "lower"]), _jf(ci.loc[k, "upper"])] for k in ci.index},
            "cov_params": [[_jf(v) for v in row] for row in self.cov_params_],
            "cov_type": self.cov_type,
            "alpha_ci": float(self.alpha_ci),
            "loglik": _jf(self.loglik),
            "lack_of_fit": {k: (_jf(v) if k != "df" else int(v)) for k, v in self.lack_of_fit.items()},
            "converged": bool(self.converged),
            "n_sizes": int(self.n_sizes),
            "n_instances": int(self.n_instances),
            "per_size": rows,
        }


def _klabel(k: float) -> str:
    return str(int(k)) if float(k).is_integer() else f"{k:g}"


def fit_beta_binomial_trend(df, alpha: float = 0.05, cov_type: str = "auto") -> BetaBinomialTrend:
    """Joint ML fit of a Beta across instances whose mean and concentration
    trend linearly in log N (``a = mean*s``, ``b = (1-mean)*s``).

    ``df``: tidy counts with ``N``, ``instance``, ``n``, ``c`` and at least
    two sizes.  Each size is also fitted on its own (``per_size``; those
    fits seed the joint optimiser and feed the lack-of-fit test).  A size
    where no instance passed is kept: it pulls the mean down there.

    ``cov_type``: ``"nonrobust"`` (inverse observed information: the sizes
    are independent samples of instances), ``"cluster"`` (sandwich with the
    instance as cluster: scores summed over an instance's sizes) or
    ``"auto"`` (the default: ``"cluster"`` when instance ids recur across
    sizes and there are at least 10 of them, else ``"nonrobust"``).  Why:
    on a benchmark the same instances are scored at every size and an easy
    instance stays easy, so a lucky draw of instances lifts every size at
    once; the independent-sizes information then over-states how well the
    level of the curve is known (and under-states the slope's precision).
    Simulated (5 sizes, instances shared with rank-preserved p across sizes,
    n 50-500, 100 data sets each) coverage of the 95% interval for
    never_solved@100 at an interpolated size: nonrobust 63-65%, cluster
    96-97% with 20, 40 or 100 instances; at a 3x larger held-out size both
    93-95% (the slope dominates there).  With independent draws per size
    both are calibrated (parameter z-scores sd 0.95-1.08).

    Assumes exchangeable instances, a Beta across them at each size, and
    ``logit mean`` and ``log(a+b)`` linear in log N; intervals of
    :meth:`BetaBinomialTrend.predict` are for the mean curve, not a new
    model's scatter around it.
    """
    al = _check_alpha(alpha)
    if cov_type not in ("auto", "nonrobust", "cluster"):
        raise ValueError(f"cov_type must be 'auto', 'nonrobust' or 'cluster', got {cov_type!r}")
    d = _validate(df, min_sizes=2)
    n_inst = int(d["instance"].nunique())
    shared = bool(d.groupby("instance")["N"].nunique().gt(1).any())
    if cov_type == "auto":
        cov_type = "cluster" if shared and n_inst >= _MIN_CLUSTERS else "nonrobust"
        if shared and cov_type == "nonrobust":
            warnings.warn(f"instances recur across sizes but there are only {n_inst} "
                          f"(< {_MIN_CLUSTERS}) for a cluster-robust covariance; intervals "
                          "assume independent sizes and may be too narrow", RuntimeWarning)
    n = d["n"].to_numpy(float)
    c = d["c"].to_numpy(float)
    if c.sum() == 0:
        raise ValueError("no instance passed at any size: the trend of the mean is not identified")
    if np.all(c == n):
        raise ValueError("every sample passed at every size: the trend of the mean is not identified")
    sizes = np.unique(d["N"].to_numpy())
    xc = float(np.mean(np.log(sizes)))
    x = np.log(d["N"].to_numpy()) - xc
    X = np.column_stack([np.ones_like(x), x])

    fits = {}
    for N in sizes:
        sel = d["N"].to_numpy() == N
        fits[float(N)] = _fit_one(n[sel], c[sel], N, al)

    # Starts: least squares through the interior per-size fits (what a
    # two-stage analysis would report), then the same with flat trends and
    # shifted concentration, in case the first lands in a poor basin.
    xs = np.log(sizes) - xc
    eta_s = np.array([logit(f.params["mean"]) if f.boundary in ("", "no_overdispersion") else np.nan
                      for f in fits.values()])
    lam_s = np.array([math.log(f.params["a"] + f.params["b"]) if f.boundary == "" else np.nan
                      for f in fits.values()])
    eta0, lam0 = _moments(n, c)
    start = [_line(xs, eta_s, eta0), _line(xs, lam_s, lam0)]
    starts = [np.r_[start[0], start[1]], np.r_[eta0, 0.0, lam0, 0.0],
              np.r_[start[0], start[1][0] - 2.0, start[1][1]],
              np.r_[start[0], start[1][0] + 2.0, start[1][1]]]
    fit = _maximize(n, c, X, X, starts)
    theta_c = fit.x
    eta_fit, lam_fit = X @ theta_c[:2], X @ theta_c[2:]
    if (np.any(np.abs(eta_fit) >= _ETA_CLIP - 1e-3)
            or np.any((lam_fit <= _LAM_LO + 1e-3) | (lam_fit >= _LAM_HI - 1e-3))):
        # The likelihood rises towards infinity (e.g. passes only at the largest
        # size: the slope diverges); the optimiser stopped at a clip where the
        # surface is flat, so neither the point nor any curvature means much.
        warnings.warn("beta-binomial trend: the maximum likelihood is at infinity (a "
                      "fitted mean or a+b sits at its numerical limit at an observed size); "
                      "parameters not identified, covariance set to NaN", RuntimeWarning)
        cov_c = np.full((4, 4), np.nan)
    else:
        cov_c = _invert(_information(theta_c, n, c, X, X), "beta-binomial trend")
    if cov_type == "cluster" and np.all(np.isfinite(cov_c)):
        # sandwich: scores summed within instance, across its sizes
        _, sc = _loglik_parts(theta_c, n, c, X, X)
        codes = pd.factorize(d["instance"])[0]
        g = np.zeros((codes.max() + 1, sc.shape[1]))
        np.add.at(g, codes, sc)
        G = len(g)
        cov_c = cov_c @ (g.T @ g) @ cov_c * (G / (G - 1) if G > 1 else 1.0)
    # an optimum at infinity (separation: passes only at the largest size;
    # no overdispersion anywhere) stops "successfully" on a flat ridge, with a
    # singular information: count that as not converged
    converged = bool((fit.success or np.max(np.abs(fit.jac)) < 1e-3) and np.all(np.isfinite(cov_c)))

    # back to natural-log N: eta = u0c + u1 (log N - xc) = (u0c - u1 xc) + u1 log N
    T = np.array([[1, -xc, 0, 0], [0, 1, 0, 0], [0, 0, 1, -xc], [0, 0, 0, 1]], float)
    params = pd.Series(T @ theta_c, index=_TREND_NAMES)
    cov = T @ cov_c @ T.T

    res = BetaBinomialTrend(params, cov, theta_c, cov_c, xc, pd.DataFrame(), -float(fit.fun),
                            {}, cov_type, len(sizes), n_inst,
                            converged=converged, alpha_ci=al, fits=fits)
    ta, tb = (v[0] for v in res._ab_at(sizes, theta_c))
    pu = d.assign(p=instance_pu(d)).groupby("N")["p"].mean().to_numpy()
    res.per_size = pd.DataFrame({
        "N": sizes,
        "m": [f.m for f in fits.values()],
        "pu": pu,
        "a": [f.params["a"] for f in fits.values()],
        "b": [f.params["b"] for f in fits.values()],
        "mean": [f.params["mean"] for f in fits.values()],
        "rho": [f.params["rho"] for f in fits.values()],
        "boundary": [f.boundary for f in fits.values()],
        "trend_a": ta,
        "trend_b": tb,
        "trend_mean": ta / (ta + tb),
    })
    # LR of S free (mean, s) pairs against the 4-parameter trend
    stat = max(2 * (sum(f.loglik for f in fits.values()) - res.loglik), 0.0)
    df_lr = 2 * len(sizes) - 4
    res.lack_of_fit = {"statistic": stat, "df": df_lr,
                       "pvalue": float(stats.chi2.sf(stat, df_lr)) if df_lr > 0 else float("nan")}
    if np.any(ta + tb > _S_BINOMIAL):
        warnings.warn("the trend puts a+b above 1e6 at an observed size (no overdispersion "
                      "there); the concentration is weakly identified", RuntimeWarning)
    return res


def _line(x, y, fallback):
    """Least-squares (intercept, slope) through the finite points; flat if < 2."""
    ok = np.isfinite(y)
    if ok.sum() >= 2:
        slope, icpt = np.polyfit(x[ok], y[ok], 1)
        return np.array([icpt, slope])
    return np.array([y[ok][0] if ok.any() else fallback, 0.0])
