"""The tool's own track record on a ladder: fit the small, predict the large.

Two designs, both honest (nothing about a predicted model is used to
predict it, its calibration included):

- **split**: the table says which models are ``train`` and ``holdout``
  (column ``split``); fit on train, predict holdout.
- **forward chaining**: for every origin (a distinct x from the third
  resolved size on), fit on the models up to it, predict every larger one.

Each prediction is scored by coverage (is the observed value inside the
interval?) and by the interval score of Gneiting and Raftery (2007) on
``y = log(-log p)``: ``(u - l) + (2/a)(l - y)+ + (2/a)(y - u)+`` at level
``a`` (40 x the miss at the 95% level), which rewards narrow intervals and
punishes misses in proportion to their size.

The same predictions are made by a simple honest baseline (for comparison,
as the acceptance of the forecasting core asks): the plain least-squares
law on y, with 95% half-width ``1.96 s d + 0.05``, ``d`` the distance in
log x beyond the largest training model and ``s`` the RMS of that
baseline's own forward-chaining errors per unit of ``d`` on the training
models (0.5 where the training models are too few to chain).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from .calibration import origins
from .forecaster import fit_forecast
from .observations import observed_value, p_from_y, to_scale, y_from_p

__all__ = ["interval_score", "baseline_predict", "backtest_obs", "summarize"]

_BASELINE_S_DEFAULT = 0.5


def interval_score(lower, upper, y, alpha: float = 0.05) -> np.ndarray:
    lower, upper, y = (np.asarray(v, float) for v in (lower, upper, y))
    return (upper - lower) + (2 / alpha) * np.maximum(lower - y, 0) + (2 / alpha) * np.maximum(y - upper, 0)


def _ls(lx, y):
    X = np.column_stack([np.ones_like(lx), lx])
    return np.linalg.lstsq(X, y, rcond=None)[0]


def baseline_predict(train: pd.DataFrame, log_x) -> tuple[np.ndarray, np.ndarray]:
    """(mean y, half-width) of the plain least-squares law (see the module docstring)."""
    res = train[~train["censored"] & ~train["saturated"]]
    lx, y = res["log_x"].to_numpy(), res["y"].to_numpy()
    beta = _ls(lx, y)
    xs = np.unique(lx)
    errs = []
    for cut in xs[1:-1]:  # fit on >= 2 sizes, predict the larger ones
        m = lx <= cut
        if len(np.unique(lx[m])) < 2:
            continue
        b = _ls(lx[m], y[m])
        d = lx[~m] - cut
        e = y[~m] - (b[0] + b[1] * lx[~m])
        errs.extend((e[d > 0] / d[d > 0]).tolist())
    s = math.sqrt(float(np.mean(np.square(errs)))) if errs else _BASELINE_S_DEFAULT
    log_x = np.asarray(log_x, float)
    d = np.maximum(log_x - lx.max(), 0.0)
    return beta[0] + beta[1] * log_x, 1.96 * s * d + 0.05


def _predict_rows(train: pd.DataFrame, test: pd.DataFrame, *, level: float, origin, x_name: str,
                  forms=None, prior=None) -> tuple[list[dict], object]:
    """One fit on ``train``, its predictions of ``test`` scored, and the fit."""
    kw = {"prior": prior}
    if forms is not None:
        kw["forms"] = forms
    res = fit_forecast(train, level=level, x_name=x_name, **kw)
    budgets = test["budget"].to_numpy(float)
    pred = res.predict(test["x"].to_numpy(), budget=budgets)
    warn = res.warnings_for(test["x"].to_numpy(), budget=budgets, pred=pred)
    bmu, bhw = baseline_predict(train, test["log_x"].to_numpy())
    obs_val = observed_value(test)
    y_obs = y_from_p(np.clip(test["p"].to_numpy(float), 0.0, 1.0))
    rows = []
    for j in range(len(test)):
        t = test.iloc[j]
        pr = pred.iloc[j]
        ok_y = math.isfinite(y_obs[j])
        b_lo, b_hi = bmu[j] - bhw[j], bmu[j] + bhw[j]
        rows.append(dict(
            origin=origin, model=t["model"], x=float(t["x"]), d=float(pr["d"]),
            observed=float(obs_val[j]), predicted=float(pr["predicted"]),
            lower=float(pr["lower"]), upper=float(pr["upper"]),
            covered=bool(pr["lower"] <= obs_val[j] <= pr["upper"]),
            y=float(y_obs[j]), y_pred=float(pr["y"]), y_lower=float(pr["y_lower"]), y_upper=float(pr["y_upper"]),
            score=float(interval_score(pr["y_lower"], pr["y_upper"], y_obs[j], level)) if ok_y else float("nan"),
            base_y=float(bmu[j]), base_lower=float(b_lo), base_upper=float(b_hi),
            base_covered=bool(b_lo <= y_obs[j] <= b_hi) if ok_y else bool(obs_val[j] <= float(to_scale(p_from_y(b_lo), test))),
            base_score=float(interval_score(b_lo, b_hi, y_obs[j], level)) if ok_y else float("nan"),
            base_predicted=float(to_scale(p_from_y(bmu[j]), test)),
            verdict=res.verdict.label, warnings=warn[j],
        ))
    return rows, res


def backtest_obs(obs: pd.DataFrame, *, split=None, level: float = 0.05, x_name: str = "x",
                 max_origins: int = 12, forms=None, prior=None) -> tuple[pd.DataFrame, object]:
    """Backtest one task's observations; returns (rows, the fit on all
    training models).  ``split``: a Series/array of "train"/"holdout" per
    row of ``obs`` (None: forward chaining)."""
    rows = []
    if split is not None:
        split = np.asarray(split, dtype=object)
        train, test = obs[split == "train"], obs[split == "holdout"]
        if test.empty:
            raise ValueError("the split column marks no model 'holdout'")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows, final = _predict_rows(train.reset_index(drop=True), test.reset_index(drop=True), level=level,
                                        origin=float(train["x"].max()), x_name=x_name, forms=forms, prior=prior)
        return pd.DataFrame(rows), final
    # the cuts where the law can first be fitted (3 resolved sizes), as in calibration
    for cut in origins(obs, "law", max_origins):
        train = obs[obs["log_x"] <= cut].reset_index(drop=True)
        test = obs[(obs["log_x"] > cut) & ~obs["saturated"]].reset_index(drop=True)
        if test.empty:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                rows.extend(_predict_rows(train, test, level=level, origin=float(math.exp(cut)), x_name=x_name,
                                          forms=forms, prior=prior)[0])
            except ValueError:
                continue
    final = fit_forecast(obs, level=level, x_name=x_name, prior=prior, **({} if forms is None else {"forms": forms}))
    return pd.DataFrame(rows), final


def summarize(rows: pd.DataFrame) -> dict:
    """Coverage, mean interval scores (ours and the baseline's) and point
    errors over backtest rows with a finite observed y."""
    r = rows[np.isfinite(rows["y"])] if len(rows) else rows
    if r.empty:
        return {"n": 0}
    return {
        "n": int(len(r)),
        "coverage": float(r["covered"].mean()),
        "base_coverage": float(r["base_covered"].mean()),
        "score": float(r["score"].mean()),
        "base_score": float(r["base_score"].mean()),
        "mae_y": float(np.mean(np.abs(r["y_pred"] - r["y"]))),
        "base_mae_y": float(np.mean(np.abs(r["base_y"] - r["y"]))),
        "median_width_y": float(np.median(r["y_upper"] - r["y_lower"])),
        "base_median_width_y": float(np.median(r["base_upper"] - r["base_lower"])),
    }


#: ``--law`` names -> the forms the forecast averages
LAWS = {
    "auto": None,  # the default mixture (forecaster.DEFAULT_FORMS)
    "passuntil": ("law",),
    "local": ("local",),
    "quadratic": ("quadratic",),
    "flat": ("flat",),
}


def _task_warnings(rows: pd.DataFrame, final, notes: list[str]) -> list[str]:
    out = list(notes) + ([] if final is None else list(final.notes))
    if final is not None and final.verdict is not None and not final.verdict.extrapolate:
        out.append(f"{final.verdict.label}: {final.verdict.reason}")
    seen = set()
    if len(rows):
        for model, ws in zip(rows["model"], rows["warnings"]):
            for w in ws:
                key = (model, w.split(" ")[0])
                if key not in seen:
                    seen.add(key)
                    out.append(f"{model}: {w}")
    return out


def backtest_table(df: pd.DataFrame, *, x_name: str = "N", law: str = "auto", tasks=None, chance=None,
                   y: str | None = None, level: float = 0.05, max_origins: int = 12, prior=None) -> tuple[dict, dict]:
    """Backtest every task of a tidy table that has the column ``x``.

    Returns ``(report, details)``: ``report`` is the JSON of ``python -m
    analysis backtest`` (``{"tasks": {TASK: {"x", "law", "verdict", "warnings",
    "coverage", "predictions": [...]}}}``) and ``details[task]`` holds the
    rows (with interval scores and the baseline), the final fit and the
    observations, for plots and benches.
    """
    from .ladder import task_observations

    if law not in LAWS:
        raise ValueError(f"unknown --law {law!r}; choose from {sorted(LAWS)}")
    forms = LAWS[law]
    all_tasks = sorted(df["task"].unique()) if "task" in df.columns else ["task"]
    if "task" not in df.columns:
        df = df.assign(task="task")
    if tasks:
        missing = [t for t in tasks if t not in all_tasks]
        if missing:
            raise ValueError(f"task(s) {missing} not found; available: {all_tasks}")
        all_tasks = list(tasks)
    split = None
    if "split" in df.columns and df["split"].notna().any():
        split = df.groupby("model")["split"].agg(lambda s: s.dropna().iloc[0] if s.notna().any() else "train")
        bad = sorted(set(split) - {"train", "holdout"})
        if "predict" in bad:
            raise ValueError("split = predict (a model to forecast, not to score) is read on the loss axis "
                             "(--x LOSS, or --via LOSS); with the scale law use python -m analysis scaling "
                             "--predict X")
        if bad:
            raise ValueError(f"column split: values must be 'train' or 'holdout', got {bad}")
    report, details = {"tasks": {}}, {}
    for task in all_tasks:
        obs, notes = task_observations(df, task, chance=chance, y=y)
        entry = {"x": x_name, "law": law, "verdict": None, "warnings": [], "coverage": None, "predictions": []}
        try:
            sp = None if split is None else obs["model"].map(split).fillna("train").to_numpy()
            if sp is not None and not (sp == "holdout").any():
                raise ValueError("the split column marks no model of this task 'holdout'")
            rows, final = backtest_obs(obs, split=sp, level=level, x_name=x_name, max_origins=max_origins,
                                       forms=forms, prior=prior)
        except ValueError as exc:
            entry["verdict"] = "no usable trend"
            entry["warnings"] = notes + [f"not forecast: {exc}"]
            report["tasks"][task] = entry
            details[task] = {"rows": pd.DataFrame(), "final": None, "obs": obs}
            continue
        entry["verdict"] = final.verdict.label
        entry["warnings"] = _task_warnings(rows, final, notes)
        if len(rows):
            entry["coverage"] = float(rows["covered"].mean())
            entry["predictions"] = [
                {"model": str(r.model), "x": float(r.x), "observed": float(r.observed),
                 "predicted": float(r.predicted), "lower": float(r.lower), "upper": float(r.upper),
                 "covered": bool(r.covered)}
                for r in rows.itertuples()]
        else:
            entry["warnings"].append("no model could be predicted: the ladder is too short to forward-chain "
                                     "(a law needs 3 sizes resolved from zero/chance before the first prediction)")
        report["tasks"][task] = entry
        details[task] = {"rows": rows, "final": final, "obs": obs}
    return report, details
