"""``python -m analysis seeds INPUT... [--manifest M] [--task T] [--metric acc] [--x N] [--threshold X] [--alpha 0.05]``

Distributions of one metric across training seeds, per model size (Zhao et
al. 2025): reads lm-eval results and/or tidy tables (one run = one model = one
size and seed), prints the per-size table of
:func:`analysis.seeds.seed_distributions`, and writes
``seeds_<task>_<metric>.json`` and ``.png`` into ``--output_path``.

Inputs (:func:`analysis.ingest.load`): lm-eval output directories or results
files, and table files (.csv, .csv.gz, .tsv, .parquet, .jsonl, .json) with
the columns model, N, seed, task, score (or value/acc), optionally metric,
filter, step; see :mod:`analysis.ingest.tables`.

Where each run's size and seed come from:

- size: ``--x`` (default ``N``; or ``compute``, ``tokens``, any numeric
  column).  ``N``: the table's ``N``, the manifest's ``N`` for the model, else
  the ``model_num_parameters`` lm-eval records in the results file;
- seed: the table's or the manifest's ``seed`` for the model, else a
  ``seed<k>``, ``seed-<k>``, ``seed_<k>`` or ``seed=<k>`` in the model's name
  (PolyPythias: ``EleutherAI/pythia-160m-seed3``; a run directory
  ``.../seed_2``), see :func:`analysis.seeds.parse_seed`.  A run with neither
  is an error listing it.

Runs with several checkpoints (a ``step`` column): ``--step S`` takes step S;
without it each (size, seed) keeps its last step, with a note.

A score that is not a number (a JSON string ``"0.41"`` or ``"n/a"``, null,
true/false) where an lm-eval results file should hold the chosen metric is an
error naming the run (model, seed, size, file): the reader of results files
skips non-numbers (aliases and the like), which would otherwise drop the run
from the analysis without a word.  In tables, a score that is not a number is
an error naming FILE:LINE (:mod:`analysis.ingest.tables`); numbers written as
text there ("0.41" in a CSV) are numbers.

The manifest (CSV or YAML, see :func:`analysis.ingest.read_manifest`) is keyed
by the model name lm-eval records: the ``pretrained=`` of ``--model_args``
(with ``@revision`` when one is given).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path

import pandas as pd

from ..ingest.tables import primary_metric

from ..ingest import TableWarning

__all__ = ["add_parser", "load_seed_runs"]


def _pick(available: list[str], wanted: str | None, what: str, task: str) -> str:
    if wanted is not None:
        if wanted not in available:
            raise ValueError(f"task {task!r}: no {what} {wanted!r}; available: {available}")
        return wanted
    if len(available) == 1:
        return available[0]
    if what == "metric" and (metric := primary_metric(available)):
        return metric
    raise ValueError(f"task {task!r} has several {what}s {available}: choose one with --{what}")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _lm_eval_files(paths) -> list[Path]:
    """The JSON files :func:`analysis.ingest.load` reads as lm-eval output:
    ``*.json`` below directories, and JSON files named directly (tables are
    other suffixes, or a JSON list, which has no ``results``)."""
    out = []
    for p in [paths] if isinstance(paths, (str, Path)) else paths:
        p = Path(p)
        if p.is_dir():
            out.extend(f for f in sorted(p.rglob("*.json")) if f.is_file())
        elif p.is_file() and p.name.lower().endswith(".json"):
            out.append(p)
    return out


def _non_numeric_scores(paths) -> list[dict]:
    """Every metric value in the lm-eval results files under ``paths`` that is
    not a JSON number: dicts with model, task, metric, filter, value, file,
    n_params.  The results reader skips such values (it cannot tell a
    malformed score from an alias); the caller decides which ones matter.
    Files that are not readable results are left to the reader to report."""
    from ..ingest import detect_format, model_name

    found = []
    for f in _lm_eval_files(paths):
        try:
            with open(f, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        try:
            fmt = detect_format(data, f)
        except ValueError:
            continue
        if fmt is None:
            continue
        config = data.get("config") if isinstance(data.get("config"), dict) else {}
        n_params = config.get("model_num_parameters")
        n_params = float(n_params) if _is_number(n_params) else math.nan
        try:
            model = model_name(data, f)
        except (ValueError, KeyError, TypeError):
            model = f.parent.name
        sections = dict(data.get("groups") or {}) if fmt == "v0.4" else {}
        sections.update(data.get("results") or {})
        for task, metrics in sections.items():
            if not isinstance(metrics, dict):
                continue
            for key, v in metrics.items():
                if _is_number(v):
                    continue
                if fmt == "v0.4":
                    if "," not in str(key):
                        continue  # "alias" and other labels: metrics are "metric,filter" in v0.4
                    metric, _, filt = str(key).partition(",")
                else:
                    if key == "alias":
                        continue
                    metric, filt = str(key), "none"
                if metric.endswith("_stderr"):
                    continue  # "N/A" stderrs are lm-eval's way of saying none
                found.append({"model": model, "task": str(task), "metric": metric, "filter": filt or "none",
                              "value": v, "file": str(f), "n_params": n_params})
    return found


def _non_numeric_error(bad: list[dict], man: pd.DataFrame | None, what: str) -> ValueError:
    """A ValueError listing the runs in ``bad`` by model, seed, size and file."""
    from .distributions import parse_seed

    def lookup(model, col):
        if man is None or col not in man.columns:
            return None
        v = man.drop_duplicates("model").set_index("model")[col].get(model)
        return None if v is None or pd.isna(v) else v

    lines = []
    for b in bad[:20]:
        seed = lookup(b["model"], "seed")
        seed = parse_seed(b["model"]) if seed is None else seed
        if isinstance(seed, float) and seed.is_integer():
            seed = int(seed)  # the manifest's numbers are floats; a seed is a label
        n = lookup(b["model"], "N")
        n = b["n_params"] if n is None else n
        who = ", ".join(x for x in (f"seed {seed}" if seed is not None else "no seed found",
                                    f"N {float(n):g}" if n is not None and not pd.isna(n) else None) if x)
        v = b["value"]
        kind = ("a JSON string" if isinstance(v, str) else "JSON null" if v is None
                else "JSON true/false" if isinstance(v, bool) else f"a JSON {type(v).__name__}")
        lines.append(f"  {b['model']} ({who}): {b['metric']},{b['filter']} = "
                     f"{'null' if v is None else json.dumps(v)} ({kind}) in {b['file']}")
    if len(bad) > 20:
        lines.append(f"  ... and {len(bad) - 20} more")
    return ValueError(f"{what} is not a number in {len(bad)} run(s); lm-eval writes scores as JSON numbers, "
                      "and a run is not left out silently: fix these results files or remove the runs:\n"
                      + "\n".join(lines))


def load_seed_runs(paths, manifest=None, *, task: str | None = None, metric: str | None = None,
                   filt: str | None = None, x: str = "N", step: float | None = None,
                   notes: list | None = None) -> pd.DataFrame:
    """One row per run for ``seed_distributions``: columns model, task, metric,
    filter, N, x (the size: ``x`` = N, compute, tokens or a numeric column),
    seed, seed_source ("table", "manifest" or "name"), value, file.

    ``paths``: lm-eval output and/or table files (:func:`analysis.ingest.load`).
    ``task``/``metric``/``filt`` (the lm-eval filter) select the measurement;
    each may be left out when the inputs hold only one choice.  ``step``: the
    checkpoint step to use where the runs have a ``step`` column (default: each
    (size, seed)'s last step, said in ``notes``).  Raises ValueError (naming
    the models and files) for runs without a seed or size and for runs whose
    lm-eval score of the chosen metric is not a number (a JSON string such
    as "0.41"), and FileNotFoundError when there are no results.
    """
    from ..ingest import load, read_manifest, with_x
    from .distributions import parse_seed

    man = read_manifest(manifest) if manifest is not None and not isinstance(manifest, pd.DataFrame) \
        else manifest
    # Scores lm-eval's reader skips as "not a metric": they count as present
    # (so a metric held only as text is still a choice to be made, not replaced
    # by another one), and choosing one is an error naming the runs.
    bad = _non_numeric_scores(paths)
    try:
        res = load(paths, manifest, kind="scores")
    except FileNotFoundError:
        if bad:
            raise _non_numeric_error(bad, man, "a score") from None
        raise
    tasks = sorted(set(res["task"]) | {b["task"] for b in bad})
    task = _pick(tasks, task, "task", "<results>") if task is not None or len(tasks) == 1 else None
    if task is None:
        raise ValueError(f"the results hold several tasks {tasks}: choose one with --task")
    d = res[res["task"] == task]
    bad = [b for b in bad if b["task"] == task]
    metric = _pick(sorted(set(d["metric"]) | {b["metric"] for b in bad}), metric, "metric", task)
    d = d[d["metric"] == metric]
    bad = [b for b in bad if b["metric"] == metric]
    filt = _pick(sorted(set(d["filter"].fillna("none")) | {b["filter"] for b in bad}), filt, "filter", task)
    bad = [b for b in bad if b["filter"] == filt]
    if bad:
        raise _non_numeric_error(bad, man, f"task {task!r}: the score of {metric!r} (filter {filt!r})")
    d = d[d["filter"].fillna("none") == filt].reset_index(drop=True)
    if "num_fewshot" in d.columns and d["num_fewshot"].dropna().nunique() > 1:
        raise ValueError(f"task {task!r}, metric {metric!r}: runs with different num_fewshot "
                         f"{sorted(map(str, d['num_fewshot'].dropna().unique()))}: analyse them separately")
    d = with_x(d, x)
    man_seed = man.set_index("model")["seed"] if man is not None and "seed" in man.columns \
        else pd.Series(dtype=float)
    seeds, source = [], []
    col = d["seed"] if "seed" in d.columns else pd.Series([None] * len(d), index=d.index, dtype=object)
    for model, s in zip(d["model"], col):
        if s is not None and pd.notna(s):
            try:
                s = int(s) if float(s).is_integer() else s
            except (TypeError, ValueError):
                pass
            m = man_seed.get(model)
            seeds.append(s)
            source.append("manifest" if m is not None and pd.notna(m) else "table")
            continue
        s = parse_seed(str(model))
        seeds.append(s)
        source.append("name" if s is not None else None)
    d = d.assign(seed=pd.Series(seeds, index=d.index, dtype=object), seed_source=source)
    missing = d[d["seed"].isna()]
    if not missing.empty:
        lines = "\n".join(f"  {m}: {f}" for m, f in zip(missing["model"], missing["file"]))
        raise ValueError("no seed for these runs: add a 'seed' column to the table or the manifest (keyed by "
                         "model), or put seed<k> in the model's name or path:\n" + lines)
    if "step" in d.columns and d["step"].notna().any():
        if step is not None:
            d = d[d["step"] == float(step)]
            if d.empty:
                raise ValueError(f"no run of task {task!r} has a checkpoint at step {step:g}")
        else:
            last = d.groupby(["x", "seed"])["step"].transform("max")
            keep = d["step"].isna() | (d["step"] == last)
            if not keep.all() and notes is not None:
                notes.append(f"{int((~keep).sum())} earlier checkpoint(s) left out: each (size, seed) run "
                             "keeps its last step (choose one with --step)")
            d = d[keep]
    dup = d.duplicated(["x", "seed"], keep=False)
    if dup.any():
        lines = "\n".join(f"  {x}={n:g} seed={s}: {m} ({f})" for n, s, m, f in
                          d.loc[dup, ["x", "seed", "model", "file"]].itertuples(index=False))
        raise ValueError("several runs with the same size and seed (a seed must name one training "
                         "run per size):\n" + lines)
    d = d.rename(columns={"score": "value"}).reset_index(drop=True)
    return d[["model", "task", "metric", "filter", "N", "x", "seed", "seed_source", "value", "file"]]


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


def _show_warnings(caught) -> None:
    """What reading the tables assumed, one ``warning:`` line each on stderr
    (only when the run goes on: an error is then the one line that matters)."""
    for w in caught:
        if issubclass(w.category, TableWarning):
            print(f"warning: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _cmd_seeds(args) -> int:
    from .distributions import seed_distributions
    from .plot import plot_seed_distributions

    notes: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", TableWarning)
            runs = load_seed_runs(args.results, args.manifest, task=args.task, metric=args.metric,
                                  filt=args.filter, x=args.x, step=args.step, notes=notes)
        _show_warnings(caught)
        for n in notes:
            print(f"note: {n}", file=sys.stderr)
        res = seed_distributions(runs, value="value", size="x", seed="seed", threshold=args.threshold,
                                 n_boot=args.n_boot, level=args.alpha, random_state=args.seed)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    task, metric, filt = runs["task"].iloc[0], runs["metric"].iloc[0], runs["filter"].iloc[0]
    res.value_name = metric
    out = Path(args.output_path)
    out.mkdir(parents=True, exist_ok=True)
    print(f"== {task}: {metric} (filter {filt}), {len(runs)} runs"
          + (f"; size = {args.x} (shown as N)" if args.x != "N" else ""))
    print(res.summary())
    report = {"task": task, "metric": metric, "filter": filt, "x": args.x, **res.to_dict(),
              "models": [{"model": r.model, "N": None if pd.isna(r.N) else float(r.N), "x": float(r.x),
                          "seed": r.seed, "seed_source": r.seed_source,
                          "value": float(r.value), "file": r.file} for r in runs.itertuples(index=False)]}
    stem = f"seeds_{_slug(task)}_{_slug(metric)}"
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2, default=str))
    png = plot_seed_distributions(res, out / f"{stem}.png", title=f"{task}: {metric} across seeds")
    print(f"wrote {out / (stem + '.json')} and {png}")
    return 0


def add_parser(subparsers) -> None:
    """Add the ``seeds`` subcommand (see the module docstring)."""
    from ..commands import add_command, add_output_path

    s = add_command(subparsers, "seeds", help="distributions of a metric across training seeds, per size",
                    description=__doc__)
    s.add_argument("results", nargs="+",
                   help="lm-eval output directories or results files (one model per run), or table files "
                        "(.csv/.tsv/.parquet/.jsonl/.json: model, N, seed, task, score)")
    s.add_argument("--manifest", help="CSV/YAML: model, N, seed (seed may instead be in the model name)")
    s.add_argument("--x", default="N", metavar="N|compute|tokens|COLUMN",
                   help="the size variable the runs are grouped by (compute = 6*N*tokens where a table has no "
                        "compute)")
    s.add_argument("--step", type=float,
                   help="use the checkpoints at this step (tables with a step column; default: each run's last)")
    s.add_argument("--task", help="the task (needed when the results hold several)")
    s.add_argument("--metric", help="the metric, e.g. acc (needed when the task reports several)")
    s.add_argument("--filter", help="lm-eval filter of the metric, e.g. none (needed when there are several)")
    s.add_argument("--threshold", type=float, default=None,
                   help="success = value >= this (default: antimode of the pooled 2-component mixture)")
    s.add_argument("--alpha", type=float, default=0.05,
                   help="significance level of the tests; intervals cover 1 - alpha")
    s.add_argument("--n_boot", "--n-boot", dest="n_boot", type=int, default=2000, help="bootstrap resamples")
    s.add_argument("--seed", "--random_state", dest="seed", type=int, default=0,
                   help="random seed of the bootstrap and permutations")
    add_output_path(s, "analysis_out", "directory for JSON and PNG")
    s.set_defaults(fn=_cmd_seeds)
