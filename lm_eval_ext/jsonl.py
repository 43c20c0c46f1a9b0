"""Reading JSON Lines files (plain or gzipped) with errors that name file and line."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, object]]:
    """Yield (line number, parsed value) for every non-blank line.

    Raises FileNotFoundError for a missing file and ValueError("FILE:LINE: ...")
    for a line that is not JSON.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
