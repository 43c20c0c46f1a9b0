"""Plot of a fitted emergence law (matplotlib, written to a file; no display).

:func:`emergence_figure` returns the Figure; :func:`plot_emergence` saves it.
A performance measured in [0, 1] (accuracy) stays inside [0, 1]: bands are
cut there for display and the y axis keeps within it; the legend sits to
the right of the axes, outside the data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def plot_emergence(table: pd.DataFrame, fit, path: str | Path, *, fewshot=None, backtest=None,
                   title: str = "") -> Path:
    """Write :func:`emergence_figure` to ``path`` and return the path."""
    from ..forecast.plot import _save

    return _save(emergence_figure(table, fit, fewshot=fewshot, backtest=backtest, title=title), path)


def emergence_figure(table: pd.DataFrame, fit, *, fewshot=None, backtest=None, title: str = ""):
    """Performance against pretraining loss (x axis reversed: stronger
    checkpoints to the right): the observed rows per D (finetuned, coloured;
    few-shot, black), the fitted curve per D, the law extrapolated to the
    few-shot limit D0 (dashed, with its 95% bootstrap band) and E(D0) with its
    interval; the observed few-shot curve when ``fewshot`` is given; the
    backtest's cutoff when ``backtest`` is given.  Without emergence in range
    (the fit's verdict) there is no E(D0) to mark: the verdict goes in the
    legend instead.  The axis runs past the data, so the curves are drawn
    without the fit's extrapolation warnings (the reports carry those)."""
    from ..forecast.plot import _plt, bounded_ylim, cut_note, legend_outside

    plt = _plt()
    perf_all = table["perf"].to_numpy(float)
    unit = bool(np.all((perf_all >= 0) & (perf_all <= 1)))  # accuracy-like: bounded in [0, 1]
    show = (lambda v: np.clip(np.asarray(v, float), 0.0, 1.0)) if unit else (lambda v: np.asarray(v, float))
    Ls = table["L"].to_numpy(float)
    lo, hi = float(Ls.min()), float(Ls.max())
    marks = [lo, hi]
    fs = fit.few_shot if fit.kind == "law" else None
    if fs is not None and np.isfinite(fs["E"]):
        marks += [float(fs["E"])]
    span = max(max(marks) - min(marks), 0.1)
    grid = np.linspace(min(marks) - 0.1 * span, max(marks) + 0.05 * span, 300)
    fig, ax = plt.subplots(figsize=(9.2, 4.6), dpi=120, layout="constrained")
    Ds = sorted(d for d in table["D"].unique() if d > 0)
    cmap = plt.get_cmap("viridis")
    for i, D in enumerate(Ds):
        col = cmap(0.1 + 0.8 * i / max(len(Ds) - 1, 1))
        rows = table[table["D"] == D]
        ax.plot(rows["L"], rows["perf"], "o", color=col, ms=4, alpha=0.8, zorder=4)
        if fit.kind == "law":
            pred = fit._predict(grid, D=D, interval=False)
            ax.plot(grid, show(pred["perf"]), "-", color=col, lw=1.4, label=f"D = {D:g}")
    if Ds:
        ax.plot([], [], "o-", color="0.55", ms=4, lw=1.4,
                label="finetuned on D examples: dots observed" + (", lines the law" if fit.kind == "law" else ""))
    few = table[table["D"] == 0]
    if len(few):
        ax.plot(few["L"], few["perf"], "s", color="k", ms=4, zorder=5, label="few-shot (D = 0), observed")
    if fewshot is not None:
        fp = fewshot._predict(grid, interval=False)
        ax.plot(grid, show(fp["perf"]), ":", color="k", lw=1.2, label="few-shot, fitted curve")
    if fs is not None:
        pred = fit._predict(grid, D=fit.d0, interval=True)
        ax.plot(grid, show(pred["perf"]), "--", color="C3", lw=1.6, label=f"law at D0 = {fit.d0:g} (extrapolated)")
        if "lower" in pred:
            note = cut_note(pred["lower"], pred["upper"]) if unit else ""
            ax.fill_between(grid, show(pred["lower"]), show(pred["upper"]), color="C3", alpha=0.12, lw=0,
                            label=f"law at D0: 95% band{note}")
        if np.isfinite(fs["E"]):
            ax.axvline(fs["E"], color="C3", lw=1.0)
        else:
            ax.plot([], [], " ", label=f"E(D0): none ({fit.verdict})")
        if np.isfinite(fs.get("lower", np.nan)):
            ax.axvspan(max(fs["lower"], grid.min()), min(fs["upper"], grid.max()), color="C3", alpha=0.10,
                       label=f"E(D0) = {fs['E']:.3f} [{fs['lower']:.3f}, {fs['upper']:.3f}]")
    if backtest is not None and np.isfinite(backtest.cutoff):
        ax.axvline(backtest.cutoff, color="0.4", lw=1.0, ls="-.", label=f"backtest cutoff L = {backtest.cutoff:.3f}")
    ax.set_xlim(grid.max(), grid.min())  # stronger checkpoints (lower loss) to the right
    ax.set_xlabel("pretraining loss L of the base checkpoint (nats)")
    ax.set_ylabel("performance")
    ax.set_title(title)
    if unit:
        bounded_ylim(ax)
    ax.grid(True, alpha=0.25)
    legend_outside(ax)
    return fig
