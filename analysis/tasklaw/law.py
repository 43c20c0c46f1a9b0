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

* :func:`fit_task_law` -> :class:`TaskLawResults`
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
    Per-instance laws that share nothing: for each instance a binomial cloglog
    GLM of its failures on ``log N``.  Instances that never pass at any size
    (``never_solved``) and instances that pass every sample at every size
    (``saturated``) have no finite MLE; they are kept, counted, and enter the
    task PU as 0 (upper bound: the one-sided Clopper-Pearson bound at the
    largest observed size not above the requested N) and 1 respectively.
    Instances with fewer than two sizes where ``0 < c < n``, or whose fit
    does not converge or separates (e.g. passes at a single size only), are
    marked ``unidentified``, kept in the task PU through
    their (degenerate) fitted curve and excluded from the summary parameters.
    Task PU(N) is the mean over instances of predicted PU_i(N).

    ``params`` come from one joint binomial cloglog GLM over the fitted
    instances with an intercept per instance and a common slope (the
    paper's shared alpha): ``alpha`` is its MLE and ``log_c`` the mean of the
    per-instance ``log c_i`` (an average, not a task-level c); their
    covariance is exact for that linear combination.  (Pooling the
    independent per-instance estimates by inverse variance was tried and
    rejected: bivariate pooling of the strongly correlated pairs can land
    outside their range.)  Per-instance estimates from the independent fits
    are in ``instance_params``.  Dispersion is the pooled Pearson chi2 / pooled df;
    covariances are scaled by ``max(phi, 1)``; lack of fit is the summed
    deviance vs chi2(pooled df).

    The interval of ``predict`` at this level is a prediction interval for
    the observed task PU at a new size, built like the task level's on the
    ``log(-log PU)`` scale of the mean of the fitted instances' curves:
    ``var = max(v_inst, v_task) + tau2 (+ s0)``, where ``v_inst`` is the
    delta-method variance of that mean from the per-instance fits (scaled by
    ``phi``), and ``v_task`` and ``tau2`` come from the task-level fit of the
    same data (the estimator's variance under between-size scatter, and the
    scatter itself).  Per-instance fits cannot see a per-size shift shared by
    all instances, so without those terms the band would cover the mean
    curve, not a new size.  Never-solved and saturated instances enter as
    their bounds.  Checked by simulation (per-size shift sd 0.3, instance
    spread 0.3, fit 5 sizes, predict the 6th): 93/100 coverage of the 95%
    interval, also when the smallest training size is all-censored; without
    scatter 100/100 with intervals about +-2% wide.

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

from lm_eval_ext.passuntil import clopper_pearson, pu_fixed

__all__ = [
    "fit_task_law",
    "TaskLawResults",
    "classify_curvature",
    "CurvatureResult",
    "backtest",
    "task_pu_by_size",
]

_REQUIRED = ("N", "instance", "n", "c")
_LEVELS = ("instance", "task")
_METHODS = ("glm", "ls")
_ALPHA_MAX = 50.0  # |alpha| beyond this in a per-instance fit = separation
_SE_ALPHA_MAX = 10.0  # a standard error of alpha beyond this = not identified


# --------------------------------------------------------------------------
# validation and aggregation
# --------------------------------------------------------------------------


def _validate(df, *, min_sizes: int = 2) -> pd.DataFrame:
    """Check the tidy counts table; return a clean copy (N float, n/c int)."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"expected a pandas DataFrame, got {type(df).__name__}")
    missing = [col for col in _REQUIRED if col not in df.columns]
    if missing:
        raise ValueError(
            f"missing required column(s) {missing}; need columns {list(_REQUIRED)} "
            "(N = parameters, instance, n = samples drawn, c = passes)"
        )
    if len(df) == 0:
        raise ValueError("no rows: the counts table is empty")
    out = df[list(_REQUIRED)].copy()
    try:
        N = pd.to_numeric(out["N"], errors="raise").to_numpy(dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError("column N (model parameters) must be numeric") from exc
    if not np.all(np.isfinite(N)) or np.any(N <= 0):
        raise ValueError("column N (model parameters) must be finite and > 0")
    if out["instance"].isna().any():
        raise ValueError("column instance has missing values")
    # pu_fixed validates whole numbers, n >= 1 and 0 <= c <= n with clear messages.
    pu_fixed(out["n"].to_numpy(), out["c"].to_numpy())
    out["N"] = N
    out["n"] = out["n"].to_numpy().astype(np.int64)
    out["c"] = out["c"].to_numpy().astype(np.int64)
    dup = out.duplicated(["N", "instance"])
    if dup.any():
        row = out[dup].iloc[0]
        raise ValueError(
            f"duplicate rows for (N={row['N']:g}, instance={row['instance']!r}): "
            "one row per (model size, instance) expected; sum the counts first"
        )
    n_sizes = out["N"].nunique()
    if n_sizes < min_sizes:
        raise ValueError(
            f"need at least {min_sizes} distinct model sizes N to fit a scaling law, "
            f"got {n_sizes}"
        )
    return out.sort_values(["N", "instance"]).reset_index(drop=True)


def task_pu_by_size(df: pd.DataFrame) -> pd.DataFrame:
    """Per-size task summary: N, m (instances), pu (mean of c/n), var, n_eff.

    ``var`` is the estimated sampling variance of ``pu`` (per-instance
    binomial variances with Jeffreys-smoothed p, see the module docstring);
    ``n_eff = p_s (1 - p_s) / var`` with ``p_s`` the smoothed mean.
    """
    d = _validate(df, min_sizes=1)
    return _by_size(d)


def _by_size(d: pd.DataFrame) -> pd.DataFrame:
    N = d["N"].to_numpy(float)
    n = d["n"].to_numpy(float)
    c = d["c"].to_numpy(float)
    sizes, inv = np.unique(N, return_inverse=True)
    k = len(sizes)
    m = np.bincount(inv, minlength=k).astype(float)
    pt = (c + 0.5) / (n + 1.0)
    pu = np.bincount(inv, weights=c / n, minlength=k) / m
    pu_s = np.bincount(inv, weights=pt, minlength=k) / m
    var = np.bincount(inv, weights=pt * (1 - pt) / n, minlength=k) / m**2
    return pd.DataFrame(
        {
            "N": sizes,
            "m": m.astype(np.int64),
            "pu": pu,
            "pu_smooth": pu_s,
            "var": var,
            "n_eff": pu_s * (1 - pu_s) / var,
        }
    )


def _quantile(alpha: float, df_resid: float, estimated: bool) -> float:
    if estimated and df_resid >= 1:
        return float(stats.t.ppf(1 - alpha / 2, df_resid))
    return float(stats.norm.ppf(1 - alpha / 2))


def _check_level(alpha) -> float:
    a = float(alpha)
    if not 0 < a < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return a


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
class LackOfFit:
    """Goodness-of-fit test of the law against sampling noise alone."""

    statistic: float
    df: int
    pvalue: float
    method: str

    @property
    def flagged(self) -> bool:
        return bool(np.isfinite(self.pvalue) and self.pvalue < 0.05)

    def to_dict(self) -> dict:
        return {
            "statistic": _jf(self.statistic),
            "df": int(self.df),
            "pvalue": _jf(self.pvalue),
            "method": self.method,
            "flagged": self.flagged,
        }


def _jf(x) -> Optional[float]:
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass
class TaskLawResults:
    """Fit of ``PU(N) = exp(-c N**-alpha)``; see the module docstring.

    Attributes: ``params``/``bse`` (Series log_c, alpha), ``cov_params``
    (DataFrame), ``dispersion`` (Pearson chi2 / df, NaN with df 0),
    ``lack_of_fit`` (:class:`LackOfFit`), ``level``, ``method``,
    ``n_sizes``, ``n_instances``, ``sizes`` (per-size table with observed
    and fitted task PU), ``instance_params`` (level="instance": one row per
    instance with status and estimates), ``n_never_solved``,
    ``n_saturated``, ``n_unidentified``, ``dropped_sizes`` (method="ls"),
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
    _instance_state: Optional[dict] = field(default=None, repr=False)

    # --- parameters -----------------------------------------------------
    @property
    def bse(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.cov_params_)), index=self.params.index)

    def cov_params(self) -> pd.DataFrame:
        idx = self.params.index
        return pd.DataFrame(self.cov_params_, index=idx, columns=idx)

    @property
    def _estimated_scale(self) -> bool:
        if self.method == "ls":
            return True
        return bool(np.isfinite(self.dispersion) and self.dispersion > 1)

    def _q(self, alpha: float) -> float:
        return _quantile(alpha, self.df_resid, self._estimated_scale)

    def conf_int(self, alpha: Optional[float] = None, method: Optional[str] = None) -> pd.DataFrame:
        """Confidence intervals (t on df_resid when the scale was estimated).

        ``method``: "wald" (default), or "profile" (profile likelihood, for
        ``alpha`` at ``level="instance"`` only; ``log_c`` keeps its Wald
        interval).  Simulated coverage of the 95% interval for alpha at the
        instance level (5 instances, ``log c_i`` spread sd 1.0, n 2000-10000,
        300 data sets): Wald 289, profile 289 -- the same, so Wald, which
        costs nothing, is the default.
        """
        a = _check_level(self.alpha_ci if alpha is None else alpha)
        has_profile = bool(self._instance_state and "alpha_profile" in self._instance_state)
        method = method or "wald"
        if method not in ("wald", "profile"):
            raise ValueError(f"method must be 'wald' or 'profile', got {method!r}")
        if method == "profile" and not has_profile:
            raise ValueError("profile intervals exist for level='instance', method='glm' fits only")
        q = self._q(a)
        lo = self.params - q * self.bse
        hi = self.params + q * self.bse
        out = pd.DataFrame({"lower": lo, "upper": hi})
        if method == "profile":
            out.loc["alpha"] = _profile_alpha_interval(self._instance_state["alpha_profile"], q)
        return out

    # --- prediction -----------------------------------------------------
    def predict(self, N, interval: bool = True, alpha: float = 0.05, n_eff=None) -> pd.DataFrame:
        """Task PU at sizes ``N``: DataFrame with N, pu (and lower, upper).

        At ``level="task"`` the interval is a prediction interval for the
        observed task mean PU at an unseen size (see the module docstring):
        parameter uncertainty (dispersion-scaled) + between-size scatter
        ``tau2`` + the new point's sampling noise when ``n_eff`` (its
        effective sample size, e.g. ``task_pu_by_size(df)["n_eff"]``) is
        given.  At ``level="instance"`` the same prediction interval around the
        mean of the per-instance curves (see the module docstring), with the
        never-solved and saturated instances' bounds.
        """
        a = _check_level(alpha)
        N = np.atleast_1d(np.asarray(N, float))
        if np.any(~np.isfinite(N)) or np.any(N <= 0):
            raise ValueError("N must be finite and > 0")
        if self.level == "instance":
            return self._predict_instance(N, interval, a, n_eff)
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

    def _predict_instance(self, N, interval, a, n_eff=None) -> pd.DataFrame:
        st = self._instance_state
        X = _design(N)
        x = np.log(N)
        m = st["m"]
        total = np.zeros_like(x)
        var = np.zeros_like(x)
        lower_extra = np.zeros_like(x)
        upper_extra = np.zeros_like(x)
        phi = max(1.0, self.dispersion if np.isfinite(self.dispersion) else 1.0)
        for theta, cov in zip(st["thetas"], st["covs"]):
            eta = X @ theta
            pu_i = _pu_from_eta(eta)
            total += pu_i
            v_eta = phi * np.einsum("ij,jk,ik->i", X, cov, X)
            with np.errstate(all="ignore"):
                g = pu_i * np.exp(eta)  # |dPU/deta|
                vi = (g**2) * v_eta
            var += np.where(np.isfinite(vi), vi, 0.0)
        sizes = st["sizes"]
        for ub in st["never_upper"]:  # per-size one-sided upper bounds
            j = np.searchsorted(sizes, N, side="right") - 1
            upper_extra += ub[np.clip(j, 0, len(sizes) - 1)]
        for lb in st["saturated_lower"]:
            total += 1.0
            j = np.searchsorted(sizes, N, side="left")
            lower_extra += lb[np.clip(j, 0, len(sizes) - 1)]
            upper_extra += 1.0
        pu = total / m
        out = pd.DataFrame({"N": N, "pu": pu})
        if not interval:
            return out
        # The band is built on the eta = log(-log PU) scale of the mean of
        # the fitted instances, like the task level's prediction interval:
        # var = max(instance-level parameter variance, the task-level
        # estimator's variance under between-size scatter) + tau2 (+ the new
        # observation's sampling noise).  Per-instance fits cannot see a
        # per-size shift shared by all instances, so without the task-level
        # terms the band would only cover the mean curve, not a new size.
        n_fit = m - len(st["never_upper"]) - len(st["saturated_lower"])
        fitted_mean = (total - len(st["saturated_lower"])) / max(n_fit, 1)
        with np.errstate(all="ignore"):
            eta_m = _eta_from_pu(np.clip(fitted_mean, 1e-300, 1 - 1e-16))
            d = _deta_dpu(np.clip(fitted_mean, 1e-300, 1 - 1e-16))
            v_inst = (np.sqrt(var) / max(n_fit, 1) * d) ** 2
        v_task = np.einsum("ij,jk,ik->i", X, st["task_cov_pred"], X)
        v = np.maximum(np.where(np.isfinite(v_inst), v_inst, 0.0), v_task) + self.tau2
        if n_eff is not None:
            n_eff = np.broadcast_to(np.asarray(n_eff, float), N.shape)
            p0 = np.clip(fitted_mean, 1e-300, 1 - 1e-16)
            with np.errstate(all="ignore"):
                s0 = p0 * (1 - p0) / n_eff * d**2
            v = v + np.where(np.isfinite(s0), s0, 0.0)
        q = _quantile(a, st["task_df"], self._estimated_scale or self.tau2 > 0)
        sd = np.sqrt(v)
        lo_fit, hi_fit = _pu_from_eta(eta_m + q * sd), _pu_from_eta(eta_m - q * sd)
        share = n_fit / m
        out["lower"] = np.clip(share * lo_fit + lower_extra / m, 0, 1)
        out["upper"] = np.clip(share * hi_fit + upper_extra / m, 0, 1)
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
        if self.level == "instance":
            lines.append(
                f"never solved: {self.n_never_solved}  saturated: {self.n_saturated}  "
                f"unidentified: {self.n_unidentified}"
            )
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
            f"p={lf.pvalue:.4g}{'  << law rejected' if lf.flagged else ''}"
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
) -> TaskLawResults:
    """Fit ``PU(N) = exp(-c N**-alpha)`` to PassUntil counts.

    ``df`` has one row per (model size, instance) with columns N, instance,
    n, c.  ``level`` is "instance" (per-instance binomial cloglog GLMs, task
    PU = mean of per-instance curves) or "task" (one quasi-binomial law for
    the task mean PU); ``method`` is "glm" or "ls" (the paper's least
    squares on log(-log PU_task); task level only).  See the module
    docstring for weights, dispersion, lack of fit and intervals.

    Raises ValueError on missing columns, c > n, n < 1, non-integer counts,
    duplicate (N, instance) rows or fewer than 2 sizes.
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
    return _fit_instance_glm(d, alpha_ci)


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


def _shared_alpha_fit(d: pd.DataFrame, scale: float):
    """(mean log c_i, alpha), their covariance, and what the profile
    likelihood of alpha needs, from the shared-slope GLM."""
    inst, code = np.unique(d["instance"].to_numpy(), return_inverse=True)
    k = len(inst)
    x = np.log(d["N"].to_numpy())
    xbar = float(x.mean())
    X = np.zeros((len(d), k + 1))
    X[np.arange(len(d)), code] = 1.0
    X[:, k] = x - xbar
    n = d["n"].to_numpy()
    c = d["c"].to_numpy()
    endog = np.column_stack([n - c, c])
    res, _, _ = _fit_glm(endog, X)
    b = np.asarray(res.params)
    V = np.asarray(res.cov_params()) * scale
    # log_c_bar = mean(a_i) - b * xbar ; alpha = -b
    L = np.zeros((2, k + 1))
    L[0, :k] = 1.0 / k
    L[0, k] = -xbar
    L[1, k] = -1.0
    profile = {"endog": endog, "X0": X[:, :k], "xc": X[:, k], "b_hat": float(b[k]),
               "se_b": float(np.sqrt(V[k, k])), "dev_hat": float(res.deviance), "scale": scale}
    return L @ b, L @ V @ L.T, profile


def _profile_alpha_interval(p: dict, q: float) -> tuple[float, float]:
    """Profile-likelihood interval for alpha in the shared-slope GLM.

    The slope ``b = -alpha`` is fixed through an offset, the per-instance
    intercepts are refitted, and the bounds solve ``(D(b) - D(b_hat)) /
    scale = q**2`` (``q`` the same normal or t quantile as the Wald
    interval).  The cloglog likelihood of very easy or very hard instances is
    far from quadratic, where the Wald interval is too short.
    """

    def excess(bv):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = sm.GLM(p["endog"], p["X0"], family=_cloglog_family(), offset=bv * p["xc"]).fit(
                scale=1.0, maxiter=200)
        return (float(r.deviance) - p["dev_hat"]) / p["scale"] - q * q

    b0, step = p["b_hat"], max(p["se_b"], 1e-8) * q
    bounds = []
    for sign in (-1.0, 1.0):
        lo, hi = b0, b0 + sign * step
        tries = 0
        while excess(hi) < 0 and tries < 30:
            lo, hi = hi, b0 + sign * step * 2 ** (tries + 1)
            tries += 1
        if tries == 30:
            bounds.append(sign * np.inf)
            continue
        a_, b_ = sorted((lo, hi))
        bounds.append(float(brentq(excess, a_, b_, xtol=1e-10)) if a_ != b_ else hi)
    # alpha = -b: the lower b bound is the upper alpha bound
    return -bounds[1], -bounds[0]


def _fit_instance_glm(d: pd.DataFrame, alpha_ci: float) -> TaskLawResults:
    sizes = np.sort(d["N"].unique())
    rows = []
    thetas, covs = [], []
    never_upper, saturated_lower = [], []
    pearson_total, dev_total, df_total = 0.0, 0.0, 0
    for inst, g in d.groupby("instance", sort=True):
        n = g["n"].to_numpy()
        c = g["c"].to_numpy()
        row = {"instance": inst, "n_sizes": len(g), "log_c": np.nan, "alpha": np.nan,
               "bse_log_c": np.nan, "bse_alpha": np.nan}
        if np.all(c == 0):
            row["status"] = "never_solved"
            # one-sided upper bound on PU at each size (<= that size's N)
            ub_obs = clopper_pearson(n, c, alpha_ci, alternative="less")[1]
            ub = np.interp(np.log(sizes), np.log(g["N"].to_numpy()), np.atleast_1d(ub_obs))
            never_upper.append(ub)
            rows.append(row)
            continue
        if np.all(c == n):
            row["status"] = "saturated"
            lb_obs = clopper_pearson(n, c, alpha_ci, alternative="greater")[0]
            lb = np.interp(np.log(sizes), np.log(g["N"].to_numpy()), np.atleast_1d(lb_obs))
            saturated_lower.append(lb)
            rows.append(row)
            continue
        if len(g) < 2:
            row["status"] = "unidentified"
            rows.append(row)
            # a single size: constant curve at c/n
            p = c[0] / n[0]
            thetas.append(np.array([float(_eta_from_pu(np.clip(p, 1e-300, 1 - 1e-16))), 0.0]))
            covs.append(np.zeros((2, 2)))
            continue
        x = np.log(g["N"].to_numpy())
        xbar = float(x.mean())
        X = sm.add_constant(x - xbar, has_constant="add")
        res, converged, _ = _fit_glm(np.column_stack([n - c, c]), X)
        theta, cov = _to_law(res.params, res.cov_params(), xbar)
        # A finite MLE needs at least two sizes with 0 < c < n (one interior
        # size between all-fail and all-pass sizes is quasi-separation: alpha
        # runs off to infinity); the numerical checks catch the rest.
        interior = int(np.sum((c > 0) & (c < n)))
        se = np.sqrt(np.abs(np.diag(cov)))
        ok = (interior >= 2 and converged and bool(np.all(np.isfinite(theta)))
              and abs(theta[1]) < _ALPHA_MAX and bool(np.all(np.isfinite(se)))
              and se[1] < _SE_ALPHA_MAX)
        row["log_c"], row["alpha"] = theta
        row["bse_log_c"], row["bse_alpha"] = np.sqrt(np.abs(np.diag(cov)))
        thetas.append(theta)
        covs.append(cov if ok else np.zeros((2, 2)))
        if ok:
            row["status"] = "fitted"
            k = len(g) - 2
            if k > 0:
                pearson_total += float(res.pearson_chi2)
                dev_total += float(res.deviance)
                df_total += k
        else:
            row["status"] = "unidentified"
        row["_cov"] = cov
        rows.append(row)
    ip = pd.DataFrame(rows)
    counts = ip["status"].value_counts()
    fitted = ip[ip["status"] == "fitted"]
    if len(fitted) == 0:
        raise ValueError(
            "no instance has a finite per-instance fit (every instance is never solved, "
            f"saturated or unidentified: {counts.to_dict()}); try level='task'"
        )
    dispersion = pearson_total / df_total if df_total > 0 else float("nan")
    scale = max(1.0, dispersion) if np.isfinite(dispersion) else 1.0
    # common-effect summary of the per-instance estimates
    # Summary parameters: one binomial cloglog GLM over all fitted instances
    # with an intercept per instance and a common slope (shared alpha, the
    # paper's assumption).  This is the joint MLE; pooling the independent
    # per-instance estimates by inverse variance is biased under censoring
    # because the estimated variances correlate with the estimates.
    theta, cov, profile = _shared_alpha_fit(d[d["instance"].isin(fitted["instance"])], scale)
    lof = LackOfFit(
        dev_total, df_total,
        float(stats.chi2.sf(dev_total, df_total)) if df_total > 0 else float("nan"),
        "summed per-instance deviance vs chi2(sum of df)",
    )
    s = _by_size(d)
    ip = ip.drop(columns=["_cov"], errors="ignore")
    # between-size scatter and the estimator's variance under it, from the
    # task-level fit of the same data (used by the prediction interval)
    task = _fit_task_glm(d, alpha_ci)
    res_obj = TaskLawResults(
        params=pd.Series(theta, index=["log_c", "alpha"]),
        cov_params_=cov,
        dispersion=dispersion,
        df_resid=df_total,
        lack_of_fit=lof,
        level="instance",
        method="glm",
        n_sizes=len(sizes),
        n_instances=len(ip),
        sizes=s,
        alpha_ci=alpha_ci,
        instance_params=ip,
        n_never_solved=int(counts.get("never_solved", 0)),
        n_saturated=int(counts.get("saturated", 0)),
        n_unidentified=int(counts.get("unidentified", 0)),
        tau2=task.tau2,
        _instance_state={
            "alpha_profile": profile,
            "task_cov_pred": task.cov_pred_,
            "task_df": task.df_resid,
            "m": len(ip),
            "thetas": thetas,
            "covs": covs,
            "sizes": sizes,
            "never_upper": never_upper,
            "saturated_lower": saturated_lower,
        },
    )
    res_obj.sizes["fitted"] = res_obj.predict(s["N"].to_numpy(), interval=False)["pu"].to_numpy()
    return res_obj


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
