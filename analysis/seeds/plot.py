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

Bounded quantities stay inside their bounds: P(success) in [0, 1], the
metric in ``res.bounds`` when it has bounds (an interval that leaves them
as computed is cut for display, and the legend says so).  Legends sit below
their panels and the layout is constrained, so neither covers data or a
neighbour's labels.  :func:`seed_figure` returns the Figure;
:func:`plot_seed_distributions` saves it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..forecast.plot import Y_MARGIN, _plt, _save, clip_unit, cut_note, tidy_log_x

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


def _below(ax, ncol=2):
    """The panel's legend below it, outside the data."""
    h, l = ax.get_legend_handles_labels()
    if h:
        ax.legend(h, l, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=ncol, fontsize=7, frameon=False)


def seed_figure(res, *, title: str | None = None):
    """The figure of :func:`plot_seed_distributions` for a
    :class:`analysis.seeds.SeedDistributionResults`."""
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    t = res.table
    runs = res.runs
    sizes = t["N"].to_numpy(float)
    shown = _panel_sizes(sizes)
    vals = runs["value"].to_numpy(float)
    bounds = getattr(res, "bounds", None)
    span = float(np.ptp(vals)) or 1.0
    lo, hi = float(vals.min()) - 0.1 * span, float(vals.max()) + 0.1 * span
    if bounds is not None:
        b0, b1 = (float(b) for b in bounds)
        m = Y_MARGIN * (b1 - b0)
        lo, hi = max(lo, b0 - m), min(hi, b1 + m)
    grid = np.linspace(lo, hi, 400)
    bins = np.linspace(lo, hi, 21)

    ncol = max(len(shown), 2)
    fig = plt.figure(figsize=(max(8.5, 1.9 * ncol), 7.8), dpi=110, layout="constrained")
    top, bottom = fig.add_gridspec(2, 1, height_ratios=[1.0, 1.35])
    gs_top = top.subgridspec(1, ncol)
    gs_bot = bottom.subgridspec(1, 2)
    first = None
    for j, N in enumerate(shown):
        ax = fig.add_subplot(gs_top[0, j], sharey=first)
        first = first or ax
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
        # few density ticks, the last one dropped: neighbouring panels' labels must not meet
        ax.xaxis.set_major_locator(MaxNLocator(nbins=3, prune="upper"))
        if j == 0:
            ax.set_ylabel(res.value_name)
            ax.set_xlabel("density", fontsize=7)
        else:
            ax.tick_params(labelleft=False)

    ax_p = fig.add_subplot(gs_bot[0, 0])
    ax_m = fig.add_subplot(gs_bot[0, 1])
    lvl = int(round(100 * (1 - res.level)))
    ps, pl, pu = (t[c].to_numpy(float) for c in ("p_success", "p_success_lower", "p_success_upper"))
    ax_p.errorbar(sizes, ps, yerr=_yerr(ps, clip_unit(pl), clip_unit(pu)), fmt="o", color="k", capsize=3, zorder=4,
                  label=f"observed (Wilson {lvl}%){cut_note(pl, pu)}")
    fit = res.psuccess_fit
    if fit is not None:
        g = np.exp(np.linspace(np.log(sizes.min()) - 0.3, np.log(sizes.max()) + 0.3, 200))
        pred = fit.predict(g)
        ax_p.fill_between(g, clip_unit(pred["lower"]), clip_unit(pred["upper"]), color="C0", alpha=0.18, lw=0,
                          label=f"{lvl}% interval{cut_note(pred['lower'], pred['upper'])}")
        ax_p.plot(g, clip_unit(pred["p"]), color="C0", label=f"logistic in log N ({fit.method})")
    ax_p.set_xscale("log")
    ax_p.set_ylim(-Y_MARGIN, 1 + Y_MARGIN)
    ax_p.set_xlabel("parameters N")
    ax_p.set_ylabel(f"P({res.value_name} >= {res.threshold:.3g})")
    ax_p.grid(True, which="major", alpha=0.25)
    tidy_log_x(ax_p)
    _below(ax_p, ncol=1)
    if getattr(res, "sizes_not_runs", None):
        # a title, not a box in the axes: the warning must not hide the
        # points it is about
        ax_p.set_title("threshold separates sizes, not runs:\nthe curve is the gap between sizes",
                       fontsize=7, color="C3")

    b0, b1 = (float(b) for b in bounds) if bounds is not None else (-np.inf, np.inf)
    cut = lambda v: np.clip(np.asarray(v, float), b0, b1)  # noqa: E731
    note = lambda l, u: cut_note(l, u, b0, b1) if bounds is not None else ""  # noqa: E731
    ok = np.isfinite(t["mean_success"].to_numpy(float))
    mean, ml, mu = (t[c].to_numpy(float) for c in ("mean", "mean_lower", "mean_upper"))
    ax_m.plot(runs["N"], runs["value"], ".", color="0.2", alpha=0.35, ms=4, zorder=2, label="runs")
    ax_m.errorbar(sizes * 0.97, mean, yerr=_yerr(mean, cut(ml), cut(mu)), fmt="s", color="0.5", capsize=3, zorder=3,
                  label=f"mean of all runs ({lvl}%){note(ml, mu)}")
    ms, sl, su = (t[c].to_numpy(float)[ok] for c in ("mean_success", "mean_success_lower", "mean_success_upper"))
    ax_m.errorbar(sizes[ok] * 1.03, ms, yerr=_yerr(ms, cut(sl), cut(su)), fmt="o", color="C2", capsize=3, zorder=4,
                  label=f"mean of successful runs ({lvl}%){note(sl, su)}")
    ax_m.axhline(res.threshold, color="C3", lw=1, ls=":", label="threshold")
    ax_m.set_xscale("log")
    ax_m.set_xlabel("parameters N")
    ax_m.set_ylabel(res.value_name)
    if bounds is not None:
        m = Y_MARGIN * (b1 - b0)
        a, b = ax_m.get_ylim()
        ax_m.set_ylim(max(a, b0 - m), min(b, b1 + m))
    ax_m.grid(True, which="major", alpha=0.25)
    tidy_log_x(ax_m)
    _below(ax_m, ncol=2)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_seed_distributions(res, path, *, title: str | None = None) -> Path:
    """Write the figure for a :class:`analysis.seeds.SeedDistributionResults`
    to ``path`` (PNG by its suffix) and return the path."""
    return _save(seed_figure(res, title=title), path, bbox_inches="tight")
