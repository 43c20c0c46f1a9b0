"""Tidy tables (CSV, TSV, parquet, JSON Lines, JSON records) and lm-eval result
directories into one table, and the choice of scale variable.

Every analysis CLI reads its inputs through :func:`load`: a table file, an
lm-eval output directory (or result file), or a mix of both.

Files read
----------
``.csv``, ``.csv.gz``, ``.tsv``, ``.tsv.gz`` (a header line, then one row per
line), ``.parquet`` (needs pyarrow), ``.jsonl``, ``.jsonl.gz`` (one JSON object
per line), ``.json`` (a list of JSON objects; a ``.json`` that is an lm-eval
results file is read as one).  lm-eval output: a directory (searched for
``results_*.json`` and ``samples_*.jsonl``), or such a file named directly.

Columns of a table
------------------
One row per measurement.  Column names are matched case-insensitively (except
that ``N`` and ``n`` are told apart by case), with the aliases in brackets.

Identity and scale, one value per model:

- ``model``: the model (a trained network, e.g. one checkpoint of one run).
  Required in this sense: a table without it gets ``model`` derived from the
  identifying columns it has among N, tokens, compute, seed, run, step (e.g.
  ``"N=160M tokens=3.2B seed=2"``), with a warning.  Models are identified by
  ``model``, never by their scale: two models with the same N or compute are two
  models.  A ``model`` column whose models each carry several values of
  run/seed/step (or tokens/compute: ``pythia-70m`` at 27 checkpoints) is
  qualified with them (``pythia-70m@step143000``), with a warning; the other
  per-model columns (N, loss, D, split, ...) must then have one value per model.
- ``N`` [params, n_params, num_params, params_total, parameters]: parameters.
- ``tokens`` [tokens_seen, n_tokens]: training tokens.
- ``compute`` [flops]: training FLOPs (``with_x(df, "compute")`` uses
  6 * N * tokens where it is missing).
- ``loss``: the model's pretraining loss (nats).
- ``seed``, ``run`` (a training run: the checkpoints of one run share it),
  ``step`` (the checkpoint's training step), ``D`` (finetuning examples; 0 =
  not finetuned), ``split`` (``train`` or ``holdout``; also heldout/test;
  ``predict``: a model to forecast, whose score may be missing).

The measurement, one of two shapes:

- counts (a table with ``n`` and ``c`` is a counts table): ``task``,
  ``instance`` [doc_id, item] (the task's item), ``n`` [samples, n_samples]
  (samples drawn, an integer >= 1), ``c`` [passes, n_passed] (passes,
  0 <= c <= n), optional ``pu`` (the instance's PU as its sampler estimated
  it: the adaptive engine's unbiased estimate under its stopping rule; where
  it is missing, every analysis uses ``c/n``, see :func:`instance_pu`).
  Duplicate (model, task, instance) rows are summed (n and c; ``pu`` then
  becomes ``c/n``), with a warning.
- scores: ``task``, ``score`` [value, acc, accuracy] (the metric's value: an
  accuracy in [0, 1]; percentages, i.e. every score 0 or in [1, 100] and some
  above 1, are divided by 100 with a warning), optional ``metric`` (default
  ``acc``: a score is an accuracy unless the table names its metric), ``filter``
  (default ``none``), ``num_fewshot``, ``n_items`` [num_items, n_docs] (items the
  score averages, for binomial likelihoods), ``chance`` (the task's chance floor,
  e.g. 0.25 for 4-way multiple choice).  The [0, 1] check and the percentage
  rule apply to proportions: metrics named like acc/acc_norm/exact_match/
  pass@k/f1/mc1/score/...; scores of other metrics
  (perplexity, nll, bleu, likelihood_difference, ...) are only checked to be
  finite.  Duplicate (model, task, metric, filter, num_fewshot) rows are an
  error naming them.

``task`` may be left out when the file holds one task: it is then the file's
name without extensions (with a warning).  Other columns are kept (numbers as
numbers).  Numbers may carry k/M/B/G/T suffixes (``70M``, ``1.4B``).

Errors are ValueErrors naming the file and line (``FILE:LINE: column n: 'abc'
is not a number``; CSV line = data row + 2, the header being line 1; JSON
records and parquet rows by number).  The tidy table :func:`load` returns also
has the bookkeeping columns ``file``, ``line`` (CSV/TSV/JSONL line, else
missing) and ``source`` (``table`` or ``lm-eval``).

Public API: :func:`read_table`, :func:`load`, :func:`select_metric`,
:func:`with_x`, :func:`is_table_file`, :data:`COLUMNS`, :data:`TABLE_SUFFIXES`,
:class:`TableWarning`.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import re
import sys
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from lm_eval_ext.conventions.jsonl import iter_jsonl

from .results import (
    _RESULTS_NAME_RE,
    _SAMPLES_RE,
    _as_paths,
    _load_json,
    _to_number,
    read_instances,
    read_manifest,
    read_results,
)

PathLike = str | Path

__all__ = ["COLUMNS", "PRIMARY_METRICS", "primary_metric", "TABLE_SUFFIXES", "FORMATS", "TableWarning", "is_table_file", "read_table",
           "load", "select_metric", "with_x", "instance_pu"]

#: The documented columns, in the order :func:`load` puts them.
COLUMNS = ["model", "N", "tokens", "compute", "loss", "task", "instance", "n", "c", "pu", "metric", "filter",
           "num_fewshot", "score", "n_items", "chance", "seed", "run", "step", "split", "D"]
#: File name endings read as tables.
TABLE_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".parquet", ".jsonl", ".jsonl.gz", ".json")
#: What is read, for error messages.
FORMATS = ("tables (.csv, .csv.gz, .tsv, .tsv.gz, .parquet, .jsonl, .jsonl.gz, .json as a list of "
           "records) and lm-eval output (a directory, results_*.json, samples_*.jsonl)")

#: Canonical name by lower-cased column name; ``N`` and ``n`` are matched by case.
_ALIASES = {
    "model": "model", "task": "task", "instance": "instance", "doc_id": "instance", "item": "instance",
    "params": "N", "n_params": "N", "num_params": "N", "params_total": "N", "parameters": "N",
    "tokens": "tokens", "tokens_seen": "tokens", "n_tokens": "tokens",
    "compute": "compute", "flops": "compute",
    "loss": "loss",
    "c": "c", "passes": "c", "n_passed": "c",
    "samples": "n", "n_samples": "n", "pu": "pu",
    "score": "score", "value": "score", "acc": "score", "accuracy": "score",
    "metric": "metric", "filter": "filter", "num_fewshot": "num_fewshot",
    "n_items": "n_items", "num_items": "n_items", "n_docs": "n_items",
    "chance": "chance", "seed": "seed", "run": "run", "step": "step", "split": "split", "d": "D",
}
_NUMERIC = ["N", "tokens", "compute", "loss", "n", "c", "pu", "score", "n_items", "chance", "step", "D", "num_fewshot"]
_LABELS = ["model", "task", "metric", "filter", "run", "split"]
#: Columns that tell models apart, in the order derived names use them.
_IDENTIFYING = ["N", "tokens", "compute", "seed", "run", "step"]
#: Columns that are properties of a model: one value per model.
_PER_MODEL = ["N", "tokens", "compute", "loss", "seed", "run", "step", "split", "D"]
_SPLITS = {"train": "train", "fit": "train", "holdout": "holdout", "heldout": "holdout",
           "held-out": "holdout", "held_out": "holdout", "test": "holdout", "predict": "predict",
           "forecast": "predict"}
#: Metrics whose scores are proportions (checked to lie in [0, 1], percentages detected).
_PROPORTION = re.compile(r"^(score|value|em|f1|mc[12])$|acc|exact|match|pass|correct|success|rate|brier")
_KEY_SCORES = ["model", "task", "metric", "filter", "num_fewshot"]
#: The metric an analysis takes when none is named and a task has several:
#: accuracy, or a PassUntil task's PU (its other metrics are counts and bounds).
PRIMARY_METRICS = ("acc", "pu")
_KEY_COUNTS = ["model", "task", "instance"]


def primary_metric(available) -> str | None:
    """The first of :data:`PRIMARY_METRICS` among ``available``, else None."""
    return next((m for m in PRIMARY_METRICS if m in available), None)


def instance_pu(df: pd.DataFrame) -> np.ndarray:
    """Each counts row's PU: the sampler's own estimate (column ``pu``) where
    there is one, else ``c/n``.  The one definition every analysis uses, so a
    task PU here is the one the engine reported (for a fixed budget, ``c/n``;
    for the adaptive engine, its design's unbiased estimate, which ``c/n``
    would overstate by 10-65%: lm_eval_ext.passuntil.stats.pu_sequential)."""
    cn = df["c"].to_numpy(float) / df["n"].to_numpy(float)
    if "pu" not in df.columns:
        return cn
    pu = pd.to_numeric(df["pu"], errors="coerce").to_numpy(float)
    return np.where(np.isnan(pu), cn, pu)


class TableWarning(UserWarning):
    """Something about a table was assumed or repaired (derived model names,
    percentages, merged duplicate counts); the message says what."""


def _warn(msg: str) -> None:
    """A TableWarning attributed to the first caller outside this module."""
    level, frame = 1, sys._getframe(0)
    while frame is not None and frame.f_code.co_filename == __file__:
        level, frame = level + 1, frame.f_back
    warnings.warn(msg, TableWarning, stacklevel=level)


def _show(v: object) -> str:
    """A value in a message: numbers as 0.5 / 1e+06, text quoted."""
    if isinstance(v, (float, np.floating, int, np.integer)) and not isinstance(v, bool):
        return f"{float(v):g}"
    return repr(v)


def _suffix(path: Path) -> str | None:
    name = path.name.lower()
    for s in sorted(TABLE_SUFFIXES, key=len, reverse=True):
        if name.endswith(s):
            return s
    return None


def _is_lm_eval_name(path: Path) -> bool:
    return bool(_RESULTS_NAME_RE.match(path.name) or _SAMPLES_RE.match(path.name))


def is_table_file(path: PathLike) -> bool:
    """Whether ``path`` names a table by its ending (lm-eval's own ``results_*.json``
    and ``samples_*.jsonl`` are not tables; a ``.json`` is one when it holds a list)."""
    path = Path(path)
    if _is_lm_eval_name(path):
        return False
    suffix = _suffix(path)
    if suffix == ".json":
        return isinstance(_load_json(path, f"; read are {FORMATS}"), list) if path.is_file() else True
    return suffix is not None


# ---------------------------------------------------------------- reading one file

class _Where:
    """Row i of a file, as errors name it: FILE:LINE, or FILE: record/row K."""

    def __init__(self, path: Path, lines: Callable[[], list[int] | None] | None, unit: str = "row"):
        self.path, self._lines_fn, self._lines, self.unit = path, lines, None, unit

    def lines(self) -> list[int] | None:
        if self._lines is None and self._lines_fn is not None:
            self._lines = self._lines_fn()
            self._lines_fn = None
        return self._lines

    def __call__(self, i: int) -> str:
        lines = self.lines()
        if lines is not None and 0 <= i < len(lines):
            return f"{self.path}:{lines[i]}"
        return f"{self.path}: {self.unit} {i + 1}"


def _csv_lines(path: Path, sep: str, n_rows: int) -> list[int] | None:
    """The line on which each data row starts (the header is the first record);
    None when the csv module and pandas disagree on the rows."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    starts: list[int] = []
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as f:
            reader = csv.reader(f, delimiter=sep)
            prev = 0
            for rec in reader:
                if rec and any(field.strip() for field in rec):
                    starts.append(prev + 1)
                prev = reader.line_num
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    starts = starts[1:]  # the header
    return starts if len(starts) == n_rows else None


def _read_raw(path: Path) -> tuple[pd.DataFrame, _Where]:
    """The file as a DataFrame (text columns as str for CSV/TSV) and its row locator."""
    suffix = _suffix(path)
    if suffix is None or _is_lm_eval_name(path):
        raise ValueError(f"{path}: not a table file (by its name); read are {FORMATS}")
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if suffix in (".csv", ".csv.gz", ".tsv", ".tsv.gz"):
        sep = "\t" if suffix.startswith(".tsv") else ","
        try:
            df = pd.read_csv(path, sep=sep, dtype=str, compression="infer")
        except pd.errors.EmptyDataError:
            raise ValueError(f"{path}: empty file, not a table") from None
        except pd.errors.ParserError as exc:
            m = re.search(r"line (\d+)", str(exc))
            where = f"{path}:{m.group(1)}" if m else str(path)
            raise ValueError(f"{where}: not a readable {suffix.lstrip('.').split('.')[0].upper()} "
                             f"({str(exc).strip()})") from None
        except (UnicodeDecodeError, OSError, EOFError) as exc:  # binary, or a broken .gz
            raise ValueError(f"{path}: not a readable text table ({type(exc).__name__}); "
                             f"read are {FORMATS}") from None
        n = len(df)
        return df, _Where(path, lambda: _csv_lines(path, sep, n), "data row")
    if suffix == ".parquet":
        try:
            df = pd.read_parquet(path)
        except ImportError:
            raise ValueError(f"{path}: reading parquet needs pyarrow (pip install pyarrow)") from None
        except Exception as exc:  # pyarrow raises its own ArrowInvalid, OSError, ...
            raise ValueError(f"{path}: not a readable parquet file ({exc})") from None
        return df.reset_index(drop=True), _Where(path, None, "row")
    if suffix in (".jsonl", ".jsonl.gz"):
        recs, lines = [], []
        try:
            for lineno, rec in iter_jsonl(path):
                if not isinstance(rec, dict):
                    raise ValueError(f"{path}:{lineno}: expected a JSON object (one table row), "
                                     f"got {type(rec).__name__}")
                recs.append(rec)
                lines.append(lineno)
        except (UnicodeDecodeError, OSError, EOFError) as exc:
            raise ValueError(f"{path}: not a readable JSON Lines file ({type(exc).__name__})") from None
        return pd.DataFrame.from_records(recs), _Where(path, lambda: lines, "record")
    data = _load_json(path, f"; read are {FORMATS}")  # .json
    if isinstance(data, dict) and "results" in data:
        raise ValueError(f"{path}: an lm-eval results file, not a table: pass it (or its directory) "
                         f"to load()")
    if not isinstance(data, list):
        raise ValueError(f"{path}: a JSON table must be a list of records (objects), got "
                         f"{type(data).__name__}; read are {FORMATS}")
    for i, rec in enumerate(data, 1):
        if not isinstance(rec, dict):
            raise ValueError(f"{path}: record {i}: expected a JSON object, got {type(rec).__name__}")
    return pd.DataFrame.from_records(data), _Where(path, None, "record")


# ---------------------------------------------------------------- normalising

def _canonical(columns, path: Path) -> dict:
    """{original name: canonical name}; two columns meaning the same is an error."""
    out, seen = {}, {}
    for col in columns:
        name = str(col).strip()
        if name in ("N", "n"):
            canon = name
        else:
            canon = _ALIASES.get(name.lower(), name)
        if canon in seen:
            raise ValueError(f"{path}: columns {seen[canon]!r} and {col!r} both mean {canon!r}; keep one")
        seen[canon] = col
        out[col] = canon
    return out


def _blank_to_na(s: pd.Series) -> pd.Series:
    """Text stripped; empty text missing."""
    if s.dtype == object:
        s = s.map(lambda v: (v.strip() or None) if isinstance(v, str) else v)
    elif pd.api.types.is_string_dtype(s):
        s = s.str.strip()
        s = s.mask(s == "")
    return s


def _coerce(s: pd.Series, col: str, where: _Where) -> pd.Series:
    """Numbers (accepting 70M / 1.4B); an error naming the first row that is not one."""
    if pd.api.types.is_bool_dtype(s):
        raise ValueError(f"{where(0)}: column {col}: true/false is not a number")
    if pd.api.types.is_numeric_dtype(s):
        return s.astype("float64")
    num = pd.to_numeric(s, errors="coerce").astype("float64")
    bad = num.isna() & s.notna()
    for i in np.flatnonzero(bad.to_numpy()):
        v = s.iloc[i]
        try:
            if isinstance(v, bool):
                raise ValueError
            num.iloc[i] = _to_number(v)
        except ValueError:
            raise ValueError(f"{where(i)}: column {col}: {v!r} is not a number") from None
    return num


def _first_bad(mask: pd.Series | np.ndarray, where: _Where, text: Callable[[int], str]) -> None:
    idx = np.flatnonzero(np.asarray(mask, dtype=bool))
    if idx.size:
        more = f" (and {idx.size - 1} more row(s))" if idx.size > 1 else ""
        raise ValueError(f"{where(int(idx[0]))}: {text(int(idx[0]))}{more}")


def _fmt(v: object, col: str) -> str:
    if isinstance(v, (float, np.floating, int, np.integer)) and not isinstance(v, bool):
        v = float(v)
        if col in ("N", "tokens", "compute") and v >= 1000:
            for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
                if abs(v) >= scale:
                    return f"{v / scale:.6g}{unit}"
        return f"{v:.6g}" if not v.is_integer() else str(int(v))
    return str(v)


def _ids_from(df: pd.DataFrame, cols: list[str], sep: str = " ") -> pd.Series:
    """A readable id per row from ``cols`` (missing values left out); full
    precision where the rounded text would make two different rows one."""
    def text(vals, exact: bool) -> str:
        parts = []
        for c, v in zip(cols, vals):
            if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
                continue
            exact_v = exact and isinstance(v, (float, np.floating))
            parts.append(f"{c}={repr(float(v)) if exact_v else _fmt(v, c)}")
        return sep.join(parts)

    codes = df.groupby(cols, dropna=False, sort=False).ngroup().to_numpy()
    first = pd.Series(np.arange(len(df))).groupby(codes).first().sort_index().to_numpy()
    uniq = list(df[cols].astype(object).iloc[first].itertuples(index=False))
    ids = [text(u, False) for u in uniq]
    if len(set(ids)) < len(ids):
        ids = [text(u, True) for u in uniq]
    return pd.Series(np.asarray(ids, dtype=object)[codes], index=df.index, dtype=object)


def _labels(s: pd.Series) -> pd.Series:
    """Text labels; integral floats (a numeric seed or run column) without '.0'."""
    def one(v):
        if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
            return None
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            return str(int(v))
        return str(v)

    if pd.api.types.is_string_dtype(s) and s.dtype != object:
        return s.astype(object).where(s.notna(), None)
    return pd.Series([one(v) for v in s], index=s.index, dtype=object)


def _maybe_numeric(s: pd.Series) -> pd.Series:
    """Numbers when every value is one (seed, instance, extra columns), else as is."""
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        return s
    num = pd.to_numeric(s, errors="coerce").astype("float64")
    if s.notna().any() and (num.notna() == s.notna()).all():
        v = num.dropna().to_numpy()
        if np.all(np.isfinite(v) & (v == np.floor(v))):
            return num.astype("Int64") if num.isna().any() else num.astype("int64")
        return num.astype("float64")
    return s


def _normalise(raw: pd.DataFrame, where: _Where) -> pd.DataFrame:
    """The checks and renames of :func:`read_table` on a raw table."""
    path = where.path
    if len(raw.columns) == 0 or len(raw) == 0:
        raise ValueError(f"{path}: no rows: an empty table")
    mapping = _canonical(raw.columns, path)
    df = raw.rename(columns=mapping).reset_index(drop=True)
    for col in df.columns:
        df[col] = _blank_to_na(df[col])
    cols = set(df.columns)
    counts = {"n", "c"} <= cols
    if not counts and "score" not in cols:
        have = ", ".join(map(str, raw.columns[:12])) + (" ..." if len(raw.columns) > 12 else "")
        raise ValueError(f"{path}: neither counts (instance, n, c) nor scores (score/value/acc) columns; "
                         f"columns: {have}. A wide table (one column per task) must be made long: "
                         "one row per model and task")
    if counts and "instance" not in cols:
        raise ValueError(f"{path}: counts (n, c) without an 'instance' column (the task item, e.g. doc_id)")
    for col in _NUMERIC:
        if col in cols:
            df[col] = _coerce(df[col], col, where)
    for col in _LABELS:
        if col in cols:
            df[col] = _labels(df[col])
    if "seed" in cols:
        df["seed"] = _maybe_numeric(df["seed"])
    if "instance" in cols:
        df["instance"] = _maybe_numeric(df["instance"])
        _first_bad(df["instance"].isna(), where, lambda i: "empty instance")
    for col in df.columns:
        if col not in COLUMNS:
            df[col] = _maybe_numeric(df[col])
    # model
    if "model" not in cols:
        ident = [c for c in _IDENTIFYING if c in cols]
        if not ident:
            raise ValueError(f"{path}: no 'model' column, and none of {', '.join(_IDENTIFYING)} to tell "
                             "models apart: add a column model")
        _first_bad(df[ident].isna().all(axis=1), where,
                   lambda i: f"no model and none of {', '.join(ident)}: cannot tell which model this is")
        df.insert(0, "model", _ids_from(df, ident))
        _warn(f"{path}: no 'model' column: models named by {', '.join(ident)} "
              f"({df['model'].nunique()} models, e.g. {df['model'].iloc[0]!r})")
    else:
        _first_bad(df["model"].isna(), where, lambda i: "empty model")
    # task
    if "task" not in cols:
        stem = path.name
        for s in TABLE_SUFFIXES:
            if stem.lower().endswith(s):
                stem = stem[: -len(s)]
                break
        df["task"] = stem
        _warn(f"{path}: no 'task' column: task named {stem!r} after the file")
    else:
        _first_bad(df["task"].isna(), where, lambda i: "empty task")
    # split
    if "split" in cols:
        low = df["split"].map(lambda v: None if v is None else _SPLITS.get(v.lower(), "?"))
        _first_bad(low == "?", where, lambda i: f"split {df['split'].iloc[i]!r} is not 'train', 'holdout' or 'predict'")
        df["split"] = low
    if counts:
        n, c = df["n"], df["c"]
        _first_bad(~(n.notna() & np.isfinite(n) & (n >= 1) & (n == np.floor(n))), where,
                   lambda i: f"n = {_show(df['n'].iloc[i])} is not an integer >= 1 (samples drawn)")
        _first_bad(~(c.notna() & np.isfinite(c) & (c >= 0) & (c == np.floor(c)) & (c <= n)), where,
                   lambda i: f"c = {_show(df['c'].iloc[i])} is not an integer with 0 <= c <= n = {df['n'].iloc[i]:g}")
        df["n"], df["c"] = n.astype("int64"), c.astype("int64")
        if "pu" in cols:
            pu = df["pu"]
            _first_bad(pu.notna() & ~((pu >= 0) & (pu <= 1)), where,
                       lambda i: f"pu = {_show(df['pu'].iloc[i])} is not a pass rate in [0, 1]")
            _first_bad(pu.notna() & (((df["c"] == 0) & (pu > 0)) | ((df["c"] == df["n"]) & (pu < 1))), where,
                       lambda i: f"pu = {_show(df['pu'].iloc[i])} contradicts c = {df['c'].iloc[i]} "
                                 f"of n = {df['n'].iloc[i]}")
    else:
        if "metric" not in cols:
            df["metric"] = "acc"
        else:
            _first_bad(df["metric"].isna(), where, lambda i: "empty metric")
        if "filter" not in cols:
            df["filter"] = "none"
        else:
            df["filter"] = df["filter"].fillna("none")
        # a model to predict (split = predict) has no score yet
        to_predict = (df["split"] == "predict").to_numpy() if "split" in df.columns else np.zeros(len(df), bool)
        _first_bad(~np.isfinite(df["score"].fillna(np.nan).to_numpy(float)) & ~to_predict, where,
                   lambda i: f"score = {_show(df['score'].iloc[i])} is not a finite number")
        _check_scores(df, where)
        if "n_items" in cols:
            k = df["n_items"]
            _first_bad(k.notna() & ~((k >= 1) & (k == np.floor(k)) & np.isfinite(k)), where,
                       lambda i: f"n_items = {_show(df['n_items'].iloc[i])} is not an integer >= 1")
        if "chance" in cols:
            ch = df["chance"]
            _first_bad(ch.notna() & ~((ch >= 0) & (ch < 1)), where,
                       lambda i: f"chance = {_show(df['chance'].iloc[i])} is not in [0, 1)")
    df["file"] = str(path)
    lines = where.lines()
    df["line"] = pd.array(lines if lines is not None else [pd.NA] * len(df), dtype="Int64")
    return df


def _check_scores(df: pd.DataFrame, where: _Where) -> None:
    """Proportions (metrics matching :data:`_PROPORTION`) in [0, 1]; percentages
    (every score 0 or in [1, 100], some above 1) divided by 100 with a
    warning; other metrics left as they are."""
    for metric, idx in df.groupby("metric", sort=True).groups.items():
        if not _PROPORTION.search(str(metric).lower()):
            continue
        s = df.loc[idx, "score"].dropna()  # missing only for models to predict (checked before)
        idx = s.index
        if ((s >= 0) & (s <= 1)).all():
            continue
        if ((s >= 0) & (s <= 100)).all() and not ((s > 0) & (s < 1)).any() and (s > 1).any():
            df.loc[idx, "score"] = s / 100
            if "chance" in df.columns:
                ch = df.loc[idx, "chance"]
                if (ch.dropna() > 1).any():
                    df.loc[idx, "chance"] = ch / 100
            _warn(f"{where.path}: metric {metric!r}: every score is 0 or in [1, 100] ({s.min():g} to "
                  f"{s.max():g}): read as percentages and divided by 100")
            continue
        bad = pd.Series(False, index=df.index)
        bad.loc[idx] = ~((s >= 0) & (s <= 1))
        _first_bad(bad, where, lambda i: f"score = {_show(df['score'].iloc[i])} (metric {metric!r}) is not in "
                                         f"[0, 1] (percentages are read only when every score is 0 or in [1, 100])")


def _qualify_models(df: pd.DataFrame) -> pd.DataFrame:
    """Models that carry several values of run/seed/step (or then tokens/compute)
    become one model per value: ``pythia-70m@step143000``.  Several N for one
    model name stay an error (:func:`_per_model`): that is a mistake, not a ladder."""
    order = [c for c in ("run", "seed", "step", "tokens", "compute") if c in df.columns]
    if not order:
        return df
    g = df.groupby("model", sort=False)
    varying = [c for c in order if (g[c].nunique() > 1).any()]
    if not varying:
        return df
    used: list[str] = []
    for c in varying:
        used.append(c)
        key = df["model"].astype(str) + "\x00" + _ids_from(df, used, ",")
        rest = [r for r in varying if r not in used]
        if not rest or not (df.groupby(key)[rest].nunique() > 1).any().any():
            break

    def part(c, v):
        if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
            return None
        return f"step{_fmt(v, c)}" if c == "step" else f"{c}={_fmt(v, c)}"

    several = df["model"].map(g[used].nunique().gt(1).any(axis=1)).astype(bool)
    codes = df.groupby(["model"] + used, dropna=False, sort=False).ngroup().to_numpy()
    first = pd.Series(np.arange(len(df))).groupby(codes).first().sort_index().to_numpy()
    uniq = df[["model"] + used].astype(object).iloc[first]
    names = []
    for multi, vals in zip(several.iloc[first], uniq.itertuples(index=False)):
        m, vals = vals[0], vals[1:]
        parts = [p for p in (part(c, v) for c, v in zip(used, vals)) if p] if multi else []
        names.append(f"{m}@{','.join(parts)}" if parts else m)
    out = df.assign(model=np.asarray(names, dtype=object)[codes])
    n_old, n_new = df["model"].nunique(), out["model"].nunique()
    _warn(f"models carry several values of {', '.join(used)}: each value is its own model "
          f"({n_old} names -> {n_new} models, e.g. {out.loc[several, 'model'].iloc[0]!r})")
    return out


def _where_rows(g: pd.DataFrame, limit: int = 4) -> str:
    locs = []
    for f, ln in zip(g["file"], g["line"] if "line" in g.columns else [pd.NA] * len(g)):
        locs.append(f"{f}:{ln}" if pd.notna(ln) else str(f))
    return ", ".join(locs[:limit]) + (f" (+{len(locs) - limit} more)" if len(locs) > limit else "")


def _per_model(df: pd.DataFrame) -> pd.DataFrame:
    """One value per model of N, tokens, ... (filled across the model's rows);
    several values are an error naming the model and rows."""
    cols = [c for c in _PER_MODEL if c in df.columns]
    if not cols or df.empty:
        return df
    g = df.groupby("model", sort=False)
    nun = g[cols].nunique()
    bad = nun[(nun > 1).any(axis=1)]
    if not bad.empty:
        model = bad.index[0]
        col = next(c for c in cols if bad.loc[model, c] > 1)
        rows = df[df["model"] == model]
        vals = sorted(map(str, rows[col].dropna().unique()))[:5]
        raise ValueError(f"model {model!r} has several values of {col} ({', '.join(vals)}) at "
                         f"{_where_rows(rows)}: a model has one {col}; give different models different "
                         f"names (or add a step/run/seed column)" + (f"; {len(bad) - 1} more model(s)"
                                                                    if len(bad) > 1 else ""))
    has_gap = (df[cols].isna() & g[cols].transform("count").gt(0)).any()
    for c in has_gap.index[has_gap]:
        df[c] = df[c].fillna(g[c].transform("first"))
    return df


def _dedupe(df: pd.DataFrame) -> pd.DataFrame:
    """Counts: duplicate (model, task, instance) rows summed, with a warning.
    Scores: duplicate (model, task, metric, filter, num_fewshot) rows an error."""
    if df.empty:
        return df
    counts = "n" in df.columns and df["n"].notna().all()
    key = _KEY_COUNTS if counts else [k for k in _KEY_SCORES if k in df.columns]
    dup = df.duplicated(key, keep=False)
    if not dup.any():
        return df
    if not counts:
        first = df.loc[dup].groupby(key, dropna=False, sort=False)
        (k, rows), n = next(iter(first)), first.ngroups
        desc = ", ".join(f"{c}={_show(v)}" for c, v in zip(key, k) if not (isinstance(v, float) and math.isnan(v)))
        raise ValueError(f"{n} measurement(s) appear more than once, e.g. {desc} at {_where_rows(rows)}: "
                         "one score per model, task and metric (name the runs apart in 'model', or "
                         "add seed/step/run columns)")
    n_dup = int(dup.sum())
    groups = int(df.loc[dup].groupby(key, sort=False).ngroups)
    agg = {c: "first" for c in df.columns if c not in key}
    agg.update(n="sum", c="sum")
    if "pu" in df.columns:  # an estimate of one run's design; summed counts get c/n
        df = df.assign(pu=df["pu"].where(~dup))
    files = df.loc[dup, "file"].nunique() if "file" in df.columns else 1
    out = df.groupby(key, sort=False, as_index=False, dropna=False).agg(agg)[df.columns]
    _warn(f"{n_dup} rows repeat {groups} (model, task, instance) key(s)"
          + (f" across {files} files" if files > 1 else "")
          + f": merged by summing n and c ({n_dup - groups} row(s) fewer; a resumed run writes its "
          "instances twice)")
    for c in ("n", "c"):
        out[c] = out[c].astype("int64")
    return out


def _order(df: pd.DataFrame) -> pd.DataFrame:
    first = [c for c in COLUMNS if c in df.columns]
    tail = [c for c in ("file", "line", "source") if c in df.columns]
    rest = [c for c in df.columns if c not in first and c not in tail]
    return df[first + rest + tail].reset_index(drop=True)


def read_table(path: PathLike) -> pd.DataFrame:
    """One tidy table file (see the module docstring for formats and columns).

    Returns the rows with canonical column names, numbers coerced, ``model``
    derived where the table has none, models with several steps/runs/seeds
    split, duplicate counts summed; plus ``file`` and ``line``.  Raises
    ValueError naming FILE:LINE for anything wrong, and FileNotFoundError.
    """
    path = Path(path)
    raw, where = _read_raw(path)
    df = _normalise(raw, where)
    df = _qualify_models(df)
    df = _per_model(df)
    df = _dedupe(df)
    return _order(df)


# ---------------------------------------------------------------- lm-eval output

def _is_passuntil(path: Path) -> bool:
    """Whether a samples file holds PassUntil counts (its first record has n_samples)."""
    try:
        for _, rec in iter_jsonl(path):
            return isinstance(rec, dict) and "n_samples" in rec and "n_passed" in rec
    except (ValueError, OSError, EOFError, UnicodeDecodeError):
        return True  # let read_instances report it
    return False


def _samples_files(paths: list[Path]) -> list[Path]:
    found = set()
    for p in paths:
        if p.is_file():
            if _SAMPLES_RE.match(p.name) or p.name.startswith("samples_"):
                found.add(p)
        elif p.is_dir():
            for pattern in ("samples_*.jsonl", "samples_*.jsonl.gz"):
                found.update(f for f in p.rglob(pattern) if f.is_file())
    return sorted(found)


def _n_items(res: pd.DataFrame) -> pd.Series:
    """Items each score averages: the results file's ``n-samples`` (effective,
    else original) for the task; else, for a mean of 0/1 items, from lm-eval's
    stderr sqrt(p(1-p)/(n-1)): n = p(1-p)/stderr^2 + 1; NaN otherwise."""
    cache: dict[str, dict] = {}

    def from_file(file: str, task: str) -> float:
        if file not in cache:
            try:
                with open(file, encoding="utf-8") as f:
                    data = json.load(f)
                cache[file] = data.get("n-samples") or {} if isinstance(data, dict) else {}
            except (OSError, ValueError):
                cache[file] = {}
        entry = cache[file].get(task)
        if isinstance(entry, dict):
            v = entry.get("effective", entry.get("original"))
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 1:
                return float(v)
        return math.nan

    out = []
    for file, task, p, se in zip(res["file"], res["task"], res["value"], res["stderr"]):
        n = from_file(file, task)
        if math.isnan(n) and 0 < p < 1 and se == se and se > 0:
            n = float(round(p * (1 - p) / se ** 2 + 1))
        out.append(n)
    return pd.Series(out, index=res.index, dtype="float64")


def _load_lm_eval(paths: list[Path], kind: str | None) -> pd.DataFrame:
    samples = [f for f in _samples_files(paths) if _is_passuntil(f)] if kind != "scores" else []
    if kind == "counts" and not samples:
        raise FileNotFoundError(f"no PassUntil samples_*.jsonl in {', '.join(map(str, paths))}: "
                                "run lm_eval with --log_samples on a PassUntil task")
    if samples:
        inst = read_instances(samples)
        try:
            res = read_results([p for p in paths if p.is_dir() or p.suffix == ".json"], on_duplicate="last")
            sizes = res.dropna(subset=["n_params"]).groupby("model")["n_params"].first()
        except (FileNotFoundError, ValueError):
            sizes = pd.Series(dtype=float)
        inst = inst.assign(n_params=inst["model"].map(sizes).astype("float64"), source="lm-eval")
        return inst
    result_paths = [p for p in paths if not (p.is_file() and p.name.startswith("samples_"))]
    if not result_paths:
        raise FileNotFoundError(f"no lm-eval results among {', '.join(map(str, paths))}: a samples file "
                                "of a task that is not a PassUntil task has no scores; pass its directory")
    # lm_eval run twice on one model writes a second results file: the newest
    # counts (with a warning naming the others), as lm-eval's own tools read it
    res = read_results(result_paths, on_duplicate="last")
    out = res.assign(score=res["value"], n_items=_n_items(res), source="lm-eval").drop(columns="value")
    return out


# ---------------------------------------------------------------- the manifest

def _join_manifest(df: pd.DataFrame, manifest) -> pd.DataFrame:
    """Per-model columns from the manifest, by model: they fill what the rows
    lack; a value that contradicts the table's is an error."""
    man = manifest if isinstance(manifest, pd.DataFrame) else read_manifest(manifest)
    where = "the manifest" if isinstance(manifest, pd.DataFrame) else str(manifest)
    man = man.rename(columns={c: _ALIASES.get(str(c).lower(), c) for c in man.columns
                              if str(c) not in ("N", "n")})
    man = man.drop(columns=[c for c in ("task", "instance", "n", "c", "score", "metric", "filter")
                            if c in man.columns])
    man = man.drop_duplicates("model").set_index("model")
    for col in man.columns:
        mapped = df["model"].map(man[col])
        if col not in df.columns:
            df[col] = mapped
            continue
        both = df[col].notna() & mapped.notna()
        if both.any():
            a = pd.to_numeric(df.loc[both, col], errors="coerce")
            b = pd.to_numeric(mapped[both], errors="coerce")
            num = a.notna() & b.notna()
            differ = (num & ~np.isclose(a.fillna(0).astype(float), b.fillna(0).astype(float), rtol=1e-9)) | \
                (~num & (df.loc[both, col].astype(str) != mapped[both].astype(str)))
            if differ.any():
                i = differ[differ].index[0]
                raise ValueError(f"model {df.at[i, 'model']!r}: {col} = {_show(df.at[i, col])} in "
                                 f"{df.at[i, 'file']} but {_show(mapped[i])} in {where}")
        df[col] = df[col].where(df[col].notna(), mapped)
    return df


# ---------------------------------------------------------------- load

def load(paths: PathLike | Iterable[PathLike], manifest=None, *, kind: str | None = None) -> pd.DataFrame:
    """One tidy table from table files and/or lm-eval output, in the documented columns.

    ``paths``: one path or a list; each a table file (by its ending), an
    lm-eval output directory, or an lm-eval ``results_*.json`` /
    ``samples_*.jsonl``.  lm-eval output gives counts rows (model, task,
    instance, n, c, K, r, stop, n_params) where it has PassUntil samples, else
    score rows (model, task, metric, filter, num_fewshot, score, stderr,
    n_items, n_params).  ``kind``: "counts", "scores", or None (whatever the
    inputs hold; a mix of counts and scores is an error).  With "scores",
    lm-eval directories give their aggregated results even when they also
    have PassUntil samples.

    ``manifest`` (a path or a :func:`read_manifest` table) joins per-model
    columns by model (N, tokens, flops -> compute, loss, seed, D, checkpoint,
    ...); it fills what the inputs lack, and a contradiction is an error.
    ``N`` of lm-eval rows: the manifest's, else lm-eval's
    ``model_num_parameters`` (``n_params``); it stays NaN where neither says
    (:func:`with_x` names such models).

    ``df.attrs["kind"]`` is "counts" or "scores".  Raises ValueError naming
    file (and line) for unreadable input, FileNotFoundError for missing paths.
    """
    if kind not in (None, "counts", "scores"):
        raise ValueError(f"kind must be 'counts', 'scores' or None, not {kind!r}")
    tables, lm = [], []
    for p in _as_paths(paths):
        if p.is_dir():
            lm.append(p)
        elif not p.exists():
            raise FileNotFoundError(f"no such file or directory: {p}")
        elif _is_lm_eval_name(p):
            lm.append(p)
        elif _suffix(p) == ".json":
            data = _load_json(p, f"; read are {FORMATS}")
            if isinstance(data, list):
                tables.append(p)
            elif isinstance(data, dict) and "results" in data:
                lm.append(p)
            else:
                raise ValueError(f"{p}: neither a table (a JSON list of records) nor an lm-eval results "
                                 f"file; read are {FORMATS}")
        elif _suffix(p) is not None:
            tables.append(p)
        else:
            raise ValueError(f"{p}: not a table or lm-eval result file; read are {FORMATS}")
    frames = []
    for p in tables:
        t = read_table(p).assign(source="table")
        shape = "counts" if "n" in t.columns and "c" in t.columns else "scores"
        if kind is not None and shape != kind:
            raise ValueError(f"{p}: a table of {shape} ({'instance, n, c' if shape == 'counts' else 'score'}), "
                             f"but {kind} are needed here")
        frames.append(t)
    if lm:
        frames.append(_load_lm_eval(lm, kind))
    shapes = {"counts" if "n" in f.columns else "scores" for f in frames}
    if len(shapes) > 1:
        raise ValueError("the inputs mix counts (instance, n, c) and scores: load them separately "
                         "or pass kind='counts' / kind='scores'")
    df = pd.concat(frames, ignore_index=True, sort=False) if len(frames) > 1 else frames[0]
    if "N" not in df.columns:
        df["N"] = np.nan
    if manifest is not None:
        df = _join_manifest(df, manifest)
    if "n_params" in df.columns:
        df["N"] = df["N"].astype("float64").fillna(pd.to_numeric(df["n_params"], errors="coerce"))
    df = _per_model(df)
    df = _dedupe(df)
    out = _order(df)
    out.attrs["kind"] = shapes.pop()
    return out


# ---------------------------------------------------------------- choosing

def choose_filter(filters: list[str], filt: str | None, task: str, metric: str) -> str:
    """lm-eval's filter of a metric: the one named, else the only one, else
    ``none``; a ValueError lists the choices otherwise."""
    if filt:
        if filt not in filters:
            raise ValueError(f"task {task!r} metric {metric!r} has no filter {filt!r}; filters: {filters}")
        return filt
    if len(filters) == 1:
        return filters[0]
    if "none" in filters:
        return "none"
    raise ValueError(f"task {task!r} metric {metric!r} has several filters {filters}: "
                     f"choose one (e.g. --metric {metric},{filters[0]})")


def select_metric(df: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """The rows of one metric per task.

    ``metric``: ``name`` or ``name,filter``; None picks the task's primary
    metric (:data:`PRIMARY_METRICS`: ``acc``, or ``pu`` for a PassUntil task),
    else the task's only metric.  The filter: the one named, else the
    only one, else ``none``.  Raises ValueError listing the choices when a task
    lacks the metric or the choice is ambiguous.  A counts table (no
    ``metric`` column) is returned as is.
    """
    if "metric" not in df.columns:
        return df
    name, _, filt = (metric or "").partition(",")
    keep = []
    for task, g in df.groupby("task", sort=True):
        have = sorted(g["metric"].dropna().unique())
        if name:
            if name not in have:
                raise ValueError(f"task {task!r} has no metric {name!r}; its metrics: {have}")
            m = name
        elif m := primary_metric(have):
            pass
        elif len(have) == 1:
            m = have[0]
        else:
            raise ValueError(f"task {task!r} has several metrics {have}: choose one (e.g. --metric {have[0]})")
        sel = g[g["metric"] == m]
        if "filter" in sel.columns:
            f = choose_filter(sorted(sel["filter"].fillna("none").unique()), filt, task, m)
            sel = sel[sel["filter"].fillna("none") == f]
        keep.append(sel)
    if not keep:
        raise ValueError("no rows to select a metric from")
    out = pd.concat(keep).sort_index()
    out.attrs = dict(df.attrs)
    return out


def with_x(df: pd.DataFrame, x: str = "N") -> pd.DataFrame:
    """``df`` with a float column ``x``, the scale variable the laws use (on a log scale).

    ``x``: ``N`` (parameters), ``compute`` (FLOPs; 6 * N * tokens where the
    table has no compute, noted in ``attrs["x_note"]``), ``tokens``, or any
    numeric column.  ``attrs["x_name"]`` is set to ``x``.  Raises ValueError
    naming the models without the needed columns, and for x <= 0.
    """
    if not isinstance(x, str) or not x:
        raise ValueError(f"x must be a column name (N, compute, tokens, ...), not {x!r}")
    if "model" not in df.columns:
        raise ValueError("with_x: the table has no 'model' column")
    note = None
    if x in df.columns:
        vals = pd.to_numeric(df[x], errors="coerce")
        if df[x].notna().any() and vals.isna().all():
            raise ValueError(f"column {x!r} is not numeric: it cannot be the scale variable")
        vals = vals.astype("float64")
    elif x != "compute":
        numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c])
                   and c not in ("line", "n", "c", "score", "n_items", "chance", "stderr", "K", "r")]
        raise ValueError(f"no column {x!r} for the scale variable; choose N, compute, tokens or a numeric "
                         f"column of the table: {', '.join(map(str, numeric)) or 'none'}")
    else:
        vals = pd.Series(np.nan, index=df.index, dtype="float64")
    if x == "compute" and vals.isna().any():
        if "N" in df.columns and "tokens" in df.columns:
            derived = 6.0 * pd.to_numeric(df["N"], errors="coerce") * pd.to_numeric(df["tokens"], errors="coerce")
            filled = vals.isna() & derived.notna()
            if filled.any():
                vals = vals.where(~filled, derived)
                note = ("compute = 6 * N * tokens" + (" (the table has no compute column)" if "compute" not in
                                                       df.columns else " where the table has no compute"))
    missing = df.loc[vals.isna(), "model"]
    if len(missing):
        models = sorted(map(str, missing.unique()))
        shown = ", ".join(models[:8]) + (f" (+{len(models) - 8} more)" if len(models) > 8 else "")
        if x == "N":
            need = ("no parameter count N for these models; add a column N to the table, or a manifest "
                    "(columns model, N)")
        elif x == "compute":
            need = "no compute for these models, and no N and tokens to take it as 6 * N * tokens"
        else:
            need = f"no {x} for these models"
        raise ValueError(f"{need}: {shown}")
    bad = ~np.isfinite(vals) | (vals <= 0)
    if bad.any():
        pairs = pd.DataFrame({"m": df.loc[bad, "model"], "v": vals[bad]}).drop_duplicates("m")
        shown = ", ".join(f"{m} ({v:g})" for m, v in zip(pairs["m"].head(5), pairs["v"].head(5)))
        shown += f" (+{len(pairs) - 5} more)" if len(pairs) > 5 else ""
        raise ValueError(f"the scale variable {x} must be finite and > 0 (the laws use log {x}): {shown}")
    out = df.copy()
    out["x"] = vals.astype("float64")
    out.attrs = dict(df.attrs)
    out.attrs["x_name"] = x
    if note:
        out.attrs["x_note"] = note
    else:
        out.attrs.pop("x_note", None)
    return out
