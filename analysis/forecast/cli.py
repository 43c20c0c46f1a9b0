"""``python -m analysis backtest TABLE_OR_DIR... --x X [--y COLUMN] [--law auto|passuntil|...] [--tasks T1,T2] --output_path DIR``

The tool's own track record on your ladder.  If the table has a ``split``
column (``train`` / ``holdout``), the forecast is fitted on the train models
and predicts the holdout ones; otherwise it forward-chains over the distinct
x values (fit the smallest k, predict every larger model, for each k).

Inputs: tidy tables (CSV, parquet, JSONL; see ``analysis.ingest.tables`` for
the columns: model, N, tokens, compute, task, and either instance, n, c or
score, n_items, chance; optional split, loss, run) and lm-eval output
directories.

On the loss axis (``--x LOSS``, a column whose name says loss, bpb, nll or
ppl) each model's score is predicted from its loss; ``--x N --via LOSS``
predicts the loss from the scale first (the two-step chain).  There, models
with ``split = predict`` are forecast without being scored: their score (and
through the chain their loss) may be empty, so a model can be forecast
before it is trained.

Writes ``DIR/backtest.json``::

    {"tasks": {TASK: {"x": ..., "law": ..., "verdict": ..., "warnings": [...],
                      "coverage": ..., "predictions": [{"model": ..., "x": ...,
                      "observed": ..., "predicted": ..., "lower": ...,
                      "upper": ..., "covered": true|false}]}}}

(observed and predicted on the PU or score scale, intervals at the 95% level)
and ``DIR/backtest_<task>.png``, and prints the table with the interval score
of each prediction next to that of a plain least-squares baseline.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np


def file_stem(prefix: str, name: str) -> str:
    return prefix + "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(name))


def load_ladder(paths, *, manifest=None, x="N", metric=None):
    """Tidy table with the column ``x`` from tables and/or lm-eval directories;
    warnings from reading are printed as one line each."""
    from ..ingest import load, select_metric, with_x

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = load(paths, manifest)
        if "score" in df.columns and not {"n", "c"} <= set(df.columns):
            df = select_metric(df, metric)
        df = with_x(df, x)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    if df.attrs.get("x_note"):
        print(f"note: {df.attrs['x_note']}", file=sys.stderr)
    return df


def _cmd_backtest(args) -> int:
    from .backtest import backtest_table, summarize
    from .lossacc import backtest_loss_table, is_loss_column
    from .plot import plot_backtest, plot_loss_backtest

    on_loss = args.via is not None or is_loss_column(args.x)
    try:
        if on_loss and args.law != "auto":
            raise ValueError(f"--law {args.law} names a law in scale; on the loss axis the curves are chosen "
                             "by their forward-chaining record (leave --law at auto)")
        df = load_ladder(args.inputs, manifest=args.manifest, x=args.x, metric=args.metric)
        if on_loss:
            report, details = backtest_loss_table(df, x_name=args.x, via=args.via, tasks=args.tasks,
                                                  chance=args.chance, y=args.y, max_origins=args.max_origins)
        else:
            report, details = backtest_table(df, x_name=args.x, law=args.law, tasks=args.tasks, chance=args.chance,
                                             y=args.y, max_origins=args.max_origins)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.output_path)
    out.mkdir(parents=True, exist_ok=True)
    for task, entry in report["tasks"].items():
        det = details[task]
        rows = det["rows"]
        print(f"== {task}  [{entry['verdict']}]  x = {args.x}, law = {entry['law']}")
        for w in entry["warnings"][:12]:
            print(f"   warning: {w}")
        if len(rows):
            cols = ["model", "x", "observed", "predicted", "lower", "upper", "covered", "score", "base_score",
                    "loss_observed", "loss_pred", "loss_lower", "loss_upper"]
            show = rows[[c for c in cols if c in rows.columns]].copy()
            print(show.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
            if on_loss:
                sc = rows[rows["observed"].notna()]
                width = (rows["upper"] - rows["lower"]).median()
                if len(sc):
                    err = (sc["predicted"] - sc["observed"]).abs().mean()
                    print(f"   coverage {sc['covered'].astype(bool).mean():.3f} ({len(sc)} scored predictions); "
                          f"mean absolute error {err:.4f}; median interval width {width:.3f}")
                if len(sc) < len(rows):
                    print(f"   {len(rows) - len(sc)} forecast(s) of models marked split = predict (nothing to "
                          f"score); median interval width {width:.3f}")
            s = {} if on_loss else summarize(rows)
            if s.get("n"):
                print(f"   coverage {s['coverage']:.3f} ({s['n']} predictions); mean interval score "
                      f"{s['score']:.3f} vs {s['base_score']:.3f} for the plain least-squares law "
                      f"(coverage {s['base_coverage']:.3f})")
        if det["final"] is not None and on_loss:
            png = plot_loss_backtest(det["final"], rows, out / (file_stem("backtest_", task) + ".png"), title=task)
            print(f"   plot: {png}")
        elif det["final"] is not None:
            png = plot_backtest(det["obs"], rows, det["final"], out / (file_stem("backtest_", task) + ".png"),
                                title=task, x_name=args.x)
            print(f"   plot: {png}")
    path = out / "backtest.json"
    path.write_text(json.dumps(report, indent=2, default=_json_default))
    print(f"wrote {path}")
    return 0


def _json_default(v):
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    raise TypeError(type(v).__name__)


def add_parser(subparsers) -> None:
    """Add the ``backtest`` subcommand (see the module docstring)."""
    from ..commands import add_command, add_list_argument, add_output_path
    from .backtest import LAWS

    s = add_command(subparsers, "backtest", help="the forecast's own track record on a ladder of models",
                    description=__doc__)
    s.add_argument("inputs", nargs="+", help="tidy tables (CSV, parquet, JSONL) and/or lm-eval output directories")
    s.add_argument("--x", default="N", help="scale: N, compute (6 N tokens when not given), tokens, or a column; "
                                            "a loss column (its name says loss, bpb, nll or ppl) predicts the "
                                            "score from the model's loss")
    s.add_argument("--via", metavar="LOSS",
                   help="two-step chain: predict the holdout models' LOSS column from --x (Chinchilla's "
                        "L(N, D) when the table has N and tokens, else L = E + A x^-a), then the score from "
                        "that loss, one interval for both steps; needs a split column")
    s.add_argument("--y", help="a column to forecast as the score (default: PassUntil counts, else score)")
    s.add_argument("--law", default="auto", choices=sorted(LAWS),
                   help="auto: the law, a local line and a constant weighted by forward-chaining record; "
                        "passuntil: the law alone")
    add_list_argument(s, "--tasks", metavar="TASK", help="only these tasks, comma-separated (default: every task)")
    s.add_argument("--metric", help="metric[,filter] when results hold several (default: acc where a task has it, else its only metric)")
    s.add_argument("--chance", type=float, help="chance floor of a multiple-choice score (default: the table's "
                                                "chance column, else known lm-eval tasks, else 0)")
    s.add_argument("--manifest", help="CSV/YAML joined on model: N, tokens, compute, seed, split, ...")
    s.add_argument("--max_origins", type=int, default=12, help="forward chaining: at most this many origins")
    add_output_path(s, "backtest_out", "directory for backtest.json and the plots")
    s.set_defaults(fn=_cmd_backtest)
