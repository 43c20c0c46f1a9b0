"""Per-instance PassUntil counts from lm-eval samples files.

lm-eval writes ``samples_<task>_<timestamp>.jsonl`` next to ``results_*.json``
when run with ``--log_samples``. For lm_eval_ext's PassUntil tasks each line
carries ``n_samples`` and ``n_passed`` (and the verdict of every sample in
``filtered_resps``). This module turns such files into one row per instance.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from lm_eval_ext.jsonl import iter_jsonl

_SAMPLES_RE = re.compile(r"^samples_(?P<task>.+)_(?P<stamp>\d{4}-\d{2}-\d{2}T[\d\-.]+)\.jsonl$")


def find_samples(path: str | Path) -> list[Path]:
    """Every samples JSONL below ``path`` (a file is returned as is)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"no such results file or directory: {path}")
    return sorted(path.rglob("samples_*.jsonl"))


def read_passuntil_counts(path: str | Path) -> pd.DataFrame:
    """One row per (file, task, instance): columns file, task, doc_id, n, c.

    Raises ValueError naming the file and line when a line is not valid JSON
    or lacks the PassUntil counts (a task that is not a PassUntil task).
    """
    rows = []
    files = find_samples(path)
    if not files:
        raise FileNotFoundError(f"no samples_*.jsonl under {path}: run lm_eval with --log_samples")
    for f in files:
        m = _SAMPLES_RE.match(f.name)
        task = m.group("task") if m else f.stem
        for lineno, rec in iter_jsonl(f):
            if not isinstance(rec, dict) or "n_samples" not in rec or "n_passed" not in rec:
                raise ValueError(f"{f}:{lineno}: no n_samples/n_passed: not a PassUntil task's samples")
            rows.append({"file": str(f), "task": task, "doc_id": rec.get("doc_id"),
                         "n": int(rec["n_samples"]), "c": int(rec["n_passed"])})
    return pd.DataFrame(rows, columns=["file", "task", "doc_id", "n", "c"])
