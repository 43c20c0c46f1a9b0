"""``python -m analysis seeds RESULTS_DIR... [--manifest M] [--task T] [--metric acc] [--threshold X]``

Distributions of one metric across training seeds, per model size (Zhao et
al. 2025): reads lm-eval results (one run = one model = one size and seed),
prints the per-size table of :func:`analysis.seeds.seed_distributions`, and
writes ``seeds_<task>_<metric>.json`` and ``.png`` into ``--out``.

Where each run's size and seed come from:

- size ``N``: the manifest's ``N`` for the model, else the
  ``model_num_parameters`` lm-eval records in the results file;
- seed: the manifest's ``seed`` for the model, else a ``seed<k>``,
  ``seed-<k>``, ``seed_<k>`` or ``seed=<k>`` in the model's name or path
  (PolyPythias: ``EleutherAI/pythia-160m-seed3``; a run directory
  ``.../seed_2``), see :func:`analysis.seeds.parse_seed`.  A run with neither
  is an error listing it.

The manifest (CSV or YAML, see :func:`analysis.ingest.read_manifest`) is keyed
by the model name lm-eval records: the ``pretrained=`` of ``--model_args``
(with ``@revision`` when one is given).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

__all__ = ["add_parser", "load_seed_runs"]


def _pick(available: list[str], wanted: str | None, what: str, task: str) -> str:
    if wanted is not None:
        if wanted not in available:
            raise ValueError(f"task {task!r}: no {what} {wanted!r}; available: {available}")
        return wanted
    if len(available) == 1:
        return available[0]
    raise ValueError(f"task {task!r} has several {what}s {available}: choose one with --{what}")


def load_seed_runs(paths, manifest=None, *, task: str | None = None, metric: str | None = None,
                   filt: str | None = None) -> pd.DataFrame:
    """One row per run for ``seed_distributions``: columns model, task, metric,
    filter, N, seed, seed_source ("manifest" or "name"), value, file.

    ``task``/``metric``/``filt`` (the lm-eval filter) select the measurement; each may be left
    out when the results hold only one choice.  Raises ValueError (naming
    the models and files) for runs without a seed or size, and
    FileNotFoundError when there are no results.
    """
    from ..ingest import attach_sizes, read_manifest, read_results
    from .distributions import parse_seed

    res = read_results(paths)
    tasks = sorted(res["task"].unique())
    task = _pick(tasks, task, "task", "<results>") if task is not None or len(tasks) == 1 else None
    if task is None:
        raise ValueError(f"the results hold several tasks {tasks}: choose one with --task")
    d = res[res["task"] == task]
    metric = _pick(sorted(d["metric"].unique()), metric, "metric", task)
    d = d[d["metric"] == metric]
    filt = _pick(sorted(d["filter"].unique()), filt, "filter", task)
    d = d[d["filter"] == filt].reset_index(drop=True)
    if d["num_fewshot"].nunique(dropna=False) > 1:
        raise ValueError(f"task {task!r}, metric {metric!r}: runs with different num_fewshot "
                         f"{sorted(map(str, d['num_fewshot'].unique()))}: analyse them separately")
    man = read_manifest(manifest) if manifest is not None else None
    d = attach_sizes(d, man)
    seeds, source = [], []
    has_col = man is not None and "seed" in man.columns
    man_seed = man.set_index("model")["seed"] if has_col else pd.Series(dtype=float)
    for model in d["model"]:
        s = man_seed.get(model) if has_col else None
        if s is not None and pd.notna(s):
            seeds.append(int(s) if float(s).is_integer() else s)
            source.append("manifest")
            continue
        s = parse_seed(model)
        seeds.append(s)
        source.append("name" if s is not None else None)
    d = d.assign(seed=seeds, seed_source=source)
    missing = d[d["seed"].isna()]
    if not missing.empty:
        lines = "\n".join(f"  {m}: {f}" for m, f in zip(missing["model"], missing["file"]))
        raise ValueError("no seed for these runs: add a 'seed' column to the manifest (keyed by model) "
                         "or put seed<k> in the model's name or path:\n" + lines)
    dup = d.duplicated(["N", "seed"], keep=False)
    if dup.any():
        lines = "\n".join(f"  N={n:g} seed={s}: {m} ({f})" for n, s, m, f in
                          d.loc[dup, ["N", "seed", "model", "file"]].itertuples(index=False))
        raise ValueError("several runs with the same size and seed (a seed must name one training "
                         "run per size):\n" + lines)
    return d[["model", "task", "metric", "filter", "N", "seed", "seed_source", "value", "file"]]


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


def _cmd_seeds(args) -> int:
    from .distributions import seed_distributions
    from .plot import plot_seed_distributions

    try:
        runs = load_seed_runs(args.results, args.manifest, task=args.task, metric=args.metric,
                              filt=args.filter)
        res = seed_distributions(runs, value="value", size="N", seed="seed", threshold=args.threshold,
                                 n_boot=args.n_boot, level=args.level, random_state=args.random_state)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    task, metric, filt = runs["task"].iloc[0], runs["metric"].iloc[0], runs["filter"].iloc[0]
    res.value_name = metric
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"== {task}: {metric} (filter {filt}), {len(runs)} runs")
    print(res.summary())
    report = {"task": task, "metric": metric, "filter": filt, **res.to_dict(),
              "models": [{"model": r.model, "N": float(r.N), "seed": r.seed, "seed_source": r.seed_source,
                          "value": float(r.value), "file": r.file} for r in runs.itertuples(index=False)]}
    stem = f"seeds_{_slug(task)}_{_slug(metric)}"
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2, default=str))
    png = plot_seed_distributions(res, out / f"{stem}.png", title=f"{task}: {metric} across seeds")
    print(f"wrote {out / (stem + '.json')} and {png}")
    return 0


def add_parser(subparsers) -> None:
    """Add the ``seeds`` subcommand (see the module docstring)."""
    s = subparsers.add_parser("seeds", help="distributions of a metric across training seeds, per size",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("results", nargs="+", help="lm-eval output directories or results files (one model per run)")
    s.add_argument("--manifest", help="CSV/YAML: model, N, seed (seed may instead be in the model name)")
    s.add_argument("--task", help="the task (needed when the results hold several)")
    s.add_argument("--metric", help="the metric, e.g. acc (needed when the task reports several)")
    s.add_argument("--filter", help="lm-eval filter of the metric, e.g. none (needed when there are several)")
    s.add_argument("--threshold", type=float, default=None,
                   help="success = value >= this; default: antimode of the pooled 2-component mixture")
    s.add_argument("--level", type=float, default=0.05, help="1 - interval coverage, and the tests' level")
    s.add_argument("--n_boot", type=int, default=2000, help="bootstrap resamples")
    s.add_argument("--random_state", type=int, default=0, help="seed of the bootstrap and permutations")
    s.add_argument("--out", default="analysis_out", help="directory for JSON and PNG")
    s.set_defaults(fn=_cmd_seeds)
