"""A resumable sweep: finetune every base checkpoint on every D (and seed), and
write the manifest the emergence-law analysis reads.

Layout under ``out_dir``::

    <out_dir>/<checkpoint>/<task>-D<D>-s<seed>/   one finished HF checkpoint each
    <out_dir>/manifest_<task>.csv                  one row per model to evaluate

Resuming: a run's directory appears only when it is complete (see
:func:`lm_eval_ext.finetune.train.finetune`), so a killed sweep leaves at most a
``.tmp-*`` directory, which the next run removes; finished (checkpoint, D,
seed) runs are skipped. A finished run whose recorded base, task or
hyper-parameters differ from the requested ones is an error, not a silent mix.

The manifest is rebuilt from the finished runs' ``finetune.json`` after every
run and replaced atomically (one manifest per task). Columns (read by ``analysis.ingest.read_manifest``):

- ``model``: the ``pretrained=`` value to evaluate with, i.e. the model name
  lm-eval records and ``analysis.ingest.model_name`` reads back (the absolute
  path of a finetuned directory; a base checkpoint's path made absolute when it
  is a local directory, else its hub name as given);
- ``checkpoint``: label of the base checkpoint; ``D``: finetuning examples (0 for
  the base checkpoint itself, i.e. few-shot); ``seed``; ``task`` (the lm-eval
  task to evaluate, e.g. ``emergence_cola``);
- hyper-parameters: ``sample``, ``lr``, ``steps``, ``epochs``, ``batch_size``,
  ``grad_accum``, ``weight_decay``, ``warmup_ratio``, ``max_length``, ``lora``
  (and ``lora_r``, ``lora_alpha``, ``lora_dropout``, ``lora_target`` with LoRA),
  ``train_loss_first``, ``train_loss_last`` (answer-token loss of the first and
  last step), ``train_tokens``;
- from the checkpoint table when given: ``loss`` (pretraining loss L of the
  base checkpoint), ``flops``, ``N``, ``tokens``: copied to every row of that
  checkpoint.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from ..conventions.files import write_text_atomic
from .train import EXTERNAL_TASKS, FinetuneConfig, finetune, read_record

log = logging.getLogger(__name__)


def manifest_path(out_dir: str | os.PathLike, task: str) -> Path:
    return Path(out_dir) / f"manifest_{task}.csv"

#: Optional per-checkpoint facts copied from the checkpoint table into the manifest.
CHECKPOINT_FACTS = ("loss", "flops", "N", "tokens")
_LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_HPARAMS = ("sample", "lr", "steps", "epochs", "batch_size", "grad_accum", "weight_decay", "warmup_ratio",
            "max_length", "lora", "lora_r", "lora_alpha", "lora_dropout", "lora_target")


@dataclass(frozen=True)
class Checkpoint:
    """A base checkpoint: its label, where it is (directory or hub name), known facts."""

    label: str
    path: str
    facts: dict

    @property
    def model(self) -> str:
        """The ``pretrained=`` string to evaluate it with (absolute for local directories)."""
        p = Path(self.path)
        return str(p.resolve()) if p.is_dir() else self.path


def make_checkpoint(label: str, path: str, **facts) -> Checkpoint:
    if not _LABEL_RE.match(label):
        raise ValueError(f"checkpoint label {label!r}: use letters, digits, '.', '_' or '-' "
                         f"(it names a directory)")
    if "," in path:
        raise ValueError(f"checkpoint {label}: path {path!r} contains ',' which lm-eval's model_args cannot carry")
    clean = {}
    for k, v in facts.items():
        if k not in CHECKPOINT_FACTS:
            raise ValueError(f"checkpoint {label}: unknown fact {k!r} (known: {', '.join(CHECKPOINT_FACTS)})")
        if v is None or (isinstance(v, str) and not v.strip()):
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"checkpoint {label}: {k} = {v!r} is not a number") from None
        if not math.isfinite(f):
            raise ValueError(f"checkpoint {label}: {k} = {v!r} is not finite")
        clean[k] = f
    return Checkpoint(label, path, clean)


def read_checkpoint_table(path: str | os.PathLike) -> list[Checkpoint]:
    """Checkpoints from a CSV with columns ``checkpoint``, ``path`` and optionally
    ``loss``, ``flops``, ``N``, ``tokens``."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path}: no checkpoints")
    missing = {"checkpoint", "path"} - set(rows[0])
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)} (columns: {', '.join(rows[0])})")
    out = []
    for i, row in enumerate(rows, 2):
        unknown = set(row) - {"checkpoint", "path", *CHECKPOINT_FACTS}
        if unknown:
            raise ValueError(f"{path}: unknown column(s) {sorted(unknown)}")
        try:
            out.append(make_checkpoint(row["checkpoint"], row["path"],
                                       **{k: row[k] for k in CHECKPOINT_FACTS if k in row}))
        except ValueError as exc:
            raise ValueError(f"{path}: row {i}: {exc}") from None
    return out


def run_dir(out_dir: Path, ck: Checkpoint, task: str, D: int, seed: int) -> Path:
    return out_dir / ck.label / f"{task}-D{D}-s{seed}"


def _check_record(rec: dict, ck: Checkpoint, cfg: FinetuneConfig, where: Path) -> None:
    want = {"base": str(ck.model), "task": cfg.task, "D": cfg.D, "seed": cfg.seed,
            "hyperparameters": cfg.hyperparameters()}
    diff = [k for k in want if rec.get(k) != want[k]]
    if diff:
        raise ValueError(f"{where} was finetuned with different settings ({', '.join(diff)}: "
                         f"{ {k: rec.get(k) for k in diff} } vs requested { {k: want[k] for k in diff} }); "
                         f"use another --output_path directory or delete it")


def _manifest_rows(out_dir: Path, checkpoints: list[Checkpoint], task: str) -> list[dict]:
    lm_eval_task = EXTERNAL_TASKS.get(task) or f"emergence_{task}"
    rows = []
    for ck in checkpoints:
        base = {"model": ck.model, "checkpoint": ck.label, "D": 0, "seed": "", "task": lm_eval_task, **ck.facts}
        rows.append(base)
        ck_dir = out_dir / ck.label
        if not ck_dir.is_dir():
            continue
        for d in sorted(ck_dir.iterdir()):
            if d.name.startswith(".") or not d.is_dir():
                continue
            rec = read_record(d)
            if rec is None or rec.get("task") != task:
                continue
            losses = rec.get("losses") or []
            rows.append({"model": str(d.resolve()), "checkpoint": ck.label, "D": rec["D"], "seed": rec["seed"],
                         "task": lm_eval_task, **ck.facts, **rec["hyperparameters"],
                         "train_loss_first": losses[0] if losses else "",
                         "train_loss_last": losses[-1] if losses else "",
                         "train_tokens": rec.get("train_tokens", "")})
    rows.sort(key=lambda r: (r["checkpoint"], r["D"], str(r["seed"])))
    return rows


def write_manifest(path: Path, rows: list[dict]) -> None:
    """CSV, replaced atomically (a reader never sees half a file)."""
    cols = ["model", "checkpoint", "D", "seed", "task"]
    cols += [c for c in CHECKPOINT_FACTS if any(c in r for r in rows)]
    cols += [c for c in (*_HPARAMS, "train_loss_first", "train_loss_last", "train_tokens")
             if any(c in r for r in rows)]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="raise", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: r.get(c, "") for c in cols})
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, buf.getvalue())


@dataclass
class SweepReport:
    manifest: Path
    trained: list[Path]
    skipped: list[Path]
    rows: list[dict]


def run_sweep(checkpoints: list[Checkpoint], Ds: list[int], out_dir: str | os.PathLike, config: FinetuneConfig,
              *, seeds: tuple[int, ...] = (0,), data_source: str | None = None, progress: bool = True,
              dtype: str = "float32", examples=None) -> SweepReport:
    """Finetune each checkpoint on each D and seed (``config``'s D and seed are
    replaced), skipping finished runs; write ``out_dir/manifest_<task>.csv``.
    ``examples``: optional ``f(config) -> list[Example]`` supplying each run's
    data (for tasks registered with
    :func:`lm_eval_ext.finetune.train.register_external_task`)."""
    from accelerate import PartialState

    from ..conventions.console import progress_bar

    if not checkpoints:
        raise ValueError("no checkpoints given")
    labels = [c.label for c in checkpoints]
    if len(set(labels)) != len(labels):
        raise ValueError(f"checkpoint labels must be unique: {labels}")
    models = [c.model for c in checkpoints]
    if len(set(models)) != len(models):
        raise ValueError(f"two checkpoints are the same model ({', '.join(models)}): lm-eval results could not "
                         f"tell them apart")
    if not Ds or any(not isinstance(D, int) or D < 1 for D in Ds):
        raise ValueError(f"D values must be positive integers (the base checkpoints are D = 0), got {Ds}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Under `accelerate launch` every process runs this loop (each finetune is
    # data-parallel); only the main one cleans up and writes the manifest.
    main = PartialState().is_main_process
    for ck in checkpoints if main else []:  # leftovers of a killed run: never counted, removed
        for tmp in (out_dir / ck.label).glob(".tmp-*") if (out_dir / ck.label).is_dir() else []:
            log.info("removing unfinished %s", tmp)
            shutil.rmtree(tmp, ignore_errors=True)
    jobs = [(ck, D, s) for ck in checkpoints for D in sorted(set(Ds)) for s in seeds]
    manifest = manifest_path(out_dir, config.task)
    report = SweepReport(manifest, [], [], [])
    if main:
        write_manifest(manifest, _manifest_rows(out_dir, checkpoints, config.task))
    bar = progress_bar(jobs, desc="finetune sweep", enabled=progress and main)
    for ck, D, seed in bar:
        cfg = replace(config, D=D, seed=seed)
        d = run_dir(out_dir, ck, cfg.task, D, seed)
        bar.set_postfix_str(f"{ck.label} D={D} seed={seed}")
        rec = read_record(d) if d.exists() else None
        if d.exists() and rec is None:
            raise ValueError(f"{d} exists but holds no {d.name}/finetune.json: not a finished run of this sweep; "
                             f"remove it")
        if rec is not None:
            _check_record(rec, ck, cfg, d)
            report.skipped.append(d)
            continue
        finetune(ck.model, d, cfg, data_source=data_source, progress=progress, dtype=dtype,
                 examples=examples(cfg) if examples is not None else None)
        report.trained.append(d)
        if main:
            write_manifest(manifest, _manifest_rows(out_dir, checkpoints, config.task))
    report.rows = _manifest_rows(out_dir, checkpoints, config.task)
    if main:
        write_manifest(manifest, report.rows)
    return report
