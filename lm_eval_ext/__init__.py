"""lm-eval plugin for measuring and predicting emergent abilities.

Importing this package is cheap: it does not import lm-eval. Registration of
the metrics, aggregations and filters with lm-eval happens when
``lm_eval_ext.registration`` is imported, which the task configs do.

    lm_eval --tasks passuntil_humaneval --include_path "$(lm-eval-ext task-dir)" ...
"""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"


def task_dir() -> Path:
    """The directory of this package's task YAMLs, to pass to ``--include_path``."""
    from importlib.resources import files

    path = Path(str(files("lm_eval_ext.task_configs")))
    if not (path / "passuntil").is_dir():  # pragma: no cover - broken install
        raise RuntimeError(f"lm_eval_ext task configs not found at {path}; reinstall the package")
    return path
