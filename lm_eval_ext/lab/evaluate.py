"""Score the lab's models on its PassUntil tasks, through lm-eval like any user's model.

Two evaluators, both ending in lm-eval's own result layout
(``results_*.json`` + ``samples_<task>_*.jsonl`` with per-instance n and c),
which :func:`analysis.ingest.read_instances` reads:

* ``cli``: one ``python -m lm_eval run --model hf ...`` subprocess per model
  over all its tasks, each instance sampled a fixed ``repeats`` times. The
  task YAMLs it runs are thin files written into the output directory that
  ``include:`` the packaged ones (``task_configs/lab``) and set ``repeats``.
* ``adaptive``: the project's sample-until-r-passes engine
  (:func:`lm_eval_ext.sampling.runner.run_adaptive`, lm-eval's
  ``simple_evaluate`` under the hood), which reaches pass rates far below
  1/repeats; ``cap`` bounds the samples per instance and ``budget`` those per
  (model, task).

Resumable: a (model, evaluator) directory is finished when its ``done.json``
is there; an unfinished CLI run is redone from scratch, an unfinished
adaptive run continues from its state file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

DONE = "done.json"


def lab_task_dir() -> Path:
    from lm_eval_ext import task_dir

    return task_dir() / "lab"


def model_args(model_path: Path) -> str:
    return f"pretrained={Path(model_path)},dtype=float32"


def _metadata(spec) -> dict:
    return {"max_digits": spec.max_digits, "max_len": spec.max_len, "n_test": spec.n_test}


def write_task_overrides(dest: Path, tasks: Sequence[str], repeats: int) -> Path:
    """YAMLs in ``dest`` that include the packaged lab tasks with ``repeats``
    samples per instance (lm-eval has no command-line option for repeats)."""
    dest.mkdir(parents=True, exist_ok=True)
    src = lab_task_dir()
    for task in tasks:
        base = src / f"{task}.yaml"
        if not base.is_file():
            raise ValueError(f"unknown lab task {task!r}: no {base}")
        (dest / f"{task}.yaml").write_text(f"include: {base}\ntask: {task}\nrepeats: {int(repeats)}\n",
                                           encoding="utf-8")
    return dest


def _env() -> dict:
    env = dict(os.environ)
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env[var] = "1"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def evaluate_cli(model_path: Path, out: Path, tasks: Sequence[str], spec, *, repeats: int, device: str = "cpu",
                 batch_size: int = 64, seed: int = 1234) -> Path:
    """One real ``lm_eval run`` over ``tasks``; returns ``out``."""
    out = Path(out)
    if (out / DONE).is_file():
        return out
    if out.exists():
        shutil.rmtree(out)  # a CLI run killed midway: redo it
    include = write_task_overrides(out / "tasks", tasks, repeats)
    cmd = [sys.executable, "-m", "lm_eval", "run", "--model", "hf", "--model_args", model_args(model_path),
           "--device", device, "--batch_size", str(batch_size), "--tasks", ",".join(tasks),
           "--include_path", str(include), "--log_samples", "--output_path", str(out / "lm_eval"),
           "--metadata", json.dumps(_metadata(spec)), "--seed", f"{seed},{seed},{seed},{seed}"]
    t0 = time.time()
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"lm_eval failed on {model_path} (exit {proc.returncode}):\n"
                           f"{' '.join(cmd)}\n{proc.stderr[-3000:]}")
    _finish(out, {"evaluator": "cli", "command": cmd, "seconds": round(time.time() - t0, 2), "repeats": repeats})
    return out


def evaluate_adaptive(model_path: Path, out: Path, tasks: Sequence[str], spec, *, r: int, cap: int,
                      budget: int | None, device: str = "cpu", batch_size: int = 64, seed: int = 1234,
                      progress: bool = True) -> Path:
    """The adaptive sampler on each task in turn; returns ``out``."""
    from lm_eval_ext.sampling.adaptive import StopRule
    from lm_eval_ext.sampling.runner import run_adaptive

    out = Path(out)
    if (out / DONE).is_file():
        return out
    t0 = time.time()
    rule = StopRule(r=r, cap=cap, budget=budget)
    for task in tasks:
        tdir = out / task
        if (tdir / DONE).is_file():
            continue
        run_adaptive(task, "hf", model_args(model_path), output_path=tdir, rule=rule, seed=seed,
                     include_path=lab_task_dir(), metadata=_metadata(spec), batch_size=batch_size, device=device,
                     progress=progress)
        _finish(tdir, {"evaluator": "adaptive", "task": task})
    _finish(out, {"evaluator": "adaptive", "rule": {"r": r, "cap": cap, "budget": budget},
                  "seconds": round(time.time() - t0, 2)})
    return out


def _finish(out: Path, info: dict) -> None:
    from lm_eval_ext.conventions.files import write_json_atomic

    write_json_atomic(out / DONE, info)


def newest_outputs(out: Path) -> list[Path]:
    """The newest samples file per (directory, task) below ``out`` and the
    results file with the same timestamp: an adaptive run resumed after it had
    written its outputs writes them again, and the analysis must not count
    those instances twice."""
    import re

    pat = re.compile(r"^samples_(?P<task>.+)_(?P<stamp>\d{4}-\d{2}-\d{2}T[\d\-.:]+)\.jsonl$")
    newest: dict[tuple, tuple[str, Path]] = {}
    for f in sorted(Path(out).rglob("samples_*.jsonl")):
        m = pat.match(f.name)
        if not m:
            continue
        key = (f.parent, m.group("task"))
        if key not in newest or m.group("stamp") > newest[key][0]:
            newest[key] = (m.group("stamp"), f)
    files = []
    for (parent, _), (stamp, f) in sorted(newest.items(), key=lambda kv: str(kv[1][1])):
        files.append(f)
    return files


def newest_results(out: Path) -> dict:
    """The newest ``results_*.json`` below ``out``, parsed."""
    files = sorted(Path(out).rglob("results_*.json"), key=lambda f: f.name)
    if not files:
        raise FileNotFoundError(f"no results_*.json under {out}")
    return json.loads(files[-1].read_text(encoding="utf-8"))
