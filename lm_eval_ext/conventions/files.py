"""Output files: written atomically, with the user's permissions.

:func:`write_text_atomic` / :func:`write_json_atomic` replace a file so that a
reader, or a crash, sees the old file or the new one, never half of it (the
engine's state, results, the lab's manifests and reports). Atomic writes go through ``tempfile.mkstemp`` / ``mkdtemp``, which create the
file 0600 and the directory 0700 whatever the umask: renamed into place they
would leave results, reports, predictions and model directories unreadable to
the rest of a group on a shared cluster. :func:`apply_umask` gives the
temporary file (or directory) the mode a plain ``open()`` / ``mkdir()`` would
have given it, ``0o666 & ~umask`` (``0o777 & ~umask`` for a directory), before
it is renamed. The sandbox's private work directories
(:mod:`lm_eval_ext.execution`) keep their 0700.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path

__all__ = ["apply_umask", "umask"]

_lock = threading.Lock()


def _umask_from_proc() -> int | None:
    """Linux >= 4.7: the ``Umask:`` line of /proc/self/status (read-only)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def umask() -> int:
    """The process's umask, read without changing it where the OS allows.

    On Linux it is read from /proc/self/status. Elsewhere (macOS, old
    kernels) the only way is to set it and set it back (``old =
    os.umask(0o077); os.umask(old)``): for that instant the umask is 077, so
    a file another *thread* creates right then is private (never more open
    than the user asked). The fallback is serialised within this module, not
    against other threads' file creation. The umask is read on every call, so
    one the program changes later is honoured.
    """
    mask = _umask_from_proc()
    if mask is not None:
        return mask
    with _lock:
        old = os.umask(0o077)  # the safe value for the instant it is set
        os.umask(old)
    return old


def apply_umask(path: str | os.PathLike, *, tree: bool = False) -> None:
    """``chmod`` ``path`` to the mode the umask gives a newly created one:
    ``0o666 & ~umask`` for a file, ``0o777 & ~umask`` for a directory.

    ``tree``: also everything below a directory (symbolic links are left
    alone). For a directory this process has just filled and is about to
    rename into place: ``save_pretrained`` writes ``model.safetensors`` 0600
    (safetensors 0.8 does, whatever the umask)."""
    mask = umask()

    def one(p, is_dir):
        os.chmod(p, (0o777 if is_dir else 0o666) & ~mask)

    top_is_dir = os.path.isdir(path)
    one(path, top_is_dir)
    if tree and top_is_dir and not os.path.islink(path):
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                p = os.path.join(root, name)
                if not os.path.islink(p):
                    one(p, name in dirs)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write text so that a reader (or a crash) sees the old file or the new one, never half.
    The file gets the mode the umask gives a new file (mkstemp's is 0600)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        apply_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_json_atomic(path: str | os.PathLike, data) -> None:
    """:func:`write_text_atomic` of ``data`` as JSON."""
    write_text_atomic(path, json.dumps(data))
