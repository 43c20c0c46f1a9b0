"""The lab's report: ``report.md`` with PNG plots, written into the run's directory.

Plots: the scaling law of each task with the held-out largest size marked
(``analysis.forecast.plot.plot_backtest``), every model's PU by size and seed
(``per_size_pu.png``), and the seed distributions (``analysis.seeds.plot``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..conventions.files import write_text_atomic


def _fmt(x, spec=".4g") -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "-"
    return format(x, spec)


def per_size_figure(models: pd.DataFrame, tasks, n_largest: float):
    """The figure of :func:`plot_per_size`: every model's task PU (mean over
    instances of the engine's PU) against N, one panel per task: seeds as dots, the seed
    mean as a line (over the sizes where it is above 0); a model with no
    pass (PU 0, censored) is drawn as an upper bound at PU = 1/n (one pass
    in its n samples), never as a point at a floor.  The legend is below
    the panels."""
    from analysis.forecast.plot import CENSORED_LABEL, _plt, draw_upper_bounds, tidy_log_x, upper_bound_marker

    plt = _plt()
    from matplotlib.lines import Line2D

    ncol = 1 if len(tasks) < 2 else 3 if len(tasks) > 2 else 2  # legend columns that fit the figure's width
    fig, axes = plt.subplots(1, len(tasks), figsize=(max(3.9 * len(tasks), 5.2) + 0.6, 4.3 + 0.25 * (ncol < 2)),
                             dpi=110, squeeze=False, layout="constrained")
    seeds = sorted(models["seed"].unique())
    color = {s: f"C{i % 10}" for i, s in enumerate(seeds)}
    handles = {}
    for ax, task in zip(axes[0], tasks):
        d = models[models["task"] == task]
        pts = []
        for seed, g in d.groupby("seed"):
            g = g.sort_values("N")
            y = g["value"].to_numpy(float)
            h = ax.plot(g["N"][y > 0], y[y > 0], "o", color=color[seed], alpha=0.75, ms=5, zorder=3,
                        label=f"seed {int(seed)}")[0]
            if (y > 0).any():
                handles.setdefault(h.get_label(), h)
            pts += list(y[y > 0])
            if (y <= 0).any():
                n = g["n"].to_numpy(float)[y <= 0] if "n" in g.columns else np.full(int((y <= 0).sum()), np.nan)
                bound = 1.0 / n
                draw_upper_bounds(ax, g["N"].to_numpy(float)[y <= 0], bound, color=color[seed], zorder=3,
                                  label=f"{CENSORED_LABEL}: no pass in n samples, PU < 1/n")
                lab = f"{CENSORED_LABEL}: no pass in its n samples, PU < 1/n (seed's colour)"
                handles.setdefault(lab, Line2D([], [], ls="none", marker=upper_bound_marker(), ms=13, mew=1.4,
                                               mfc="none", color="0.35"))
                pts += list(bound[np.isfinite(bound)])
        mean = d.groupby("N")["value"].mean()
        pos = mean[mean > 0]
        if len(pos):
            h = ax.plot(pos.index, pos.to_numpy(), "-", color="k", lw=1.2, zorder=2,
                        label="seed mean" + (" (a censored seed counted as 0)" if (models["value"] <= 0).any()
                                             else ""))[0]
            handles.setdefault(h.get_label(), h)
        h = ax.axvline(n_largest, color="C3", ls=":", lw=1, label="the held-out largest size")
        handles.setdefault(h.get_label(), h)
        ax.set_xscale("log")
        ax.set_yscale("log")
        if pts:
            ax.set_ylim(min(pts) / 2.5, min(max(pts) * 2.0, 1.1))
        ax.set_title(task, fontsize=10)
        ax.set_xlabel("parameters N")
        ax.grid(True, which="major", alpha=0.25)
        tidy_log_x(ax)
    axes[0][0].set_ylabel("PU (mean over instances)")
    fig.legend(list(handles.values()), list(handles.keys()), loc="outside lower center",
               ncol=min(len(handles), ncol), fontsize=7, frameon=False)
    fig.suptitle("PU of every model by size and seed", fontsize=9)
    return fig


def plot_per_size(models: pd.DataFrame, path: Path, tasks, n_largest: float) -> Path:
    """Write :func:`per_size_figure` to ``path`` and return the path."""
    from analysis.forecast.plot import _save

    return _save(per_size_figure(models, tasks, n_largest), path)


def write_report(out: Path, cfg, df: pd.DataFrame, models: pd.DataFrame, prediction: dict, outcome: dict,
                 seeds: dict, finetune=None) -> Path:
    from analysis.forecast.plot import plot_backtest

    from .forecast import task_counts, task_observations

    out = Path(out)
    n_largest = float(outcome["N_largest"])
    primary = cfg.primary_task
    lines = ["# Emergence lab report", ""]
    lines += [f"Ladder: {len(cfg.sizes)} sizes x {len(cfg.seeds)} seeds, {cfg.train.steps} steps of "
              f"{cfg.train.batch_size} examples; evaluator `{cfg.evaluator}` "
              + (f"(fixed {cfg.repeats} samples per instance through the `lm_eval` CLI)" if cfg.evaluator == "cli"
                 else f"(adaptive sample-until-{cfg.r}-passes, at most {cfg.cap} samples per instance"
                      + (f" and {cfg.budget} per model and task)" if cfg.budget else ")"))
              + f". The largest size, **{outcome['largest']}** (N = {n_largest:,.0f}), was held out: its PU was "
              f"predicted from the smaller sizes and written to `prediction.json` at "
              f"{prediction['written_at']}, before it was trained.", ""]
    if prediction.get("largest_models_existing_when_written"):
        lines += ["**Warning:** some largest-size models already existed when the prediction was written: "
                  + ", ".join(prediction["largest_models_existing_when_written"]), ""]
    lines += ["## Predicted vs observed (held-out largest size)", "",
              "| task | predicted PU | 95% prediction interval (as written) | observed PU (± se) | inside | "
              "interval incl. the observation's sampling noise | observed / predicted |",
              "|---|---|---|---|---|---|---|"]
    cut = []
    for task in cfg.tasks:
        r = outcome["tasks"][task]
        if "predicted" in r:
            lines.append(f"| {task}{' (primary)' if task == primary else ''} | {_fmt(r['predicted'])} | "
                         f"{_interval(r['lower'], r['upper'], cut)} | {_fmt(r['observed'])} ± "
                         f"{_fmt(r['observed_se'], '.2g')} | {'yes' if r['inside'] else '**no**'} | "
                         f"{_interval(r['lower_with_obs_noise'], r['upper_with_obs_noise'], cut)} "
                         f"({'inside' if r['inside_with_obs_noise'] else 'outside'}) | "
                         f"{_fmt(r['ratio_observed_to_predicted'], '.3g')} |")
        else:
            lines.append(f"| {task} | - | no fit: {r.get('error', '')[:120]} | {_fmt(r['observed'])} | - | - | - |")
    if cut:
        lines += ["", "PU lies in [0, 1]: " + "; ".join(dict.fromkeys(cut)) + " as computed, shown cut there "
                  "(marked \"interval cut at ...\")."]
    r = outcome["tasks"].get(primary, {})
    if "predicted" in r:
        verdict = (f"Primary task ({primary}): the observed PU lies inside the interval written before training."
                   if r["inside"] else
                   f"**The prediction missed** on the primary task ({primary}): the observed PU lies outside "
                   "the interval written before training"
                   + (", though inside the interval that also allows for the observation's own sampling noise."
                      if r["inside_with_obs_noise"] else "."))
        missed = [t for t, x in outcome["tasks"].items() if t != primary and "predicted" in x and not x["inside"]]
        if missed:
            verdict += f" Outside their intervals as written: {', '.join(missed)}."
        lines += ["", verdict]
    cli = outcome.get("lm_eval_cli") or {}
    if cli:
        lines += ["", f"**Through the `lm_eval` CLI.** The held-out model `{Path(next(iter(cli.values()))['model']).name}` "
                  f"was also scored by `python -m lm_eval run --model hf ...` with a fixed {cfg.repeats} samples per "
                  "instance, as any user's model would be (an independent measurement of the same pass rates):", "",
                  "| task | PU (lm_eval CLI, fixed budget) | passes / samples | PU of this model (adaptive sampler) |",
                  "|---|---|---|---|"]
        for task, c in cli.items():
            m = models[(models["model"] == c["model"]) & (models["task"] == task)]
            lines.append(f"| {task} | {_fmt(c['pu'])} | {int(c['n_passed'])} / {int(c['n_samples'])} | "
                         f"{_fmt(float(m['value'].iloc[0])) if len(m) else '-'} |")
    lines += ["", "PU here is the task PU of Hu et al. 2023: the mean over test instances of the pass rate, "
              "averaged over the seeds of a size. Each instance's pass rate is the one the engine reported: "
              "with the adaptive sampler, its unbiased estimate from every sample drawn (c/n would overstate it "
              "under sample-until-r-passes; see docs/passuntil.md, \"One PU\"); with a fixed budget, c/n. "
              "`python -m analysis scaling` and `seeds` on `eval/` give the same numbers. The prediction comes from the forecasting core "
              "(`analysis.forecast.fit_forecast`): the law PU(N) = exp(-c N^-alpha), a local line through the "
              "upper half of the ladder and a constant, fitted to every model (each seed its own model), weighted "
              "by how well each predicted the ladder's larger sizes from its smaller ones (forward chaining); its "
              "interval is for one new model and includes the scatter between models, the spread between the "
              "forms and the model-form error calibrated on the ladder and on real ladders "
              "(docs/forecasting.md).", ""]

    if finetune is not None:
        lines += finetune_section(out, *finetune)

    # scaling-law plots
    lines += ["## Scaling laws", ""]
    for task in cfg.tasks:
        d = task_counts(df, task)
        held = d[np.isclose(d["N"], n_largest)]
        train = d[~np.isclose(d["N"], n_largest)]
        r = outcome["tasks"][task]
        try:
            from .forecast import fit_and_predict

            fit, _ = fit_and_predict(train, n_largest)
        except ValueError as exc:
            lines += [f"### {task}", "", f"No fit: {exc}", ""]
            continue
        png = out / f"scaling_{task}.png"
        hobs = task_observations(held)
        rows = pd.DataFrame({"origin": 0.0, "model": hobs["model"], "x": hobs["x"], "observed": hobs["p"],
                             "predicted": r.get("predicted", np.nan), "lower": r.get("lower", np.nan),
                             "upper": r.get("upper", np.nan)})
        rows["covered"] = (rows["lower"] <= rows["observed"]) & (rows["observed"] <= rows["upper"])
        plot_backtest(task_observations(train), rows, fit, png, x_name="parameters N",
                      title=f"{task}: fitted on the smaller sizes; held-out largest size")
        lines += [f"### {task}", "", f"![scaling law {task}]({png.name})", "", "```", fit.summary(), "```", ""]

    # per-size table
    png = plot_per_size(models, out / "per_size_pu.png", list(cfg.tasks), n_largest)
    lines += ["## PU per size", "", f"![PU per size]({png.name})", "",
              "| size | N | " + " | ".join(cfg.tasks) + " | final train loss (seed mean) |",
              "|---|---|" + "---|" * len(cfg.tasks) + "---|"]
    sizes = df.drop_duplicates("model")[["model", "N", "size", "loss"]]
    for (name, N), g in sizes.groupby(["size", "N"], sort=False):
        cells = []
        for task in cfg.tasks:
            m = models[(models["task"] == task) & (models["N"] == N)]
            per = ", ".join(_fmt(v, ".3g") for v in m.sort_values("seed")["value"])
            cells.append(f"{_fmt(m['value'].mean(), '.3g')} ({per})")
        lines.append(f"| {name} | {N:,.0f} | " + " | ".join(cells) + f" | {g['loss'].mean():.3f} |")
    lines = _sort_table(lines)
    lines += ["", "Cells: mean over seeds (each seed's PU). A PU of 0 means no pass within the samples "
              "drawn (censored), not an ability of exactly 0.", ""]

    # seeds
    lines += ["## Seed distributions (Zhao et al. 2025)", ""]
    from analysis.seeds.plot import plot_seed_distributions

    for task, entry in seeds["tasks"].items():
        lines += [f"### {task}", ""]
        if "error" in entry:
            lines += [f"Not analysed: {entry['error']}", ""]
            continue
        res = entry["result"]
        png = plot_seed_distributions(res, out / f"seeds_{task}.png", title=f"{task}: PU across seeds")
        lines += [f"![seeds {task}]({png.name})", ""]
        lines += ["```", res.summary(), "```", ""]
        note = _out_of_bounds(res)
        if note:
            lines += [note, ""]
        (out / f"seeds_{task}.json").write_text(json.dumps(res.to_dict(), indent=2, default=str))

    lines += ["## Files", "",
              "- `prediction.json`: the prediction, with the time it was written (before the largest size existed)",
              "- `outcome.json`: predicted vs observed; `per_model_pu.csv`: every model's PU per task",
              "- `models/`: the Hugging Face checkpoints and `manifest.csv` (model, N, seed, tokens, flops, loss)",
              "- `eval/`: lm-eval's results and samples files per model"]
    if finetune is not None:
        lines += ["- `finetune_prediction.json`: the finetuning leg's E(D0), written before the largest size "
                  "existed; `finetune_outcome.json`: its check",
                  "- `finetune/`: base checkpoints' L and few-shot scores (`base/`), the finetuned checkpoints "
                  "with the sweep's manifest per task, their scores (`scores/`)"]
    lines += [""]
    path = out / "report.md"
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def _interval(lower, upper, cut: list | None = None, lo: float = 0.0, hi: float = 1.0) -> str:
    """``[lower, upper]`` of a quantity bounded in [lo, hi] (PU, accuracy, a
    pass rate), cut to its bounds for display: an interval that leaves them
    as computed reads ``[0, 0.42] (interval cut at 0)`` and its bound is
    appended to ``cut`` (for the table's note)."""
    def num(v):
        return None if v is None or not np.isfinite(float(v)) else float(v)

    a, b = num(lower), num(upper)
    at = []
    if a is not None and a < lo:
        at.append(f"{lo:g}")
        if cut is not None:
            cut.append(f"a lower end below {lo:g} ({_fmt(a, '.3g')})")
        a = lo
    if b is not None and b > hi:
        at.append(f"{hi:g}")
        if cut is not None:
            cut.append(f"an upper end above {hi:g} ({_fmt(b, '.3g')})")
        b = hi
    return f"[{_fmt(a)}, {_fmt(b)}]" + (f" (interval cut at {' and '.join(at)})" if at else "")


def _out_of_bounds(res) -> str:
    """'' or a note naming the seed-analysis intervals (in ``res.table``)
    that leave the metric's bounds as computed; the figure cuts them."""
    bounds = getattr(res, "bounds", None)
    checks = [("p_success", (0.0, 1.0))] + ([(c, tuple(bounds)) for c in ("mean", "mean_success", "mode")]
                                           if bounds is not None else [])
    bad = []
    t = res.table
    for col, (lo, hi) in checks:
        if f"{col}_lower" not in t.columns:
            continue
        for N, a, b in zip(t["N"], t[f"{col}_lower"], t[f"{col}_upper"]):
            if (np.isfinite(a) and a < lo) or (np.isfinite(b) and b > hi):
                bad.append(f"{col} at N = {N:.3g}: [{a:.3g}, {b:.3g}]")
    if not bad:
        return ""
    return ("Note: these intervals leave the metric's bounds as computed and are cut at the bounds in the "
            "figure: " + "; ".join(bad) + ".")


def _sort_table(lines: list[str]) -> list[str]:
    """The per-size rows in order of N (groupby keeps first-seen order)."""
    start = max(i for i, l in enumerate(lines) if l.startswith("|---|---|")) + 1
    rows = lines[start:]
    key = lambda l: float(l.split("|")[2].strip().replace(",", ""))  # noqa: E731
    return lines[:start] + sorted(rows, key=key)


def _e(e) -> str:
    if not e or e.get("E") is None:
        return "none"
    if e.get("lower") is None or e.get("upper") is None:
        return f"{e['E']:.3f}"
    return f"{e['E']:.3f} [{e['lower']:.3f}, {e['upper']:.3f}]"


def finetune_section(out: Path, leg, pred: dict, res: dict) -> list[str]:
    """The report's section on the finetuning leg (:mod:`.finetune_leg`)."""
    task = leg.task
    tabs = res.get("_tables") or {}
    bases, big, ft = tabs.get("bases"), tabs.get("largest"), tabs.get("ft")
    lines = ["## Finetuning leg: predicted few-shot emergence", ""]
    if bases is not None and len(bases):
        acc = bases[f"c_{task}"] / bases[f"n_{task}"]
        best = (f"The smaller sizes' best few-shot (D = 0) greedy accuracy on **{task}** is {acc.max():.3g} "
                f"({int(bases[f'c_{task}'].max())}/{int(bases[f'n_{task}'].max())}). ")
    else:
        best = ""
    lines += [best + "Following Snell et al. 2024, every smaller size (ladder seed(s) "
              f"{', '.join(str(s) for s in res.get('finetune_seeds', []))}"
              f") was finetuned on D = {', '.join(str(d) for d in sorted(set(leg.Ds)))} examples of it "
              f"(full finetuning with the project's `finetune-sweep` code: lr {leg.lr:g}, batch {leg.batch_size}, "
              f"max({leg.min_steps}, {leg.epochs:g} epochs) steps), and the emergence law "
              "Perf(L, D) = A ReLU(E(D) - L) + B, E(D) = k (log D)^alpha + C was fitted "
              "(`analysis.emergence.fit_emergence_law`, binomial likelihood, parametric bootstrap"
              + (f"; rows scoring >= {leg.ceiling:g} left out, the law having no ceiling: "
                 f"{pred.get('rows_at_ceiling_left_out', 0)} of the task's" if leg.ceiling < 1 else "")
              + "). Its few-shot "
              f"limit E(D0) was written to `finetune_prediction.json` at {pred['written_at']}, before the largest "
              "size was trained.", "",
              f"- **L**: each base checkpoint's mean answer-token loss (nats) on a fixed sample of {leg.n_val} "
              "examples of the pretraining mixture (a seed no model trains with).",
              f"- **perf**: greedy exact-match accuracy on {leg.n_eval} items of the task's test generator (the "
              "lab's PassUntil items are the first of them), decoded directly with `transformers` (deterministic; "
              "not through lm-eval and not the sampled PassUntil PU of the tables above). \"Few-shot\" is "
              "Snell et al.'s name for the model without finetuning (D = 0); the lab's prompts carry no "
              "demonstrations.",
              f"- **D0** = {pred['d0']:.4g}: {pred['d0_how']}."]
    cal = pred.get("calibration")
    if cal and cal.get("d0") is not None:
        o = cal.get("observed_fewshot_E") or {}
        lines.append(f"  The observed few-shot emergence point of {cal['task']} (curve fitted to every smaller "
                     f"checkpoint's D = 0 accuracy) is {_e(o)} nats; the finetuned law of {cal['task']} reaches it "
                     f"at D0 = {cal['d0']:.4g} (`calibrate_d0`), which is reused for {task}.")
    if pred.get("largest_models_existing_when_written"):
        lines.append("- **Warning:** largest-size models existed when the prediction was written: "
                     + ", ".join(pred["largest_models_existing_when_written"]))
    lines += [""]
    e = pred.get("few_shot_emergence")
    shown = (f"E(D0) = {_e(e)} nats (95% interval)" if e and e.get("E") is not None
             else "none (no emergence point)")
    lines += [f"**Predicted few-shot emergence point:** {shown}; verdict of the fit: "
              f"**{pred.get('verdict') or '-'}**"
              + (f" ({pred['verdict_reason']})" if pred.get("verdict_reason") else "") + ".", ""]
    notes = []
    if e and e.get("E") is not None:
        if e["E"] < 0:
            notes.append(f"E(D0) is below zero, a loss no model can reach: read literally, the law says lowering the "
                         f"pretraining loss alone never makes {task} appear few-shot (it is an extrapolation "
                         "far below the fitted checkpoints; see the fit's warnings).")
        if e.get("lower") is not None and not e["lower"] <= e["E"] <= e["upper"]:
            notes.append("The point estimate lies outside its own 95% bootstrap interval: the refits are skewed "
                         "(parameters at their bounds), so the interval is a rough guide only.")
        fit = pred.get("fit") or {}
        side = fit.get("side_counts") or []
        past = [r["D"] for r in side if r.get("post")]
        if side:
            all_d = ", ".join(f"{r['D']:g}" for r in side)
            past_d = ", ".join(f"{d:g}" for d in past) or "none"
            notes.append(f"Finetuned rows lie past the fitted kink at D = {past_d} (of {all_d}); the emergence "
                         "point at the other D, and E(D0), come from the law's form.")
    if notes:
        lines += [" ".join(notes), ""]
    # the check
    lines += ["| largest-size model | its L (nats) | L vs E(D0) | predicted | few-shot accuracy (greedy) | "
              "observed | agrees | lab PU (sampled) |", "|---|---|---|---|---|---|---|---|"]
    for r in res["per_seed"]:
        side = "-" if r["L_below_E"] is None else ("below" if r["L_below_E"] else "above")
        agree = {True: "yes", False: "**no**", None: "-"}[r["agree"]]
        lines.append(f"| {r['checkpoint']} | {r['L']:.4f} | {side} | {r['predicted']} | {r['c']}/{r['n']} = "
                     f"{r['acc']:.3g} | {r['observed']} | {agree} | {_fmt(r.get('lab_pu'))} |")
    lines += ["", f"'emerged' (observed) means a few-shot accuracy at least {res['margin']:g} above the floor "
              f"(the fitted B = {res['floor']:.3g}) with its 95% lower bound above the floor; 'predicted' compares "
              "L with E(D0)'s interval (below it: emerged; above: not emerged; inside: undecided)."]
    dec = res["decided"]
    if res.get("E") is None:
        lines += ["", "**No few-shot emergence point was predicted** (see the verdict above), so there is nothing "
                  "to check beyond the observation: "
                  + ("the largest size's few-shot accuracy left the floor." if res["any_emerged"] else
                     "the largest size's few-shot accuracy stayed at the floor.")]
    else:
        lines += ["", f"**Check:** the prediction agrees with the observation for {res['agree']} of {dec} decided "
                  f"largest-size model(s) ({len(res['per_seed']) - dec} undecided: L inside the interval)."]
    png = Path(out) / f"finetune_law_{task}.png"
    if png.is_file():
        lines += ["", f"![finetuning law {task}]({png.name})", "",
                  "Perf against L (x reversed: stronger to the right), one colour per D; black squares: few-shot "
                  "(D = 0) accuracy of every checkpoint, the largest size's included; dashed: the law at D0 with "
                  "its band; red line and band: E(D0)."]
    cpng = Path(out) / f"finetune_calibration_{leg.calibration_task}.png" if leg.calibration_task else None
    if cpng is not None and cpng.is_file():
        lines += ["", f"![D0 calibration]({cpng.name})"]
    if ft is not None and len(ft):
        d = ft[ft["task"] == task]
        Ds = sorted(d["D"].unique())
        lines += ["", f"Accuracy on {task} of each base checkpoint, few-shot and after finetuning on D examples:", "",
                  "| checkpoint | L | D = 0 | " + " | ".join(f"D = {int(x)}" for x in Ds) + " |",
                  "|---|---|---|" + "---|" * len(Ds)]
        allb = pd.concat([bases, big]) if big is not None else bases
        for b in allb.sort_values("L", ascending=False).to_dict("records"):
            cells = []
            for D in Ds:
                m = d[(d["checkpoint"] == b["checkpoint"]) & (d["D"] == D)]
                cells.append(f"{float(m['acc'].iloc[0]):.3g}" if len(m) else "-")
            lines.append(f"| {b['checkpoint']} | {b['L']:.4f} | {b[f'c_{task}'] / b[f'n_{task}']:.3g} | "
                         + " | ".join(cells) + " |")
    if pred.get("summary"):
        lines += ["", "```", pred["summary"], "```"]
    w = pred.get("fit_warnings") or []
    if w:
        lines += [""] + [f"- fit warning: {x}" for x in dict.fromkeys(w)]
    lines += [""]
    return lines
