"""Task scaling laws for PassUntil counts (Hu et al. 2023).

The law
-------
The paper's task scaling law is ``PU(N) = exp(-c * N**(-alpha))``, i.e.

    y = log(-log PU) = log c - alpha * log N,

linear in ``x = log N``.  With ``q = 1 - PU`` the failure probability,
``cloglog(q) = log(-log(1 - q)) = log(-log PU)``, so a binomial GLM with the
complementary log-log link on the *failures* fits the law by maximum
likelihood on the sample counts.  An instance with zero passes at some size
is a censored observation that still carries information (it says PU is
small there); it is not dropped.

Input is a tidy DataFrame with one row per (model size, instance) and the
columns ``N`` (parameters), ``instance``, ``n`` (samples drawn) and ``c``
(passes).

Entry points (statsmodels style: functions of data that return results):

* :func:`fit_task_law` -> :class:`TaskLawResults` (``level="task"``) or
  :class:`analysis.tasklaw.hierarchical.HierarchicalLawResults` (``level="instance"``)
* :func:`classify_curvature` -> :class:`CurvatureResult`
* :func:`backtest` -> DataFrame

Levels and methods of :func:`fit_task_law`
------------------------------------------
``level="task", method="glm"`` (the default for predictions)
    One law for the task's mean PU, ``ybar_s = mean_i c_i/n_i`` at each size
    ``s`` (the paper's task PU: the mean of per-instance PU, not pooled c/n).
    A quasi-binomial cloglog GLM of ``1 - ybar_s`` on ``log N``.

    *Weights*: ``var_weights = n_eff_s``, the binomial sample size whose
    variance ``p(1-p)/n_eff`` equals the estimated sampling variance of the
    task mean at that size, ``v_s = sum_i p_i(1-p_i)/n_i / m_s**2``.  For
    the variances (only) each ``p_i`` is Jeffreys-smoothed,
    ``(c_i + 0.5)/(n_i + 1)``, so instances with no pass still contribute
    sampling noise and a size where every instance is censored keeps a
    finite, positive weight.  With these weights the Pearson statistic is
    chi2(S - 2) if the law holds and the only noise is sampling noise.

    *Dispersion*: ``phi = Pearson chi2 / df_resid`` with ``df_resid = S' - 2``,
    ``S'`` the number of *informative* sizes (task PU strictly between 0 and
    1; a size where every instance is censored constrains the curve but says
    nothing about scatter; if fewer than 3 sizes are informative, ``S - 2``).
    Parameter covariances (``bse``, ``conf_int``) are the GLM's multiplied by
    ``max(phi, 1)`` (the binomial noise is known, so the scale is never
    shrunk below it), and when ``phi > 1`` intervals use Student t quantiles
    on ``df_resid`` degrees of freedom because the scale was estimated.

    *Lack of fit*: Pearson chi2 vs chi2(S - 2) with dispersion 1 (what
    sampling alone produces).  Note the mean of several laws with different
    ``c_i`` is not exactly a law; with very many samples this test will
    (correctly) detect that, in which case prefer ``level="instance"``.

    *Prediction interval* (``predict``) for the observed task PU at an unseen
    size, built on the ``y = log(-log PU)`` scale and mapped back:
    ``var = x0' Cov x0 + tau2 + s0`` where ``Cov`` is the covariance of the
    GLM estimator when every size's ``y`` carries extra variance ``tau2``
    (sandwich ``A + tau2 A X'W^2X A``, ``A = (X'WX)^-1``, ``W`` the IRLS
    working weights; the uniform ``phi`` scaling under-states extrapolation
    error because the binomial weights are very unequal on the ``y``
    scale), ``tau2`` the between-size scatter of ``y`` around the law, the
    Paule-Mandel moment estimate on the ``y`` scale over the informative
    sizes with weights ``1/(s_s + tau2)`` (``s_s`` the sampling variance of
    ``y_s`` by the delta method at the fitted PU),
    and ``s0`` the sampling variance of the new observation when its
    effective sample size ``n_eff`` is given (else 0).  Quantiles as above.
    Checked by simulation (lognormal per-size factor on c, sd 0.3 on ``y``,
    fit on 5 sizes, predict the 6th): 97.5% coverage of the nominal 95%
    interval over 400 data sets with 5 informative training sizes, ~91%
    when one training size is all-censored (2 residual df); an interval
    ignoring the scatter covers ~6%.

``level="instance", method="glm"``
    A hierarchical (partially pooled) binomial cloglog model, fitted by
    :func:`analysis.tasklaw.hierarchical.fit_hierarchical_law` (its module
    docstring has the details); returns ``HierarchicalLawResults``.  Each
    instance follows its own law, ``log(-log PU_i(N)) = (a + u_i) - (alpha +
    v_i)(log N - log N0)`` (``N0`` = exp(mean log N)), with ``(u_i, v_i) ~
    N(0, Sigma)``, ``Sigma`` a full 2x2 covariance (a random intercept only
    when the slope variance's maximum-likelihood value is 0; a diagonal one
    when the correlation runs to +-1 and a diagonal fits as well).  Counts
    are binomial given the instance's PU.

    *What it assumes*: every instance's ``log(-log PU)`` is linear in
    ``log N``; instances are exchangeable draws from one bivariate normal of
    (difficulty, slope); counts at different sizes are independent binomials
    given the instance's curve (no shift shared by all instances at one size).

    *Fit*: maximum marginal likelihood with the Laplace approximation: the
    posterior modes of all instances by a vectorised 2-parameter Newton
    iteration, the 5 parameters ``(a, alpha, chol Sigma)`` by Newton with
    the exact gradient.  ``params`` (log_c, alpha) are the fixed effects,
    i.e. the *typical* instance's law (u = v = 0), and exactly what
    ``predict`` uses; their covariance is the inverse Hessian of the Laplace
    log-likelihood at the fitted ``Sigma`` (not inflated by a dispersion).
    ``sigma`` is the random-effects covariance (SDs and correlation in the
    summary); ``instance_params`` the posterior mode and SD of each
    instance's ``log c_i`` and ``alpha_i``.

    *Censoring*: instances that never pass (or always pass) at every size
    are kept: their posterior is the prior moved by their counts, so they
    sit in the hard (easy) tail instead of being dropped or bounded.  An
    instance with a single pass at a single size is shrunk towards the
    typical slope rather than given a runaway law of its own (the old
    independent per-instance fits gave such instances PU near 1 one decade
    beyond the data).  Adding or removing one instance moved the task PU one
    decade beyond the data by at most 0.72/m in the tests (sparse,
    never-solved, saturated and random instances; 1/m is the range one
    instance has in a mean of m).

    *Task PU*: ``predict(N)`` is the mean over the m instances of ``E[PU_i(N)
    | data]``, integrating each instance's posterior (a Gaussian with the
    posterior's mean and covariance, from adaptive quadrature).  Its interval
    (normal, on the ``log(-log PU)`` scale; ``predict_y`` gives mean and
    variance there) covers the *estimation* error: the fixed effects (delta
    method through each instance's shrinkage) and the instances' posterior
    spread; with ``n_eff`` also the binomial noise of an observed task PU.
    It does not include the uncertainty of ``Sigma`` or any between-size
    scatter, so it is not a prediction interval for a new size's observed
    PU when such scatter exists (unlike the task level's).  By simulation
    (no scatter, nominal 95%) it covered the true mean PU of the instances
    in 92-94% of data sets at the largest training size and 89-92% at ten
    times beyond it (m 20-300, n 50-2000).

    *Lack of fit*: a score test of one curvature term ``q (log N - log
    N0)^2`` shared by all instances (chi2(1), conditional on ``Sigma``).

``method="ls"`` (only with ``level="task"``)
    The paper's ordinary least squares of ``log(-log ybar_s)`` on ``log N``
    for comparison; sizes with ``ybar_s`` equal to 0 or 1 are dropped with a
    warning and listed in ``dropped_sizes``.  Intervals are OLS ones (t on
    ``S - 2`` df, ``S`` counting kept sizes; the prediction interval adds the
    residual variance, held in ``tau2``); lack of fit uses the same Pearson
    statistic as the GLM.  ``dispersion`` is the OLS residual variance.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats
from scipy.optimize import brentq

from .base import CovParams, LackOfFit, _by_size, _check_level, _jf, _validate, task_pu_by_size  # noqa: F401
from .hierarchical import HierarchicalLawResults, fit_hierarchical_law

__all__ = [
    "fit_task_law",
    "TaskLawResults",
    "classify_curvature",
    "CurvatureResult",
    "backtest",
    "task_pu_by_size",
]

_LEVELS = ("instance", "task")
_METHODS = ("glm", "ls")


# --------------------------------------------------------------------------
# validation and aggregation
# --------------------------------------------------------------------------


def _quantile(alpha: float, df_resid: float, estimated: bool) -> float:
    if estimated and df_resid >= 1:
        return float(stats.t.ppf(1 - alpha / 2, df_resid))
    return float(stats.norm.ppf(1 - alpha / 2))


def _design(N):
    """Rows ``[1, -log N]``: eta = log(-log PU) = X @ [log_c, alpha]."""
    x = np.log(np.asarray(N, float))
    return np.column_stack([np.ones_like(x), -x])


def _pu_from_eta(eta):
    """PU = exp(-exp(eta)), eta = log(-log PU)."""
    with np.errstate(over="ignore"):
        return np.exp(-np.exp(np.asarray(eta, float)))


def _eta_from_pu(pu):
    with np.errstate(divide="ignore"):
        return np.log(-np.log(np.asarray(pu, float)))


def _deta_dpu(pu):
    """d log(-log PU) / d PU = 1 / (PU log PU)."""
    pu = np.asarray(pu, float)
    with np.errstate(all="ignore"):
        return 1.0 / (pu * np.log(pu))


# --------------------------------------------------------------------------
# GLM helpers
# --------------------------------------------------------------------------


def _cloglog_family():
    return sm.families.Binomial(link=sm.families.links.CLogLog())


def _fit_glm(endog, exog, var_weights=None):
    """Binomial cloglog GLM with scale fixed at 1; warnings returned, not shown."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = sm.GLM(endog, exog, family=_cloglog_family(), var_weights=var_weights)
        res = model.fit(scale=1.0, maxiter=200)
    converged = bool(getattr(res, "converged", True))
    return res, converged, caught


def _to_law(params_c, cov_c, xbar):
    """Centered fit (a, b) at x - xbar -> (log_c, alpha) and their covariance.

    eta = a + b (x - xbar) = (a - b xbar) + b x, so log_c = a - b xbar and
    alpha = -b.
    """
    J = np.array([[1.0, -xbar], [0.0, -1.0]])
    theta = J @ np.asarray(params_c, float)
    cov = J @ np.asarray(cov_c, float) @ J.T
    return theta, cov


# --------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------


@dataclass
class TaskLawResults(CovParams):
    """Task-level fit of ``PU(N) = exp(-c N**-alpha)``; see the module
    docstring.  (``level="instance"`` returns
    :class:`analysis.tasklaw.hierarchical.HierarchicalLawResults`.)

    Attributes: ``params``/``bse`` (Series log_c, alpha), ``cov_params``
    (DataFrame), ``dispersion`` (Pearson chi2 / df, NaN with df 0),
    ``lack_of_fit`` (:class:`LackOfFit`), ``level``, ``method``,
    ``n_sizes``, ``n_instances``, ``sizes`` (per-size table with observed
    and fitted task PU), ``instance_params``, ``n_never_solved``,
    ``n_saturated``, ``n_unidentified`` (kept for the JSON layout: None and
    0 at the task level), ``dropped_sizes`` (method="ls"),
    ``tau2`` (between-size variance of log(-log PU) used by ``predict``).
    """

    params: pd.Series
    cov_params_: np.ndarray
    dispersion: float
    df_resid: int
    lack_of_fit: LackOfFit
    level: str
    method: str
    n_sizes: int
    n_instances: int
    sizes: pd.DataFrame
    alpha_ci: float = 0.05
    tau2: float = 0.0
    xbar: float = 0.0
    instance_params: Optional[pd.DataFrame] = None
    n_never_solved: int = 0
    n_saturated: int = 0
    n_unidentified: int = 0
    dropped_sizes: list = field(default_factory=list)
    cov_pred_: Optional[np.ndarray] = None

    # --- parameters -----------------------------------------------------

    @property
    def _estimated_scale(self) -> bool:
        if self.method == "ls":
            return True
        return bool(np.isfinite(self.dispersion) and self.dispersion > 1)

    def _q(self, alpha: float) -> float:
        return _quantile(alpha, self.df_resid, self._estimated_scale)

    def conf_int(self, alpha: Optional[float] = None, method: Optional[str] = None) -> pd.DataFrame:
        """Confidence intervals (t on df_resid when the scale was estimated).

        ``method``: "wald" (the only one here; the profile interval for
        alpha belongs to the instance-level fit,
        :meth:`analysis.tasklaw.hierarchical.HierarchicalLawResults.conf_int`).
        """
        a = _check_level(self.alpha_ci if alpha is None else alpha)
        method = method or "wald"
        if method not in ("wald", "profile"):
            raise ValueError(f"method must be 'wald' or 'profile', got {method!r}")
        if method == "profile":
            raise ValueError("profile intervals exist for level='instance' fits only")
        q = self._q(a)
        lo = self.params - q * self.bse
        hi = self.params + q * self.bse
        return pd.DataFrame({"lower": lo, "upper": hi})

    # --- prediction -----------------------------------------------------
    def predict(self, N, interval: bool = True, alpha: float = 0.05, n_eff=None) -> pd.DataFrame:
        """Task PU at sizes ``N``: DataFrame with N, pu (and lower, upper).

        At ``level="task"`` the interval is a prediction interval for the
        observed task mean PU at an unseen size (see the module docstring):
        parameter uncertainty (dispersion-scaled) + between-size scatter
        ``tau2`` + the new point's sampling noise when ``n_eff`` (its
        effective sample size, e.g. ``task_pu_by_size(df)["n_eff"]``) is
        given.
        """
        a = _check_level(alpha)
        N = np.atleast_1d(np.asarray(N, float))
        if np.any(~np.isfinite(N)) or np.any(N <= 0):
            raise ValueError("N must be finite and > 0")
        X = _design(N)
        eta = X @ self.params.to_numpy()
        pu = _pu_from_eta(eta)
        out = pd.DataFrame({"N": N, "pu": pu})
        if not interval:
            return out
        cov = self.cov_params_ if self.cov_pred_ is None else self.cov_pred_
        var = np.einsum("ij,jk,ik->i", X, cov, X) + self.tau2
        if n_eff is not None and self.method == "glm":
            # sampling noise of the new observation (for "ls" it is already
            # part of the residual variance held in tau2)
            n_eff = np.broadcast_to(np.asarray(n_eff, float), N.shape)
            with np.errstate(all="ignore"):
                s0 = pu * (1 - pu) / n_eff * _deta_dpu(pu) ** 2
            var = var + np.where(np.isfinite(s0), s0, 0.0)
        q = self._q(a)
        sd = np.sqrt(var)
        # eta up -> PU down
        out["lower"] = _pu_from_eta(eta + q * sd)
        out["upper"] = _pu_from_eta(eta - q * sd)
        return out

    # --- reporting ------------------------------------------------------
    def summary(self) -> str:
        ci = self.conf_int()
        lines = [
            "PassUntil task scaling law  PU(N) = exp(-c * N^-alpha)",
            "=" * 66,
            f"level: {self.level:<10} method: {self.method:<6} "
            f"sizes: {self.n_sizes:<4} instances: {self.n_instances}",
        ]
        if self.dropped_sizes:
            lines.append(f"dropped sizes (task PU 0 or 1): {self.dropped_sizes}")
        what = ("residual variance of log(-log PU)" if self.method == "ls"
                else "dispersion (Pearson chi2/df)")
        lines.append(
            f"{what}: {self.dispersion:.4g}   df_resid: {self.df_resid}"
            f"   tau2: {self.tau2:.4g}"
        )
        lf = self.lack_of_fit
        lines.append(
            f"lack of fit ({lf.method}): stat={lf.statistic:.4g} df={lf.df} "
            f"p={lf.pvalue:.4g}"
            + ("  (sampling noise alone does not explain the scatter; with many samples every real "
               "ladder shows this: the forecast's verdict says whether it matters)" if lf.flagged else "")
        )
        lines.append("-" * 66)
        lvl = int(round(100 * (1 - self.alpha_ci)))
        lines.append(f"{'':<8}{'coef':>12}{'std err':>12}{f'[{lvl}% lower':>16}{'upper]':>12}")
        for name in self.params.index:
            lines.append(
                f"{name:<8}{self.params[name]:>12.5g}{self.bse[name]:>12.4g}"
                f"{ci.loc[name, 'lower']:>16.5g}{ci.loc[name, 'upper']:>12.5g}"
            )
        lines.append("=" * 66)
        return "\n".join(lines)

    def __str__(self) -> str:  # pragma: no cover - convenience
        return self.summary()

    def to_dict(self) -> dict:
        ci = self.conf_int()
        d = {
            "law": "PU(N) = exp(-c * N^-alpha)",
            "level": self.level,
            "method": self.method,
            "params": {k: _jf(v) for k, v in self.params.items()},
            "bse": {k: _jf(v) for k, v in self.bse.items()},
            "conf_int": {
                k: [_jf(ci.loc[k, "lower"]), _jf(ci.loc[k, "upper"])] for k in ci.index
            },
            "alpha_ci": float(self.alpha_ci),
            "dispersion": _jf(self.dispersion),
            "df_resid": int(self.df_resid),
            "tau2": _jf(self.tau2),
            "lack_of_fit": self.lack_of_fit.to_dict(),
            "n_sizes": int(self.n_sizes),
            "n_instances": int(self.n_instances),
            "n_never_solved": int(self.n_never_solved),
            "n_saturated": int(self.n_saturated),
            "n_unidentified": int(self.n_unidentified),
            "dropped_sizes": [float(s) for s in self.dropped_sizes],
            "sizes": [
                {k: (_jf(v) if isinstance(v, (float, np.floating)) else int(v)) for k, v in row.items()}
                for row in self.sizes[["N", "m", "pu", "fitted"]].to_dict("records")
            ],
        }
        if self.instance_params is not None:
            d["instances"] = [
                {
                    "instance": str(r["instance"]),
                    "status": r["status"],
                    "log_c": _jf(r["log_c"]),
                    "alpha": _jf(r["alpha"]),
                }
                for r in self.instance_params.to_dict("records")
            ]
        return d


# --------------------------------------------------------------------------
# fits
# --------------------------------------------------------------------------


def fit_task_law(
    df: pd.DataFrame,
    *,
    level: str = "instance",
    method: str = "glm",
    alpha_ci: float = 0.05,
) -> TaskLawResults | HierarchicalLawResults:
    """Fit ``PU(N) = exp(-c N**-alpha)`` to PassUntil counts.

    ``df`` has one row per (model size, instance) with columns N, instance,
    n, c.  ``level`` is "instance" (the hierarchical binomial cloglog model:
    one law per instance, ``(log c_i, alpha_i)`` partially pooled around
    the typical instance's; task PU = mean of the instances' posterior
    expected PU; returns
    :class:`analysis.tasklaw.hierarchical.HierarchicalLawResults`) or "task"
    (one quasi-binomial law for the task mean PU; returns
    :class:`TaskLawResults`); ``method`` is "glm" or "ls" (the paper's least
    squares on log(-log PU_task); task level only).  See the module
    docstring for weights, dispersion, lack of fit and intervals.

    Raises ValueError on missing columns, c > n, n < 1, non-integer counts,
    duplicate (N, instance) rows or fewer than 2 sizes, and at the instance
    level when every instance is never solved (or every one saturated) or
    the typical curve is not identified.
    """
    if level not in _LEVELS:
        raise ValueError(f"level must be one of {_LEVELS}, got {level!r}")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    alpha_ci = _check_level(alpha_ci)
    d = _validate(df)
    if level == "task":
        per_size = d.groupby("N")["instance"].nunique()
        if per_size.nunique() > 1 or per_size.iloc[0] != d["instance"].nunique():
            warnings.warn(
                "not every instance is observed at every size: the task mean PU "
                "then averages different instance sets at different sizes "
                f"(instances per size: {per_size.to_dict()}); "
                "level='instance' handles unbalanced data",
                UserWarning,
                stacklevel=2,
            )
    if method == "ls":
        if level != "task":
            raise ValueError('method="ls" fits the task mean PU: use level="task"')
        return _fit_task_ls(d, alpha_ci)
    if level == "task":
        return _fit_task_glm(d, alpha_ci)

    return fit_hierarchical_law(d, alpha_ci=alpha_ci)


def _pearson_lof(y, mu, var, df_resid, method) -> LackOfFit:
    x2 = float(np.sum((y - mu) ** 2 / var))
    p = float(stats.chi2.sf(x2, df_resid)) if df_resid > 0 else float("nan")
    return LackOfFit(x2, int(df_resid), p, method)


def _tau2(y_eta, informative, s_eta, X) -> float:
    """Paule-Mandel between-size variance of eta = log(-log PU).

    Solves ``sum_s r_s(tau2)**2 / (s_s + tau2) = k`` for ``tau2 >= 0``, where
    ``r_s(tau2)`` are residuals of the weighted least-squares fit of the
    eta-scale observations ``y_eta`` on ``X`` with weights ``1/(s_s + tau2)``
    and ``k`` = number of usable sizes - 2.  Usable: ``informative`` (the
    observed task PU is strictly between 0 and 1; an all-censored size has
    an eta-scale variance so large that it would count as a degree of
    freedom while adding nothing to the residuals, biasing tau2 down) with a
    finite sampling variance.
    """
    ok = np.asarray(informative, bool) & np.isfinite(s_eta) & (s_eta > 0) & np.isfinite(y_eta)
    k = int(ok.sum()) - X.shape[1]
    if k <= 0:
        return 0.0
    y, s_, Xo = y_eta[ok], s_eta[ok], X[ok]

    def q(t):
        w = 1.0 / (s_ + t)
        XtW = Xo.T * w
        b = np.linalg.lstsq(XtW @ Xo, XtW @ y, rcond=None)[0]
        return float(np.sum(w * (y - Xo @ b) ** 2)) - k

    if q(0.0) <= 0:
        return 0.0
    hi = max(1e-12, float(np.var(y)))
    while q(hi) > 0 and hi < 1e6:
        hi *= 4
    return float(brentq(q, 0.0, hi, xtol=1e-12, rtol=1e-10))


def _fit_task_glm(d: pd.DataFrame, alpha_ci: float) -> TaskLawResults:
    s = _by_size(d)
    x = np.log(s["N"].to_numpy())
    xbar = float(x.mean())
    X = sm.add_constant(x - xbar, has_constant="add")
    y = s["pu"].to_numpy()
    w = s["n_eff"].to_numpy()
    res, _, _ = _fit_glm(1.0 - y, X, var_weights=w)
    S = len(s)
    # Sizes where every instance has c = 0 (or every one has c = n) are
    # censored: they constrain the curve but carry ~no information about the
    # scatter around it, so they do not count as residual degrees of freedom.
    n_inf = int(np.sum((y > 0) & (y < 1)))
    df_resid = n_inf - 2 if n_inf > 2 else S - 2
    mu_pu = 1.0 - res.fittedvalues  # fitted PU
    lof = _pearson_lof(y, mu_pu, s["var"].to_numpy(), df_resid, "Pearson chi2 vs chi2(S-2), dispersion 1")
    x2_glm = float(res.pearson_chi2)
    dispersion = x2_glm / df_resid if df_resid > 0 else float("nan")
    scale = max(1.0, dispersion) if np.isfinite(dispersion) else 1.0
    theta, cov = _to_law(res.params, res.cov_params() * scale, xbar)
    # between-size scatter on the eta = log(-log PU) scale
    y_eta = _eta_from_pu(s["pu_smooth"].to_numpy())
    with np.errstate(all="ignore"):
        s_eta = s["var"].to_numpy() * _deta_dpu(mu_pu) ** 2
    tau2 = _tau2(y_eta, (y > 0) & (y < 1), s_eta, X)
    # Covariance of the GLM estimator when each size's eta carries extra
    # variance tau2 (random-effects sandwich): A + tau2 A X'W^2X A with
    # A = (X'WX)^-1 and W the IRLS working weights (1 / binomial variance of
    # the working response on the eta scale).
    A = np.asarray(res.cov_params())
    q_hat = np.asarray(res.fittedvalues, float)  # fitted failure probability
    with np.errstate(all="ignore"):
        Wk = w / (q_hat * (1 - q_hat) * res.model.family.link.deriv(q_hat) ** 2)
    Wk = np.where(np.isfinite(Wk), Wk, 0.0)
    XW = X.T * Wk
    cov_re = A + tau2 * A @ (XW @ XW.T) @ A
    _, cov_pred = _to_law(res.params, cov_re, xbar)
    sizes = s.copy()
    sizes["fitted"] = mu_pu
    return TaskLawResults(
        params=pd.Series(theta, index=["log_c", "alpha"]),
        cov_params_=cov,
        dispersion=dispersion,
        df_resid=df_resid,
        lack_of_fit=lof,
        level="task",
        method="glm",
        n_sizes=S,
        n_instances=int(d["instance"].nunique()),
        sizes=sizes,
        alpha_ci=alpha_ci,
        tau2=tau2,
        xbar=xbar,
        cov_pred_=cov_pred,
    )


def _fit_task_ls(d: pd.DataFrame, alpha_ci: float) -> TaskLawResults:
    s = _by_size(d)
    y = s["pu"].to_numpy()
    keep = (y > 0) & (y < 1)
    dropped = [float(v) for v in s["N"][~keep]]
    if dropped:
        warnings.warn(
            f"least squares on log(-log PU): dropping sizes with task PU 0 or 1: {dropped}",
            UserWarning,
            stacklevel=3,
        )
    if keep.sum() < 2:
        raise ValueError(
            "least squares needs at least 2 sizes with 0 < task PU < 1; "
            f"only {int(keep.sum())} left after dropping {dropped}"
        )
    x = np.log(s["N"].to_numpy()[keep])
    X = sm.add_constant(x, has_constant="add")
    res = sm.OLS(_eta_from_pu(y[keep]), X).fit()
    df_resid = int(keep.sum()) - 2
    theta = np.array([res.params[0], -res.params[1]])
    J = np.diag([1.0, -1.0])
    cov = J @ np.asarray(res.cov_params()) @ J.T if df_resid > 0 else np.full((2, 2), np.nan)
    mu_all = _pu_from_eta(theta[0] - theta[1] * np.log(s["N"].to_numpy()))
    lof = _pearson_lof(y, mu_all, s["var"].to_numpy(), len(s) - 2,
                       "Pearson chi2 of the LS curve vs chi2(S-2)")
    sizes = s.copy()
    sizes["fitted"] = mu_all
    return _ls_results(theta, cov, res, df_resid, lof, s, sizes, d, alpha_ci, dropped)


def _ls_results(theta, cov, res, df_resid, lof, s, sizes, d, alpha_ci, dropped):
    return TaskLawResults(
        params=pd.Series(theta, index=["log_c", "alpha"]),
        cov_params_=cov,
        dispersion=float(res.scale) if df_resid > 0 else float("nan"),
        df_resid=df_resid,
        lack_of_fit=lof,
        level="task",
        method="ls",
        n_sizes=len(s),
        n_instances=int(d["instance"].nunique()),
        sizes=sizes,
        alpha_ci=alpha_ci,
        # OLS prediction interval: residual variance of a new point
        tau2=float(res.scale) if df_resid > 0 else 0.0,
        dropped_sizes=dropped,
    )


# --------------------------------------------------------------------------
# curvature
# --------------------------------------------------------------------------


@dataclass
class CurvatureResult:
    """Linear law vs a quadratic term in ``y = log(-log PU_task)`` vs ``x = log N``.

    ``quad_coef`` is the coefficient ``b2`` of ``(x - xbar)**2`` in
    ``y = b0 + b1 (x - xbar) + b2 (x - xbar)**2``:

    * ``b2 < 0`` -> "concave": y falls faster than linearly as N grows,
      i.e. PU rises faster than the law predicts (accelerated emergence);
    * ``b2 > 0`` -> "convex": y falls slower than linearly (sub-scaling);
    * not significant at ``level`` -> "linear" (the scaling law).
    """

    label: str
    quad_coef: float
    quad_bse: float
    statistic: float
    pvalue: float
    test: str
    dispersion: float
    aic_linear: float
    aic_quadratic: float
    level: float

    @property
    def confidence(self) -> float:
        """1 - p-value of the test against the linear law."""
        return 1.0 - self.pvalue

    def to_dict(self) -> dict:
        return {k: (_jf(v) if isinstance(v, (float, np.floating)) else v)
                for k, v in self.__dict__.items()}


def classify_curvature(df: pd.DataFrame, *, level: float = 0.05) -> CurvatureResult:
    """Classify the task curve as "linear", "concave" or "convex".

    Fits the task-level quasi-binomial cloglog GLM (weights as in
    :func:`fit_task_law`, level="task") with and without a quadratic term in
    centered log N and tests the quadratic term by the deviance difference:
    chi2(1) when the quadratic model's dispersion ``phi = Pearson/(S-3)`` is
    at most 1 (binomial noise only), else ``F(1, S-3)`` on ``dev_diff/phi``.
    Sign convention: see :class:`CurvatureResult`.  Needs >= 4 sizes.
    The paper's two-circuit mixture (and the multi-step product) are fitted
    and compared with the law in :func:`analysis.tasklaw.circuits.compare_curves`.
    """
    level = _check_level(level)
    d = _validate(df, min_sizes=4)
    s = _by_size(d)
    x = np.log(s["N"].to_numpy())
    xc = x - x.mean()
    y = s["pu"].to_numpy()
    w = s["n_eff"].to_numpy()
    X1 = sm.add_constant(xc, has_constant="add")
    X2 = np.column_stack([X1, xc**2])
    r1, _, _ = _fit_glm(1.0 - y, X1, var_weights=w)
    r2, _, _ = _fit_glm(1.0 - y, X2, var_weights=w)
    S = len(s)
    df2 = S - 3
    phi = float(r2.pearson_chi2) / df2
    dd = max(0.0, float(r1.deviance - r2.deviance))
    if phi <= 1:
        stat, p, test = dd, float(stats.chi2.sf(dd, 1)), "deviance difference vs chi2(1)"
        bse = float(r2.bse[2])
    else:
        stat = dd / phi
        p, test = float(stats.f.sf(stat, 1, df2)), f"quasi-likelihood F(1, {df2})"
        bse = float(r2.bse[2]) * math.sqrt(phi)
    b2 = float(r2.params[2])
    if p >= level:
        label = "linear"
    else:
        label = "concave" if b2 < 0 else "convex"
    return CurvatureResult(
        label=label, quad_coef=b2, quad_bse=bse, statistic=stat, pvalue=p, test=test,
        dispersion=phi, aic_linear=float(r1.deviance + 2 * 2),
        aic_quadratic=float(r2.deviance + 2 * 3), level=level,
    )


# --------------------------------------------------------------------------
# backtest
# --------------------------------------------------------------------------


def backtest(df: pd.DataFrame, holdout_sizes: Sequence[float], *, alpha: float = 0.05,
             **fit_kwargs) -> pd.DataFrame:
    """Fit on the sizes not in ``holdout_sizes``, predict the held-out ones.

    Returns a DataFrame with columns N, observed (task mean PU), predicted,
    lower, upper (the ``1 - alpha`` prediction interval of
    :meth:`TaskLawResults.predict`; at the task level it includes the held-out
    size's own sampling noise via its effective sample size) and rel_error
    ``(predicted - observed) / observed`` (NaN when observed is 0).
    ``fit_kwargs`` go to :func:`fit_task_law`.
    """
    d = _validate(df)
    hold = np.atleast_1d(np.asarray(holdout_sizes, float))
    if hold.size == 0:
        raise ValueError("holdout_sizes is empty")
    present = d["N"].unique()
    missing = [h for h in hold if not np.any(np.isclose(present, h, rtol=1e-12))]
    if missing:
        raise ValueError(f"holdout sizes {missing} are not in the data")
    is_hold = np.isin(d["N"].to_numpy(), hold)
    train, test = d[~is_hold], d[is_hold]
    if train["N"].nunique() < 2:
        raise ValueError("fewer than 2 sizes left to fit after holding out " f"{hold.tolist()}")
    res = fit_task_law(train, **fit_kwargs)
    obs = _by_size(test)
    n_eff = obs["n_eff"].to_numpy() if res.method == "glm" else None
    pred = res.predict(obs["N"].to_numpy(), interval=True, alpha=alpha, n_eff=n_eff)
    out = pd.DataFrame({
        "N": obs["N"].to_numpy(),
        "observed": obs["pu"].to_numpy(),
        "predicted": pred["pu"].to_numpy(),
        "lower": pred["lower"].to_numpy(),
        "upper": pred["upper"].to_numpy(),
    })
    with np.errstate(all="ignore"):
        out["rel_error"] = np.where(out["observed"] > 0,
                                    (out["predicted"] - out["observed"]) / out["observed"], np.nan)
    return out
