"""``python -m analysis scaling RESULTS_DIR... [--manifest M] [--task T] [--predict N] [--holdout N]``

Fits the PassUntil task scaling law PU(N) = exp(-c N^-alpha) to per-instance
counts found in lm-eval result directories, prints a table, and writes a JSON
of the fit and a PNG plot per task into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def _load(paths, manifest):
    from ..ingest import attach_sizes, read_instances, read_manifest, read_results

    inst = read_instances(paths)
    try:
        res = read_results(paths)
        sizes = res.dropna(subset=["n_params"]).groupby("model")["n_params"].first()
    except (FileNotFoundError, ValueError):
        sizes = pd.Series(dtype=float)
    inst = inst.assign(n_params=inst["model"].map(sizes))
    man = read_manifest(manifest) if manifest else None
    return attach_sizes(inst, man)


def _cmd_scaling(args) -> int:
    from .circuits import compare_curves
    from .plot import plot_task_law
    from .law import backtest, classify_curvature, fit_task_law

    try:
        df = _load(args.results, args.manifest)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tasks = sorted(df["task"].unique()) if not args.task else [args.task]
    missing = [t for t in tasks if t not in set(df["task"])]
    if missing:
        print(f"error: task(s) {missing} not found; available: {sorted(df['task'].unique())}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    holdout = set(float(h) for h in args.holdout)
    for task in tasks:
        d = df[df["task"] == task]
        train = d[~d["N"].isin(holdout)]
        held = d[d["N"].isin(holdout)]
        try:
            fit = fit_task_law(train, level=args.level, method=args.method)
        except ValueError as exc:
            print(f"{task}: cannot fit: {exc}", file=sys.stderr)
            return 2
        print(f"== {task}")
        print(fit.summary())
        report = {"task": task, "fit": fit.to_dict(), "level": args.level, "method": args.method}
        try:
            curv = classify_curvature(train)
            print(f"curvature: {curv.label} (p = {curv.pvalue:.3g})")
            report["curvature"] = curv.to_dict()
        except ValueError as exc:
            print(f"curvature: not assessed ({exc})")
        alternatives = {}
        if train["N"].nunique() >= 3 and args.n_boot >= 0:
            comp = compare_curves(train, n_boot=args.n_boot, progress=True)
            print(comp.summary())
            report["curve_comparison"] = comp.to_dict()
            if comp.best != "law":
                alternatives[f"{comp.best.replace('_', '-')} (preferred by QAIC)"] = comp.fits[comp.best].predict
        if len(held):
            bt = backtest(d, sorted(holdout & set(d["N"])), level=args.level, method=args.method)
            print("backtest (fitted on the smaller sizes only):")
            print(bt.to_string(index=False))
            report["backtest"] = json.loads(bt.to_json(orient="records"))
        if args.predict:
            pred = fit.predict(np.asarray(args.predict, dtype=float))
            print("predictions:")
            print(pred.to_string(index=False))
            report["predictions"] = json.loads(pred.to_json(orient="records"))
        stem = "scaling_" + "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in task)
        (out / f"{stem}.json").write_text(json.dumps(report, indent=2, default=float))
        png = plot_task_law(train, fit, out / f"{stem}.png", holdout=held if len(held) else None,
                            predict_n=args.predict, title=task, alternatives=alternatives)
        print(f"wrote {out / (stem + '.json')} and {png}")
    return 0


def add_parser(subparsers) -> None:
    """Add the ``scaling`` subcommand (see the module docstring)."""
    s = subparsers.add_parser("scaling", help="fit the PassUntil task scaling law",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("results", nargs="+", help="lm-eval output directories or files")
    s.add_argument("--manifest", help="CSV/YAML: model, N (and tokens, flops, loss, seed, ...)")
    s.add_argument("--task", help="only this task")
    s.add_argument("--predict", type=float, nargs="*", default=[], help="sizes N to predict")
    s.add_argument("--holdout", type=float, nargs="*", default=[], help="sizes N to leave out and backtest")
    s.add_argument("--level", choices=["instance", "task"], default="instance")
    s.add_argument("--method", choices=["glm", "ls"], default="glm")
    s.add_argument("--n-boot", type=int, default=199,
                   help="bootstrap simulations for the law-vs-two-circuit test (0: compare by QAIC only; "
                        "-1: skip the comparison)")
    s.add_argument("--out", default="analysis_out", help="directory for JSON and PNG")
    s.set_defaults(fn=_cmd_scaling)
