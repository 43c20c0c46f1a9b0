"""The backtest picture: the ladder, the forecast band, and each held-out
model against its interval."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def plot_backtest(obs: pd.DataFrame, rows: pd.DataFrame, final, path, *, title: str = "",
                  x_name: str = "x") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .observations import observed_value

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    val = observed_value(obs)
    cens = obs["censored"].to_numpy()
    held = set(rows["model"]) if len(rows) else set()
    train = ~obs["model"].isin(held).to_numpy() if "origin" in rows and rows["origin"].nunique() == 1 else \
        np.ones(len(obs), bool)
    ax.scatter(obs["x"][~cens & train], val[~cens & train], color="k", s=18, zorder=3, label="models (fitted)")
    if cens.any():
        ax.scatter(obs["x"][cens], val[cens], facecolors="none", edgecolors="grey", s=22, zorder=3,
                   label="censored (bound only)")
    if final is not None:
        lo = float(obs["x"].min())
        hi = float(max(obs["x"].max(), rows["x"].max() if len(rows) else 0)) * 4
        xs = np.exp(np.linspace(np.log(lo), np.log(hi), 120))
        p = final.predict(xs)
        ax.plot(xs, p["predicted"], color="tab:green", lw=1.5, label="forecast (fit on the training models)")
        ax.fill_between(xs, p["lower"], p["upper"], color="tab:green", alpha=0.15,
                        label=f"{100 * (1 - final.level):.0f}% interval for a new model")
    if len(rows):
        last = rows if rows["origin"].nunique() == 1 else rows[rows["origin"] == rows["origin"].max()]
        for cov, color, lab in ((True, "tab:blue", "held out: inside"), (False, "tab:red", "held out: outside")):
            r = last[last["covered"] == cov]
            if len(r):
                ax.errorbar(r["x"], r["predicted"], yerr=[r["predicted"] - r["lower"], r["upper"] - r["predicted"]],
                            fmt="none", ecolor=color, alpha=0.5, capsize=3)
                ax.scatter(r["x"], r["observed"], color=color, marker="D", s=28, zorder=4, label=lab)
    ax.set_xscale("log")
    ax.set_xlabel(x_name)
    ax.set_ylabel("task PU" if obs["kind"].iloc[0] == "counts" else "score")
    if obs["kind"].iloc[0] == "counts" and np.all(val[~cens] > 0):
        ax.set_yscale("log")
    ax.set_ylim(top=min(1.0, ax.get_ylim()[1]) if obs["kind"].iloc[0] == "scores" else None)
    verdict = final.verdict.label if final is not None else "not forecast"
    ax.set_title(f"{title}  [{verdict}]", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", framealpha=0.8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
