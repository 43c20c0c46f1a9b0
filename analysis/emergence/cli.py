"""``python -m analysis emergence INPUT... [--manifest M] [--output_path DIR]``: the emergence
law (Snell et al. 2024) from lm-eval result directories or tidy tables.

Reads the results of every model in the manifest (the finetuned checkpoints,
``D > 0``, and the base checkpoints themselves, ``D = 0``: the few-shot rows),
takes each base checkpoint's pretraining loss L from the manifest's ``loss``
column or, where it has none, from the loss task's result for the base
checkpoint, fits ``Perf = A*ReLU(E(D) - L) + B`` with
``E(D) = k*(log D)^alpha + C`` (:mod:`analysis.emergence.law`), and prints a
table, the fit, the few-shot emergence point ``E(D0)`` and an optional
backtest; writes ``emergence_<task>.json`` and ``emergence_<task>.png``.

Manifest (CSV/YAML, :func:`analysis.ingest.read_manifest`): ``model`` (as
lm-eval records it), ``checkpoint`` (the base checkpoint's label), ``D``
(finetuning examples, 0 = not finetuned), optionally ``seed``, ``task``,
``loss``, ``flops``.  The base checkpoint of label X is the model of the
manifest row with ``checkpoint == X`` and ``D == 0`` (as ``lm-eval-ext
finetune-sweep`` writes it), else the model named X itself.

Tables (.csv, .tsv, .parquet, .jsonl, .json; :mod:`analysis.ingest.tables`)
carry the manifest's columns themselves, one row per (model, task): ``model``,
``task``, ``score`` (or value/acc; the metric ``perf``), ``D``, ``loss`` (the
base checkpoint's pretraining loss L; or rows of the loss task), optionally
``n_items`` (items evaluated: binomial likelihood), ``seed``, ``compute``
(FLOPs, for the backtest's lead), ``metric``, ``N``, ``tokens``, ``step``,
``run``, ``split``, and ``checkpoint`` (the base checkpoint's label).
Without ``checkpoint`` the base checkpoint is named by ``run`` and ``step``,
then (where rows so named still differ in loss: a run's intermediate
checkpoints) also by ``N`` and ``tokens``, then by the loss itself.  A
manifest is needed for lm-eval directories and optional for tables (its rows
win for the models it lists).

``run`` (the training run of the base checkpoint, in a table or the
manifest) makes the checkpoint bootstrap resample whole runs.  ``split``
(``train``/``holdout``, whole checkpoints) keeps held-out checkpoints out of
the fits; the law then predicts them (finetuned rows at their D, few-shot
rows at D0), with a warning for each prediction below the fitted losses.
The backtest makes its own split at its cutoff and reads every row.

Every fit prints a verdict: "emergence observed", or "no emergence in range"
with its reason (constant scores, no checkpoint past the kink, or no clear
gain over a flat line); without emergence no emergence point (and no
backtest error or coverage) is reported.
"""

from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path

import pandas as pd

from ..ingest import TableWarning
from ..ingest.tables import choose_filter

DEFAULT_LOSS_TASK = "emergence_loss"
DEFAULT_LOSS_METRIC = "nll_per_token"


def _metric_rows(res: pd.DataFrame, task: str, metric: str, where: str) -> pd.DataFrame:
    """Rows of one metric of one task; ``metric`` may name the filter
    (``exact_match,strict-match``); without one, filter ``none`` or the only one."""
    name, _, filt = metric.partition(",")
    sel = res[(res["task"] == task) & (res["metric"] == name)]
    if sel.empty:
        have = sorted(res.loc[res["task"] == task, "metric"].unique())
        raise ValueError(f"{where}: no metric {name!r} for task {task!r} in the results "
                         f"(metrics there: {have or 'none; the task has no results'})")
    try:
        filt = choose_filter(sorted(sel["filter"].unique()), filt, task, name)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    sel = sel[sel["filter"] == filt]
    dup = sel[sel.duplicated("model", keep=False)]
    if not dup.empty:
        m = dup.iloc[0]["model"]
        raise ValueError(f"{where}: model {m!r} has task {task!r} metric {name!r} at several num_fewshot "
                         f"values in {sorted(dup.loc[dup['model'] == m, 'file'].unique())}; keep one run")
    return sel


def _checkpoint_ids(per: pd.DataFrame) -> pd.Series:
    """The base checkpoint of each table row without a ``checkpoint`` column.

    A run's intermediate checkpoints share ``run``, so the run alone does not
    name a checkpoint: it is named by run and step, then (where those leave
    checkpoints with several losses) also by N and tokens, then by the loss
    itself; rows of one checkpoint (its few-shot row and its finetuned models)
    agree on all of these.  Raises ValueError when nothing tells them apart."""
    from ..ingest.tables import _ids_from

    def several_losses(ck: pd.Series) -> bool:
        if "loss" not in per.columns:
            return False
        return bool((per.assign(_ck=ck.to_numpy()).groupby("_ck")["loss"].nunique() > 1).any())

    have = [c for c in ("run", "step", "N", "tokens") if c in per.columns and per[c].notna().any()]
    all_loss = "loss" in per.columns and per["loss"].notna().all()
    if not have and all_loss:
        return per["loss"].map(lambda v: f"L={v:.6g}")  # rows with one loss share a checkpoint
    tries = [[c for c in have if c in ("run", "step")], have] + ([have + ["loss"]] if all_loss else [])
    for ident in tries:
        if ident:
            ck = _ids_from(per, ident)
            if not several_losses(ck):
                return ck
    file = per["file"].iloc[0]
    if have:
        raise ValueError(f"{file}: cannot tell the base checkpoints apart: rows with the same "
                         f"{', '.join(have)} have different losses; add a column checkpoint (the base "
                         "checkpoint's label; keep the training run in column run)")
    raise ValueError(f"{file}: cannot tell which base checkpoint each row belongs to: add a column "
                     "checkpoint (or run and step), or a column loss (one per checkpoint)")


def _table_manifest(res: pd.DataFrame) -> pd.DataFrame:
    """The manifest that table rows carry: one row per model with D, and its
    checkpoint, seed, run, split, loss, flops (see the module docstring)."""
    t = res[res["source"] == "table"] if "source" in res.columns else res.iloc[:0]
    if t.empty:
        return pd.DataFrame(columns=["model", "checkpoint", "D"])
    if "D" not in t.columns or t["D"].isna().all():
        files = sorted(t["file"].unique())
        raise ValueError(f"{files[0]}: no column D (finetuning examples, 0 = not finetuned); an emergence table "
                         "needs model, task, score, D and loss (or rows of the loss task)")
    t = t[t["D"].notna()]
    per = t.drop_duplicates("model").copy()
    if "checkpoint" in per.columns and per["checkpoint"].notna().all():
        ck = per["checkpoint"].map(str)
    else:
        ck = _checkpoint_ids(per)
    out = pd.DataFrame({"model": per["model"].astype(str).to_numpy(), "checkpoint": ck.to_numpy(),
                        "D": per["D"].astype(float).to_numpy()})
    for col, name in (("seed", "seed"), ("run", "run"), ("split", "split"), ("loss", "loss"),
                      ("compute", "flops")):
        if col in per.columns:
            out[name] = per[col].to_numpy()
    return out


def emergence_table(results, manifest=None, *, task: str | None = None, metric: str = "acc",
                    loss_task: str = DEFAULT_LOSS_TASK, loss_metric: str = DEFAULT_LOSS_METRIC):
    """The tidy table the emergence fits read, one row per manifest model with results.

    ``results``: lm-eval output and/or table files (:func:`analysis.ingest.load`);
    ``manifest``: required for lm-eval output, optional for tables (which carry
    D, loss, ... themselves).  Returns ``(table, task, notes)``: columns
    checkpoint, model, D, seed, L, perf, n (items evaluated, when every row
    says), flops (when known), run (the training run, when known: the
    bootstrap's cluster), split (train/holdout, when given), file; the
    performance task used; and notes about manifest models without results.
    Raises ValueError (naming the manifest, model, file or column) on
    inconsistent input.
    """
    from ..ingest import load, read_manifest

    res = load(results, kind="scores")
    res = res.assign(value=res["score"], filter=res["filter"].fillna("none"))
    from_tables = _table_manifest(res)
    if manifest is None:
        lm = res["source"] != "table"
        if lm.any():
            raise ValueError(f"--manifest (model, checkpoint, D) is needed for lm-eval results: "
                             f"{sorted(res.loc[lm, 'file'].unique())[0]} ...; tables carry D and loss themselves")
        mpath = ", ".join(sorted(res["file"].unique()))
        man = from_tables
    else:
        mpath = str(manifest)
        man = read_manifest(manifest)
    for col in ("checkpoint", "D"):
        if col not in man.columns:
            raise ValueError(f"{mpath}: no {col!r} column (columns: {', '.join(map(str, man.columns))}); "
                             "the emergence manifest needs model, checkpoint, D")
    bad = man["D"].isna()
    if bad.any():
        raise ValueError(f"{mpath}: column 'D' is empty for model(s) {man.loc[bad, 'model'].tolist()[:5]}")
    bad = man["checkpoint"].isna() | (man["checkpoint"].astype(str).str.strip() == "")
    if bad.any():
        raise ValueError(f"{mpath}: column 'checkpoint' is empty for model(s) {man.loc[bad, 'model'].tolist()[:5]}")
    man = man.assign(checkpoint=man["checkpoint"].astype(str))
    if manifest is not None and not from_tables.empty:
        extra = from_tables[~from_tables["model"].isin(set(man["model"]))]
        man = pd.concat([man, extra], ignore_index=True, sort=False)
    models = set(man["model"])
    # which task
    if task is None:
        cands = sorted(set(res.loc[res["model"].isin(models) & (res["metric"] == metric.partition(",")[0]),
                                   "task"]) - {loss_task})
        if "task" in man.columns and man["task"].dropna().nunique() == 1 and man["task"].dropna().iloc[0] in cands:
            task = str(man["task"].dropna().iloc[0])
        elif len(cands) == 1:
            task = cands[0]
        elif not cands:
            have = sorted(res.loc[res["model"].isin(models), "metric"].unique())
            raise ValueError(f"no task with metric {metric!r} among the manifest's models in the results "
                             f"(tasks there: {sorted(res.loc[res['model'].isin(models), 'task'].unique())}; "
                             f"metrics: {have}; choose one with --metric)")
        else:
            raise ValueError(f"several tasks have metric {metric!r}: {cands}; choose one with --task")
    if "task" in man.columns and man["task"].notna().any():
        # The manifest's task is the finetuning task, named as the sweep was
        # told: the lm-eval task itself or its short name ("cola" for
        # "emergence_cola").
        named = man["task"].astype(str)
        match = man["task"].notna() & ((named == task) | named.map(lambda t: task.endswith("_" + t)))
        values = sorted(named[man["task"].notna()].unique())
        if match.any():
            man = man[man["task"].isna() | match]
        elif len(values) > 1:
            raise ValueError(f"{mpath}: column 'task' names {values}, none of them the task {task!r}: "
                             "which rows belong to it?")
    perf = _metric_rows(res, task, metric, f"task {task}")
    perf = perf.set_index("model")
    rows, missing = [], []
    for r in man.itertuples(index=False):
        rec = r._asdict()
        if rec["model"] not in perf.index:
            missing.append(rec["model"])
            continue
        p = perf.loc[rec["model"]]
        n = p["n_items"] if "n_items" in p.index else math.nan
        rows.append({"checkpoint": rec["checkpoint"], "model": rec["model"], "D": float(rec["D"]),
                     "seed": rec.get("seed", math.nan), "perf": float(p["value"]),
                     "n": float(n) if pd.notna(n) else math.nan, "file": p["file"],
                     "run": _label(rec.get("run")), "split": _label(rec.get("split"))})
    notes = []
    if missing:
        notes.append(f"{len(missing)} manifest model(s) have no {task}/{metric} result and are left out: "
                     + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
    if not rows:
        raise ValueError(f"none of the {len(man)} models in {mpath} has a {task}/{metric} result in "
                         f"{', '.join(map(str, results))}; are the model names the ones lm-eval recorded?")
    table = pd.DataFrame(rows)
    if table["n"].isna().any():
        table = table.drop(columns="n")
    for col in ("run", "split"):
        known = table[col].notna()
        if not known.any():
            table = table.drop(columns=col)
        elif not known.all():
            raise ValueError(f"column {col!r} is empty for model(s) {table.loc[~known, 'model'].tolist()[:5]} "
                             f"but given for others ({', '.join(sorted(table['file'].unique()))}): give every "
                             f"model its {col}, or none")
    if "split" in table.columns:
        split = table["split"].map(lambda v: _SPLITS.get(str(v).strip().lower()))
        if split.isna().any():
            i = split.index[split.isna()][0]
            raise ValueError(f"model {table.at[i, 'model']!r}: split {table.at[i, 'split']!r} is neither 'train' "
                             f"nor 'holdout' ({table.at[i, 'file']})")
        table["split"] = split
        mixed = table.groupby("checkpoint")["split"].nunique()
        if (mixed > 1).any():
            c = mixed.index[mixed > 1][0]
            raise ValueError(f"checkpoint {c!r} has both train and holdout rows: a held-out checkpoint is held "
                             "out whole (its few-shot row and every finetuned model)")
    # pretraining loss and FLOPs per base checkpoint
    losses, flops = {}, {}
    loss_res = None
    for ck, g in man.groupby("checkpoint", sort=True):
        base = g.loc[g["D"] == 0, "model"]
        base_model = str(base.iloc[0]) if len(base) else ck
        for col, store in (("loss", losses), ("flops", flops)):
            if col in g.columns and g[col].notna().any():
                vals = g[col].dropna().unique()
                if len(vals) > 1:
                    hint = (" (if it names a training run with several checkpoints, give each checkpoint its "
                            "own label in 'checkpoint' and put the run in a column 'run': the bootstrap then "
                            "resamples whole runs)" if col == "loss" else "")
                    raise ValueError(f"{mpath}: checkpoint {ck!r} has several values in column {col!r}: "
                                     f"{sorted(vals.tolist())[:6]} (one per base checkpoint){hint}")
                store[ck] = float(vals[0])
        if ck in losses:
            continue
        if loss_res is None:
            loss_res = _metric_rows(res, loss_task, loss_metric, f"pretraining loss (--loss_task {loss_task})") \
                if (res["task"] == loss_task).any() else pd.DataFrame(columns=res.columns)
        hit = loss_res[loss_res["model"] == base_model]
        if hit.empty:
            raise ValueError(f"no pretraining loss for checkpoint {ck!r}: {mpath} has no 'loss' for it and the "
                             f"results have no {loss_task}/{loss_metric} for its base model {base_model!r}; "
                             "evaluate the base checkpoint on the loss task or add a 'loss' column")
        losses[ck] = float(hit.iloc[0]["value"])
    table["L"] = table["checkpoint"].map(losses)
    if flops:
        table["flops"] = table["checkpoint"].map(flops)
    cols = (["checkpoint", "model", "D", "seed", "L", "perf"]
            + [c for c in ("n", "flops", "run", "split") if c in table] + ["file"])
    return table[cols].sort_values(["L", "D", "seed"], ascending=[False, True, True]).reset_index(drop=True), \
        task, notes


_SPLITS = {"train": "train", "fit": "train", "holdout": "holdout", "heldout": "holdout",
           "held-out": "holdout", "held_out": "holdout", "test": "holdout"}


def _label(v):
    """A run/split label as text; None when missing (integral floats without '.0')."""
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _overview(table: pd.DataFrame) -> str:
    """Mean performance per checkpoint (rows, strongest last) and D (columns)."""
    piv = table.pivot_table(index=["checkpoint", "L"], columns="D", values="perf", aggfunc="mean")
    piv = piv.sort_index(level="L", ascending=False)
    piv.columns = [f"D={int(c) if float(c).is_integer() else c}" for c in piv.columns]
    return piv.to_string(float_format=lambda v: f"{v:.4f}")


def _cmd_emergence(args) -> int:
    from .law import backtest_emergence, calibrate_d0, fit_emergence_curve, fit_emergence_law
    from .plot import plot_emergence

    def fail(msg) -> int:
        print(f"error: {msg}", file=sys.stderr)
        return 2

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", TableWarning)
            table, task, notes = emergence_table(args.results, args.manifest, task=args.task,
                                                 metric=args.metric, loss_task=args.loss_task,
                                                 loss_metric=args.loss_metric)
    except (FileNotFoundError, ValueError) as exc:
        return fail(exc)
    for w in caught:  # what reading the tables assumed: one line each, only when the run goes on
        if issubclass(w.category, TableWarning):
            print(f"warning: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    if (args.backtest or args.backtest_before is not None) and args.d0 is None:
        return fail("the backtest compares E(D0) with the observed few-shot emergence point: give --d0")
    fit_kw = dict(tau=args.tau, floor=args.floor, likelihood=args.likelihood, n_boot=args.n_boot,
                  bootstrap=args.bootstrap, seed=args.seed, progress=True)
    print(f"== {task} ({args.metric}; L = pretraining loss, nats)")
    print(_overview(table))
    report = {"task": task, "metric": args.metric, "rows": json.loads(table.to_json(orient="records"))}
    # held-out checkpoints (split = holdout) stay out of the fits and are predicted
    held = table["split"].eq("holdout") if "split" in table.columns else pd.Series(False, index=table.index)
    train, holdout = table[~held], table[held]
    if held.any():
        print(f"held out (split = holdout): {holdout['checkpoint'].nunique()} checkpoint(s), {len(holdout)} row(s); "
              "the fits use the other rows")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fit keeps its warnings; its summary prints them
        try:
            fit = fit_emergence_law(train[train["D"] > 0], d0=args.d0, **fit_kw)
        except ValueError as exc:
            return fail(f"{task}: cannot fit the emergence law: {exc}")
    print(fit.summary())
    few = train[train["D"] == 0]
    fewshot = None
    if few["checkpoint"].nunique() >= 3:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                fewshot = fit_emergence_curve(few, **fit_kw)
            except ValueError as exc:
                print(f"few-shot curve: not fitted ({exc})")
    if fewshot is not None:
        if fewshot.emerged:
            em = fewshot.emergence_loss().iloc[0]
            print(f"observed few-shot (D = 0) curve: E = {em['E']:.4f} nats [{em['lower']:.4f}, {em['upper']:.4f}]")
        else:
            print(f"observed few-shot (D = 0) curve: {fewshot.verdict}: {fewshot.verdict_reason}")
        report["fewshot"] = fewshot.to_dict()
        if fewshot.emerged and fit.emerged:
            try:
                d0 = calibrate_d0(fit, float(em["E"]))
                print(f"D0 at which this law reaches the observed few-shot emergence: {d0:.4g} "
                      "(reuse it as --d0 for tasks that have not emerged)")
                report["calibrated_d0"] = d0
            except ValueError as exc:
                print(f"D0 not calibrated: {exc}")
    if held.any():
        report["holdout"] = _predict_holdout(fit, holdout, args.d0)
    report["fit"] = fit.to_dict()  # after the predictions: their extrapolation warnings are the fit's too
    bt = None
    if args.backtest or args.backtest_before is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                # the backtest makes its own split (at the cutoff) over every row
                bt = backtest_emergence(table, d0=args.d0, cutoff=args.backtest_before, **fit_kw)
            except ValueError as exc:
                return fail(f"{task}: backtest: {exc}")
        print(bt.summary())
        report["backtest"] = bt.to_dict()
    out = Path(args.output_path)
    out.mkdir(parents=True, exist_ok=True)
    stem = "emergence_" + "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in task)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2, default=float))
    png = plot_emergence(table, fit, out / f"{stem}.png", fewshot=fewshot, backtest=bt,
                         title=f"{task} ({args.metric})")
    print(f"wrote {out / (stem + '.json')} and {png}")
    return 0


def _predict_holdout(fit, holdout: pd.DataFrame, d0) -> dict:
    """Print and return the law's predictions for the held-out rows: finetuned
    rows at their D, few-shot rows at D0 (when given), with the band and
    the extrapolation warnings (a held-out checkpoint stronger than every
    fitted one is predicted beyond the data)."""
    rows = holdout[holdout["D"] > 0]
    few = holdout[holdout["D"] == 0]
    if d0 is not None:
        rows = pd.concat([rows, few])
    elif len(few):
        print(f"note: {len(few)} held-out few-shot row(s) (D = 0) not predicted: give --d0")
    if rows.empty:
        return {"rows": [], "warnings": []}
    D = rows["D"].where(rows["D"] > 0, d0 if d0 is not None else 1.0).to_numpy(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # printed below, one line each
        pred = fit.predict(rows["L"].to_numpy(float), D=D)
    out = rows[["checkpoint", "D", "L", "perf"]].reset_index(drop=True).assign(predicted=pred["perf"].to_numpy())
    for col in ("lower", "upper"):
        if col in pred:
            out[col] = pred[col].to_numpy()
    out["error"] = out["predicted"] - out["perf"]
    print(f"held-out rows, predicted by the law (few-shot rows at D0 = {d0}):" if d0 is not None
          else "held-out rows, predicted by the law:")
    print(out.assign(D=out["D"].map(lambda v: f"{v:g}")).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    for w in pred.attrs.get("warnings", []):
        print(f"warning: {w}")
    return {"rows": json.loads(out.to_json(orient="records")), "warnings": list(pred.attrs.get("warnings", []))}


def add_parser(subparsers) -> None:
    """Add the ``emergence`` subcommand to ``python -m analysis``."""
    from ..commands import add_command, add_output_path

    s = add_command(subparsers, "emergence", help="fit the finetuning emergence law (Snell et al. 2024)",
                    description=__doc__)
    s.add_argument("results", nargs="+",
                   help="lm-eval output directories or files, or table files (.csv/.tsv/.parquet/.jsonl/.json: "
                        "model, task, score, D, loss, ...)")
    s.add_argument("--manifest",
                   help="CSV/YAML: model, checkpoint, D (and seed, task, loss, flops); needed for lm-eval "
                        "output, optional for tables")
    s.add_argument("--task", help="the performance task (default: the only one with --metric)")
    s.add_argument("--metric", default="acc", help="metric[,filter] of the task")
    s.add_argument("--loss_task", "--loss-task", dest="loss_task", default=DEFAULT_LOSS_TASK,
                   help="task whose metric is the pretraining loss L; used where the manifest has no 'loss'")
    s.add_argument("--loss_metric", "--loss-metric", dest="loss_metric", default=DEFAULT_LOSS_METRIC,
                   help="its metric, a per-token NLL in nats")
    s.add_argument("--d0", type=float, help="few-shot limit D0 (>= 1) at which E(D0) is extrapolated")
    s.add_argument("--backtest", action="store_true",
                   help="backtest on the checkpoints before the detected few-shot emergence point")
    s.add_argument("--backtest_before", "--backtest-before", dest="backtest_before", type=float, metavar="L",
                   help="backtest on the checkpoints with pretraining loss above L (nats)")
    s.add_argument("--tau", type=float, default=0.05, help="softplus temperature, nats")
    s.add_argument("--floor", type=float, help="fix the floor B (e.g. chance accuracy; default: fitted)")
    s.add_argument("--likelihood", choices=["auto", "binomial", "gaussian"], default="auto",
                   help="auto: binomial where every row says how many items were evaluated (n_items) and the "
                        "score is a proportion of them, else gaussian (one variance)")
    s.add_argument("--n_boot", "--n-boot", dest="n_boot", type=int, default=200,
                   help="bootstrap refits (0: Wald intervals)")
    s.add_argument("--bootstrap", choices=["auto", "checkpoint", "run", "parametric"], default="auto",
                   help="intervals: resample checkpoints (whole runs when the input has a run column), runs, or "
                        "simulate from the fit (parametric); auto picks (see analysis.emergence.law)")
    s.add_argument("--seed", type=int, default=0, help="random seed of the bootstrap")
    add_output_path(s, "analysis_out", "directory for JSON and PNG")
    s.set_defaults(fn=_cmd_emergence)
