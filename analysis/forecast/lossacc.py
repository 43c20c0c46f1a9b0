"""Loss -> accuracy: a model's score predicted from its loss, with a
calibrated interval.

The same recipe as the core (:mod:`.forecaster`) on a different axis: the
forms are the nonlinear curves of score against loss of :mod:`.curves`
(sigmoid with fitted floor, sigmoid at the chance floor, a constant;
Snell et al.'s softplus on request: it cannot saturate, and averaged in it
extrapolated Gadre et al.'s Jeopardy and SQuAD to twice their 6.9B scores);
each is forward-chained over the ladder *in loss* (fit the models with loss
above a cut, predict those below it: the weaker models predict the
stronger); the forms are weighted by out-of-sample predictive density
(:func:`.forecaster.weigh`) at the later half of the origins; and the
model-form error
of the weighted forecast is calibrated as ``kappa^2 r^2`` with

    r = log(L_min / L) / log(L_max / L_min)  (>= 0),

how far the loss to predict lies below the lowest loss fitted, in units of
the fitted range (on a log scale: the same in nats and bits, per token or
per byte; and relative to the range, so that a loss with a large
irreducible part, whose log barely moves, is not judged closer than one
without).  On the real ladders of ../shared/data both this and the plain
``log(L_min / L)`` give errors standardized uniformly across distances,
but this one's kappa agrees across loss definitions (Gadre et al.: 0.38-0.48
with C4 or each data set's own validation loss, against 0.72-1.28) and its
intervals are narrower at the same coverage (median half-width 0.37 vs 0.55
on C4 loss).  The prior is :data:`PRIOR`
(``bench/loss_coverage.py --measure-prior``).

A prediction's variance: the forms' weighted estimation variance and
between-model scatter ``tau^2``, the spread between their means,
``kappa^2 d^2`` and the new model's own sampling noise over its items.  The
interval is normal on the score scale, cut to [0, 1].

Training runs: a ``run`` column (checkpoints of one run) clusters the
covariance (:mod:`.curves`) and weighs the calibration so that each run's
errors count once.

Input (one task): a tidy table with ``model``, the loss column, ``score``,
optionally ``n_items`` (items behind the score), ``chance``, ``run``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from .backtest import interval_score
from .calibration import Calibration, calibrate
from .curves import CURVE_FORMS, FittedCurve, curve_min_models, fit_curve, score_interval
from .forecaster import ForecastResults, FormResult, fit_and_chain, json_records, mixture_errors, mixture_moments, weigh

__all__ = ["PRIOR", "DEFAULT_CURVES", "observe_loss", "fit_loss_forecast", "LossForecastResults",
           "forward_chain_loss", "backtest_loss_obs", "is_loss_column"]

DEFAULT_CURVES = ("sigmoid", "sigmoid_chance")
_PRIOR_WEIGHT = {"sigmoid": 0.3, "sigmoid_chance": 0.3, "softplus": 0.2, "flat": 0.2}

#: Model-form error of score-from-loss extrapolation, per unit of
#: r = log(L_min / L) / log(L_max / L_min), measured by forward chaining on real ladders
#: (bench/loss_coverage.py --measure-prior); score units.
PRIOR = {
    "kappa0": {"sigmoid": 0.41, "sigmoid_chance": 0.37, "softplus": 0.41, "flat": 0.41, "mixture": 0.35},
    "nu0": 4.0,
    "source": "bench/loss_coverage.py --measure-prior (2026-11-29): Gadre et al. (3 data sets, C4 loss, "
              "tasks rising above chance) and Pythia deduped checkpoints (LAMBADA loss); each (ladder, task) "
              "weighted equally.  Per ladder (sigmoid): Gadre 0.38-0.48, Pythia 0.09 (softplus and flat, "
              "not averaged by default, borrow the sigmoid's)",
}


def is_loss_column(name: str) -> bool:
    """Whether a scale column is a loss (smaller = better model): its name
    says loss, bpb, nll or perplexity."""
    n = str(name).lower()
    return any(k in n for k in ("loss", "bpb", "bits_per_byte", "nll", "ppl", "perplexity"))


def observe_loss(df: pd.DataFrame, *, x: str = "loss", chance: float | None = None) -> pd.DataFrame:
    """One row per model: ``model, L, score, n_items, v, chance, run``,
    sorted from the highest loss (weakest model) to the lowest.  ``v``: the
    binomial sampling variance of the score over ``n_items`` (0 when the
    number of items is unknown: the between-model scatter absorbs it)."""
    if "model" not in df.columns:
        raise ValueError("the table needs a 'model' column")
    if x not in df.columns:
        raise ValueError(f"the table has no loss column {x!r}")
    if "score" not in df.columns:
        raise ValueError("a loss -> accuracy forecast needs a 'score' column (or --y COLUMN)")
    rows = []
    for model, g in df.groupby("model", sort=False):
        if len(g) != 1:
            raise ValueError(f"model {model!r} has {len(g)} score rows for one task; expected one")
        r = g.iloc[0]
        L = pd.to_numeric(pd.Series([r[x]]), errors="coerce").iloc[0]
        s = pd.to_numeric(pd.Series([r["score"]]), errors="coerce").iloc[0]
        if not (np.isfinite(L) and L > 0):
            raise ValueError(f"model {model!r}: loss {x} = {r[x]} must be a finite number > 0")
        if not (np.isfinite(s) and 0 <= s <= 1):
            raise ValueError(f"model {model!r}: score {r['score']} must be a number in [0, 1]")
        n = float(r["n_items"]) if "n_items" in g.columns and pd.notna(r["n_items"]) else np.nan
        ch = chance if chance is not None else (float(r["chance"]) if "chance" in g.columns
                                                and pd.notna(r["chance"]) else 0.0)
        st = min(max(s, 0.5 / n if np.isfinite(n) else 0.0), 1 - 0.5 / n if np.isfinite(n) else 1.0)
        rows.append(dict(model=model, L=float(L), score=float(s), n_items=n,
                         v=float(st * (1 - st) / n) if np.isfinite(n) and n > 0 else 0.0, chance=float(ch),
                         run=(str(r["run"]) if "run" in g.columns and pd.notna(r["run"]) else str(model))))
    out = pd.DataFrame(rows)
    return out.sort_values(["L", "model"], ascending=[False, True]).reset_index(drop=True)


def _distance(L_min: float, L) -> np.ndarray:
    return np.maximum(np.log(L_min / np.asarray(L, float)), 0.0)


def _fit(obs: pd.DataFrame, form: str) -> FittedCurve:
    runs = obs["run"].to_numpy() if obs["run"].nunique() < len(obs) else None
    return fit_curve(obs["L"].to_numpy(), obs["score"].to_numpy(), obs["v"].to_numpy(), form,
                     chance=float(obs["chance"].iloc[0]), runs=runs)


def loss_origins(obs: pd.DataFrame, form: str, max_origins: int) -> list[float]:
    """Loss cuts: train on the models with loss >= cut, predict those below;
    from the first cut with enough models for the form, thinned."""
    Ls = np.sort(np.unique(obs["L"]))[::-1]  # weakest first
    need = curve_min_models(form)
    ok = [c for i, c in enumerate(Ls[:-1]) if i + 1 >= need]
    if len(ok) > max_origins:
        idx = np.unique(np.round(np.linspace(0, len(ok) - 1, max_origins)).astype(int))
        ok = [ok[i] for i in idx]
    return ok


def forward_chain_loss(obs: pd.DataFrame, form: str, *, max_origins: int = 10) -> pd.DataFrame:
    """Forward-chaining errors of ``form``: one row per (origin, target):
    origin (the loss cut), model, run, L, d, r (= d), mu, y, e, V, w (each
    run's errors at one origin weigh one in all)."""
    rows = []
    for cut in loss_origins(obs, form, max_origins):
        train, test = obs[obs["L"] >= cut], obs[obs["L"] < cut]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ff = _fit(train, form)
        except (ValueError, np.linalg.LinAlgError):
            continue
        mu, vm = ff.predict(test["L"].to_numpy())
        d = _distance(ff.L_min, test["L"].to_numpy())
        span = float(np.log(ff.L_max / ff.L_min))
        per_run = test["run"].map(test["run"].value_counts()).to_numpy(float)
        for j, (_, t) in enumerate(test.iterrows()):
            rows.append(dict(origin=cut, model=t["model"], run=t["run"], L=t["L"], d=d[j], r=d[j] / span,
                             span=span, mu=mu[j],
                             y=t["score"], e=t["score"] - mu[j], V=vm[j] + ff.tau2 + t["v"], w=1.0 / per_run[j]))
    cols = ["origin", "model", "run", "L", "d", "r", "span", "mu", "y", "e", "V", "w"]
    out = pd.DataFrame(rows, columns=cols)
    return out.astype({c: float for c in cols if c not in ("model", "run")})


@dataclass
class LossForecastResults:
    obs: pd.DataFrame
    forms: dict  # name -> FormResult
    failed: dict
    level: float
    x_name: str = "loss"
    calibration: Calibration = None
    errors: pd.DataFrame = None
    verdict: str = ""
    verdict_reason: str = ""
    notes: list = field(default_factory=list)

    weights = ForecastResults.weights

    @property
    def params(self) -> pd.Series:
        """The highest-weighted form's parameters (natural scale) and tau."""
        name = self.weights.idxmax()
        f = self.forms[name].fitted
        return pd.concat([f.params, pd.Series({"tau": math.sqrt(f.tau2)})])

    @property
    def L_min(self) -> float:
        return float(self.obs["L"].min())

    @property
    def extrapolate(self) -> bool:
        return self.verdict != "no usable trend"

    def predict_moments(self, L) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean score at losses ``L``; its variance without and with the
        model-form error (no new-model sampling noise)."""
        L = np.atleast_1d(np.asarray(L, float))
        mean, var = mixture_moments(self.forms, L)
        return mean, var, var + self.calibration.extra_var(self.relative_distance(L))

    @property
    def log_span(self) -> float:
        """log(L_max / L_min) of the fitted models."""
        return float(np.log(self.obs["L"].max() / self.L_min))

    def relative_distance(self, L) -> np.ndarray:
        """``log(L_min / L) / log(L_max / L_min)``: how far below the fitted
        range, in units of the fitted range (0 inside it)."""
        return _distance(self.L_min, L) / max(self.log_span, 1e-9)

    def predict(self, L, *, n_items=None, alpha: float | None = None) -> pd.DataFrame:
        """Prediction for new models with losses ``L``: L, predicted, lower,
        upper (score scale, inside [0, 1]), sd, d (``log(L_min / L)``).
        ``n_items``: the new models' items (default: the last model's)."""
        a = self.level if alpha is None else alpha
        L = np.atleast_1d(np.asarray(L, float))
        if np.any(~np.isfinite(L)) or np.any(L <= 0):
            raise ValueError("losses to predict must be finite and > 0")
        mean, _, var = self.predict_moments(L)
        return score_interval(mean, var, self._new_var(mean, n_items, L.shape), a,
                         {"L": L, "d": _distance(self.L_min, L), "r": self.relative_distance(L)})

    def _new_var(self, mean, n_items, shape):
        n = float(self.obs["n_items"].iloc[-1]) if n_items is None else n_items
        n = np.broadcast_to(np.asarray(n, float), shape)
        m = np.clip(mean, 0, 1)
        with np.errstate(all="ignore"):
            return np.where(np.isfinite(n) & (n > 0), m * (1 - m) / n, 0.0)

    def warnings_for(self, L) -> list[list[str]]:
        """Per loss: a warning when it lies below the fitted range, and when
        the task shows no usable trend."""
        out = []
        span = float(self.obs["L"].max() - self.L_min)
        for l in np.atleast_1d(np.asarray(L, float)):
            w = []
            if l < self.L_min:
                w.append(f"extrapolated: loss {l:.4g} is below the lowest fitted loss {self.L_min:.4g} "
                         f"(by {self.L_min - l:.3g}, {((self.L_min - l) / span) if span > 0 else float('inf'):.2g}"
                         f"x the fitted loss span)")
            if not self.extrapolate:
                w.append(f"no usable trend: {self.verdict_reason}")
            out.append(w)
        return out

    def summary(self) -> str:
        o = self.obs
        lines = [f"Score from {self.x_name} over {len(o)} models ({self.x_name} {o['L'].max():.4g} .. "
                 f"{o['L'].min():.4g}, {o['run'].nunique()} runs), chance {o['chance'].iloc[0]:.3g}",
                 f"verdict: {self.verdict} -- {self.verdict_reason}",
                 "form             weight   tau    kappa  n_err  params"]
        for name, f in self.forms.items():
            ptxt = ", ".join(f"{k}={v:.4g}" for k, v in f.fitted.params.items())
            lines.append(f"{name:<16} {f.weight:6.3f} {math.sqrt(f.fitted.tau2):6.3f} {f.calibration.kappa:6.3f} "
                         f"{f.calibration.n_errors:5d}  {ptxt}")
        for name, why in self.failed.items():
            lines.append(f"{name:<16} not fitted: {why}")
        lines.append(f"predict() = the weighted mean of these forms on the score scale; variance = their weighted "
                     f"var(mean) + tau^2, their spread, kappa^2 r^2 with r = log(L_min / L) / log(L_max / L_min) "
                     f"(kappa = "
                     f"{self.calibration.kappa:.3g}, {self.calibration.source}, {self.calibration.n_errors} "
                     "forward-chaining errors) and the new model's sampling noise; cut to [0, 1]")
        lines.extend(self.notes)
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"x": self.x_name, "verdict": {"label": self.verdict, "reason": self.verdict_reason},
                "forms": {k: {"weight": f.weight, "tau": math.sqrt(f.fitted.tau2),
                              "params": {a: float(b) for a, b in f.fitted.params.items()},
                              "calibration": f.calibration.to_dict()} for k, f in self.forms.items()},
                "not_fitted": dict(self.failed), "calibration": self.calibration.to_dict(),
                "models": json_records(self.obs[["model", "L", "score", "run"]]), "notes": list(self.notes)}


def _judge(res: LossForecastResults) -> tuple[str, str]:
    """No usable trend when the main curve fits no better than a constant
    (a chi-square test on the weighted residuals at the curve's own scatter,
    at the 1% level: a spurious jump at the last model must not become a
    trend), or the fitted curve rises by less than twice the scatter over the
    fitted range; or when a constant takes most of the weight (with
    ``forms`` including ``flat``)."""
    w = res.weights
    if w.get("flat", 0.0) >= 0.5:
        return "no usable trend", (f"a constant out-predicts the curves out of sample (weight "
                                   f"{w['flat']:.2f}): the score does not move with loss in this range")
    o = res.obs
    main = res.forms[w.idxmax()].fitted
    if main.form != "flat":
        y, L = o["score"].to_numpy(float), o["L"].to_numpy(float)
        wt = 1.0 / (o["v"].to_numpy(float) + main.tau2)
        rss_c = float(np.sum(wt * (y - main.mean(L)) ** 2))
        rss_f = float(np.sum(wt * (y - np.sum(wt * y) / np.sum(wt)) ** 2))
        df = len(main.theta) - 1
        pv = float(stats.chi2.sf(max(rss_f - rss_c, 0.0), df))
        if pv > 0.01:
            return "no usable trend", (f"the {main.form} fits no better than a constant (chi2 = "
                                       f"{rss_f - rss_c:.3g} on {df} df, p = {pv:.2g}): no emergence in range")
    mean, var, _ = res.predict_moments(np.array([o["L"].max(), o["L"].min()]))
    rise = float(mean[1] - mean[0])
    sd = math.sqrt(float(np.mean(var)))
    if rise < 2 * sd:
        return "no usable trend", (f"the fitted score rises by {rise:.3g} over the fitted losses, less than twice "
                                   f"the scatter ({sd:.3g}): no emergence in range")
    return "follows the curve", f"the score rises by {rise:.3g} over the fitted losses (scatter {sd:.3g})"


def _weigh_recent(results: dict) -> None:
    """Weigh the forms on their record at the later half of the origins
    (the lower-loss cuts): the forecasts most like the one being made.  At
    the early cuts every model is still at the floor, where a constant
    predicts well and a curve cannot know where the rise begins; that
    record says little about a curve fitted through the rise (on Gadre et
    al.'s SQuAD the constant won on it, then missed the 1.4B models by 0.3)."""
    cuts = np.unique(np.concatenate([f.errors["origin"].to_numpy(float) for f in results.values()] or [[]]))
    if len(cuts) >= 4:
        keep = cuts[cuts <= np.median(cuts)]
        recent = {k: FormResult(f.fitted, f.calibration, f.errors[f.errors["origin"].isin(keep)])
                  for k, f in results.items()}
        weigh(recent, _PRIOR_WEIGHT)
        for k, f in results.items():
            f.weight, f.elpd = recent[k].weight, recent[k].elpd
    else:
        weigh(results, _PRIOR_WEIGHT)


def fit_loss_forecast(obs: pd.DataFrame, *, forms=DEFAULT_CURVES, level: float = 0.05, prior: dict | None = None,
                      x_name: str = "loss", max_origins: int = 10) -> LossForecastResults:
    """Fit, forward-chain, weigh and calibrate the curves on one task's
    observations (:func:`observe_loss`)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    prior = PRIOR if prior is None else prior
    results, failed = fit_and_chain(forms, CURVE_FORMS, lambda name: _fit(obs, name),
                                    lambda name: forward_chain_loss(obs, name, max_origins=max_origins), prior)
    _weigh_recent(results)
    errors = mixture_errors(results)
    out = LossForecastResults(obs=obs, forms=results, failed=failed, level=level, x_name=x_name,
                              calibration=calibrate(errors, prior, "mixture"), errors=errors)
    if out.calibration.n_errors < 3:
        out.notes.append(f"too few models to calibrate the extrapolation error on this ladder "
                         f"({out.calibration.n_errors} forward-chaining errors): the interval leans on the prior "
                         f"measured on real ladders (kappa0 = {out.calibration.kappa0:.3g} per fitted range of log loss)")
    for f in results.values():
        out.notes.extend(n for n in f.fitted.notes if n not in out.notes)
    out.verdict, out.verdict_reason = _judge(out)
    return out


def backtest_loss_obs(obs: pd.DataFrame, *, split=None, level: float = 0.05, x_name: str = "loss",
                      forms=DEFAULT_CURVES, prior=None, max_origins: int = 10) -> tuple[pd.DataFrame, object]:
    """Fit on the train models, predict the holdout ones from their loss
    (``split``: "train"/"holdout" per row of ``obs``), or forward-chain in
    loss when ``split`` is None.  Returns (rows, the fit on the training
    models / on all)."""
    def rows_for(train, test, origin):
        res = fit_loss_forecast(train, forms=forms, level=level, prior=prior, x_name=x_name,
                                max_origins=max_origins)
        pred = res.predict(test["L"].to_numpy(), n_items=test["n_items"].to_numpy(float))
        warn = res.warnings_for(test["L"].to_numpy())
        out = []
        for j in range(len(test)):
            t, p = test.iloc[j], pred.iloc[j]
            out.append(dict(origin=origin, model=t["model"], x=float(t["L"]), d=float(p["d"]),
                            observed=float(t["score"]), predicted=float(p["predicted"]), lower=float(p["lower"]),
                            upper=float(p["upper"]), covered=bool(p["lower"] <= t["score"] <= p["upper"]),
                            score=float(interval_score(p["lower"], p["upper"], t["score"], level)),
                            verdict=res.verdict, warnings=warn[j]))
        return out, res

    if split is not None:
        split = np.asarray(split, dtype=object)
        train = obs[split == "train"].reset_index(drop=True)
        test = obs[split == "holdout"].reset_index(drop=True)
        if test.empty:
            raise ValueError("the split column marks no model 'holdout'")
        rows, final = rows_for(train, test, float(train["L"].min()))
        return pd.DataFrame(rows), final
    rows = []
    for cut in loss_origins(obs, "sigmoid_chance", max_origins):
        train, test = obs[obs["L"] >= cut].reset_index(drop=True), obs[obs["L"] < cut].reset_index(drop=True)
        try:
            rows.extend(rows_for(train, test, float(cut))[0])
        except ValueError:
            continue
    return pd.DataFrame(rows), fit_loss_forecast(obs, forms=forms, level=level, prior=prior, x_name=x_name,
                                                 max_origins=max_origins)



def _task_rows(df: pd.DataFrame, task: str, chance, y: str | None) -> tuple[pd.DataFrame, float, list[str]]:
    from .ladder import chance_for

    g = df[df["task"] == task] if "task" in df.columns else df
    notes = []
    if y is not None:
        if y not in g.columns:
            raise ValueError(f"--y {y}: no such column; columns: {sorted(map(str, g.columns))}")
        g = g.assign(score=pd.to_numeric(g[y], errors="coerce"))
    if "score" not in g.columns:
        raise ValueError("a loss -> accuracy forecast needs scores (a score column or --y COLUMN)")
    if "metric" in g.columns and g["metric"].nunique() > 1:
        raise ValueError(f"task {task!r} has several metrics {sorted(g['metric'].unique())}: pass --metric")
    tab = g["chance"].dropna().iloc[0] if "chance" in g.columns and g["chance"].notna().any() else None
    ch, src = chance_for(task, tab, chance)
    if src not in ("given", "table"):
        notes.append(f"chance floor {ch:g}: {src}")
    return g.assign(chance=ch), ch, notes


def _split_of(df: pd.DataFrame):
    if "split" not in df.columns or not df["split"].notna().any():
        return None
    split = df.groupby("model")["split"].agg(lambda s: s.dropna().iloc[0] if s.notna().any() else "train")
    bad = sorted(set(split) - {"train", "holdout", "predict"})
    if bad:
        raise ValueError(f"column split: values must be 'train', 'holdout' or 'predict', got {bad}")
    return split


def _entry(task_rows: pd.DataFrame, final, notes: list[str], x_name: str, law: str) -> dict:
    entry = {"x": x_name, "law": law, "verdict": None if final is None else final.verdict,
             "warnings": list(notes) + ([] if final is None else list(final.notes)), "coverage": None,
             "predictions": []}
    if final is not None and not final.extrapolate:
        entry["warnings"].append(f"{final.verdict}: {final.verdict_reason}")
    if len(task_rows):
        scored = task_rows["observed"].notna()
        entry["coverage"] = float(task_rows.loc[scored, "covered"].astype(bool).mean()) if scored.any() else None
        seen = set()
        for r in task_rows.to_dict(orient="records"):
            p = {k: (None if isinstance(r[k], float) and not np.isfinite(r[k]) else r[k])
                 for k in ("model", "x", "observed", "predicted", "lower", "upper", "covered")}
            for k in ("loss_observed", "loss_pred", "loss_lower", "loss_upper"):
                if k in r:
                    p[k] = r[k]
            entry["predictions"].append(p)
            for w in r.get("warnings", []):
                key = (r["model"], w.split(" ")[0])
                if key not in seen:
                    seen.add(key)
                    entry["warnings"].append(f"{r['model']}: {w}")
    return entry


def _chain_rows(law, final, test: pd.DataFrame, x_name: str, level: float) -> pd.DataFrame:
    """Held-out models predicted through the chain, scored against their
    observed score (and loss)."""
    from .losslaw import chain_predict

    if test.empty:
        return pd.DataFrame()
    pred = chain_predict(law, final, test, n_items=test["n_items"].to_numpy(float))
    rows = []
    for j in range(len(test)):
        t, p = test.iloc[j], pred.iloc[j]
        rows.append(dict(origin=float(final.L_min), model=t["model"], x=float(t[x_name]),
                         observed=float(t["score"]), predicted=float(p["predicted"]),
                         lower=float(p["lower"]), upper=float(p["upper"]),
                         covered=bool(p["lower"] <= t["score"] <= p["upper"]),
                         score=float(interval_score(p["lower"], p["upper"], t["score"], level)),
                         loss_observed=float(t["L"]), loss_pred=float(p["loss_pred"]),
                         loss_lower=float(p["loss_lower"]), loss_upper=float(p["loss_upper"]),
                         loss_covered=bool(p["loss_lower"] <= t["L"] <= p["loss_upper"]),
                         verdict=final.verdict, warnings=final.warnings_for([p["loss_pred"]])[0]))
    return pd.DataFrame(rows)


def _forecast_rows(final, law, gp: pd.DataFrame, loss_col: str, x_name: str) -> pd.DataFrame:
    """Models marked ``split = predict``: forecast, nothing to score (their
    score may be missing; through the chain their loss may be missing too)."""
    from .losslaw import chain_predict

    n = gp["n_items"].to_numpy(float) if "n_items" in gp.columns else None
    if law is not None:
        for c in law.columns:
            bad = gp.loc[~(pd.to_numeric(gp[c], errors="coerce") > 0), "model"].tolist() if c in gp.columns \
                else gp["model"].tolist()
            if bad:
                raise ValueError(f"models to predict need {c!r} (> 0) for the loss law: {bad[:5]}")
        pred = chain_predict(law, final, gp, n_items=n)
        at = pred["loss_pred"].to_numpy()
    else:
        L = pd.to_numeric(gp[loss_col], errors="coerce").to_numpy(float)
        bad = gp.loc[~(L > 0), "model"].tolist()
        if bad:
            raise ValueError(f"models to predict from their loss need {loss_col!r} (> 0), or use --via: {bad[:5]}")
        pred = final.predict(L, n_items=n)
        at = L
    warn = final.warnings_for(at)
    out = pd.DataFrame({"origin": final.L_min, "model": gp["model"].to_numpy(),
                        "x": pd.to_numeric(gp[x_name], errors="coerce").to_numpy(float),
                        "observed": np.nan, "predicted": pred["predicted"].to_numpy(),
                        "lower": pred["lower"].to_numpy(), "upper": pred["upper"].to_numpy(), "covered": None,
                        "score": np.nan, "verdict": final.verdict, "warnings": warn})
    if law is not None:
        for c in ("loss_pred", "loss_lower", "loss_upper"):
            out[c] = pred[c].to_numpy()
    return out


def backtest_loss_table(df: pd.DataFrame, *, x_name: str = "loss", via: str | None = None, tasks=None,
                        chance=None, y: str | None = None, level: float = 0.05, max_origins: int = 10,
                        prior=None, loss_prior=None) -> tuple[dict, dict]:
    """Backtest every task of a tidy table on the loss axis.

    ``via=None``: ``x_name`` is the loss column; the score of each holdout
    model (``split``) is predicted from its observed loss (no split: forward
    chaining in loss).  ``via=LOSS``: the two-step chain: ``x_name`` is the
    scale (N, compute, tokens); the loss law is fitted on the train models
    and the score of each holdout model is predicted from its scale alone,
    both steps' uncertainty in one interval (:func:`.losslaw.chain_predict`);
    needs ``split``.  Models with ``split = predict`` are forecast and not
    scored (their score, and through the chain their loss, may be missing):
    a model's accuracy before it is trained.  Same report as
    :func:`.backtest.backtest_table`."""
    from .losslaw import calibrated_loss_law

    loss_col = via or x_name
    if loss_col not in df.columns:
        raise ValueError(f"no loss column {loss_col!r} in the table; columns: {sorted(map(str, df.columns))}")
    if "task" not in df.columns:
        df = df.assign(task="task")
    all_tasks = sorted(df["task"].unique())
    if tasks:
        missing = [t for t in tasks if t not in all_tasks]
        if missing:
            raise ValueError(f"task(s) {missing} not found; available: {all_tasks}")
        all_tasks = list(tasks)
    split = _split_of(df)
    if via is not None and split is None:
        raise ValueError("--via needs a split column (train / holdout / predict): the loss law is fitted on the "
                         "train models and the holdout (or predict) models are predicted from their scale")
    law_name = f"{x_name} -> {via} -> score" if via else f"score from {x_name}"
    to_predict = set() if split is None else set(split.index[split == "predict"])
    report, details = {"tasks": {}}, {}
    laws = {}
    for task in all_tasks:
        try:
            g, ch, notes = _task_rows(df, task, chance, y)
            gp = g[g["model"].isin(to_predict)].groupby("model", sort=False).first().reset_index()
            g = g[~g["model"].isin(to_predict)]
            obs = observe_loss(g.assign(loss_=g[loss_col]), x="loss_", chance=ch)
            if via is not None:
                sx = g.groupby("model").first()
                for c in ("N", "tokens", x_name, "run"):
                    if c in sx.columns and c not in obs.columns:
                        obs[c] = obs["model"].map(sx[c])
            sp = None if split is None else obs["model"].map(split).fillna("train").to_numpy()
            if sp is not None and not (sp == "holdout").any() and gp.empty:
                raise ValueError("the split column marks no model of this task 'holdout' (or 'predict')")
            if via is None and (sp is None or (sp == "holdout").any()):
                rows, final = backtest_loss_obs(obs, split=sp, level=level, x_name=x_name, prior=prior,
                                                max_origins=max_origins)
            else:
                train = obs[sp == "train"].reset_index(drop=True)
                final = fit_loss_forecast(train, level=level, prior=prior, x_name=loss_col, max_origins=max_origins)
                rows = pd.DataFrame()
            law = None
            if via is not None:
                train = obs[sp == "train"].reset_index(drop=True)
                key = tuple(zip(train["model"], train["L"]))
                if key not in laws:
                    laws[key] = calibrated_loss_law(train.rename(columns={"L": "loss"}), x=x_name, prior=loss_prior)
                law = laws[key]
                final.notes.append(law.summary())
                rows = _chain_rows(law, final, obs[sp == "holdout"].reset_index(drop=True), x_name, level)
            if len(gp):
                rows = pd.concat([rows, _forecast_rows(final, law, gp, loss_col, x_name)], ignore_index=True)
        except ValueError as exc:
            report["tasks"][task] = {"x": x_name, "law": law_name, "verdict": "no usable trend",
                                     "warnings": [f"not forecast: {exc}"], "coverage": None, "predictions": []}
            details[task] = {"rows": pd.DataFrame(), "final": None, "obs": None}
            continue
        report["tasks"][task] = _entry(rows, final, notes, x_name, law_name)
        details[task] = {"rows": rows, "final": final, "obs": obs}
    return report, details
