"""Plots of fitted task scaling laws (matplotlib, written to files; no display)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def task_means(df: pd.DataFrame) -> pd.DataFrame:
    """Per size: the task PU (mean of per-instance c/n) and its sampling
    standard error, as the fit sees them (:func:`analysis.tasklaw.law.task_pu_by_size`)."""
    from .law import task_pu_by_size

    s = task_pu_by_size(df)
    return s.assign(se=np.sqrt(s["var"]))[["N", "pu", "se", "m"]]


def plot_task_law(df: pd.DataFrame, fit, path: str | Path, *, holdout: pd.DataFrame | None = None,
                  predict_n=(), title: str = "", alternatives: dict | None = None) -> Path:
    """Observed task PU per size (mean over instances, 95% error bars), the
    fitted law, its prediction band, and held-out sizes marked.

    ``alternatives``: label -> callable ``N -> PU`` (e.g. the two-circuit
    fit's ``predict``), drawn as dashed curves for comparison."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    obs = task_means(df)
    sizes = list(obs["N"]) + list(holdout["N"].unique() if holdout is not None else []) + list(predict_n)
    grid = np.exp(np.linspace(np.log(min(sizes)) - 0.2, np.log(max(sizes)) + 0.2, 200))
    pred = fit.predict(grid)
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    # The y-axis reaches down to the smallest observed or fitted PU at the
    # observed sizes, not to the band's lower edge (which can be ~1e-12 at a
    # censored size and would squash everything else); the band is clipped.
    at_sizes = fit.predict(obs["N"].to_numpy(), interval=False)["pu"]
    floor = max(1e-12, 0.3 * min([v for v in list(obs["pu"]) + list(at_sizes) if v > 0] or [1e-6]))
    ax.fill_between(grid, np.maximum(pred["lower"], floor), np.maximum(pred["upper"], floor), color="C0",
                    alpha=0.18, label="95% prediction band")
    ax.plot(grid, np.maximum(pred["pu"], floor), color="C0", label="fitted law  PU = exp(-c N^-α)")
    for i, (label, curve) in enumerate((alternatives or {}).items()):
        ax.plot(grid, np.maximum(curve(grid), floor), "--", color=f"C{4 + i}", label=label)
    pos = obs["pu"] > 0
    ax.errorbar(obs["N"][pos], obs["pu"][pos], yerr=1.96 * obs["se"][pos].fillna(0), fmt="o", color="k",
                capsize=3, label="observed (mean over instances)")
    if (~pos).any():
        ax.plot(obs["N"][~pos], [floor] * int((~pos).sum()), "v", color="k", label="no pass observed")
    if holdout is not None and len(holdout):
        h = task_means(holdout)
        ax.errorbar(h["N"], np.maximum(h["pu"], floor), yerr=1.96 * h["se"].fillna(0), fmt="D", color="C3",
                    capsize=3, label="held out (not fitted)")
    if len(predict_n):
        p = fit.predict(np.asarray(predict_n, dtype=float))
        ax.errorbar(p["N"], np.maximum(p["pu"], floor),
                    yerr=[np.maximum(p["pu"] - p["lower"], 0), np.maximum(p["upper"] - p["pu"], 0)],
                    fmt="*", color="C2", markersize=11, capsize=3, label="prediction")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("PassUntil PU")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
