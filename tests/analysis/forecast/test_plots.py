"""The figures the lab and the CLIs write, checked by measuring them (issue
13): legends outside the data, bounded panels inside [0, 1], no two axes'
labels on top of each other, censored models drawn as upper bounds, the
held-out observation on top of its prediction, and the curve labelled as
the law being the law.  Small synthetic inputs; fast."""

from __future__ import annotations

import itertools
import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402

from analysis.forecast.plot import CENSORED_LABEL, Y_MARGIN, cut_note  # noqa: E402

MARGIN = Y_MARGIN + 0.02  # what a bounded [0, 1] axis may show beyond its bounds


# ------------------------------------------------------------------ measuring

def _draw(fig):
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def _points_display(ax) -> np.ndarray:
    """Display coordinates of every plotted point (markers of lines and
    scatters, line vertices), in pixels."""
    pts = []
    for ln in ax.get_lines():
        x, y = (np.asarray(v, float) for v in ln.get_data())
        if x.size and ln.get_visible():
            pts.append(np.column_stack([x, y]))
    for coll in ax.collections:
        if isinstance(coll, PathCollection):
            off = np.asarray(coll.get_offsets(), float)
            if off.size:
                pts.append(off)
    if not pts:
        return np.empty((0, 2))
    xy = np.vstack(pts)
    xy = xy[np.all(np.isfinite(xy), axis=1)]
    return ax.transData.transform(xy)


def _overlap(a, b, pad: float = 0.0) -> bool:
    return a.x0 < b.x1 - pad and b.x0 < a.x1 - pad and a.y0 < b.y1 - pad and b.y0 < a.y1 - pad


def _legends(fig):
    out = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    return out + list(fig.legends)


def assert_legends_clear(fig):
    """No legend covers an axes (so it covers no data point either) nor any
    plotted point."""
    r = _draw(fig)
    legs = _legends(fig)
    assert legs, "the figure has no legend"
    for leg in legs:
        box = leg.get_window_extent(r)
        page = fig.bbox
        assert box.x0 >= page.x0 - 1 and box.x1 <= page.x1 + 1 and box.y0 >= page.y0 - 1 and box.y1 <= page.y1 + 1, \
            "legend cut off at the figure's edge"
        for ax in fig.axes:
            assert not _overlap(box, ax.get_window_extent(r), pad=1.0), (ax.get_title(), leg.texts[0].get_text())
            pts = _points_display(ax)
            inside = ((pts[:, 0] > box.x0) & (pts[:, 0] < box.x1) & (pts[:, 1] > box.y0) & (pts[:, 1] < box.y1))
            assert not inside.any(), f"legend over {int(inside.sum())} data points"


def _tick_labels(axis):
    """The tick labels an axis draws (major and minor, inside its view)."""
    lo, hi = sorted(axis.get_view_interval())
    out = []
    for locs, labels in ((axis.get_majorticklocs(), axis.get_majorticklabels()),
                         (axis.get_minorticklocs(), axis.get_minorticklabels())):
        out += [t for v, t in zip(locs, labels) if lo <= v <= hi and t.get_text() and t.get_visible()]
    return out


def _texts(ax, r):
    """The axes' own label texts: axis labels, title, tick labels."""
    out = [t for t in (ax.xaxis.label, ax.yaxis.label, ax.title) if t.get_text() and t.get_visible()]
    out += _tick_labels(ax.xaxis) + _tick_labels(ax.yaxis)
    return [(t.get_text(), t.get_window_extent(r)) for t in out]


def assert_labels_apart(fig):
    """No label of one axes overlaps a label of another axes, nor the other
    axes' frame; tick labels of one axis do not collide."""
    r = _draw(fig)
    axes = fig.axes
    texts = {ax: _texts(ax, r) for ax in axes}
    for a, b in itertools.permutations(axes, 2):
        frame = b.get_window_extent(r)
        for (ta, ba) in texts[a]:
            assert not _overlap(ba, frame, pad=1.0), f"label {ta!r} of {a.get_title()!r} runs into another axes"
            for (tb, bb) in texts[b]:
                assert not _overlap(ba, bb, pad=0.5), f"{ta!r} overlaps {tb!r}"
    for ax in axes:
        for ticks in (_tick_labels(ax.xaxis), _tick_labels(ax.yaxis)):
            boxes = [t.get_window_extent(r) for t in ticks if t.get_text() and t.get_visible()]
            for i, j in itertools.combinations(range(len(boxes)), 2):
                assert not _overlap(boxes[i], boxes[j], pad=0.5), f"tick labels collide in {ax.get_title()!r}"


def assert_unit_ylim(ax, log: bool = False):
    lo, hi = ax.get_ylim()
    if log:
        assert lo > 0 and hi <= 1.1 + 1e-9, (lo, hi)
    else:
        assert lo >= -MARGIN and hi <= 1 + MARGIN, (lo, hi)


def _censored(ax):
    return [ln for ln in ax.get_lines() if ln.get_label().startswith(CENSORED_LABEL)]


def _errorbar_y(ax) -> np.ndarray:
    """Every y of the error-bar segments in the axes (LineCollections)."""
    from matplotlib.collections import LineCollection

    ys = [np.asarray(s, float)[:, 1] for c in ax.collections if isinstance(c, LineCollection) for s in c.get_segments()]
    return np.concatenate(ys) if ys else np.empty(0)


# ------------------------------------------------------------------ inputs

def _counts_ladder(seed=3):
    """PassUntil counts on the law with between-model scatter; the small
    models pass nothing (censored)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, N in enumerate([1e6, 3e6, 1e7, 3e7, 1e8, 3e8, 1e9, 3e9]):
        pu = np.exp(-40 * (N / 1e6) ** -0.45)
        for s in range(2):
            for k in range(30):
                rows.append(dict(model=f"m{i}s{s}", x=N, instance=k, n=200,
                                 c=rng.binomial(200, min(1.0, pu * np.exp(rng.normal(0, 1))))))
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def counts_forecast():
    from analysis.forecast import fit_forecast, observe

    obs = observe(_counts_ladder())
    held = obs["x"] == obs["x"].max()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_forecast(obs[~held].reset_index(drop=True), x_name="N")
    h = obs[held]
    p = fit.predict(h["x"].to_numpy(), budget=h["budget"].to_numpy())
    rows = pd.DataFrame({"origin": 0.0, "model": h["model"].to_numpy(), "x": h["x"].to_numpy(),
                         "observed": h["p"].to_numpy(), "predicted": p["predicted"].to_numpy(),
                         "lower": p["lower"].to_numpy(), "upper": p["upper"].to_numpy()})
    rows["covered"] = (rows["lower"] <= rows["observed"]) & (rows["observed"] <= rows["upper"])
    return obs[~held].reset_index(drop=True), rows, fit


# ------------------------------------------------------------------ the backtest / scaling figure

def test_backtest_figure_counts(counts_forecast):
    from analysis.forecast.plot import backtest_figure

    obs, rows, fit = counts_forecast
    assert obs["censored"].sum() >= 3  # the case under test
    fig = backtest_figure(obs, rows, fit, title="toy", x_name="N")
    ax = fig.axes[0]
    assert_legends_clear(fig)
    assert_labels_apart(fig)
    assert ax.get_yscale() == "log"
    assert_unit_ylim(ax, log=True)
    # the axis follows the points (and bounds, predictions), not a band running down to 1e-200
    pts = np.concatenate([obs["p"][obs["p"] > 0], obs["p_cens"].dropna(), rows["predicted"], rows["observed"]])
    assert ax.get_ylim()[0] >= 0.1 * pts.min()

    # censored models: at their bound (1 / samples drawn), with their own marker
    cens = _censored(ax)
    assert len(cens) == 1
    ln = cens[0]
    bound = obs.loc[obs["censored"], "p_cens"].to_numpy(float)
    assert np.allclose(np.sort(ln.get_ydata()), np.sort(bound))
    assert ln.get_marker() not in ("o", ".", "v", "^", None, "None", "none")
    measured = [c for c in ax.collections if isinstance(c, PathCollection) and c.get_label() == "models (fitted)"]
    assert measured and len(measured[0].get_offsets()) == int((~obs["censored"]).sum())  # censored: not as dots

    # the held-out observation is drawn above its prediction, smaller, and the star is hollow
    star = next(c for c in ax.collections if "predicted" in c.get_label())
    dots = [c for c in ax.collections if "observed" in c.get_label()]
    assert dots and all(d.get_zorder() > star.get_zorder() for d in dots)
    assert np.all(star.get_facecolors()[:, 3] == 0)  # hollow
    assert all(np.max(d.get_sizes()) < np.min(star.get_sizes()) for d in dots)

    # the curve labelled as the law is exp(-c N^-alpha) with the fitted c, alpha: a straight line in
    # log(-log PU) against log N; the forecast mean carries its own label
    law = next(ln for ln in ax.get_lines() if ln.get_label().startswith("the law alone"))
    assert "exp(-c N^-alpha)" in law.get_label()
    x, y = (np.asarray(v, float) for v in law.get_data())
    pr = fit.params
    assert np.allclose(y, np.exp(-np.exp(pr["log_c"]) * x ** -pr["alpha"]), rtol=1e-6, atol=1e-300)
    mean = [ln for ln in ax.get_lines() if ln.get_label().startswith("forecast mean")]
    assert len(mean) == 1 and "law" in mean[0].get_label()
    matplotlib.pyplot.close(fig)


def test_backtest_figure_scores_stays_in_unit_interval():
    from analysis.forecast import fit_forecast, observe
    from analysis.forecast.plot import backtest_figure

    from tests.analysis.forecast.test_backtest_cli import _score_rows

    df = _score_rows()
    df = df[df["task"] == "toy_gen"].rename(columns={"N": "x"})
    obs = observe(df)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_forecast(obs.iloc[:-1].reset_index(drop=True), x_name="N")
    last = obs.iloc[-1:]
    p = fit.predict(last["x"].to_numpy())
    # an interval out of [0, 1] (as a t or normal interval can be) is cut for display and said so
    rows = pd.DataFrame({"origin": 0.0, "model": last["model"].to_numpy(), "x": last["x"].to_numpy(),
                         "observed": last["score"].to_numpy(), "predicted": p["predicted"].to_numpy(),
                         "lower": [-0.2], "upper": [1.3], "covered": [True]})
    fig = backtest_figure(obs.iloc[:-1].reset_index(drop=True), rows, fit, title="toy_gen", x_name="N")
    ax = fig.axes[0]
    assert_legends_clear(fig)
    assert_labels_apart(fig)
    assert_unit_ylim(ax)
    ys = _errorbar_y(ax)
    assert ys.size and ys.min() >= 0 and ys.max() <= 1
    assert any("interval cut at 0 and 1" in t.get_text() for t in ax.get_legend().texts)
    law = next(ln for ln in ax.get_lines() if ln.get_label().startswith("the law alone"))
    assert "chance + (1 - chance) exp(-c N^-alpha)" in law.get_label()
    matplotlib.pyplot.close(fig)


def test_loss_backtest_figure():
    from analysis.forecast.lossacc import fit_loss_forecast, observe_loss
    from analysis.forecast.plot import loss_backtest_figure

    from tests.analysis.forecast.test_lossacc import ladder

    df = ladder(6)
    train, test = df[df["split"] == "train"], df[df["split"] == "holdout"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        final = fit_loss_forecast(observe_loss(train))
    p = final.predict(test["loss"].to_numpy(), n_items=test["n_items"].to_numpy(float))
    rows = pd.DataFrame({"model": test["model"].to_numpy(), "x": test["loss"].to_numpy(),
                         "observed": test["score"].to_numpy(), "predicted": p["predicted"].to_numpy(),
                         "lower": p["lower"].to_numpy(), "upper": p["upper"].to_numpy()})
    rows["covered"] = (rows["lower"] <= rows["observed"]) & (rows["observed"] <= rows["upper"])
    fig = loss_backtest_figure(final, rows, title="mc")
    ax = fig.axes[0]
    assert_legends_clear(fig)
    assert_labels_apart(fig)
    assert_unit_ylim(ax)
    ys = _errorbar_y(ax)
    assert ys.size and ys.min() >= 0 and ys.max() <= 1
    assert any(t.get_text().startswith("forecast mean") for t in ax.get_legend().texts)
    matplotlib.pyplot.close(fig)


# ------------------------------------------------------------------ seeds

def _edge_seeds():
    from analysis.seeds import seed_distributions

    rows = ([{"N": 1e6, "seed": s, "value": v} for s, v in enumerate([0.0, 0.0, 0.05])]
            + [{"N": 1e7, "seed": s, "value": v} for s, v in enumerate([0.95, 1.0, 1.0])]
            + [{"N": 1e8, "seed": s, "value": v} for s, v in enumerate([0.2, 0.7, 0.25, 0.65])])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return seed_distributions(pd.DataFrame(rows), threshold=0.5, n_boot=50, n_perm=0)


def test_seed_figure_bounded_and_apart():
    from analysis.seeds.plot import seed_figure

    res = _edge_seeds()
    assert res.bounds == (0.0, 1.0)
    fig = seed_figure(res, title="edge")
    assert_legends_clear(fig)
    assert_labels_apart(fig)
    hist, (ax_p, ax_m) = fig.axes[:-2], fig.axes[-2:]
    for ax in [*hist, ax_p, ax_m]:
        lim = ax.get_ylim()
        assert lim[0] >= -MARGIN and lim[1] <= 1 + MARGIN, (ax.get_title(), lim)
    for ax in (ax_p, ax_m):
        ys = _errorbar_y(ax)
        assert ys.size and ys.min() >= 0 and ys.max() <= 1
    matplotlib.pyplot.close(fig)


def test_seed_figure_cuts_an_unbounded_interval_and_says_so():
    """Intervals that leave [0, 1] as computed (a plain t interval) are cut in
    the figure, and the legend says where."""
    from analysis.seeds.plot import seed_figure

    res = _edge_seeds()
    t = res.table.copy()
    t.loc[0, "mean_lower"], t.loc[1, "mean_upper"] = -0.3, 1.2
    res.table = t
    fig = seed_figure(res)
    ax_m = fig.axes[-1]
    ys = _errorbar_y(ax_m)
    assert ys.min() >= 0 and ys.max() <= 1
    assert any("interval cut at 0 and 1" in x.get_text() for x in ax_m.get_legend().texts)
    lim = ax_m.get_ylim()
    assert lim[0] >= -MARGIN and lim[1] <= 1 + MARGIN
    matplotlib.pyplot.close(fig)


def test_seed_figure_narrow_range_ticks_do_not_collide():
    """Three sizes within one decade (the reported case): the P(success) and
    mean panels keep their labels apart."""
    from analysis.seeds import seed_distributions
    from analysis.seeds.plot import seed_figure

    from tests.analysis.seeds.test_seeds_warnings import _eval_seed_table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = seed_distributions(_eval_seed_table(), n_boot=20, n_perm=0)
    fig = seed_figure(res, title="toy")
    assert_legends_clear(fig)
    assert_labels_apart(fig)
    matplotlib.pyplot.close(fig)


# ------------------------------------------------------------------ emergence

def test_emergence_figure():
    from analysis.emergence import fit_emergence_law
    from analysis.emergence.plot import emergence_figure

    from tests.analysis.emergence.test_emergence_degenerate import sweep

    df = sweep(np.random.default_rng(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_emergence_law(df[df["D"] > 0], d0=1, n_boot=10)
    fig = emergence_figure(df, fit, title="toy")
    ax = fig.axes[0]
    assert_legends_clear(fig)
    assert_labels_apart(fig)
    assert_unit_ylim(ax)
    for c in ax.collections:  # bands inside [0, 1]
        for path in c.get_paths():
            y = path.vertices[:, 1]
            y = y[np.isfinite(y)]
            if c.get_label().startswith("law at D0"):
                assert y.min() >= 0 and y.max() <= 1
    matplotlib.pyplot.close(fig)


# ------------------------------------------------------------------ the lab's per-size figure and tables

def _lab_models():
    rows = []
    for N, pu in ((1e3, [0.0, 0.0]), (3e3, [0.0, 0.004]), (1e4, [0.02, 0.05]), (3e4, [0.1, 0.2])):
        for s, v in enumerate(pu):
            rows += [dict(model=f"m{N:g}-s{s}", task="t1", N=N, seed=float(s), value=v, n=256, c=round(v * 256)),
                     dict(model=f"m{N:g}-s{s}", task="t2", N=N, seed=float(s), value=min(1.0, 4 * v), n=128,
                          c=round(min(1.0, 4 * v) * 128))]
    return pd.DataFrame(rows)


def test_per_size_figure():
    from lm_eval_ext.lab.report import per_size_figure

    models = _lab_models()
    fig = per_size_figure(models, ["t1", "t2"], 3e4)
    assert_legends_clear(fig)
    assert_labels_apart(fig)
    for ax, task in zip(fig.axes, ("t1", "t2")):
        assert_unit_ylim(ax, log=True)
        d = models[(models["task"] == task) & (models["value"] <= 0)]
        cens = _censored(ax)
        ys = np.concatenate([ln.get_ydata() for ln in cens]) if cens else np.empty(0)
        # every censored model at its bound 1/n, with the bound marker; none at a floor
        assert len(ys) == len(d) and np.allclose(np.sort(ys), np.sort(1.0 / d["n"].to_numpy(float)))
        assert all(ln.get_marker() not in ("o", "v", "^") for ln in cens)
        dots = [ln for ln in ax.get_lines() if ln.get_label().startswith("seed ")]
        assert all(np.all(np.asarray(ln.get_ydata(), float) > 0) for ln in dots)
    assert any(t.get_text().startswith(CENSORED_LABEL) for t in fig.legends[0].texts)
    matplotlib.pyplot.close(fig)


def test_per_size_figure_one_task_all_censored():
    """One task where nothing passed (the finetuning leg's lab): bounds only,
    the legend inside the figure."""
    from lm_eval_ext.lab.report import per_size_figure

    models = _lab_models()
    models = models[models["task"] == "t1"].assign(value=0.0, c=0, n=4)
    fig = per_size_figure(models, ["t1"], 3e4)
    assert_legends_clear(fig)
    assert_labels_apart(fig)
    ax = fig.axes[0]
    assert_unit_ylim(ax, log=True)
    ys = np.concatenate([ln.get_ydata() for ln in _censored(ax)])
    assert len(ys) == len(models) and np.allclose(ys, 0.25)
    matplotlib.pyplot.close(fig)


def test_report_interval_cells_are_cut_and_say_so():
    from lm_eval_ext.lab.report import _interval

    cut = []
    assert _interval(0.2, 0.5, cut) == "[0.2, 0.5]" and cut == []
    assert _interval(-0.315, 1.0, cut) == "[0, 1] (interval cut at 0)"
    assert _interval(0.891, 1.02, cut) == "[0.891, 1] (interval cut at 1)"
    assert _interval(-0.1, 1.2) == "[0, 1] (interval cut at 0 and 1)"
    assert len(cut) == 2 and "below 0" in cut[0] and "above 1" in cut[1]
    assert _interval(None, float("nan")) == "[-, -]"


def test_report_notes_seed_intervals_out_of_bounds():
    from lm_eval_ext.lab.report import _out_of_bounds

    res = _edge_seeds()
    assert _out_of_bounds(res) == ""
    t = res.table.copy()
    t.loc[0, "mean_lower"] = -0.315
    res.table = t
    note = _out_of_bounds(res)
    assert "mean at N = 1e+06: [-0.315" in note and "cut at the bounds in the figure" in note


def test_cut_note():
    assert cut_note([0.1], [0.9]) == ""
    assert cut_note([-0.1], [0.9]) == " (interval cut at 0)"
    assert cut_note([0.1, np.nan], [1.0]) == ""
    assert cut_note([0.1], [1.0], at_bound=True) == " (interval cut at 1)"
