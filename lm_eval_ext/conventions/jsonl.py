"""Reading JSON Lines files (plain or gzipped) with errors that name file and line.

Whatever is wrong with a file, :func:`iter_jsonl` raises one ``ValueError``
whose message is a single line starting ``FILE:LINE:`` (or ``FILE:`` where
the trouble is the file as a whole), never a traceback-only error: invalid
UTF-8, a gzip file that is truncated or damaged, a ``.gz`` that is no gzip
file, a line too deeply nested or too long to parse. A UTF-8 byte order mark
at the start, CRLF line ends and blank lines are accepted.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

GZIP_MAGIC = b"\x1f\x8b"
#: Longest line read (bytes); a longer one is an error, not an out-of-memory crash.
MAX_LINE_BYTES = 256 * 1024 * 1024
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


class _DuplicateKey(ValueError):
    pass


def _unique_object(pairs: list[tuple[str, object]]) -> dict:
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKey(key)
        obj[key] = value
    return obj


def json_type(value: object) -> str:
    """The JSON name of a parsed value's type (for messages)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def iter_jsonl(path: str | os.PathLike, *, unique_keys: bool = False,
               max_line_bytes: int | None = None) -> Iterator[tuple[int, object]]:
    """Yield (1-based line number, parsed value) for every non-blank line.

    Raises FileNotFoundError for a missing file and ValueError("FILE:LINE: ...")
    (or "FILE: ..." for the file as a whole) for anything else that is wrong:
    a line that is not JSON or not UTF-8, a damaged or truncated gzip file, a
    file named ``.gz`` that is not gzip, an unreadable file. A gzip file is
    recognised by its name or its first bytes. ``unique_keys`` makes a key
    repeated within one JSON object an error (by default the last one wins,
    as in :func:`json.loads`). A line longer than ``max_line_bytes``
    (default :data:`MAX_LINE_BYTES`) is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    try:
        with open(path, "rb") as raw:
            magic = raw.read(2)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from None
    is_gzip = path.suffix == ".gz" or magic == GZIP_MAGIC
    hook = _unique_object if unique_keys else None
    max_line_bytes = MAX_LINE_BYTES if max_line_bytes is None else max_line_bytes
    lineno = 0
    try:
        f = gzip.open(path, "rb") if is_gzip else open(path, "rb")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with f:
        while True:
            lineno += 1
            try:
                data = f.readline(max_line_bytes + 1)
            except gzip.BadGzipFile as exc:
                if lineno == 1 and str(exc).startswith("Not a gzipped file"):
                    raise ValueError(f"{path}: not a gzip file (it starts with {magic!r})") from None
                raise ValueError(f"{path}:{lineno}: damaged gzip data ({exc})") from None
            except EOFError:
                raise ValueError(f"{path}:{lineno}: the gzip data ends early (a truncated file?)") from None
            except zlib.error as exc:
                raise ValueError(f"{path}:{lineno}: damaged gzip data ({exc})") from None
            except OSError as exc:
                raise ValueError(f"{path}:{lineno}: cannot read ({exc.strerror or exc})") from None
            if not data:
                return
            if len(data) > max_line_bytes:
                raise ValueError(f"{path}:{lineno}: line longer than {max_line_bytes} bytes")
            bom_len = 3 if lineno == 1 and data.startswith(b"\xef\xbb\xbf") else 0
            data = data[bom_len:]
            try:
                line = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                hint = ""
                if lineno == 1 and data.startswith(_UTF16_BOMS):
                    hint = "; the file starts with a UTF-16 byte order mark: save it as UTF-8"
                raise ValueError(f"{path}:{lineno}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at column "
                                 f"{bom_len + exc.start + 1}{hint})") from None
            if not line.strip():
                continue
            try:
                value = json.loads(line, object_pairs_hook=hook)
            except json.JSONDecodeError as exc:
                msg = exc.msg.removesuffix(" at")  # "Invalid control character at"
                raise ValueError(f"{path}:{lineno}: not valid JSON ({msg}, column {exc.colno})") from None
            except _DuplicateKey as exc:
                raise ValueError(f"{path}:{lineno}: key {exc.args[0]!r} appears twice in one object") from None
            except RecursionError:
                raise ValueError(f"{path}:{lineno}: JSON nested too deeply to read") from None
            except ValueError as exc:  # e.g. an integer beyond int_max_str_digits
                raise ValueError(f"{path}:{lineno}: unreadable JSON ({exc})") from None
            yield lineno, value
