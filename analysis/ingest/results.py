"""Directories of lm-eval results in, tidy pandas tables out.

Every analysis in this package (scaling fits, emergence laws, seed spreads)
starts from the same few tables, so they are built here, once, with errors that
name the file (and line) at fault instead of a NaN that surfaces three
functions later:

- :func:`read_results`: one row per (model, task, metric, filter) from lm-eval
  v0.4 ``results_*.json`` files and legacy v0.3 result JSONs.
- :func:`read_instances`: one row per (model, task, instance) with the
  PassUntil counts n and c (and K, r, why sampling stopped) from the
  ``samples_<task>_<timestamp>.jsonl`` files our tasks write.
- :func:`read_manifest`: what result files do not say (parameters N, tokens,
  flops, pretraining loss, seed, finetuning examples D, ...), from CSV or YAML.
- :func:`attach_sizes`: the column N every scaling fit needs.
- :func:`tidy_table`: validation for tables produced elsewhere.
"""

from __future__ import annotations

import json
import logging
import math
import re
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from lm_eval_ext.conventions.jsonl import iter_jsonl

log = logging.getLogger(__name__)

PathLike = str | Path

RESULT_COLUMNS = ["model", "task", "metric", "filter", "value", "stderr", "num_fewshot",
                  "n_params", "file", "format"]
INSTANCE_COLUMNS = ["model", "task", "instance", "n", "c", "pu", "K", "r", "stop", "file"]
#: Manifest columns coerced to numbers (``checkpoint`` is a label, kept as is).
MANIFEST_NUMERIC = ["N", "tokens", "flops", "loss", "seed", "D"]
#: Columns :func:`tidy_table` requires, by kind of table.
REQUIRED = {"instances": ["model", "N", "task", "instance", "n", "c"],
            "results": ["model", "N", "task", "metric", "value"]}

_RESULTS_NAME_RE = re.compile(r"^results_(?P<stamp>.+)\.json$")
_SAMPLES_RE = re.compile(
    r"^samples_(?P<task>.+)_(?P<stamp>\d{4}-\d{2}-\d{2}T[\d\-.:]+)\.jsonl(?:\.gz)?$")
_DUPLICATE_KEY = ["model", "task", "metric", "filter", "num_fewshot"]


# ---------------------------------------------------------------- finding files

def _as_paths(paths: PathLike | Iterable[PathLike]) -> list[Path]:
    """One path or many: callers pass a directory, a file, or a list of both."""
    if isinstance(paths, (str, Path)):
        return [Path(paths)]
    out = [Path(p) for p in paths]
    if not out:
        raise ValueError("no paths given")
    return out


def _walk(paths: PathLike | Iterable[PathLike], pattern: str) -> list[tuple[Path, bool]]:
    """(file, given explicitly) for every file matching ``pattern`` below the paths.

    Explicitly named files are held to a stricter standard than files found by
    scanning (a stray JSON in a directory is not an error; a named one is).
    """
    found: dict[Path, bool] = {}
    for p in _as_paths(paths):
        if p.is_file():
            found[p] = True
        elif p.is_dir():
            for f in sorted(p.rglob(pattern)):
                if f.is_file():
                    found.setdefault(f, False)
        else:
            raise FileNotFoundError(f"no such results file or directory: {p}")
    return sorted(found.items(), key=lambda kv: str(kv[0]))


# ---------------------------------------------------------------- result files

def _load_json(path: Path, hint: str = "") -> object:
    """Parsed JSON; a ValueError naming the file (and line) when it is not
    JSON or not text (``hint`` is appended to the latter)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file{hint}") from None


def detect_format(data: object, path: PathLike = "<data>") -> str | None:
    """"v0.4", "v0.3", or None when ``data`` has no ``results`` mapping at all.

    v0.4 files carry ``configs``/``n-shot`` sections and ``metric,filter`` keys;
    v0.3 files carry ``results``, ``versions`` and ``config.model_args`` and
    plain metric keys. Something with ``results`` but neither shape is an error
    (it looks like results, so silently skipping it would lose data).
    """
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        return None
    keys = [k for r in data["results"].values() if isinstance(r, dict) for k in r]
    config = data.get("config")
    if not isinstance(config, dict):
        raise ValueError(f"{path}: has 'results' but no 'config' mapping: not an lm-eval results file")
    if "configs" in data or "n-shot" in data or any("," in k for k in keys):
        return "v0.4"
    if "model_args" in config:
        return "v0.3"
    raise ValueError(f"{path}: has 'results' and 'config' but neither the v0.4 shape "
                     f"('configs', 'metric,filter' keys) nor the v0.3 one (config.model_args)")


def parse_model_args(model_args: object) -> dict[str, str]:
    """``"pretrained=X,revision=Y"`` (or a dict, as newer lm-eval writes) -> dict."""
    if isinstance(model_args, dict):
        return {str(k): str(v) for k, v in model_args.items()}
    out: dict[str, str] = {}
    if not isinstance(model_args, str):
        return out
    for part in model_args.split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def model_name(data: dict, path: PathLike) -> str:
    """A stable model name: the ``pretrained`` of model_args (``@revision`` appended
    when one is given and it is not ``main``), else lm-eval's ``model_name`` /
    ``model_name_sanitized``, else the name of the file's directory (lm-eval
    writes into ``<output_path>/<sanitized model>/``).

    The revision matters: checkpoints of one model (Pythia's ``step143000``)
    are different models for a scaling analysis.
    """
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    args = parse_model_args(config.get("model_args"))
    name = args.get("pretrained") or args.get("model") or args.get("path")
    if name:
        rev = args.get("revision")
        return f"{name}@{rev}" if rev and rev != "main" else name
    for key in ("model_name", "model_name_sanitized"):
        if isinstance(data.get(key), str) and data[key]:
            return data[key]
    log.debug("%s: no model name in the file; using its directory name", path)
    return Path(path).parent.name


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _stderr(v: object) -> float:
    """The stderr as a float; NaN when lm-eval wrote "N/A" (or nothing usable)."""
    return float(v) if _is_number(v) else math.nan


def _split_key(key: str) -> tuple[str, str]:
    """``"acc,none"`` -> (acc, none); a key without a filter gets filter ``none``."""
    metric, _, filt = key.partition(",")
    return metric, (filt or "none")


def _warn_text_metric(path, task, metric, filt, v) -> None:
    """A metric (not an alias, a list or a stderr) whose value is text, e.g.
    a score written as the string "0.41": it is not read, and says so, so
    that no run disappears from an analysis without a word."""
    if not isinstance(v, str) or metric.endswith("_stderr") or metric in ("alias", "name", "sample_len",
                                                                          "sample_count", "original", "effective"):
        return
    if filt is None and metric not in ("acc", "acc_norm", "exact_match", "pass@1", "f1", "em", "mc1", "mc2"):
        return  # v0.3 sections hold only metrics and their stderr; be conservative with other keys
    key = metric if filt is None else f"{metric},{filt}"
    warnings.warn(f"{path}: task {task!r}, metric {key!r} = {v!r} is text, not a number: left out of the "
                  "analysis (fix the file, or re-run lm-eval for this model)", UserWarning, stacklevel=3)


def _rows_v04(data: dict, path: Path) -> list[dict]:
    config = data["config"]
    n_params = config.get("model_num_parameters")
    n_params = float(n_params) if _is_number(n_params) else math.nan
    nshot = data.get("n-shot") if isinstance(data.get("n-shot"), dict) else {}
    model = model_name(data, path)
    sections = dict(data.get("groups") or {})
    sections.update(data["results"])  # a task in both: the results entry wins
    rows = []
    for task, metrics in sections.items():
        if not isinstance(metrics, dict):
            continue
        parsed = {_split_key(k): v for k, v in metrics.items()}
        for (metric, filt), v in parsed.items():
            if metric.endswith("_stderr") or not _is_number(v):
                _warn_text_metric(path, task, metric, filt, v)
                continue  # alias, lists, strings: not metrics
            shots = nshot.get(task)
            rows.append({"model": model, "task": task, "metric": metric, "filter": filt,
                         "value": float(v), "stderr": _stderr(parsed.get((metric + "_stderr", filt))),
                         "num_fewshot": shots if _is_number(shots) else None,
                         "n_params": n_params, "file": str(path), "format": "v0.4"})
    return rows


def _rows_v03(data: dict, path: Path) -> list[dict]:
    config = data["config"]
    shots = config.get("num_fewshot")
    model = model_name(data, path)
    rows = []
    for task, metrics in data["results"].items():
        if not isinstance(metrics, dict):
            continue
        for metric, v in metrics.items():
            if metric.endswith("_stderr") or not _is_number(v):
                _warn_text_metric(path, task, metric, None, v)
                continue
            rows.append({"model": model, "task": task, "metric": metric, "filter": "none",
                         "value": float(v), "stderr": _stderr(metrics.get(metric + "_stderr")),
                         "num_fewshot": shots if _is_number(shots) else None,
                         "n_params": math.nan, "file": str(path), "format": "v0.3"})
    return rows


def read_results_file(path: PathLike, strict: bool = True) -> list[dict]:
    """The rows of one result JSON.

    ``strict=False`` (used when scanning directories) returns [] for JSON that
    is clearly not results (no ``results`` mapping, or not JSON at all unless it
    is named ``results_*.json``); ``strict=True`` raises a ValueError naming the
    file instead.
    """
    path = Path(path)
    named_results = bool(_RESULTS_NAME_RE.match(path.name))
    try:
        data = _load_json(path)
    except ValueError:
        if strict or named_results:
            raise
        log.debug("%s: not JSON, skipped", path)
        return []
    fmt = detect_format(data, path)
    if fmt is None:
        if strict or named_results:
            raise ValueError(f"{path}: no 'results' mapping: not an lm-eval results file")
        log.debug("%s: no 'results' mapping, skipped", path)
        return []
    return _rows_v04(data, path) if fmt == "v0.4" else _rows_v03(data, path)


def _file_order(path: str) -> tuple[str, str]:
    """Newest last: the timestamp in ``results_<stamp>.json`` (ISO, so it sorts by
    name), else the file name; the full path breaks ties."""
    p = Path(path)
    m = _RESULTS_NAME_RE.match(p.name)
    return (m.group("stamp") if m else p.name, str(p))


def _resolve_duplicates(df: pd.DataFrame, on_duplicate: str) -> pd.DataFrame:
    """The same measurement from two files is an error (or, with "last", the
    newest file wins): averaging or keeping both would bias every fit."""
    if df.empty:
        return df
    files = df.groupby(_DUPLICATE_KEY, dropna=False)["file"].transform("nunique")
    dup = df[files > 1]
    if dup.empty:
        return df
    if on_duplicate == "error":
        lines = []
        for key, g in dup.groupby(_DUPLICATE_KEY, dropna=False, sort=True):
            lines.append(f"  model={key[0]!r} task={key[1]!r} metric={key[2]!r} filter={key[3]!r} "
                         f"num_fewshot={key[4]}: {', '.join(sorted(g['file'].unique()))}")
            if len(lines) == 5:
                break
        n = dup.groupby(_DUPLICATE_KEY, dropna=False).ngroups
        raise ValueError(f"{n} measurement(s) appear in more than one file (a run repeated?); "
                         f"remove one or pass on_duplicate='last' to keep the newest file:\n"
                         + "\n".join(lines))
    order = df["file"].map(_file_order)
    df = df.assign(_order=order).sort_values("_order", kind="stable")
    kept = df.drop_duplicates(_DUPLICATE_KEY, keep="last")
    dropped = sorted(set(dup["file"]) - set(kept.loc[kept.index.isin(dup.index), "file"]))
    warnings.warn(f"{dup.groupby(_DUPLICATE_KEY, dropna=False).ngroups} measurement(s) appear in more than "
                  f"one results file (lm_eval run again on the same model?): the newest file is used, "
                  f"not {', '.join(dropped[:3])}" + (f" and {len(dropped) - 3} more" if len(dropped) > 3 else ""),
                  UserWarning, stacklevel=3)
    return kept.drop(columns="_order")


def read_results(paths: PathLike | Iterable[PathLike], on_duplicate: str = "error") -> pd.DataFrame:
    """One row per (model, task, metric, filter, num_fewshot) from lm-eval result JSONs.

    ``paths``: files and/or directories (searched recursively for ``*.json``).
    Columns: see :data:`RESULT_COLUMNS`. ``stderr`` is NaN where the file has
    none (or "N/A"); ``n_params`` is NaN unless a v0.4 file records
    ``config.model_num_parameters``.

    The same measurement in two files raises a ValueError naming both files;
    ``on_duplicate="last"`` keeps the newest file (by the timestamp in its name).
    ``num_fewshot`` is part of the key: zero- and five-shot runs of one
    checkpoint are different measurements, not duplicates.
    """
    if on_duplicate not in ("error", "last"):
        raise ValueError(f"on_duplicate must be 'error' or 'last', not {on_duplicate!r}")
    rows: list[dict] = []
    files = _walk(paths, "*.json")
    for f, explicit in files:
        rows.extend(read_results_file(f, strict=explicit))
    if not rows:
        raise FileNotFoundError(f"no lm-eval results (results_*.json or v0.3 result JSON) in "
                                f"{', '.join(map(str, _as_paths(paths)))}")
    df = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    df["num_fewshot"] = df["num_fewshot"].astype("Int64")
    df = _resolve_duplicates(df, on_duplicate)
    return df.sort_values(["model", "task", "metric", "filter", "file"], kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------- samples files

def _model_for_dir(directory: Path, stamp: str | None, cache: dict) -> str:
    """The model of the samples files in ``directory``: from the results JSON
    with the same timestamp, else the one model all results JSONs there agree
    on, else the directory's name."""
    if directory not in cache:
        names = {}
        for f in sorted(directory.glob("results_*.json")):
            data = _load_json(f)
            if detect_format(data, f) is not None:
                names[_RESULTS_NAME_RE.match(f.name).group("stamp")] = model_name(data, f)
        cache[directory] = names
    names = cache[directory]
    if stamp in names:
        return names[stamp]
    distinct = sorted(set(names.values()))
    if len(distinct) == 1:
        return distinct[0]
    if len(distinct) > 1:
        raise ValueError(f"{directory}: results files for several models ({', '.join(distinct)}) and "
                         f"none with the samples file's timestamp {stamp}: cannot tell which model it is")
    return directory.name


def _count(value: object, what: str, where: str) -> int:
    """A non-negative integer count (10 or 10.0), or a ValueError naming file:line."""
    if _is_number(value) and math.isfinite(value) and float(value).is_integer() and value >= 0:
        return int(value)
    raise ValueError(f"{where}: {what} = {value!r} is not a non-negative integer")


def _optional_int(value: object, what: str, where: str):
    return None if value is None else _count(value, what, where)


def read_samples_file(path: PathLike, model: str) -> list[dict]:
    """The instance rows of one PassUntil samples JSONL (see :func:`read_instances`)."""
    path = Path(path)
    m = _SAMPLES_RE.match(path.name)
    task = m.group("task") if m else path.name.split(".")[0].removeprefix("samples_")
    rows = []
    for lineno, rec in iter_jsonl(path):
        where = f"{path}:{lineno}"
        if not isinstance(rec, dict) or "n_samples" not in rec or "n_passed" not in rec:
            raise ValueError(f"{where}: no n_samples/n_passed: not a PassUntil task's samples")
        n = _count(rec["n_samples"], "n_samples", where)
        c = _count(rec["n_passed"], "n_passed", where)
        if c > n:
            raise ValueError(f"{where}: n_passed = {c} exceeds n_samples = {n}")
        stop = rec.get("pu_stop")
        pu = rec.get("pu")
        if pu is not None and not (_is_number(pu) and 0 <= pu <= 1):
            raise ValueError(f"{where}: pu = {pu!r} is not a pass rate in [0, 1]")
        rows.append({"model": model, "task": task, "instance": rec.get("doc_id"), "n": n, "c": c,
                     "pu": None if pu is None else float(pu),
                     "K": _optional_int(rec.get("pu_K"), "pu_K", where),
                     "r": _optional_int(rec.get("pu_r"), "pu_r", where),
                     "stop": None if stop is None else str(stop), "file": str(path)})
    return rows


def read_instances(paths: PathLike | Iterable[PathLike]) -> pd.DataFrame:
    """One row per (model, task, instance) with PassUntil counts, from samples JSONL.

    Columns: see :data:`INSTANCE_COLUMNS`. ``n``/``c``: samples drawn and
    passes (from ``n_samples``/``n_passed``); ``pu`` the instance's PU as the
    sampler estimated it (c/n for a fixed budget; the adaptive engine's
    unbiased estimate under its stopping rule); ``K`` (the sample of the r-th
    pass), ``r`` and ``stop`` (why sampling stopped) come from the adaptive
    engine and are missing (<NA>/None) for fixed-budget runs. ``instance`` is
    lm-eval's ``doc_id``. Samples of a task that is not a PassUntil task raise a
    ValueError naming file:line. Instances with n = 0 (a budget that ran out)
    are kept; :func:`tidy_table` rejects them.
    """
    files = _walk(paths, "samples_*.jsonl") + _walk(paths, "samples_*.jsonl.gz")
    files = sorted({f for f, _ in files})
    if not files:
        raise FileNotFoundError(f"no samples_*.jsonl in {', '.join(map(str, _as_paths(paths)))}: "
                                f"run lm_eval with --log_samples")
    rows: list[dict] = []
    cache: dict = {}
    for f in files:
        m = _SAMPLES_RE.match(f.name)
        model = _model_for_dir(f.parent, m.group("stamp") if m else None, cache)
        rows.extend(read_samples_file(f, model))
    df = pd.DataFrame(rows, columns=INSTANCE_COLUMNS)
    for col in ("n", "c"):
        df[col] = df[col].astype("int64")
    df["pu"] = df["pu"].astype("float64")
    for col in ("K", "r"):
        df[col] = df[col].astype("Int64")
    return df


# ---------------------------------------------------------------- manifests

_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}
_NUMBER_RE = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([kKmMbBgGtT]?)\s*$")


def _to_number(value: object) -> float:
    """A manifest number: 1.4e9, "1.4e9", "1.4B", "70M" (k/M/B/G/T suffixes);
    missing values are NaN. Anything else raises ValueError (caller adds where)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return math.nan
    if _is_number(value) or isinstance(value, np.number):
        return float(value)
    if isinstance(value, str):
        if not value.strip():
            return math.nan
        m = _NUMBER_RE.match(value)
        if m:
            return float(m.group(1)) * _SUFFIX[m.group(2).lower()]
    raise ValueError(f"{value!r} is not a number")


def _manifest_records(path: Path) -> tuple[pd.DataFrame, str]:
    """The manifest as a raw table, and how to call its rows in errors."""
    suffixes = "".join(path.suffixes[-2:]).lower()
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML ({exc})") from None
        if isinstance(data, dict):
            recs = []
            for model, fields in data.items():
                if fields is None:
                    fields = {}
                if not isinstance(fields, dict):
                    raise ValueError(f"{path}: model {model!r}: expected a mapping of fields, got {fields!r}")
                if "model" in fields and str(fields["model"]) != str(model):
                    raise ValueError(f"{path}: model {model!r} has a different 'model' field {fields['model']!r}")
                recs.append({"model": model, **{k: v for k, v in fields.items() if k != "model"}})
        elif isinstance(data, list):
            for i, rec in enumerate(data, 1):
                if not isinstance(rec, dict):
                    raise ValueError(f"{path}: entry {i} is not a mapping: {rec!r}")
            recs = data
        else:
            raise ValueError(f"{path}: expected a list of mappings or a mapping model -> fields")
        return pd.DataFrame(recs), "entry"
    if suffixes.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz")):
        sep = "\t" if ".tsv" in suffixes else ","
        try:
            return pd.read_csv(path, sep=sep, dtype={"model": str}), "row"
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: not a readable CSV ({exc})") from None
    raise ValueError(f"{path}: manifest must be .csv, .tsv, .yaml or .yml")


def read_manifest(path: PathLike) -> pd.DataFrame:
    """Per-model facts that result files do not carry, from CSV or YAML.

    YAML: a list of mappings (each with ``model``) or a mapping model -> fields.
    Columns: ``model`` (required, unique) and any of N (parameters), tokens,
    flops, loss (pretraining loss), seed, D (finetuning examples) -- coerced to
    float, accepting suffixes like ``70M``/``1.4B`` -- and checkpoint; any other
    column is kept as is. Bad values raise a ValueError naming file, row and
    column; duplicate models raise one naming them.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    df, unit = _manifest_records(path)
    if "model" not in df.columns:
        raise ValueError(f"{path}: no 'model' column (columns: {', '.join(map(str, df.columns))})")
    first_row = 2 if unit == "row" else 1  # CSV: line 1 is the header
    blank = [i + first_row for i, m in enumerate(df["model"])
             if m is None or (isinstance(m, float) and math.isnan(m)) or not str(m).strip()]
    if blank:
        raise ValueError(f"{path}: {unit}(s) {blank}: empty 'model'")
    df["model"] = df["model"].map(str).astype(object)
    dups = sorted(df.loc[df["model"].duplicated(keep=False), "model"].unique())
    if dups:
        raise ValueError(f"{path}: model(s) listed more than once: {', '.join(dups)}")
    for col in MANIFEST_NUMERIC:
        if col not in df.columns:
            continue
        values = []
        for i, (m, v) in enumerate(zip(df["model"], df[col])):
            try:
                values.append(_to_number(v))
            except ValueError as exc:
                raise ValueError(f"{path}: {unit} {i + first_row} (model {m!r}), column {col!r}: "
                                 f"{exc}") from None
        df[col] = pd.Series(values, index=df.index, dtype="float64")
    return df.reset_index(drop=True)


# ---------------------------------------------------------------- sizes, validation

def attach_sizes(df: pd.DataFrame, manifest: pd.DataFrame | PathLike | None = None) -> pd.DataFrame:
    """``df`` with a column ``N`` (parameters): the manifest's N (joined on
    model) where it has one, else the ``n_params`` recorded in the result file.
    The manifest's other columns (tokens, flops, loss, seed, D, ...) that the
    table does not have yet are joined too, for the analyses that need them.

    A model left without N raises a ValueError listing it with its files: a
    scaling fit over an unknown size would silently drop or misplace it.
    ``manifest``: a table from :func:`read_manifest`, or a path to one.
    """
    if "model" not in df.columns:
        raise ValueError("attach_sizes: the table has no 'model' column")
    if manifest is not None and not isinstance(manifest, pd.DataFrame):
        manifest = read_manifest(manifest)
    n = pd.Series(math.nan, index=df.index, dtype="float64")
    if manifest is not None:
        if "model" not in manifest.columns or "N" not in manifest.columns:
            raise ValueError("attach_sizes: the manifest needs 'model' and 'N' columns")
        sizes = manifest.drop_duplicates("model").set_index("model")["N"].astype("float64")
        n = df["model"].map(sizes).astype("float64")
    if "n_params" in df.columns:
        n = n.fillna(pd.to_numeric(df["n_params"], errors="coerce").astype("float64"))
    missing = df.loc[n.isna()]
    if not missing.empty:
        lines = []
        for model, g in missing.groupby("model", sort=True):
            files = sorted(g["file"].dropna().unique()) if "file" in g.columns else []
            shown = ", ".join(files[:3]) + (f" (+{len(files) - 3} more)" if len(files) > 3 else "")
            lines.append(f"  {model}" + (f": {shown}" if shown else ""))
        raise ValueError("no parameter count N for these models; add them to a manifest "
                         "(columns model, N) and pass it to attach_sizes:\n" + "\n".join(lines))
    out = df.assign(N=n)
    if manifest is not None:
        extra = [c for c in manifest.columns if c not in out.columns and c not in ("model", "N")]
        if extra:
            table = manifest.drop_duplicates("model").set_index("model")[extra]
            out = out.join(table, on="model")
    return out


def _describe_rows(df: pd.DataFrame, mask: pd.Series, limit: int = 5) -> str:
    cols = [c for c in ("model", "task", "instance", "metric", "n", "c", "N", "value") if c in df.columns]
    bad = df.loc[mask, cols]
    text = "; ".join(f"row {i}: " + ", ".join(f"{c}={r[c]!r}" for c in cols) for i, r in bad.head(limit).iterrows())
    return text + (f"; ... ({len(bad)} rows)" if len(bad) > limit else "")


def tidy_table(df: pd.DataFrame, kind: str | None = None) -> pd.DataFrame:
    """Validate a table produced elsewhere before an analysis trusts it.

    ``kind``: "instances" (requires model, N, task, instance, n, c) or
    "results" (requires model, N, task, metric, value); None guesses from the
    columns (n and c present -> instances). Checks: no missing values in the
    required columns, n an integer >= 1, c an integer with 0 <= c <= n,
    N > 0, value finite. Returns a copy with n, c as int64 and N, value as
    float; a ValueError names the offending rows.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"tidy_table expects a pandas DataFrame, not {type(df).__name__}")
    if kind is None:
        kind = "instances" if {"n", "c"} <= set(df.columns) else "results"
    if kind not in REQUIRED:
        raise ValueError(f"kind must be 'instances' or 'results', not {kind!r}")
    missing = [c for c in REQUIRED[kind] if c not in df.columns]
    if missing:
        raise ValueError(f"{kind} table lacks column(s) {', '.join(missing)} "
                         f"(required: {', '.join(REQUIRED[kind])})")
    out = df.copy()
    for col in REQUIRED[kind]:
        na = out[col].isna()
        if na.any():
            raise ValueError(f"missing {col}: {_describe_rows(out, na)}")
    numeric = ["N"] + (["n", "c"] if kind == "instances" else ["value"])
    for col in numeric:
        conv = pd.to_numeric(out[col], errors="coerce")
        bad = conv.isna()
        if bad.any():
            raise ValueError(f"{col} is not numeric: {_describe_rows(out, bad)}")
        out[col] = conv.astype("float64")
    checks = [("N must be > 0 and finite", ~(np.isfinite(out["N"]) & (out["N"] > 0)))]
    if kind == "instances":
        n, c = out["n"], out["c"]
        checks += [("n must be an integer >= 1", ~((n >= 1) & (n == np.floor(n)) & np.isfinite(n))),
                   ("c must be an integer with 0 <= c <= n",
                    ~((c >= 0) & (c <= n) & (c == np.floor(c)) & np.isfinite(c)))]
    else:
        checks.append(("value must be finite", ~np.isfinite(out["value"])))
    for what, bad in checks:
        if bad.any():
            raise ValueError(f"{what}: {_describe_rows(df, bad)}")
    if kind == "instances":
        out["n"] = out["n"].astype("int64")
        out["c"] = out["c"].astype("int64")
    return out
