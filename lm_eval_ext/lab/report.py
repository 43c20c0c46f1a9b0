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

from ..adaptive import write_text_atomic


def _fmt(x, spec=".4g") -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "-"
    return format(x, spec)


def plot_per_size(models: pd.DataFrame, path: Path, tasks, n_largest: float) -> Path:
    """Every model's task PU (mean over instances of c/n) against N, one
    panel per task: seeds as dots, the seed mean as a line; PU 0 drawn at the
    panel's floor as open triangles (censored, not zero)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.6), dpi=110, squeeze=False)
    for ax, task in zip(axes[0], tasks):
        d = models[models["task"] == task]
        pos = d["value"][d["value"] > 0]
        floor = 0.3 * float(pos.min()) if len(pos) else 1e-4
        for seed, g in d.groupby("seed"):
            g = g.sort_values("N")
            y = g["value"].to_numpy()
            ax.plot(g["N"][y > 0], y[y > 0], "o", alpha=0.7, ms=5, label=f"seed {int(seed)}")
            if (y <= 0).any():
                ax.plot(g["N"][y <= 0], [floor] * int((y <= 0).sum()), "v", mfc="none", color="gray", ms=6)
        mean = d.groupby("N")["value"].mean()
        ax.plot(mean.index, np.maximum(mean.to_numpy(), floor), "-", color="k", lw=1.2, label="seed mean")
        ax.axvline(n_largest, color="C3", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(task, fontsize=10)
        ax.set_xlabel("parameters N")
        ax.grid(True, which="both", alpha=0.25)
    axes[0][0].set_ylabel("PU (mean over instances)")
    axes[0][0].legend(fontsize=7, loc="best")
    fig.suptitle("PU of every model; dotted: the held-out largest size; ▽: no pass (censored)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(out: Path, cfg, df: pd.DataFrame, models: pd.DataFrame, prediction: dict, outcome: dict,
                 seeds: dict) -> Path:
    from analysis.forecast.plot import plot_backtest

    from .pipeline import task_counts, task_observations

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
    for task in cfg.tasks:
        r = outcome["tasks"][task]
        if "predicted" in r:
            lines.append(f"| {task}{' (primary)' if task == primary else ''} | {_fmt(r['predicted'])} | "
                         f"[{_fmt(r['lower'])}, {_fmt(r['upper'])}] | {_fmt(r['observed'])} ± "
                         f"{_fmt(r['observed_se'], '.2g')} | {'yes' if r['inside'] else '**no**'} | "
                         f"[{_fmt(r['lower_with_obs_noise'])}, {_fmt(r['upper_with_obs_noise'])}] "
                         f"({'inside' if r['inside_with_obs_noise'] else 'outside'}) | "
                         f"{_fmt(r['ratio_observed_to_predicted'], '.3g')} |")
        else:
            lines.append(f"| {task} | - | no fit: {r.get('error', '')[:120]} | {_fmt(r['observed'])} | - | - | - |")
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
              "averaged over the seeds of a size. The prediction comes from the forecasting core "
              "(`analysis.forecast.fit_forecast`): the law PU(N) = exp(-c N^-alpha), a local line through the "
              "upper half of the ladder and a constant, fitted to every model (each seed its own model), weighted "
              "by how well each predicted the ladder's larger sizes from its smaller ones (forward chaining); its "
              "interval is for one new model and includes the scatter between models, the spread between the "
              "forms and the model-form error calibrated on the ladder and on real ladders "
              "(docs/forecasting.md).", ""]

    # scaling-law plots
    lines += ["## Scaling laws", ""]
    for task in cfg.tasks:
        d = task_counts(df, task)
        held = d[np.isclose(d["N"], n_largest)]
        train = d[~np.isclose(d["N"], n_largest)]
        r = outcome["tasks"][task]
        try:
            from .pipeline import fit_and_predict

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
        (out / f"seeds_{task}.json").write_text(json.dumps(res.to_dict(), indent=2, default=str))

    lines += ["## Files", "",
              "- `prediction.json`: the prediction, with the time it was written (before the largest size existed)",
              "- `outcome.json`: predicted vs observed; `per_model_pu.csv`: every model's PU per task",
              "- `models/`: the Hugging Face checkpoints and `manifest.csv` (model, N, seed, tokens, flops, loss)",
              "- `eval/`: lm-eval's results and samples files per model", ""]
    path = out / "report.md"
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def _sort_table(lines: list[str]) -> list[str]:
    """The per-size rows in order of N (groupby keeps first-seen order)."""
    start = max(i for i, l in enumerate(lines) if l.startswith("|---|---|")) + 1
    rows = lines[start:]
    key = lambda l: float(l.split("|")[2].strip().replace(",", ""))  # noqa: E731
    return lines[:start] + sorted(rows, key=key)
