"""Adaptive PassUntil sampling through lm-eval's own evaluation path.

Every chunk of every round is one ``lm_eval.simple_evaluate`` call on the
task, restricted (``samples=``) to the chunk's instances with ``repeats`` set
to the chunk's per-instance draw, so any model backend lm-eval has (hf, vllm,
local-completions, ...) and any generate_until task whose filter turns each
instance's samples into a list of pass/fail outcomes (PassUntil tasks such as
``passuntil_humaneval``) work unchanged. Each call gets its own seed derived
from (run seed, round, chunk); each document's few-shot demonstrations are
fixed by (run seed, document), so its prompt is identical in every round
whichever other documents share the call.  Rounds are scored with
``n_samples`` only; the task's metrics come from all rounds at the end.

Output, in lm-eval 0.4.13's layout (``output_path`` is a directory):

* ``<output_path>/<model_name_sanitized>/results_<date>.json``: one file for
  all the tasks of a call, with lm-eval's keys (``results``, ``configs``,
  ``config``, ``model_name``, ``task_hashes``, ...): per task the PU with its
  standard error, pass@k and samples spent; the run's settings under
  ``passuntil``;
* ``<output_path>/<model_name_sanitized>/samples_<task>_<date>.jsonl`` (with
  ``log_samples``): per instance n, c, the stopping point K, the PU estimate
  and interval, censoring, and every completion;
* ``<output_path>/<model_name_sanitized>/.passuntil_state/<task>/``: the
  engine's own files, ``state.json`` (resumable state, written atomically
  after every chunk; rerunning the same command continues where a killed run
  stopped) and ``completions.jsonl`` (every completion with its verdict).

``model_name`` is lm-eval's: the ``pretrained=`` (or ``peft=``, ``model=``, ...)
of ``model_args``; where there is none, the backend's name (lm-eval draws a
random name there, which a resumable run cannot use). A finished run records
its results file in its state; rerunning it writes nothing and says
``already complete: <path>``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import functools
import hashlib
import json
import logging
import math
import os
import random
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace

from ..conventions.console import progress_bar, quiet_task_bars, quiet_upstream
from ..conventions.files import apply_umask, write_text_atomic
from .adaptive import AdaptiveState, StopRule, run_schedule
from ..passuntil.metrics import METRICS, outcome_flags, upper_bound
from ..passuntil.stats import pass_at_k, pu_unbiased

log = logging.getLogger(__name__)

#: The engine's own files live in ``<model dir>/STATE_DIR/<task>/``.
STATE_DIR = ".passuntil_state"
STATE_FILE = "state.json"
COMPLETIONS_FILE = "completions.jsonl"
#: Before lm-eval's layout, state and completions were in ``output_path`` itself.
LEGACY_STATE_FILE = "passuntil_state.json"

_RESULTS_RE = re.compile(r"^results_(?P<stamp>.+)\.json$")
#: state.info keys that are not model info (older states kept model info flat in info).
_INFO_KEYS = {"model_info", "tokenizer_info", "chat_template", "config_model", "seconds", "start_date",
              "batch_sizes"}


class SettingsMismatch(ValueError):
    pass


def _echo(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ naming

def model_name(model, model_args: str | None = None) -> str:
    """lm-eval's ``model_name``: ``pretrained=`` (``peft=``, ``delta=``,
    ``model=``, ``path=``, ``engine=``) from ``model_args``; else, unlike
    lm-eval's random name, something stable: the backend's name, or for a
    model object its ``config._name_or_path`` or class name."""
    from lm_eval.loggers.evaluation_tracker import GeneralConfigTracker

    name = GeneralConfigTracker._get_model_name(model_args or "")
    if name:
        return name
    if isinstance(model, str):
        return model
    return str(getattr(getattr(model, "config", None), "_name_or_path", None) or type(model).__name__)


def model_dir(output_path: str | os.PathLike, model, model_args: str | None = None) -> Path:
    """``<output_path>/<model_name_sanitized>``, where lm-eval writes a model's results."""
    from lm_eval.utils import sanitize_model_name

    return Path(output_path) / sanitize_model_name(model_name(model, model_args))


def state_path(output_path: str | os.PathLike, task: str, model, model_args: str | None = None) -> Path:
    """The resumable state of ``task`` for this model under ``output_path``."""
    return _state_file(model_dir(output_path, model, model_args), task)


def _state_file(mdir: Path, task: str) -> Path:
    from lm_eval.utils import sanitize_model_name

    return mdir / STATE_DIR / sanitize_model_name(task) / STATE_FILE


# ------------------------------------------------------------------ tasks

def _task_manager(include_path, metadata):
    from lm_eval.tasks import TaskManager

    import lm_eval_ext.registration  # noqa: F401  (filters and metrics of PassUntil tasks)

    return TaskManager(include_path=str(include_path) if include_path else None,
                       include_defaults=include_path is None, metadata=metadata)


def _load_task(tm, task: str, include_path, num_fewshot: int | None = None):
    try:
        loaded = tm.load([task])["tasks"]
    except KeyError as exc:
        where = f" (looked in {include_path} and lm-eval's own tasks)" if include_path else ""
        raise ValueError(f"unknown task {task!r}{where}: {exc.args[0] if exc.args else exc}") from None
    if len(loaded) != 1:
        raise ValueError(f"{task!r} is a group of {len(loaded)} tasks: run the adaptive sampler on one task "
                         f"at a time ({sorted(loaded)})")
    (name, task_obj), = loaded.items()
    if task_obj.OUTPUT_TYPE != "generate_until":
        raise ValueError(f"{name} is a {task_obj.OUTPUT_TYPE} task: PassUntil sampling needs generate_until")
    if not task_obj._filters:
        raise ValueError(f"{name} has no filter_list: it needs a filter that turns samples into pass/fail "
                         "outcomes, such as passuntil_execute")
    _set_num_fewshot(task_obj, name, num_fewshot)
    _rounds_only_count(task_obj)
    return name, task_obj


def _set_num_fewshot(task_obj, name: str, num_fewshot: int | None) -> None:
    """lm-eval's rule (simple_evaluate): ``num_fewshot`` overrides the task's,
    except where the task sets 0; unset everywhere means 0."""
    default = task_obj.get_config("num_fewshot")
    if num_fewshot is not None:
        if default == 0:
            log.info("num_fewshot is 0 in %s's config: --num_fewshot %s is ignored", name, num_fewshot)
        else:
            task_obj.set_config(key="num_fewshot", value=num_fewshot)
    elif default is None:
        task_obj.set_config(key="num_fewshot", value=0)


def _rounds_only_count(task_obj) -> None:
    """Score each round with ``n_samples`` alone.

    The run's metrics (PU, pass@k, intervals) are computed from all rounds
    together at the end (:func:`write_outputs`).  The task's own metric list
    would be evaluated on each round's few samples, where a configured
    ``pass@10`` on a round of 4 samples is undefined (and raises).
    """
    from ..passuntil.metrics import n_samples

    task_obj._metric_fn_list = {"n_samples": n_samples}
    task_obj._metric_fn_kwargs = {"n_samples": {}}
    task_obj._aggregation_list = {"n_samples": sum}
    task_obj._higher_is_better = {"n_samples": None}


def _pin_fewshot(task_obj, seed: int) -> None:
    """Give each document its own few-shot demonstrations, fixed by (seed, doc).

    lm-eval draws demonstrations for all documents from one random generator
    in document order, so which demonstrations a document gets depends on
    which other documents are evaluated in the same call.  A round evaluates a
    subset, so without this a document's prompt would change between rounds
    and its K samples would not come from one prompt.
    """
    sampler = getattr(task_obj, "sampler", None)
    if sampler is None or (task_obj.config.num_fewshot or 0) == 0:
        return
    original = type(task_obj).fewshot_context

    def fewshot_context(doc, *args, **kwargs):
        key = json.dumps(doc, sort_keys=True, default=str).encode()
        sampler.rnd = random.Random(f"{seed}:{hashlib.sha256(key).hexdigest()}")
        return original(task_obj, doc, *args, **kwargs)

    task_obj.fewshot_context = fewshot_context


def _make_lm(model, model_args, batch_size, device, shared_prefix):
    if not isinstance(model, str):
        return model, type(model).__name__
    from lm_eval.api import registry

    import lm_eval.models  # noqa: F401  (built-in backends first)

    name = model
    if shared_prefix and model == "hf":
        try:
            import lm_eval_ext.sampling.shared_prefix  # noqa: F401  (registers hf-shared-prefix)

            registry.get_model("hf-shared-prefix")
            name = "hf-shared-prefix"
        except (ImportError, ValueError, KeyError) as exc:
            log.info("hf-shared-prefix unavailable (%s); using plain hf", exc)
    extra = {"batch_size": batch_size, "device": device}
    lm = registry.get_model(name).create_from_arg_string(model_args or "", {k: v for k, v in extra.items()
                                                                           if v is not None})
    return lm, name


def _lm_facts(lm, model, apply_chat_template) -> dict:
    """What lm-eval's results record about the model (kept in the state: a
    resumed run may write its results without loading the model)."""
    facts: dict = {}
    if hasattr(lm, "get_model_info"):
        try:  # model_num_parameters etc., as lm-eval records them
            facts["model_info"] = _jsonable(lm.get_model_info())
        except Exception as exc:  # noqa: BLE001 - a nicety
            log.debug("no model info: %s", exc)
    try:
        from lm_eval.loggers.utils import add_tokenizer_info

        tok: dict = {}
        add_tokenizer_info(tok, lm)
        facts["tokenizer_info"] = _jsonable(tok)
    except Exception as exc:  # noqa: BLE001 - a nicety
        log.debug("no tokenizer info: %s", exc)
    if apply_chat_template:
        facts["chat_template"] = lm.chat_template(apply_chat_template)
    if not isinstance(model, str):  # as simple_evaluate names a model object
        facts["config_model"] = str(getattr(getattr(model, "config", None), "_name_or_path", None)
                                    or type(model).__name__)
    return facts


# ------------------------------------------------------------------ the run

@dataclasses.dataclass
class _TaskRun:
    name: str
    task_obj: object
    filter_name: str
    repeats: object  # the task's own repeats (restored before its config is dumped)
    state: AdaptiveState
    state_path: Path
    complete: Path | None = None  # the results file of a finished run

    @property
    def completions(self) -> Path:
        return self.state_path.parent / COMPLETIONS_FILE

    @functools.cached_property
    def estimates(self) -> dict:
        """Each instance's PU, once the run has finished (the samples file and
        the results both report them; path counting is not done twice)."""
        return self.state.estimates()


def run_adaptive(tasks: str | Sequence[str], model, model_args: str | None = None, *,
                 output_path: str | os.PathLike, rule: StopRule = StopRule(), seed: int = 1234, include_path=None,
                 limit: int | float | None = None, metadata: Mapping | None = None,
                 gen_kwargs: str | Mapping | None = None, batch_size: int | str | None = None,
                 device: str | None = None, chunk_samples: int = 4096, ks: Sequence[int] = (1,),
                 confirm_run_unsafe_code: bool = False, shared_prefix: bool = True, progress: bool = True,
                 num_fewshot: int | None = None, apply_chat_template: bool | str = False,
                 system_instruction: str | None = None, fewshot_as_multiturn: bool | None = None,
                 log_samples: bool = True, overlap: bool | None = None, check_workers: int | None = None,
                 echo: Callable[[str], None] | None = _echo) -> dict:
    """Sample each task adaptively until every instance has r passes (or
    another rule stops it), one task after the other; write one results file
    for all of them and return its contents (with the results of tasks that
    an earlier call already finished, which are not written again).

    ``tasks``: one task name or several. ``num_fewshot``, ``apply_chat_template``,
    ``system_instruction`` and ``fewshot_as_multiturn`` are lm-eval's and reach
    its request building unchanged. ``log_samples`` writes lm-eval's
    ``samples_<task>_<date>.jsonl`` (the per-instance counts the analysis reads).
    ``echo`` receives the progress messages (resuming, already complete, written).
    ``progress`` shows a bar per task (only when stderr is a terminal).
    ``overlap`` scores a chunk's samples while the next chunk is generated
    (default: where the task's filter executes code; False scores each chunk
    inside its lm-eval call); the outcomes are the same either way.
    ``check_workers`` is the number of processes that execute code (default:
    the filter's ``workers``, else every CPU).
    """
    import lm_eval  # noqa: F401  (fail early when it is missing)

    quiet_upstream()  # bars off in logs; lm-eval's per-task-load warning once
    from lm_eval.loggers.evaluation_tracker import GeneralConfigTracker
    from lm_eval.utils import sanitize_model_name

    say = echo or (lambda msg: None)
    tracker = GeneralConfigTracker()  # starts lm-eval's evaluation timer
    task_list = [tasks] if isinstance(tasks, str) else list(dict.fromkeys(tasks))
    if not task_list:
        raise ValueError("no tasks given")
    if check_workers is not None and (isinstance(check_workers, bool) or int(check_workers) != check_workers
                                      or check_workers < 1):
        raise ValueError(f"check_workers must be a positive integer, not {check_workers!r}")
    if fewshot_as_multiturn and not apply_chat_template:
        raise ValueError("fewshot_as_multiturn needs apply_chat_template (as in lm-eval)")
    if fewshot_as_multiturn is None:
        fewshot_as_multiturn = bool(apply_chat_template)
    out = Path(output_path)
    mdir = model_dir(out, model, model_args)
    model_label = model if isinstance(model, str) else type(model).__name__
    base_settings = {"model": model_label, "model_args": model_args or "", "limit": limit,
                     "metadata": dict(metadata or {}),
                     "gen_kwargs": gen_kwargs if not isinstance(gen_kwargs, Mapping) else dict(gen_kwargs),
                     "batch_size": batch_size, "include_path": str(include_path) if include_path else None,
                     "chunk_samples": chunk_samples,
                     # prompt building: recorded only when set, so states from
                     # before these options resume
                     "num_fewshot": num_fewshot, "apply_chat_template": apply_chat_template or None,
                     "system_instruction": system_instruction,
                     "fewshot_as_multiturn": fewshot_as_multiturn if apply_chat_template else None}

    tm = _task_manager(include_path, metadata)
    loaded = [_load_task(tm, t, include_path, num_fewshot) for t in task_list]  # all checked before any work
    for name, task_obj in loaded:
        if getattr(task_obj, "UNSAFE_CODE", False) and not confirm_run_unsafe_code:
            raise ValueError(f"{name} executes model-written code: pass confirm_run_unsafe_code=True "
                             "(--confirm_run_unsafe_code)")

    runs: list[_TaskRun] = []
    announced: set[Path] = set()
    for (name, task_obj), given in zip(loaded, task_list):
        _pin_fewshot(task_obj, seed)
        n_docs = len(task_obj.eval_docs)
        doc_ids = list(range(n_docs if limit is None else _limit(limit, n_docs)))
        settings = {"task": given, **base_settings}
        spath = _state_file(mdir, name)
        _adopt_legacy(out, mdir, spath, settings, rule, seed, say)
        complete = None
        if spath.exists():
            state = AdaptiveState.load(spath)
            _check_resume(state, settings, rule, seed, spath)
            complete = _finished_output(state, mdir)
            if complete is None:
                say(f"resuming {name} at round {state.round} ({state.spent} samples drawn)")
            elif complete not in announced:
                announced.add(complete)
                say(f"already complete: {complete}")
        else:
            spath.parent.mkdir(parents=True, exist_ok=True)
            state = AdaptiveState(doc_ids, rule, seed, settings)
            state.info["start_date"] = time.time()
            state.save(spath)
        runs.append(_TaskRun(name, task_obj, task_obj._filters[0].name, task_obj.get_config("repeats"), state,
                             spath, complete))

    lm = None
    facts: dict = {}

    def get_lm():
        nonlocal lm
        if lm is None:
            lm, _ = _make_lm(model, model_args, batch_size, device, shared_prefix)
            facts.update(_lm_facts(lm, model, apply_chat_template))
        return lm

    for run in runs:
        if run.complete is None and not run.state.finished:
            _sample(run, get_lm, facts, gen_kwargs=gen_kwargs, tm=tm, seed=seed, chunk_samples=chunk_samples,
                    progress=progress, confirm_run_unsafe_code=confirm_run_unsafe_code,
                    apply_chat_template=apply_chat_template, system_instruction=system_instruction,
                    fewshot_as_multiturn=fewshot_as_multiturn, overlap=overlap, check_workers=check_workers)

    # Finished runs asked for samples they did not write the first time: add them.
    for run in runs:
        if run.complete is not None and log_samples and not (run.state.outputs or {}).get("samples"):
            stamp = _RESULTS_RE.match(run.complete.name).group("stamp")
            name = f"samples_{run.name}_{stamp}.jsonl"
            _write_samples(run.complete.parent / name, run, ks)
            run.state.outputs = {**run.state.outputs, "samples": name}
            run.state.save(run.state_path)
            say(f"wrote {run.complete.parent / name}")

    pending = [r for r in runs if r.complete is None]
    written = None
    if pending:
        stamp = _planned_stamp(pending) or _dt.datetime.now().isoformat().replace(":", "-")
        results_name = f"results_{stamp}.json"
        # Recorded before writing: a run killed in between reuses the names.
        for run in pending:
            run.state.outputs = {"results": results_name,
                                 "samples": f"samples_{run.name}_{stamp}.jsonl" if log_samples else None}
            run.state.save(run.state_path)
        mdir.mkdir(parents=True, exist_ok=True)
        if log_samples:
            for run in pending:
                _write_samples(mdir / run.state.outputs["samples"], run, ks)
        tracker.log_experiment_args(
            model_source=model if isinstance(model, str) else "CUSTOM", model_args=model_args or "",
            system_instruction=system_instruction,
            chat_template=_first(pending, facts, "chat_template") if apply_chat_template else None,
            fewshot_as_multiturn=fewshot_as_multiturn)
        name = model_name(model, model_args)  # lm-eval's, without its random fallback
        tracker.model_name, tracker.model_name_sanitized = name, sanitize_model_name(name)
        written = _results(pending, tracker, facts, lm, ks, model=model, model_args=model_args,
                           batch_size=batch_size, device=device, limit=limit, gen_kwargs=gen_kwargs, seed=seed,
                           rule=rule, mdir=mdir)
        path = mdir / results_name
        from lm_eval.utils import handle_non_serializable

        write_text_atomic(path, json.dumps(written, indent=2, default=handle_non_serializable, ensure_ascii=False))
        for run in pending:
            run.complete = path
        say(f"wrote {path}")

    order: list[Path] = []  # the distinct results files of these tasks
    for run in runs:
        if run.complete not in order:
            order.append(run.complete)
    datas = [_read_json(f) for f in order if written is None or f != mdir / results_name]
    if written is not None:
        datas.append(written)  # last: its run-level keys win
    return _merge(datas, [r.name for r in runs])


def _limit(limit: int | float, n_docs: int) -> int:
    """lm-eval's --limit: a count, or a fraction of the documents when < 1."""
    if limit < 1.0:
        return int(math.ceil(n_docs * limit))
    return int(limit)


def _first(runs: list[_TaskRun], facts: dict, key: str):
    if key in facts:
        return facts[key]
    for run in runs:
        if key in run.state.info:
            return run.state.info[key]
    return None


def _planned_stamp(pending: list[_TaskRun]) -> str | None:
    """The date of a results file that was planned but never written (a kill
    between recording the names and writing the file): write that one."""
    names = {(r.state.outputs or {}).get("results") for r in pending}
    if len(names) == 1 and None not in names:
        m = _RESULTS_RE.match(names.pop())
        return m.group("stamp") if m else None
    return None


def _finished_output(state: AdaptiveState, mdir: Path) -> Path | None:
    """The results file of a finished run, if it was written."""
    rel = (state.outputs or {}).get("results")
    if not state.finished or not rel:
        return None
    path = Path(os.path.normpath(mdir / rel))
    return path if path.is_file() else None


def _scoring_pipeline(run: _TaskRun, *, overlap: bool | None, check_workers: int | None):
    """The task's filter pipeline that turns an instance's samples into
    outcomes, as the engine runs it, and whether it is run overlapped with
    generation (by default where it executes code: the work worth overlapping).
    ``check_workers`` reaches its code-execution steps; so does ``progress=False``
    when overlapped (a checker's bar would fight the engine's)."""
    from lm_eval.api.filter import FilterEnsemble

    from ..passuntil.filters import PassUntilExecuteFilter

    def executes(step) -> bool:
        func = getattr(step, "func", step)
        return isinstance(func, type) and issubclass(func, PassUntilExecuteFilter)

    (ensemble,) = [f for f in run.task_obj._filters if f.name == run.filter_name]
    overlap = any(map(executes, ensemble.filters)) if overlap is None else bool(overlap)
    options = {**({} if check_workers is None else {"workers": check_workers}),
               **({"progress": False} if overlap else {})}
    steps = [functools.partial(getattr(step, "func", step), **{**getattr(step, "keywords", {}), **options})
             if executes(step) and options else step for step in ensemble.filters]
    return FilterEnsemble(name=ensemble.name, filters=steps), overlap


def _in_background(fn: Callable[[], object], threads: list[threading.Thread]) -> Future:
    """``fn()`` in a daemon thread (appended to ``threads``), as a Future."""
    future: Future = Future()
    future.set_running_or_notify_cancel()

    def target():
        try:
            future.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits for the result
            future.set_exception(exc)

    thread = threading.Thread(target=target, name="passuntil-scoring", daemon=True)
    threads[:] = [t for t in threads if t.is_alive()] + [thread]
    thread.start()
    return future


def _sample(run: _TaskRun, get_lm, facts: dict, *, gen_kwargs, tm, seed: int, chunk_samples: int,
            progress: bool, confirm_run_unsafe_code: bool, apply_chat_template, system_instruction,
            fewshot_as_multiturn, overlap: bool | None = None, check_workers: int | None = None) -> None:
    import lm_eval
    from lm_eval.api.filter import FilterEnsemble

    state, name, task_obj = run.state, run.name, run.task_obj
    completions = run.completions
    # Overlap (the default where the filter executes code): a chunk is generated with its
    # samples passed through unscored, and scored here, in a thread, while the next chunk is
    # generated. The same filter runs on the same samples and documents, so the outcomes are
    # those of the scoring inside lm-eval's call; only the order of the work changes.
    scoring, overlap = _scoring_pipeline(run, overlap=overlap, check_workers=check_workers)
    passthrough = FilterEnsemble(name=run.filter_name, filters=[])
    scorers: list[threading.Thread] = []

    def generate(plan: dict[int, int], chunk_seed: int, filters) -> list[dict]:
        lm = get_lm()
        state.info.update(facts)
        (m,) = set(plan.values())
        ids = sorted(plan)  # lm-eval logs wrong doc_ids for unsorted samples=
        task_obj.set_config("repeats", m)
        # -- vllm-passuntil (lm_eval_ext.sampling.vllm_passuntil) --------------------------------
        # A backend with `passuntil_draw` draws sample i of document d from a seed of (run seed,
        # task, d, i): tell it this call's documents and how many samples each already has.
        # Other backends have no such method and see nothing of this.
        per_sample = getattr(lm, "passuntil_draw", None)
        per_sample = (per_sample(seed=seed, task=name, doc_ids=ids, offsets={d: state.instances[d].n for d in ids})
                      if callable(per_sample) else contextlib.nullcontext())
        # -----------------------------------------------------------------------------------------
        own_filters, task_obj._filters = task_obj._filters, [filters]  # only the pipeline the engine reads
        try:
            with per_sample, _no_per_call_environment_report(), quiet_task_bars():
                res = lm_eval.simple_evaluate(
                    model=lm, tasks=[task_obj], samples={name: ids}, log_samples=True, bootstrap_iters=0,
                    gen_kwargs=gen_kwargs, task_manager=tm, random_seed=chunk_seed, numpy_random_seed=chunk_seed,
                    torch_random_seed=chunk_seed, fewshot_random_seed=seed,
                    apply_chat_template=apply_chat_template, system_instruction=system_instruction,
                    fewshot_as_multiturn=fewshot_as_multiturn,
                    confirm_run_unsafe_code=confirm_run_unsafe_code, verbosity="WARNING")
        finally:
            task_obj._filters = own_filters
        if hasattr(lm, "batch_sizes"):
            state.info["batch_sizes"] = _jsonable(list(lm.batch_sizes.values()))
        return [rec for rec in res["samples"][name] if rec["filter"] == run.filter_name]

    def finish(records: list[dict], statuses: list, round_: int, chunk_seed: int) -> dict[int, list[bool]]:
        drawn, lines = {}, []
        for rec, st in zip(records, statuses):
            d = int(rec["doc_id"])
            drawn[d] = outcome_flags(st)
            lines.append({"doc_id": d, "round": round_, "seed": chunk_seed,
                          "arguments": rec.get("arguments"),
                          "samples": [[c, s] for c, s in zip(rec["resps"][0], st)]})
        with open(completions, "a", encoding="utf-8") as f:
            for line in lines:
                f.write(json.dumps(line) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return drawn

    def score(records: list[dict]) -> list:
        # lm-eval's own FilterEnsemble.apply, on what it reads of an Instance
        insts = [SimpleNamespace(resps=list(rec["resps"][0]), doc=rec["doc"], filtered_resps={}) for rec in records]
        scoring.apply(insts)
        return [inst.filtered_resps[scoring.name] for inst in insts]

    def draw(plan: dict[int, int], chunk_seed: int):
        round_ = state.round
        if not overlap:
            records = generate(plan, chunk_seed, scoring)
            return finish(records, [rec["filtered_resps"][0] for rec in records], round_, chunk_seed)
        records = generate(plan, chunk_seed, passthrough)
        return _in_background(lambda: finish(records, score(records), round_, chunk_seed), scorers)

    bar = None
    if progress:
        bar = progress_bar(total=len(state.instances), desc=f"passuntil {name}", unit="inst")

    def on_progress(st: AdaptiveState):
        if bar is not None:
            p = st.progress()
            bar.n = p["resolved"]
            bar.set_postfix(round=p["round"], samples=p["spent"], left_est=p["left_estimate"], refresh=False)
            bar.refresh()

    t0, before = time.monotonic(), float(state.info.get("seconds", 0.0))

    def save(st: AdaptiveState):
        st.info["seconds"] = before + time.monotonic() - t0
        st.save(run.state_path)

    on_progress(state)
    try:
        run_schedule(state, draw, chunk_samples=chunk_samples, save=save, on_progress=on_progress)
    except BaseException:
        # Stopped (Ctrl-C) while a chunk was still being executed: that chunk is lost anyway
        # (run_schedule records only finished ones), so drop its queued programs; otherwise the
        # interpreter would run them all before it exits.
        from ..execution.checker import cancel_checks

        for thread in scorers:
            if thread.is_alive():
                cancel_checks(thread)
        raise
    finally:
        if bar is not None:
            bar.close()


@contextlib.contextmanager
def _no_per_call_environment_report():
    """simple_evaluate describes the environment in every result (git describe,
    torch's collect_env, which runs pip): ~0.6 s per call, most of a small
    chunk's time. The per-chunk results are discarded; the final results get
    the environment once (see write_outputs)."""
    import lm_eval.evaluator as ev

    saved = ev.add_env_info, ev.get_git_commit_hash
    ev.add_env_info, ev.get_git_commit_hash = (lambda results: None), (lambda: None)
    try:
        yield
    finally:
        ev.add_env_info, ev.get_git_commit_hash = saved


def _check_resume(state: AdaptiveState, settings: dict, rule: StopRule, seed: int, path: Path) -> None:
    diffs = [k for k in settings if state.settings.get(k) != settings[k]]
    if state.rule != rule:
        diffs.append(f"rule ({dataclasses.asdict(state.rule)} vs {dataclasses.asdict(rule)})")
    if state.seed != seed:
        diffs.append(f"seed ({state.seed} vs {seed})")
    if diffs:
        raise SettingsMismatch(f"{path} belongs to a run with other settings ({', '.join(map(str, diffs))}): "
                               "use another --output_path, or delete the state to start over")


def _adopt_legacy(out: Path, mdir: Path, spath: Path, settings: dict, rule: StopRule, seed: int, say) -> None:
    """Move a state written before lm-eval's layout (``output_path/passuntil_state.json``
    and ``completions.jsonl``) to its place, when it is this task's and model's."""
    from lm_eval.utils import sanitize_model_name

    legacy = out / LEGACY_STATE_FILE
    if spath.exists() or not legacy.is_file():
        return
    try:
        state = AdaptiveState.load(legacy)
    except ValueError:
        return
    if state.settings.get("task") != settings["task"] or any(
            state.settings.get(k) != settings[k] for k in ("model", "model_args")):
        return
    _check_resume(state, settings, rule, seed, legacy)
    spath.parent.mkdir(parents=True, exist_ok=True)
    if state.finished and not state.outputs:
        # Its results were written to output_path/<model_args sanitized>/.
        old = out / sanitize_model_name(str(state.settings.get("model_args") or state.settings.get("model")))
        found = sorted(old.glob("results_*.json"))
        for f in reversed(found):
            try:
                if settings["task"] in _read_json(f).get("results", {}):
                    state.outputs = {"results": os.path.relpath(f, mdir), "samples": None}
                    break
            except (OSError, ValueError, AttributeError):
                continue
    state.save(spath)
    if (out / COMPLETIONS_FILE).is_file():
        os.replace(out / COMPLETIONS_FILE, spath.parent / COMPLETIONS_FILE)
    legacy.unlink()
    say(f"moved the state of {settings['task']} from {legacy} to {spath}")


# ------------------------------------------------------------------ outputs

def _read_completions(run: _TaskRun, texts_too: bool):
    first_args: dict[int, object] = {}
    texts: dict[int, list[str]] = {}
    comp = run.completions
    if comp.exists():
        seen = set()
        with open(comp, encoding="utf-8") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line torn by a kill; its chunk was redrawn
                key = (rec["doc_id"], rec["round"], rec["seed"])
                if key in seen:
                    continue  # a chunk redrawn after a kill between append and state save
                seen.add(key)
                first_args.setdefault(rec["doc_id"], rec.get("arguments"))
                if texts_too:
                    texts.setdefault(rec["doc_id"], []).extend(c for c, _ in rec["samples"])
    return first_args, texts


def _hashes(doc, arguments, target) -> dict:
    """lm-eval's doc_hash, prompt_hash and target_hash of a logged sample."""
    from lm_eval.utils import handle_non_serializable, hash_string

    prompt = ""
    if arguments:
        first = arguments[0]
        prompt = first[0] if isinstance(first, (list, tuple)) and first else str(first)
    return {"doc_hash": hash_string(json.dumps(doc, indent=2, default=handle_non_serializable, ensure_ascii=False)),
            "prompt_hash": hash_string(str(prompt)), "target_hash": hash_string(str(target))}


def _task_hash(run: _TaskRun) -> str:
    """lm-eval's task hash: of the doc, prompt and target hashes of every sample, in doc order."""
    from lm_eval.utils import hash_string

    first_args, _ = _read_completions(run, texts_too=False)
    docs = run.task_obj.eval_docs
    parts = []
    for d in sorted(run.state.instances):
        h = _hashes(docs[d], first_args.get(d), run.task_obj.doc_to_target(docs[d]))
        parts.append(h["doc_hash"] + h["prompt_hash"] + h["target_hash"])
    return hash_string("".join(parts))


def _write_samples(path: Path, run: _TaskRun, ks: Sequence[int]) -> None:
    """lm-eval's samples_<task>_<date>.jsonl (as its EvaluationTracker writes it),
    one record per instance with the whole run's samples and PassUntil counts."""
    from lm_eval.utils import handle_non_serializable, sanitize_list

    state, task_obj = run.state, run.task_obj
    estimates = run.estimates
    first_args, texts = _read_completions(run, texts_too=True)
    docs = task_obj.eval_docs
    metric_names = ["pu", "pu_censored", "pu_upper", "n_samples", "n_passed"] + [f"pass@{k}" for k in ks]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for d in sorted(state.instances):
                inst, e = state.instances[d], estimates[d]
                K = e.K  # the sample of the r-th pass, when that stopped the instance
                doc = docs[d]
                target = task_obj.doc_to_target(doc)
                args = first_args.get(d) or []
                arguments = {f"gen_args_{i}": {f"arg_{j}": a for j, a in enumerate(arg)}
                             for i, arg in enumerate(args)}
                rec = {"doc_id": d, "doc": doc, "target": str(target), "arguments": arguments,
                       "resps": sanitize_list([texts.get(d, [])]),
                       "filtered_resps": [["passed" if o == "1" else "failed" for o in inst.outcomes]],
                       "filter": run.filter_name, "metrics": metric_names, **_hashes(doc, args, target),
                       "n_samples": inst.n, "n_passed": inst.c,
                       "pu": e.estimate if e.estimate is not None else 0.0,
                       "pu_estimator": e.estimator,
                       "pu_censored": int(e.censored),
                       "pu_upper": upper_bound(inst.n, inst.c, state.rule.alpha),
                       "pu_interval": [e.lower, e.upper],
                       "pu_stop": inst.stop,
                       "pu_K": K, "pu_r": state.rule.r,
                       # Haldane's estimator, for comparison with the paper's designs
                       "pu_rK": pu_unbiased(state.rule.r, K) if K and state.rule.r >= 2 else None}
                for k in ks:
                    if inst.n >= k:
                        rec[f"pass@{k}"] = float(pass_at_k(inst.n, inst.c, k))
                f.write(json.dumps(rec, default=handle_non_serializable, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        apply_umask(tmp)  # mkstemp's 0600: the samples file is an output
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _model_info(info: dict) -> dict:
    if "model_info" in info:
        return dict(info["model_info"])
    return {k: v for k, v in info.items() if k not in _INFO_KEYS}  # states from before model_info


def _results(runs: list[_TaskRun], tracker, facts: dict, lm, ks: Sequence[int], *, model, model_args,
             batch_size, device, limit, gen_kwargs, seed: int, rule: StopRule, mdir: Path) -> dict:
    """The results dict lm-eval's simple_evaluate + EvaluationTracker would write."""
    import lm_eval
    import lm_eval.evaluator as ev

    from .. import __version__

    info = {**runs[0].state.info, **facts}
    for run in runs[1:]:
        for k, v in run.state.info.items():
            info.setdefault(k, v)
    res: dict = {"results": {}, "group_subtasks": {}, "configs": {}, "versions": {}, "n-shot": {},
                 "higher_is_better": {}, "n-samples": {}}
    per_task: dict = {}
    for run in runs:
        name, task_obj, state = run.name, run.task_obj, run.state
        summary = state.summary(ks, run.estimates)
        task_obj.set_config("repeats", run.repeats)
        res["results"][name] = {"alias": name, **{f"{k},{run.filter_name}": v for k, v in summary.items()}}
        res["group_subtasks"][name] = []
        res["configs"][name] = _jsonable(task_obj.dump_config())
        res["versions"][name] = task_obj.VERSION
        res["n-shot"][name] = task_obj.config.num_fewshot or 0
        res["higher_is_better"][name] = {**{m: METRICS[m][2] for m in summary if m in METRICS},
                                         **{f"pass@{k}": True for k in ks}}
        res["n-samples"][name] = {"original": len(task_obj.eval_docs), "effective": len(state.instances)}
        stops: dict[str, int] = {}
        for inst in state.instances.values():
            stops[inst.stop or "open"] = stops.get(inst.stop or "open", 0) + 1
        per_task[name] = {"rounds": state.round, "samples_spent": state.spent, "instances": len(state.instances),
                          "stopped": stops, "state_file": os.path.relpath(run.state_path, mdir)}
    batch_sizes = info.get("batch_sizes") or []
    res["config"] = {"model": model if isinstance(model, str) else info.get("config_model", type(model).__name__),
                     "model_args": model_args or "", **_model_info(info),
                     "batch_size": batch_size, "batch_sizes": batch_sizes, "device": device, "use_cache": None,
                     "limit": limit, "bootstrap_iters": 0, "gen_kwargs": gen_kwargs,
                     # every call's seeds are derived from this one (and the round and chunk)
                     "random_seed": seed, "numpy_seed": seed, "torch_seed": seed, "fewshot_seed": seed}
    res["git_hash"] = ev.get_git_commit_hash()
    res["date"] = min((r.state.info["start_date"] for r in runs if "start_date" in r.state.info),
                      default=time.time())
    try:
        from lm_eval.loggers.utils import add_env_info

        add_env_info(res)
    except Exception as exc:  # noqa: BLE001 - environment details are a nicety
        log.debug("no environment info: %s", exc)
    res["lm_eval_version"] = lm_eval.__version__  # also without the environment report
    res.update(info.get("tokenizer_info") or {})
    res["task_hashes"] = {run.name: _task_hash(run) for run in runs}
    tracker.log_end_time()
    writing = float(tracker.total_evaluation_time_seconds)
    tracker.total_evaluation_time_seconds = str(sum(float(r.state.info.get("seconds", 0.0)) for r in runs)
                                                + writing)
    res.update(dataclasses.asdict(tracker))
    res["passuntil"] = {"rule": dataclasses.asdict(rule), "seed": seed,
                        "samples_spent": sum(t["samples_spent"] for t in per_task.values()), "tasks": per_task}
    res["lm_eval_ext_version"] = __version__
    return res


_PER_TASK = ("results", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better", "n-samples",
             "task_hashes")


def _merge(files: list[dict], names: list[str]) -> dict:
    """One results dict for ``names`` from several results files (the last
    one's run-level keys): the tasks an earlier call finished and this one's."""
    if len(files) == 1 and all(set(files[0].get(k, {})) <= set(names) for k in _PER_TASK):
        return files[0]
    merged = dict(files[-1])
    for key in _PER_TASK:
        merged[key] = {}
        for data in files:
            merged[key].update({t: v for t, v in (data.get(key) or {}).items() if t in names})
    tasks = {}
    for data in files:
        pu = data.get("passuntil") or {}
        tasks.update({t: v for t, v in (pu.get("tasks") or {}).items() if t in names})
    merged["passuntil"] = {**(merged.get("passuntil") or {}), "tasks": tasks,
                           "samples_spent": sum(t.get("samples_spent", 0) for t in tasks.values())}
    return merged


def _read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=str))
