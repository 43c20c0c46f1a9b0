"""What the project prints to the terminal: progress bars only on a terminal,
repeated upstream warnings once.

* :func:`quiet` is True when stderr is not a terminal (a log file, a pipe, a
  batch job): a tqdm bar there is hundreds of carriage returns and cursor
  codes. Jupyter is the exception: ``tqdm.auto`` draws widgets there.
* :func:`progress_bar` is ``tqdm.auto.tqdm`` with ``disable`` also set when
  :func:`quiet` (every bar of the project is made by it).
* :func:`quiet_upstream` is called by the lab, the engine and the finetuning
  code: when :func:`quiet`, transformers' / huggingface_hub's and datasets'
  bars off (their own switches); always, lm-eval's warnings that repeat on
  every task load or ``simple_evaluate`` call through once per process
  (:class:`OnceFilter`, :data:`REPEATED_UPSTREAM_WARNINGS`).
* :func:`quiet_task_bars` silences, for one ``simple_evaluate`` call, the bar
  lm-eval draws while building a task's requests (it has no switch).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading

# lm-eval 0.4.13 (api/task.py, Task.download) warns on every load of a task
# whose data comes from a ``custom_dataset`` function, with or without
# --metadata: once per (model, task) in the lab and per task in the engine.
METADATA_HINT = "Custom kwargs can be passed to `--metadata`"
# lm-eval 0.4.13 (evaluator.simple_evaluate) warns on every call given
# gen_kwargs: the engine makes one call per chunk of every round.
GEN_KWARGS_HINT = "specified through cli, these settings will update set parameters in yaml tasks"
REPEATED_UPSTREAM_WARNINGS = {"lm_eval.api.task": (METADATA_HINT,), "lm_eval.evaluator": (GEN_KWARGS_HINT,)}


def _notebook_bars() -> bool:
    """True when tqdm.auto draws notebook widgets (stderr is no TTY there)."""
    if "ipykernel" not in sys.modules:
        return False
    try:
        from tqdm.auto import tqdm
        from tqdm.notebook import tqdm as notebook_tqdm
    except Exception:  # noqa: BLE001 (no ipywidgets, ...): console bars
        return False
    return issubclass(tqdm, notebook_tqdm)


def quiet(stream=None) -> bool:
    """True when progress bars should stay off: ``stream`` (default
    ``sys.stderr``, where tqdm writes) is not a terminal, outside Jupyter."""
    stream = sys.stderr if stream is None else stream
    try:
        if stream is not None and stream.isatty():
            return False
    except (AttributeError, ValueError):  # no isatty, or closed
        pass
    return not _notebook_bars()


def progress_bar(iterable=None, *, enabled: bool = True, **kwargs):
    """``tqdm.auto.tqdm(iterable, **kwargs)``, disabled when not ``enabled``,
    when ``kwargs['disable']`` is true, or when :func:`quiet`. A disabled bar
    accepts ``update``/``set_postfix``/``close`` and iterates as usual."""
    from tqdm.auto import tqdm

    kwargs["disable"] = bool(kwargs.get("disable")) or not enabled or quiet()
    return tqdm(iterable, **kwargs)


class OnceFilter(logging.Filter):
    """A logging filter that lets the first record whose message contains one
    of ``patterns`` through and drops later ones with the same pattern (per
    filter, i.e. per process when installed by :func:`once_per_process`).
    Other records pass untouched."""

    def __init__(self, patterns, note: str = " (shown once)") -> None:
        super().__init__()
        self.patterns = tuple(patterns)
        self.note = note
        self.seen: set[str] = set()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        for pat in self.patterns:
            if pat in msg:
                with self._lock:
                    if pat in self.seen:
                        return False
                    self.seen.add(pat)
                if self.note:
                    record.msg, record.args = msg + self.note, ()
                return True
        return True


_once_filters: dict[str, OnceFilter] = {}
_once_lock = threading.Lock()


def once_per_process(logger_name: str, *patterns: str) -> OnceFilter:
    """Install (once; later calls add patterns) an :class:`OnceFilter` on the
    logger that emits the records. Returns the filter."""
    with _once_lock:
        f = _once_filters.get(logger_name)
        if f is None:
            f = _once_filters[logger_name] = OnceFilter(patterns)
            logging.getLogger(logger_name).addFilter(f)
        else:
            f.patterns += tuple(p for p in patterns if p not in f.patterns)
        return f


_upstream_done = False


def quiet_upstream() -> None:
    """Repeated upstream warnings once per process; when :func:`quiet`, the
    progress bars of transformers (loading and saving weights),
    huggingface_hub and datasets off. Idempotent; a bar already drawn on a
    terminal stays."""
    global _upstream_done
    for name, patterns in REPEATED_UPSTREAM_WARNINGS.items():
        once_per_process(name, *patterns)
    if _upstream_done or not quiet():
        return
    _upstream_done = True
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # also huggingface_hub's
    except ImportError:
        pass
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:
        pass


#: lm-eval modules whose module-level ``tqdm`` draws a bar per call: the
#: task's request building, and the model backends' request loops (no switch
#: reaches them from simple_evaluate in 0.4.13).
_BAR_MODULES = ("lm_eval.api.task", "lm_eval.models.huggingface", "lm_eval.models.vllm_causallms")


@contextlib.contextmanager
def quiet_task_bars():
    """While the block runs and :func:`quiet`: lm-eval's own bars off, over a
    task's documents while it builds the requests and over the requests in
    the model backends loaded so far (``hf``'s "Running generate_until
    requests"). Scoped like the engine's other per-call patches."""
    if not quiet():
        yield
        return
    saved = {}
    for name in _BAR_MODULES:
        mod = sys.modules.get(name)
        bar = getattr(mod, "tqdm", None) if mod is not None else None
        if isinstance(bar, type):
            saved[mod] = bar

            class _Off(bar):
                def __init__(self, *args, **kwargs):
                    kwargs["disable"] = True
                    super().__init__(*args, **kwargs)

            mod.tqdm = _Off
    try:
        yield
    finally:
        for mod, bar in saved.items():
            mod.tqdm = bar
