"""The forecast: forms chosen out of sample, intervals calibrated on the ladder.

:func:`fit_forecast` takes one task's per-model observations (from
:func:`.observations.observe`) and

1. fits each candidate form (:mod:`.forms`) to all of them;
2. forward-chains each form over the ladder (:mod:`.calibration`);
3. weighs the forms by their out-of-sample predictive density on the
   (origin, target) pairs every form could predict (pseudo-BMA with a prior
   that favours the law: with two or three forward-chaining errors the
   comparison is weak, and the law is the method's claim); forms whose
   weight is below 2% drop out;
4. calibrates the model-form error ``kappa`` of the *weighted* forecast on
   its own forward-chaining errors (falling back to the prior measured on
   real ladders where the ladder is too short);
5. predicts a new model on the y scale: the weighted mean of the forms,
   with variance = the forms' weighted estimation variance and
   between-model scatter, the spread between their means, ``kappa^2 d^2``
   and the new model's sampling noise; normal quantiles, mapped back to PU
   (or score).

Forms in ``compare`` (the quadratic) are fitted and forward-chained for the
record and the verdict, with no weight.  See docs/forecasting.md.

:class:`ForecastResults` is statsmodels-like: ``params``, ``conf_int()``,
``summary()``, ``predict()``, ``to_dict()``, and carries the verdict
(:mod:`.verdict`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from .calibration import PRIOR, Calibration, calibrate, forward_chain
from .forms import FORMS, FittedForm, fit_form
from .observations import p_from_y, to_scale, var_p_of, var_y_of

__all__ = ["fit_forecast", "ForecastResults", "DEFAULT_FORMS", "fit_and_chain", "weigh", "mixture_errors"]

#: forms the forecast averages
DEFAULT_FORMS = ("law", "local", "flat")
#: forms fitted and forward-chained for the record and the verdict only.
#: Averaged too, the quadratic's extrapolated bend lowered the point error
#: on some real ladders but its forward-chaining record made the calibrated
#: intervals too narrow on others (bench/forecast_coverage.py --forms
#: law,quadratic,local,flat: pooled coverage 0.866 over every ladder, 0.82-0.84
#: on Gadre et al.'s compute ladders, against 0.956 without it).
COMPARED_FORMS = ("quadratic",)
#: prior weights of the forms before the ladder's own forward-chaining record
_PRIOR_WEIGHT = {"law": 0.55, "quadratic": 0.15, "local": 0.15, "flat": 0.15}  # renormalised over the forms used
_MIN_WEIGHT = 0.02


@dataclass
class FormResult:
    fitted: FittedForm
    calibration: Calibration
    errors: pd.DataFrame
    weight: float = 0.0
    elpd: float = float("nan")
    #: compared forms: the law's elpd on the same pairs (for the verdict)
    elpd_law: float = float("nan")


@dataclass
class ForecastResults:
    obs: pd.DataFrame
    forms: dict  # name -> FormResult (fitted ones)
    failed: dict  # name -> reason
    level: float
    x_name: str = "x"
    verdict: object = None
    calibration: Calibration = None  # the mixture's model-form error
    errors: pd.DataFrame = None  # the mixture's forward-chaining errors
    notes: list = field(default_factory=list)

    # ------------------------------------------------------------ parameters
    @property
    def weights(self) -> pd.Series:
        return pd.Series({k: f.weight for k, f in self.forms.items()})

    @property
    def params(self) -> pd.Series:
        """The law's log c and alpha (x in the ladder's own units), its
        between-model scatter tau and its calibrated model-form error kappa."""
        if "law" not in self.forms:
            return pd.Series(dtype=float)
        f = self.forms["law"]
        lp = f.fitted.law_params()
        return pd.Series({**lp, "tau": math.sqrt(f.fitted.tau2), "kappa": f.calibration.kappa})

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """Wald intervals of the law's log c and alpha."""
        theta, cov = self.forms["law"].fitted.law_params_cov()
        z = stats.norm.ppf(1 - alpha / 2)
        se = np.sqrt(np.diag(cov))
        return pd.DataFrame({"lower": theta - z * se, "upper": theta + z * se}, index=["log_c", "alpha"])

    @property
    def span(self) -> float:
        return float(self.obs["log_x"].max() - self.obs["log_x"].min())

    # ------------------------------------------------------------ prediction
    def predict_y(self, x, var_obs=None) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of a new model's y at scale values ``x``.

        Mean: the weighted mean of the forms' means.  Variance: the weighted
        estimation variance and between-model scatter of the forms, the
        spread between their means, the mixture's calibrated model-form
        error ``kappa^2 d^2`` and the new observation's sampling noise
        ``var_obs``.
        """
        log_x = np.log(np.atleast_1d(np.asarray(x, float)))
        vo = np.zeros_like(log_x) if var_obs is None else np.broadcast_to(np.asarray(var_obs, float), log_x.shape)
        mean, var = mixture_moments(self.forms, log_x)
        d = np.maximum(log_x - float(self.obs["log_x"].max()), 0.0)
        return mean, var + self.calibration.extra_var(d) + vo

    def predict(self, x, *, budget=None, alpha: float | None = None) -> pd.DataFrame:
        """Prediction for new models at scale values ``x``.

        ``budget``: the new observation's sampling budget (total samples over
        instances for counts, items for scores); default: that of the
        largest model of the ladder.  Returns x, predicted (PU or score),
        lower, upper, y, y_sd, d (log-x distance beyond the ladder), and the
        p scale (``p``, ``p_lower``, ``p_upper``).
        """
        a = self.level if alpha is None else alpha
        x = np.atleast_1d(np.asarray(x, float))
        if np.any(~np.isfinite(x)) or np.any(x <= 0):
            raise ValueError("x to predict must be finite and > 0")
        if budget is None:
            budget = float(self.obs["budget"].iloc[-1])
        budget = np.broadcast_to(np.asarray(budget, float), x.shape)
        # two passes: the new observation's noise depends on its p
        mean0, _ = self.predict_y(x)
        p0 = np.clip(p_from_y(mean0), 1e-12, 1 - 1e-12)
        ok = np.isfinite(budget) & (budget > 0)
        kind = self.obs["kind"].iloc[0]
        chance = float(self.obs["chance"].iloc[-1]) if kind == "scores" else 0.0
        with np.errstate(all="ignore"):
            vo = np.where(ok, var_y_of(var_p_of(p0, budget, kind=kind, chance=chance), p0), 0.0)
        vo = np.minimum(vo, 25.0)
        mean, var = self.predict_y(x, vo)
        z = stats.norm.ppf(1 - a / 2)
        y_lo, y_hi = mean - z * np.sqrt(var), mean + z * np.sqrt(var)
        p = p_from_y(mean)
        # larger y = smaller p
        p_lo, p_hi = p_from_y(y_hi), p_from_y(y_lo)
        d = np.maximum(np.log(x) - float(self.obs["log_x"].max()), 0.0)
        return pd.DataFrame({
            "x": x,
            "predicted": to_scale(p, self.obs),
            "lower": to_scale(p_lo, self.obs),
            "upper": to_scale(p_hi, self.obs),
            "p": p, "p_lower": p_lo, "p_upper": p_hi,
            "y": mean, "y_sd": np.sqrt(var), "y_lower": y_lo, "y_upper": y_hi, "d": d,
        })

    # ------------------------------------------------------------ reporting
    def warnings_for(self, x, budget=None, pred: pd.DataFrame | None = None) -> list[list[str]]:
        """Per x, the warnings of its prediction (``pred``: ``predict(x,
        budget=budget)`` when the caller has it already)."""
        from .verdict import prediction_warnings

        return prediction_warnings(self, x, budget, pred)

    def summary(self) -> str:
        lines = [f"Forecast of {self.obs['kind'].iloc[0]} over {len(self.obs)} models, "
                 f"{self.obs['log_x'].nunique()} sizes ({self.x_name} {self.obs['x'].min():.3g} .. "
                 f"{self.obs['x'].max():.3g}); {int(self.obs['censored'].sum())} censored"]
        if self.verdict is not None:
            lines.append(f"verdict: {self.verdict.label} -- {self.verdict.reason}")
        lines.append("form        weight   tau    kappa  n_err  calibration   params")
        for name, f in self.forms.items():
            pr = f.fitted.law_params() or {k: float(v) for k, v in f.fitted.params.items()}
            ptxt = ", ".join(f"{k}={v:.4g}" for k, v in pr.items())
            lines.append(f"{name:<11} {f.weight:6.3f} {math.sqrt(f.fitted.tau2):6.3f} {f.calibration.kappa:6.3f} "
                         f"{f.calibration.n_errors:5d}  {f.calibration.source:<13} {ptxt}")
        for name, why in self.failed.items():
            lines.append(f"{name:<11} not fitted: {why}")
        lines.append(f"predict() = the weighted mean of these forms on y = log(-log p); variance = their weighted "
                     f"var(mean) + tau^2, their spread, kappa^2 d^2 (kappa = {self.calibration.kappa:.3g}, "
                     f"{self.calibration.source}, {self.calibration.n_errors} forward-chaining errors of the "
                     "weighted forecast) and the new model's sampling noise")
        lines.extend(self.notes)
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "x": self.x_name,
            "verdict": None if self.verdict is None else self.verdict.to_dict(),
            "forms": {k: {"weight": f.weight, "tau": math.sqrt(f.fitted.tau2), "params":
                          (f.fitted.law_params() or {a: float(b) for a, b in f.fitted.params.items()}),
                          "calibration": f.calibration.to_dict(), "elpd": _jf(f.elpd)}
                      for k, f in self.forms.items()},
            "not_fitted": dict(self.failed),
            "calibration": self.calibration.to_dict(),
            "models": json_records(self.obs[["model", "x", "p", "y", "censored"]]),
            "notes": list(self.notes),
        }


def _jf(v):
    v = float(v)
    return v if math.isfinite(v) else None


def json_records(df: pd.DataFrame) -> list[dict]:
    out = []
    for rec in df.to_dict(orient="records"):
        out.append({k: (_jf(v) if isinstance(v, (float, np.floating)) else
                        bool(v) if isinstance(v, (bool, np.bool_)) else
                        int(v) if isinstance(v, (np.integer,)) else v) for k, v in rec.items()})
    return out


def _elpd_common(results: dict) -> dict:
    """Each form's log predictive density on the (origin, model) pairs that
    every fitted form predicted, with its calibrated variance."""
    keys = None
    for f in results.values():
        k = set(zip(f.errors["origin"].round(12), f.errors["model"]))
        keys = k if keys is None else keys & k
    out = {}
    for name, f in results.items():
        e = f.errors
        if not keys:
            out[name] = float("nan")
            continue
        m = [(o, mo) in keys for o, mo in zip(e["origin"].round(12), e["model"])]
        e = e[m]
        var = e["V"].to_numpy() + f.calibration.extra_var(e["r"].to_numpy())
        out[name] = float(np.sum(stats.norm.logpdf(e["e"].to_numpy(), scale=np.sqrt(var))))
    return out


def fit_forecast(obs: pd.DataFrame, *, forms=DEFAULT_FORMS, compare=COMPARED_FORMS, level: float = 0.05,
                 prior: dict | None = None, x_name: str = "x", max_origins: int = 12) -> ForecastResults:
    """Fit, calibrate and weigh the forms on one task's observations.

    ``forms`` are averaged into the forecast; ``compare`` are fitted and
    forward-chained too (their record is in the summary, the quadratic's
    feeds the verdict) but get no weight."""
    from .verdict import judge

    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    prior = PRIOR if prior is None else prior
    compare = tuple(c for c in compare if c not in forms)
    results, failed = fit_and_chain(tuple(forms) + compare, FORMS, lambda name: fit_form(obs, name),
                                    lambda name: forward_chain(obs, name, max_origins=max_origins), prior)
    compared = {k: results.pop(k) for k in compare if k in results}
    if not results:
        raise ValueError("no form could be fitted: " + "; ".join(f"{k}: {v}" for k, v in failed.items()))
    for name, f in compared.items():
        if "law" in results:
            pair = _elpd_common({"law": results["law"], name: f})
            f.elpd, f.elpd_law = pair[name], pair["law"]
    weigh(results, _PRIOR_WEIGHT)
    errors = mixture_errors(results)
    results.update(compared)
    out = ForecastResults(obs=obs, forms=results, failed=failed, level=level, x_name=x_name,
                          calibration=calibrate(errors, prior, "mixture"), errors=errors)
    if out.calibration.n_errors < 3:
        out.notes.append(
            f"the ladder is too short to calibrate its own model-form error ({out.calibration.n_errors} "
            f"forward-chaining errors of the forecast): the interval leans on the prior measured on real ladders "
            f"(kappa0 = {out.calibration.kappa0:.3g} per unit of log x; analysis.forecast.calibration.PRIOR)")
    out.verdict = judge(out)
    return out


def mixture_moments(forms: dict, at) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance at ``at`` of the weighted forms: the weighted mean
    of their means; their weighted estimation variance and between-model
    scatter plus the spread between their means."""
    ws, mus, vs = [], [], []
    for f in forms.values():
        if f.weight <= 0:
            continue
        mu, vm = f.fitted.predict(at)
        ws.append(f.weight)
        mus.append(mu)
        vs.append(vm + f.fitted.tau2)
    w = np.array(ws) / np.sum(ws)
    mus, vs = np.array(mus), np.array(vs)
    mean = np.sum(w[:, None] * mus, axis=0)
    return mean, np.sum(w[:, None] * (vs + (mus - mean) ** 2), axis=0)


def fit_and_chain(names, registry: dict, fit, chain, prior: dict) -> tuple[dict, dict]:
    """Fit each named form (``fit(name)``), forward-chain it (``chain(name)``)
    and calibrate its own model-form error; a form that cannot be fitted is
    recorded in ``failed`` with the reason.  Raises when none can."""
    results, failed = {}, {}
    for name in names:
        if name not in registry:
            raise ValueError(f"unknown form {name!r}; choose from {list(registry)}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fitted = fit(name)
                errs = chain(name)
        except (ValueError, np.linalg.LinAlgError) as exc:
            failed[name] = str(exc)
            continue
        results[name] = FormResult(fitted, calibrate(errs, prior, name), errs)
    if not results:
        raise ValueError("no form could be fitted: " + "; ".join(f"{k}: {v}" for k, v in failed.items()))
    return results, failed


def weigh(results: dict, prior_weight: dict, min_weight: float = _MIN_WEIGHT) -> None:
    """Set each form's ``elpd`` and pseudo-BMA ``weight``: prior weight times
    the out-of-sample predictive density on the pairs every form predicted;
    weights under ``min_weight`` drop to zero.  With no common record the
    prior decides."""
    elpd = _elpd_common(results)
    logw = {}
    for name, f in results.items():
        f.elpd = elpd[name]
        logw[name] = math.log(prior_weight.get(name, 0.1)) + (elpd[name] if math.isfinite(elpd[name]) else 0.0)
    if not all(math.isfinite(v) for v in elpd.values()):
        logw = {k: math.log(prior_weight.get(k, 0.1)) for k in results}
    mx = max(logw.values())
    tot = sum(math.exp(v - mx) for v in logw.values())
    for name, f in results.items():
        f.weight = math.exp(logw[name] - mx) / tot
    for f in results.values():
        if f.weight < min_weight:
            f.weight = 0.0
    s = sum(f.weight for f in results.values())
    for f in results.values():
        f.weight /= s


def mixture_errors(results: dict) -> pd.DataFrame:
    """Forward-chaining errors of the weighted forecast itself, at the
    (origin, target) pairs that every weighted form predicted (an origin
    where only the constant can be fitted says nothing about the forecast
    that is actually made); the variance it expected is the weighted forms'
    variances plus their spread.  Calibrating kappa on these (not per form)
    keeps the spread between forms from being counted on top of each form's
    own model-form error."""
    frames = []
    used = [f for f in results.values() if f.weight > 0]
    for f in used:
        if len(f.errors):
            frames.append(f.errors.assign(_fw=f.weight, key=f.errors["origin"].round(12).astype(str) + "|" +
                                          f.errors["model"].astype(str)))
    base = ["origin", "model", "log_x", "d", "r", "y", "mu", "e", "V"]
    if len(frames) < len(used) or not frames:
        return pd.DataFrame(columns=base, dtype=float)
    # the errors' own position columns (log_x for the core, L for loss curves)
    cols = [c for c in frames[0].columns if c not in ("_fw", "key", "span")]
    e = pd.concat(frames, ignore_index=True)
    rows = []
    for _, g in e.groupby("key", sort=False):
        if len(g) < len(used):
            continue
        w = g["_fw"].to_numpy() / g["_fw"].sum()
        mu = float(np.sum(w * g["mu"]))
        V = float(np.sum(w * (g["V"] + (g["mu"] - mu) ** 2)))
        r0 = g.iloc[0]
        rows.append({**{c: r0[c] for c in cols}, "mu": mu, "e": r0["y"] - mu, "V": V})
    return pd.DataFrame(rows, columns=cols).astype({c: float for c in cols if c not in ("model", "run")})
