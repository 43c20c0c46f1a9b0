"""Plots of seed distributions (matplotlib, written to files; no display).

Top row: one panel per size (at most :data:`MAX_PANELS`, spread over the
range when there are more) with the histogram of the runs' values (as a
density), the size's two-component Gaussian mixture when one was fitted
(components dashed, their sum solid) and the success threshold.  Bottom row:
P(success) per size with its interval and the binomial GLM curve with its
band; the mean of successful runs and the overall mean per size with their
Student t intervals (on the logit scale for a bounded metric, so inside its
range).  When the threshold separates sizes rather than runs
(``res.sizes_not_runs``) the P(success) panel says so: its curve then
describes the gap between sizes, and a reader of the figure alone should
not take it for run-to-run success.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: At most this many per-size histogram panels.
MAX_PANELS = 8


def _panel_sizes(sizes: np.ndarray) -> np.ndarray:
    if len(sizes) <= MAX_PANELS:
        return sizes
    idx = np.unique(np.round(np.linspace(0, len(sizes) - 1, MAX_PANELS)).astype(int))
    return sizes[idx]


def _yerr(v, lo, hi):
    v, lo, hi = (np.asarray(a, float) for a in (v, lo, hi))
    ok = np.isfinite(lo) & np.isfinite(hi)
    return np.vstack([np.where(ok, np.maximum(v - lo, 0), 0), np.where(ok, np.maximum(hi - v, 0), 0)])


def plot_seed_distributions(res, path, *, title: str | None = None) -> Path:
    """Write the figure for a :class:`analysis.seeds.SeedDistributionResults`
    to ``path`` (PNG by its suffix) and return the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.gridspec import GridSpec

    path = Path(path)
    t = res.table
    runs = res.runs
    sizes = t["N"].to_numpy(float)
    shown = _panel_sizes(sizes)
    vals = runs["value"].to_numpy(float)
    span = float(np.ptp(vals)) or 1.0
    lo, hi = float(vals.min()) - 0.1 * span, float(vals.max()) + 0.1 * span
    grid = np.linspace(lo, hi, 400)
    bins = np.linspace(lo, hi, 21)

    ncol = max(len(shown), 2)
    fig = plt.figure(figsize=(max(8.0, 1.9 * ncol), 7.2), dpi=110)
    gs = GridSpec(2, ncol, figure=fig, height_ratios=[1.0, 1.15], hspace=0.45, wspace=0.35)
    for j, N in enumerate(shown):
        ax = fig.add_subplot(gs[0, j])
        x = runs.loc[runs["N"] == N, "value"].to_numpy(float)
        ax.hist(x, bins=bins, density=True, color="0.7", edgecolor="0.4", orientation="horizontal")
        mix = res.mixtures.get(float(N))
        if mix is not None:
            for k, comp in enumerate(mix.component_pdfs(grid)):
                ax.plot(comp, grid, "--", color=f"C{k}", lw=1)
            ax.plot(mix.pdf(grid), grid, color="k", lw=1.2)
        ax.axhline(res.threshold, color="C3", lw=1, ls=":")
        ax.set_ylim(lo, hi)
        ax.set_title(f"N={N:.3g}  ({len(x)} seeds)", fontsize=8)
        ax.tick_params(labelsize=7)
        if j == 0:
            ax.set_ylabel(res.value_name)
        else:
            ax.set_yticklabels([])

    half = ncol // 2
    ax_p = fig.add_subplot(gs[1, :half])
    ax_m = fig.add_subplot(gs[1, half:])
    ax_p.errorbar(sizes, t["p_success"], yerr=_yerr(t["p_success"], t["p_success_lower"], t["p_success_upper"]),
                  fmt="o", color="k", capsize=3, label=f"observed (Wilson {int(round(100 * (1 - res.level)))}%)")
    fit = res.psuccess_fit
    if fit is not None:
        g = np.exp(np.linspace(np.log(sizes.min()) - 0.3, np.log(sizes.max()) + 0.3, 200))
        pred = fit.predict(g)
        ax_p.fill_between(g, pred["lower"], pred["upper"], color="C0", alpha=0.18, label="interval")
        ax_p.plot(g, pred["p"], color="C0", label=f"logistic in log N ({fit.method})")
    ax_p.set_xscale("log")
    ax_p.set_ylim(-0.03, 1.03)
    ax_p.set_xlabel("parameters N")
    ax_p.set_ylabel(f"P({res.value_name} >= {res.threshold:.3g})")
    ax_p.grid(True, which="both", alpha=0.25)
    ax_p.legend(fontsize=7, loc="best")
    if getattr(res, "sizes_not_runs", None):
        # a title, not a box in the axes: the panel can be narrow, and the
        # warning must not hide the points it is about
        ax_p.set_title("threshold separates sizes, not runs:\nthe curve is the gap between sizes",
                       fontsize=7, color="C3")

    ok = np.isfinite(t["mean_success"].to_numpy(float))
    ax_m.errorbar(sizes * 0.97, t["mean"], yerr=_yerr(t["mean"], t["mean_lower"], t["mean_upper"]), fmt="s",
                  color="0.5", capsize=3, label="mean of all runs")
    ax_m.errorbar(sizes[ok] * 1.03, t["mean_success"][ok],
                  yerr=_yerr(t["mean_success"][ok], t["mean_success_lower"][ok], t["mean_success_upper"][ok]),
                  fmt="o", color="C2", capsize=3, label="mean of successful runs")
    ax_m.plot(runs["N"], runs["value"], ".", color="0.2", alpha=0.35, ms=4, label="runs")
    ax_m.axhline(res.threshold, color="C3", lw=1, ls=":", label="threshold")
    ax_m.set_xscale("log")
    ax_m.set_xlabel("parameters N")
    ax_m.set_ylabel(res.value_name)
    ax_m.grid(True, which="both", alpha=0.25)
    ax_m.legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path
