"""``python -m analysis scaling TABLE_OR_DIR... [--x N|compute|tokens|COLUMN] [--tasks T1,T2] [--predict X1,X2] [--holdout X1,X2]``

Fits the PassUntil task scaling law PU(N) = exp(-c N^-alpha) to per-instance
counts (lm-eval result directories with PassUntil samples, or tidy tables
with model, N, task, instance, n, c), prints a table, and writes a JSON of
the fit and a PNG plot per task into ``--output_path``.

For every task it prints:

- the law's fit (``analysis.tasklaw.fit_task_law``; ``--fit_level instance``
  is the hierarchical fit that partially pools instances);
- the forecast (``analysis.forecast``): the verdict (follows the law / bends /
  no usable trend) and, for ``--predict`` and ``--holdout``, predictions with
  95% intervals for a new model, calibrated on the ladder by forward
  chaining, each with its warnings;
- the distributional view (``analysis.tasklaw.distribution``): a
  beta-binomial of the instances' pass rates per size and its trend, and
  from it pass@k and the fraction of never-solved instances at the
  ``--predict`` sizes;
- the paper's alternatives (two-circuit, multi-step) compared by QAIC.

``--holdout`` takes x values (or model names), comma-separated, to leave
out of every fit; their predictions are in the JSON's ``predictions`` list,
shaped as in ``python -m analysis backtest``.  Several models per size
(seeds, checkpoints) are separate models: each keeps its own instances.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..ingest.tables import instance_pu


def _law_table(d: pd.DataFrame) -> pd.DataFrame:
    """The law fits' table (N, instance, n, c, pu, run) with N := x; each
    model keeps its own instances and is its own run, so several models of one
    size (seeds) are pooled, never merged, and their spread counts (see
    analysis.tasklaw.task_pu_by_size)."""
    multi = d.groupby("x")["model"].nunique().max() > 1
    inst = d["model"].astype(str) + "/" + d["instance"].astype(str) if multi else d["instance"]
    return pd.DataFrame({"N": d["x"].to_numpy(float), "instance": inst.to_numpy(), "n": d["n"].to_numpy(),
                         "c": d["c"].to_numpy(), "pu": instance_pu(d), "run": d["model"].astype(str).to_numpy()})


def _holdout_mask(d: pd.DataFrame, holdout: list[str]) -> np.ndarray:
    mask = np.zeros(len(d), bool)
    for h in holdout:
        by_name = (d["model"].astype(str) == h).to_numpy()
        if by_name.any():
            mask |= by_name
            continue
        try:
            v = float(h)
        except ValueError:
            raise ValueError(f"--holdout {h}: neither a model name nor a number") from None
        hit = np.isclose(d["x"].to_numpy(float), v, rtol=1e-9)
        if not hit.any():
            raise ValueError(f"--holdout {h}: no model has x = {h}")
        mask |= hit
    return mask


def _cmd_scaling(args) -> int:
    from ..forecast.cli import file_stem, load_ladder
    from ..forecast.ladder import task_observations
    from ..forecast import fit_forecast
    from .circuits import compare_curves
    from .distribution import fit_beta_binomial_trend
    from .law import fit_task_law
    from ..forecast.plot import plot_backtest

    try:
        df = load_ladder(args.results, manifest=args.manifest, x=args.x)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not {"instance", "n", "c"} <= set(df.columns):
        print("error: no PassUntil counts (instance, n, c) found; for scores use python -m analysis backtest",
              file=sys.stderr)
        return 2
    tasks = sorted(df["task"].unique()) if not args.tasks else list(dict.fromkeys(args.tasks))
    missing = [t for t in tasks if t not in set(df["task"])]
    if missing:
        print(f"error: task(s) {missing} not found; available: {sorted(df['task'].unique())}", file=sys.stderr)
        return 2
    out = Path(args.output_path)
    out.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        d = df[df["task"] == task]
        try:
            held_mask = _holdout_mask(d, args.holdout)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        train, held = d[~held_mask], d[held_mask]
        print(f"== {task}  (x = {args.x})")
        report = {"task": task, "x": args.x, "level": args.fit_level, "method": args.method}
        try:
            with warnings.catch_warnings():
                # several models per size keep their own instances: the
                # "different instance sets per size" warning does not apply
                if train.groupby("x")["model"].nunique().max() > 1:
                    warnings.simplefilter("ignore", UserWarning)
                fit = fit_task_law(_law_table(train), level=args.fit_level, method=args.method)
            print(fit.summary())
            report["fit"] = fit.to_dict()
        except ValueError as exc:
            print(f"law fit: not possible ({exc})")
        # the forecast: verdict, calibrated predictions, warnings
        obs, notes = task_observations(train, task)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fc = fit_forecast(obs, x_name=args.x)
        except ValueError as exc:
            print(f"forecast: not possible ({exc}): no usable trend")
            report.update({"verdict": "no usable trend", "warnings": notes + [str(exc)], "predictions": []})
            fc = None
        preds = []
        if fc is not None:
            print(fc.summary())
            report["forecast"] = fc.to_dict()
            report["verdict"] = fc.verdict.label
            report["warnings"] = list(notes)
            if len(held):
                hobs, _ = task_observations(held, task)
                p = fc.predict(hobs["x"].to_numpy(), budget=hobs["budget"].to_numpy())
                warns = fc.warnings_for(hobs["x"].to_numpy(), budget=hobs["budget"].to_numpy(), pred=p)
                for j, r in enumerate(hobs.itertuples()):
                    cov = bool(p["lower"].iloc[j] <= r.p <= p["upper"].iloc[j])
                    preds.append({"model": str(r.model), "x": float(r.x), "observed": float(r.p),
                                  "predicted": float(p["predicted"].iloc[j]), "lower": float(p["lower"].iloc[j]),
                                  "upper": float(p["upper"].iloc[j]), "covered": cov})
                    report["warnings"] += [f"{r.model}: {w}" for w in warns[j]]
            pp = fc.predict(args.predict) if args.predict else None
            for j, (xv, w) in enumerate(zip(args.predict, fc.warnings_for(args.predict, pred=pp) if args.predict else [])):
                p = pp.iloc[j]
                preds.append({"model": None, "x": float(xv), "observed": None, "predicted": float(p["predicted"]),
                              "lower": float(p["lower"]), "upper": float(p["upper"]), "covered": None})
                report["warnings"] += [f"x={xv:g}: {m}" for m in w]
            report["predictions"] = preds
            if preds:
                print(f"predictions (95% interval for a new model)  [verdict: {fc.verdict.label}]")
                print(pd.DataFrame(preds).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
            for w in report["warnings"]:
                print(f"  warning: {w}")
        # the distributional view
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                bb = fit_beta_binomial_trend(_law_table(train))
            report["beta_binomial"] = bb.to_dict()
            if args.predict:
                bp = bb.predict(np.asarray(args.predict, float), k=tuple(args.pass_at_k))
                print("beta-binomial across instances (pass@k, never solved@k) at the --predict sizes:")
                cols = ["N", "mean"] + [f"pass@{k}" for k in args.pass_at_k] + [f"never_solved@{k}" for k in args.pass_at_k]
                print(bp[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
                report["beta_binomial_predictions"] = json.loads(bp.to_json(orient="records"))
        except (ValueError, np.linalg.LinAlgError) as exc:
            print(f"beta-binomial: not fitted ({exc})")
        if train["x"].nunique() >= 3 and args.n_boot >= 0:
            try:
                comp = compare_curves(_law_table(train), n_boot=args.n_boot, random_state=args.seed, progress=True)
                print(comp.summary())
                report["curve_comparison"] = comp.to_dict()
            except ValueError as exc:
                print(f"curve comparison: not possible ({exc})")
        stem = file_stem("scaling_", task)
        (out / f"{stem}.json").write_text(json.dumps(report, indent=2, default=float))
        msg = f"wrote {out / (stem + '.json')}"
        if fc is not None:
            rows = pd.DataFrame([dict(p, origin=0.0) for p in preds if p["model"] is not None],
                                columns=["origin", "model", "x", "observed", "predicted", "lower", "upper", "covered"])
            png = plot_backtest(obs, rows, fc, out / f"{stem}.png", title=task, x_name=args.x)
            msg += f" and {png}"
        print(msg)
    return 0


def add_parser(subparsers) -> None:
    """Add the ``scaling`` subcommand (see the module docstring)."""
    from ..commands import add_command, add_list_argument, add_output_path

    s = add_command(subparsers, "scaling", help="fit the PassUntil task scaling law and forecast larger models",
                    description=__doc__)
    s.add_argument("results", nargs="+", help="lm-eval output directories or files, or tidy tables (CSV, parquet, JSONL)")
    s.add_argument("--manifest", help="CSV/YAML: model, N (and tokens, flops, loss, seed, ...)")
    s.add_argument("--x", default="N", help="scale: N, compute (6 N tokens when not given), tokens or a column")
    add_list_argument(s, "--tasks", metavar="TASK",
                      help="only these tasks, comma-separated (default: every task with PassUntil counts)")
    add_list_argument(s, "--predict", item_type=float, default=[], metavar="X",
                      help="x values to predict, comma-separated")
    add_list_argument(s, "--holdout", default=[], metavar="X",
                      help="x values or model names to leave out and predict, comma-separated")
    add_list_argument(s, "--pass_at_k", "--k", item_type=int, default=[1, 10, 100], metavar="K",
                      help="k of pass@k and never-solved@k in the beta-binomial view, comma-separated")
    s.add_argument("--fit_level", choices=["instance", "task"], default="task",
                   help="the law's fit: task (one law for the task PU) or instance (hierarchical, partially pooled "
                        "instances)")
    s.add_argument("--method", choices=["glm", "ls"], default="glm",
                   help="glm or the paper's least squares (task level)")
    s.add_argument("--n_boot", "--n-boot", dest="n_boot", type=int, default=199,
                   help="bootstrap simulations for the law-vs-two-circuit test (0: compare by QAIC only; "
                        "-1: skip the comparison)")
    s.add_argument("--seed", type=int, default=0, help="random seed of the bootstrap simulations")
    add_output_path(s, "analysis_out", "directory for JSON and PNG")
    s.set_defaults(fn=_cmd_scaling)
