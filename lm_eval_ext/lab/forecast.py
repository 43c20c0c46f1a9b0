"""The lab's measurements and forecast: each task's counts, every model's
PU, and the forecast of one task from the forecasting core.  Shared by the
pipeline (which writes the prediction and the outcome) and the report (which
draws them)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def task_counts(df: pd.DataFrame, task: str) -> pd.DataFrame:
    """Counts of ``task``, one row per (model, instance): model, N, instance,
    n, c.  Every seed is its own model (the forecast's between-model scatter
    is what seeds differ by); a size's task PU is the mean over its seeds."""
    d = df[df["task"] == task]
    if d.empty:
        raise ValueError(f"no counts for task {task!r}")
    return d[["model", "N", "instance", "n", "c", "pu"]].reset_index(drop=True)


def per_model_pu(df: pd.DataFrame) -> pd.DataFrame:
    """Task PU of every model (the mean over instances of each instance's PU as
    the engine reported it, analysis.ingest.instance_pu): model, task, N, seed,
    size, value."""
    from analysis.ingest import instance_pu

    d = df.assign(p=instance_pu(df))
    cols = [c for c in ("size",) if c in d.columns]
    return (d.groupby(["model", "task", "N", "seed", *cols], as_index=False)
            .agg(value=("p", "mean"), n=("n", "sum"), c=("c", "sum"), instances=("p", "size")))


def task_observations(train: pd.DataFrame) -> pd.DataFrame:
    """Per-model observations of one task (analysis.forecast.observe)."""
    from analysis.forecast import observe

    return observe(train.assign(x=train["N"].astype(float))[["model", "x", "instance", "n", "c", "pu"]])


def fit_and_predict(train: pd.DataFrame, n_target: float, budget: float | None = None):
    """(forecast, prediction row) for one task, from the forecasting core
    (analysis.forecast.fit_forecast: the law, a local line and a constant
    weighted by their forward-chaining record, the interval calibrated on the
    ladder with the prior measured on real ladders).  The interval is for
    one new model with ``budget`` samples (default: what the largest trained
    models drew)."""
    from analysis.forecast import fit_forecast

    obs = task_observations(train)
    fit = fit_forecast(obs, x_name="N")
    if budget is None:
        top = obs[np.isclose(obs["x"], obs["x"].max())]
        budget = float(top["budget"].mean())
    pframe = fit.predict([n_target], budget=budget)
    pred = pframe.iloc[0]
    warn = fit.warnings_for([n_target], budget=budget, pred=pframe)[0]
    return fit, {"N": float(n_target), "pu": float(pred["predicted"]), "lower": float(pred["lower"]),
                 "upper": float(pred["upper"]), "budget": budget, "verdict": fit.verdict.label,
                 "warnings": warn}
