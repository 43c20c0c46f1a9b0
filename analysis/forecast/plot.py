"""The backtest picture: the ladder, the forecast band, and each held-out
model against its interval.

Conventions shared by the project's figures (the seeds, emergence and lab
plots import the helpers below):

- bounded quantities (PU, accuracy, pass rates, P(success)) are drawn inside
  their bounds: intervals are cut at 0 and 1 for display (the legend says so
  where an interval was cut) and the y axis stays within [0, 1] plus a small
  margin;
- legends sit outside the axes (:func:`legend_outside`) and figures use
  ``constrained_layout``, so neither legends nor labels cover data;
- a censored model (no pass; a score not above chance) is drawn as an upper
  bound (:func:`upper_bound_marker`: a bar at the bound with an arrow down),
  never as a measured point at an arbitrary floor;
- a held-out model's prediction is a hollow star with its interval, its
  observation a smaller filled dot drawn on top, so both stay visible when
  they coincide.

Each ``*_figure`` function returns the matplotlib Figure (for tests); the
``plot_*`` functions save it and return the path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

#: label of censored points in every legend (tests look for it)
CENSORED_LABEL = "censored (upper bound)"
#: margin of a bounded [0, 1] axis (fraction of the range)
Y_MARGIN = 0.03


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def upper_bound_marker():
    """A marker for an upper bound: a bar at the point with an arrow pointing
    down (the true value lies below it)."""
    from matplotlib.path import Path as MPath

    verts = [(-0.5, 0.0), (0.5, 0.0), (0.0, 0.0), (0.0, -1.2), (-0.32, -0.8), (0.0, -1.2), (0.32, -0.8)]
    codes = [MPath.MOVETO, MPath.LINETO, MPath.MOVETO, MPath.LINETO, MPath.MOVETO, MPath.LINETO, MPath.LINETO]
    return MPath(verts, codes)


def draw_upper_bounds(ax, x, bound, *, label=CENSORED_LABEL, color="0.35", ms=13, zorder=4):
    """Censored values at their bound, as upper bounds (see the module docstring)."""
    x, bound = np.asarray(x, float), np.asarray(bound, float)
    ok = np.isfinite(x) & np.isfinite(bound)
    return ax.plot(x[ok], bound[ok], ls="none", marker=upper_bound_marker(), ms=ms, mew=1.4, mfc="none",
                   color=color, zorder=zorder, label=label)[0]


def clip_unit(v, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    """``v`` cut to [lo, hi] (display of a bounded quantity)."""
    return np.clip(np.asarray(v, float), lo, hi)


def cut_note(lower, upper, lo: float = 0.0, hi: float = 1.0, *, at_bound: bool = False) -> str:
    """'' or ' (interval cut at 0)', ' (interval cut at 1)', ' (interval cut
    at 0 and 1)': where an interval leaves [lo, hi] as computed.  With
    ``at_bound`` an end exactly at a bound counts too (an interval its
    computation already cut there, as the loss forecast's)."""
    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    lower, upper = lower[np.isfinite(lower)], upper[np.isfinite(upper)]
    below = bool(np.any(lower <= lo if at_bound else lower < lo))
    above = bool(np.any(upper >= hi if at_bound else upper > hi))
    at = [f"{v:g}" for v, c in ((lo, below), (hi, above)) if c]
    return f" (interval cut at {' and '.join(at)})" if at else ""


def legend_outside(ax, *, fontsize=7, **kw):
    """The axes' legend to the right of it (outside the data), or None when
    there is nothing to label."""
    h, l = ax.get_legend_handles_labels()
    if not h:
        return None
    return ax.legend(h, l, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=fontsize,
                     framealpha=0.9, **kw)


def bounded_ylim(ax, lo: float = 0.0, hi: float = 1.0, *, margin: float = Y_MARGIN, min_span: float = 0.1) -> None:
    """Keep a linear y axis inside [lo, hi] plus ``margin`` of the range, and
    at least ``min_span`` of it wide (scores all at 0 are not magnified
    into noise on a 1e-6 axis)."""
    m = margin * (hi - lo)
    a, b = ax.get_ylim()
    a, b = max(a, lo - m), min(b, hi + m)
    if not b > a:
        a, b = lo - m, hi + m
    want = min_span * (hi - lo)
    if b - a < want:
        b = min(a + want, hi + m)
        a = max(min(a, b - want), lo - m)
    ax.set_ylim(a, b)


def tidy_log_x(ax) -> None:
    """Label a log x axis at a few round values (decades; 1, 3 or 1, 2, 5
    times a decade when it spans less), as many as the axes' width holds,
    never every minor tick: those collide in a narrow panel."""
    from matplotlib.ticker import FixedLocator, LogFormatterSciNotation, NullFormatter

    lo, hi = sorted(ax.get_xlim())
    width_in = ax.get_position().width * ax.figure.get_figwidth()
    cap = int(np.clip(width_in / 0.8, 2, 8))
    e0, e1 = int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi)))
    ticks = []
    for subs in ((1,), (1, 3), (1, 2, 5), (1, 1.5, 2, 3, 4, 5, 6, 8)):
        ticks = [s_ * 10.0**e for e in range(e0, e1 + 1) for s_ in subs if lo <= s_ * 10.0**e <= hi]
        if len(ticks) >= min(3, cap):
            break
    if len(ticks) > cap:
        step = int(np.ceil(len(ticks) / cap))
        ticks = ticks[::step]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(LogFormatterSciNotation(labelOnlyBase=False, minor_thresholds=(np.inf, np.inf)))
    ax.xaxis.set_minor_formatter(NullFormatter())


def draw_heldout(ax, x_pred, predicted, lower, upper, x_obs, observed, covered, *, what="held out",
                 at_bound=False):
    """A held-out (or forecast) model: its prediction as a hollow star with
    its interval, its observation as a smaller filled dot on top (blue:
    inside the interval, red: outside).  Intervals are cut at [0, 1]."""
    x_pred, predicted = np.asarray(x_pred, float), np.asarray(predicted, float)
    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    note = cut_note(lower, upper, at_bound=at_bound)
    lo, hi, pr = clip_unit(lower), clip_unit(upper), clip_unit(predicted)
    ok = np.isfinite(x_pred) & np.isfinite(pr)
    if ok.any():
        yerr = np.vstack([np.maximum(pr - lo, 0), np.maximum(hi - pr, 0)])[:, ok]
        ax.errorbar(x_pred[ok], pr[ok], yerr=np.nan_to_num(yerr), fmt="none", ecolor="tab:orange", elinewidth=1.4,
                    capsize=4, alpha=0.9, zorder=4)
        ax.scatter(x_pred[ok], pr[ok], marker="*", s=230, facecolors="none", edgecolors="tab:orange",
                   linewidths=1.5, zorder=5, label=f"{what}: predicted, 95% interval{note}")
    x_obs, observed = np.asarray(x_obs, float), np.asarray(observed, float)
    cov = np.asarray(pd.Series(covered).fillna(False).to_numpy(), bool)
    seen = np.isfinite(x_obs) & np.isfinite(observed)
    for flag, color, lab in ((True, "tab:blue", "inside"), (False, "tab:red", "outside")):
        m = seen & (cov == flag)
        if m.any():
            ax.scatter(x_obs[m], observed[m], marker="o", s=30, color=color, edgecolors="k", linewidths=0.6,
                       zorder=6, label=f"{what}: observed ({lab} its interval)")


def _save(fig, path, **kw) -> Path:
    plt = _plt()
    path = Path(path)
    try:
        fig.savefig(path, **kw)
    finally:
        plt.close(fig)
    return path


def _symbol(x_name: str) -> str:
    return "N" if x_name in ("N", "parameters N") or x_name.endswith(" N") else "x"


def backtest_figure(obs: pd.DataFrame, rows: pd.DataFrame, final, *, title: str = "", x_name: str = "x"):
    """The figure of :func:`plot_backtest` (see there)."""
    plt = _plt()

    from .observations import observed_value, p_from_y, to_scale

    fig, ax = plt.subplots(figsize=(9.6, 4.8), dpi=110, layout="constrained")
    kind = obs["kind"].iloc[0]
    val = observed_value(obs)
    cens = obs["censored"].to_numpy(bool)
    held = set(rows["model"]) if len(rows) else set()
    train = ~obs["model"].isin(held).to_numpy() if "origin" in rows and rows["origin"].nunique() == 1 else \
        np.ones(len(obs), bool)
    ax.scatter(obs["x"][~cens & train], val[~cens & train], color="k", s=18, zorder=3, label="models (fitted)")
    bounds = np.array([])
    if cens.any():
        bounds = np.asarray(to_scale(obs["p_cens"].to_numpy(float)[cens], obs), float)
        what = "no pass" if kind == "counts" else "not above chance"
        draw_upper_bounds(ax, obs["x"].to_numpy(float)[cens], bounds, label=f"{CENSORED_LABEL}: {what}")
    band = None
    if final is not None:
        lo = float(obs["x"].min())
        hi = float(max(obs["x"].max(), rows["x"].max() if len(rows) else 0)) * 4
        xs = np.exp(np.linspace(np.log(lo), np.log(hi), 200))
        p = final.predict(xs)
        w = final.weights
        w = w[w > 0]
        mix = ", ".join(f"{k} {v:.2f}" for k, v in w.sort_values(ascending=False).items())
        note = cut_note(p["lower"], p["upper"])
        ax.fill_between(xs, clip_unit(p["lower"]), clip_unit(p["upper"]), color="tab:green", alpha=0.15, lw=0,
                        label=f"{100 * (1 - final.level):.0f}% interval for a new model{note}")
        ax.plot(xs, clip_unit(p["predicted"]), color="tab:green", lw=1.6,
                label=f"forecast mean (weighted forms: {mix})" if len(w) > 1 else f"forecast mean ({mix} only)")
        if "law" in final.forms:
            y_law = final.forms["law"].fitted.predict(np.log(xs))[0]
            s = _symbol(x_name)
            law = f"exp(-c {s}^-alpha)"
            ax.plot(xs, clip_unit(to_scale(p_from_y(y_law), obs)), "--", color="0.25", lw=1.1, zorder=2,
                    label=(f"the law alone: PU = {law}" if kind == "counts" else
                           f"the law alone: score = chance + (1 - chance) {law}"))
        band = p
    if len(rows):
        last = rows if rows["origin"].nunique() == 1 else rows[rows["origin"] == rows["origin"].max()]
        draw_heldout(ax, last["x"], last["predicted"], last["lower"], last["upper"], last["x"], last["observed"],
                     last["covered"])
    ax.set_xscale("log")
    ax.set_xlabel(x_name)
    ax.set_ylabel("task PU" if kind == "counts" else "score")
    resolved = val[~cens]
    if kind == "counts" and np.all(resolved > 0):
        ax.set_yscale("log")
        pts = np.concatenate([resolved, bounds, rows["observed"].to_numpy(float) if len(rows) else [],
                              rows["predicted"].to_numpy(float) if len(rows) else []])
        pts = pts[np.isfinite(pts) & (pts > 0)]
        if len(pts):
            top = float(pts.max())
            if band is not None:
                top = max(top, float(np.nanmax(clip_unit(band["upper"]))))
            # the band may run down to 1e-200: the axis follows the points
            ax.set_ylim(float(pts.min()) / 4, min(top * 2.5, 1.1))
    else:
        bounded_ylim(ax)
    verdict = final.verdict.label if final is not None else "not forecast"
    ax.set_title(f"{title}  [{verdict}]", fontsize=10)
    ax.grid(True, which="major", alpha=0.25)
    legend_outside(ax)
    return fig


def plot_backtest(obs: pd.DataFrame, rows: pd.DataFrame, final, path, *, title: str = "",
                  x_name: str = "x") -> Path:
    """The ladder (censored models as upper bounds), the forecast mean (the
    weighted forms) with its band, the law alone (smooth, dashed), and each
    held-out model: predicted (hollow star, interval) and observed (dot)."""
    return _save(backtest_figure(obs, rows, final, title=title, x_name=x_name), path)


def loss_backtest_figure(final, rows: pd.DataFrame, *, title: str = ""):
    """The figure of :func:`plot_loss_backtest` (see there)."""
    plt = _plt()

    obs = final.obs
    fig, ax = plt.subplots(figsize=(9.6, 4.8), dpi=110, layout="constrained")
    ax.scatter(obs["L"], obs["score"], color="k", s=18, zorder=3, label="models (fitted)")
    lo_L = float(min(obs["L"].min(), rows["x"].min() if len(rows) and "loss_pred" not in rows else obs["L"].min(),
                     rows["loss_pred"].min() if "loss_pred" in rows else np.inf))
    grid = np.linspace(lo_L, float(obs["L"].max()), 200)
    pred = final.predict(grid)
    w = final.weights
    w = w[w > 0]
    mix = ", ".join(f"{k} {v:.2f}" for k, v in w.sort_values(ascending=False).items())
    ax.plot(grid, clip_unit(pred["predicted"]), color="C0",
            label=f"forecast mean (weighted curves: {mix})" if len(w) > 1 else f"forecast mean ({mix} only)")
    # the loss forecast's intervals are normal on the score scale, cut to
    # [0, 1] where they are computed: an end at 0 or 1 is such a cut
    ax.fill_between(grid, clip_unit(pred["lower"]), clip_unit(pred["upper"]), color="C0", alpha=0.15, lw=0,
                    label=f"{100 * (1 - final.level):.0f}% interval for a new model"
                          f"{cut_note(pred['lower'], pred['upper'], at_bound=True)}")
    if len(rows):
        at = (rows["loss_pred"] if "loss_pred" in rows else rows["x"]).to_numpy(float)
        draw_heldout(ax, at, rows["predicted"], rows["lower"], rows["upper"], at, rows["observed"], rows["covered"],
                     at_bound=True)
    ax.axvline(float(obs["L"].min()), color="grey", ls=":", lw=1, label="lowest fitted loss")
    ax.invert_xaxis()
    ax.set_xlabel(f"{final.x_name} (lower is a stronger model)")
    ax.set_ylabel("score")
    bounded_ylim(ax)
    ax.set_title(f"{title}  [{final.verdict}]", fontsize=10)
    ax.grid(True, alpha=0.25)
    legend_outside(ax)
    return fig


def plot_loss_backtest(final, rows: pd.DataFrame, path, *, title: str = "") -> Path:
    """Score against loss: the fitted models, the forecast mean (the weighted
    curves) with its 95% band (extended to the held-out losses), and each
    held-out model: predicted (hollow star, interval; at its observed loss,
    or the predicted one for the chain) and observed (dot)."""
    return _save(loss_backtest_figure(final, rows, title=title), path)
