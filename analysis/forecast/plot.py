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


def plot_loss_backtest(final, rows: pd.DataFrame, path, *, title: str = "") -> Path:
    """Score against loss: the fitted models, the weighted curve with its 95%
    band (extended to the held-out losses), and each held-out model against
    its interval (at its observed loss, or the predicted one for the chain)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    obs = final.obs
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    ax.scatter(obs["L"], obs["score"], color="k", s=18, zorder=3, label="models (fitted)")
    lo_L = float(min(obs["L"].min(), rows["x"].min() if len(rows) and "loss_pred" not in rows else obs["L"].min(),
                     rows["loss_pred"].min() if "loss_pred" in rows else np.inf))
    grid = np.linspace(lo_L, float(obs["L"].max()), 200)
    pred = final.predict(grid)
    ax.plot(grid, pred["predicted"], color="C0", label="curve (weighted forms)")
    ax.fill_between(grid, pred["lower"], pred["upper"], color="C0", alpha=0.15, label="95% interval")
    if len(rows):
        at = rows["loss_pred"] if "loss_pred" in rows else rows["x"]
        ok = rows["covered"].to_numpy(bool)
        ax.errorbar(at, rows["predicted"], yerr=[rows["predicted"] - rows["lower"], rows["upper"] - rows["predicted"]],
                    fmt="none", ecolor="C1", alpha=0.6)
        ax.scatter(at[ok], rows["observed"][ok], color="C2", marker="D", s=26, zorder=4, label="held out (inside)")
        ax.scatter(at[~ok], rows["observed"][~ok], color="C3", marker="X", s=40, zorder=4, label="held out (outside)")
    ax.axvline(float(obs["L"].min()), color="grey", ls=":", lw=1)
    ax.invert_xaxis()
    ax.set_xlabel(f"{final.x_name} (lower is a stronger model)")
    ax.set_ylabel("score")
    ax.set_title(f"{title}  [{final.verdict}]")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
