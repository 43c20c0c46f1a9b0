"""From a tidy table (``analysis.ingest.load`` + ``with_x``) to one task's
per-model observations, with the task's chance floor.

Multiple-choice accuracy has a chance floor that the PassUntil law does not
have, so the law is fitted to the part above chance (see
:mod:`.observations`).  The floor comes from, in this order: the caller
(``--chance``), the table's ``chance`` column, the list of common lm-eval
tasks below (a note says so), else 0 (a note says that too).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from .observations import observe

__all__ = ["KNOWN_CHANCE", "chance_for", "task_observations"]

#: Chance accuracy of common lm-eval tasks (1 / number of choices; 0 for
#: generation).  Matched on the task name's start.
KNOWN_CHANCE = {
    "lambada": 0.0, "gsm8k": 0.0, "humaneval": 0.0, "mbpp": 0.0, "minerva_math": 0.0, "math": 0.0,
    "triviaqa": 0.0, "nq_open": 0.0, "squad": 0.0, "coqa": 0.0, "drop": 0.0, "passuntil": 0.0, "lab_": 0.0,
    "arc_easy": 0.25, "arc_challenge": 0.25, "hellaswag": 0.25, "sciq": 0.25, "openbookqa": 0.25,
    "mmlu": 0.25, "hendrycks": 0.25, "logiqa": 0.25, "race": 0.25, "mathqa": 0.2,
    "openbook_qa": 0.25, "obqa": 0.25, "commonsense_qa": 0.2, "csqa": 0.2, "social_iqa": 1 / 3, "socialiqa": 1 / 3,
    "siqa": 1 / 3, "piqa": 0.5, "winogrande": 0.5, "boolq": 0.5, "copa": 0.5, "wsc": 0.5, "rte": 0.5, "cola": 0.5,
    "mrpc": 0.5, "qqp": 0.5, "qnli": 0.5, "sst2": 0.5, "wic": 0.5, "mnli": 1 / 3, "anli": 1 / 3,
}


def chance_for(task: str, table_chance=None, override: float | None = None) -> tuple[float, str]:
    """(floor, where it came from)."""
    if override is not None:
        return float(override), "given"
    if table_chance is not None and np.isfinite(table_chance):
        return float(table_chance), "table"
    name = task.lower()
    for key in sorted(KNOWN_CHANCE, key=len, reverse=True):
        if re.match(re.escape(key), name):
            return KNOWN_CHANCE[key], f"assumed for lm-eval task '{key}'"
    return 0.0, "unknown: assumed 0 (pass --chance for multiple choice)"


def task_observations(df: pd.DataFrame, task: str, *, chance: float | None = None,
                      y: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """One task's observations and notes.  ``df`` has the column ``x``
    (see ``analysis.ingest.with_x``); ``y``: a column to use as the score."""
    g = df[df["task"] == task] if "task" in df.columns else df
    if g.empty:
        raise ValueError(f"task {task!r} not found")
    notes = []
    if y is not None:
        if y not in g.columns:
            raise ValueError(f"--y {y}: no such column; columns: {sorted(map(str, g.columns))}")
        g = g.assign(score=pd.to_numeric(g[y], errors="coerce"))
        g = g.drop(columns=[c for c in ("n", "c", "instance") if c in g.columns])
        if g["score"].isna().any():
            raise ValueError(f"--y {y}: non-numeric values for models "
                             f"{g.loc[g['score'].isna(), 'model'].unique()[:5].tolist()}")
    is_counts = {"instance", "n", "c"} <= set(g.columns)
    ch = None
    if not is_counts:
        if "score" not in g.columns:
            raise ValueError("a table needs PassUntil counts (instance, n, c) or a score column (or --y COLUMN)")
        tab = g["chance"].dropna().iloc[0] if "chance" in g.columns and g["chance"].notna().any() else None
        ch, src = chance_for(task, tab, chance)
        if src not in ("given", "table"):
            notes.append(f"chance floor {ch:g}: {src}")
        if "metric" in g.columns and g["metric"].nunique() > 1:
            raise ValueError(f"task {task!r} has several metrics {sorted(g['metric'].unique())}: pass --metric")
        cols = [c for c in ("model", "x", "score", "n_items") if c in g.columns]
        g = g[cols].assign(chance=ch)
    else:
        g = g[["model", "x", "instance", "n", "c"] + (["pu"] if "pu" in g.columns else [])]
    obs = observe(g)
    n_cens = int(obs["censored"].sum())
    if n_cens:
        what = "no pass at all" if is_counts else "within 2 standard errors of chance or below"
        notes.append(f"{n_cens} of {len(obs)} models censored ({what}): used as bounds, not values")
    return obs, notes
