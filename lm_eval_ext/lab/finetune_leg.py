"""The lab's finetuning leg: predict *few-shot* emergence of the
length-generalisation task from finetuning (Snell et al. 2024).

The ladder never solves three-digit addition (``lab_add_long``) few-shot:
every size stays at the floor. Finetuning moves emergence to weaker
checkpoints, so the smaller checkpoints, finetuned on D examples of the task,
do show it, and the emergence law

    Perf(L, D) = A * ReLU(E(D) - L) + B,     E(D) = k (log D)^alpha + C

(:func:`analysis.emergence.fit_emergence_law`) fitted to them extrapolates
to the few-shot limit ``E(D0)``: the pretraining loss below which the task
should appear without finetuning. That prediction is written to
``finetune_prediction.json`` *before* the largest size is trained; once it
is trained its loss is known and the prediction is checked: is its loss
below ``E(D0)``, and has its few-shot performance left the floor?

Stages (each resumable; a rerun skips what is finished):

1. ``L`` of every base checkpoint: the mean answer-token negative
   log-likelihood (nats) on a fixed sample of the training distribution
   (``n_val`` examples of the pretraining mixture, drawn with a seed no
   model trains with), the quantity the training loss estimates;
   ``finetune/base/<model>.json``, with the checkpoint's few-shot (D = 0)
   greedy accuracy on the leg's tasks.
2. the finetunes: each base checkpoint (every smaller size, the ladder seeds
   in ``seeds``) on each D, with the project's resumable sweep
   (:func:`lm_eval_ext.finetune.sweep.run_sweep`, full finetuning; the
   examples come from the lab's generator, never a test item), for the task
   and for the calibration task; ``finetune/<task>/``.
3. scores: greedy exact-match accuracy of every finetuned model on
   ``n_eval`` items of the task's test generator (the lab's PassUntil items
   are the first ``n_test`` of them), decoded directly with ``transformers``
   (not through lm-eval: one greedy pass is all the law needs, and it is
   deterministic); ``finetune/scores/``.
4. ``D0``: calibrated (:func:`analysis.emergence.calibrate_d0`) on the
   calibration task (by default the in-distribution ``lab_add``, which does
   emerge few-shot within the ladder): its law, fitted like the task's, is
   set equal to its observed few-shot emergence point (the fitted few-shot
   curve over every smaller checkpoint, all seeds). If that fails, or
   ``d0`` is given, a fixed ``D0`` is used and the file says so.
5. the fit and ``finetune_prediction.json`` (timestamped, written once).
   Rows scoring at or above ``ceiling`` (0.95) are left out of every fit:
   the ReLU law has no ceiling, and saturated rows carry no slope but
   inflate the dispersion (on the default ladder with all seeds they turned
   the calibration task's verdict to "no emergence in range").
6. after the largest size is trained: its ``L`` and few-shot accuracy, and
   the comparison (:func:`check_prediction`).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import pickle
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from ..conventions.files import write_json_atomic
from .ladder import Size, model_dir, read_marker, record_or_refuse
from .synthetic import TASK_KINDS, TaskSpec

LEG_DIR = "finetune"
LEG_CONFIG = "leg_config.json"
PREDICTION_FILE = "finetune_prediction.json"
FIT_PICKLE = "fit.pkl"
#: The seed of the validation sample of the pretraining mixture (models train with seeds 0, 1, ...).
VAL_SEED = 987_654_321
#: The seed of the finetuning examples' generator.
DATA_SEED = 20250302
LAB_TASKS = ("lab_add", "lab_count", "lab_add_long", "lab_count_long")


def task_kind(task: str) -> str:
    kind = task.removeprefix("lab_")
    if task not in LAB_TASKS or kind not in TASK_KINDS:
        raise ValueError(f"unknown lab task {task!r}; choose from {LAB_TASKS}")
    return kind


@dataclasses.dataclass(frozen=True)
class FinetuneLegConfig:
    """Everything that fixes the finetuning leg's results (a rerun must match)."""

    task: str = "lab_add_long"
    #: the task D0 is calibrated on (one that emerges few-shot in the ladder); None: fixed ``d0``
    calibration_task: str | None = "lab_add"
    Ds: tuple[int, ...] = (64, 256, 1024, 4096)
    #: ladder seeds whose checkpoints are finetuned (None: the lab's first seed)
    seeds: tuple[int, ...] | None = None
    lr: float = 1e-3
    epochs: float = 10.0
    min_steps: int = 50
    batch_size: int = 32
    warmup_ratio: float = 0.05
    n_eval: int = 256
    n_val: int = 1024
    #: a fixed D0 (skips the calibration); used too when the calibration fails
    d0: float | None = None
    fallback_d0: float = 1.0
    n_boot: int = 200
    #: rows scoring at least this are left out of the fits: the ReLU law has no ceiling, and rows
    #: at it say nothing about the slope but inflate the dispersion (1.0: keep every row)
    ceiling: float = 0.95
    #: "emerged" = accuracy >= floor + margin and its 95% lower bound above the floor
    emerged_margin: float = 0.05

    def __post_init__(self):
        task_kind(self.task)
        if self.calibration_task is not None:
            task_kind(self.calibration_task)
            if self.calibration_task == self.task:
                raise ValueError("the calibration task must differ from the task")
        if len(set(self.Ds)) < 3 or min(self.Ds) < 1:
            raise ValueError(f"the emergence law needs >= 3 distinct D >= 1, got {self.Ds}")
        if self.d0 is not None and not self.d0 >= 1:
            raise ValueError(f"d0 must be >= 1 (log D0 >= 0), got {self.d0}")
        if not 0 < self.ceiling <= 1.0:
            raise ValueError(f"ceiling must be in (0, 1], got {self.ceiling}")
        if not self.fallback_d0 >= 1:
            raise ValueError(f"fallback_d0 must be >= 1, got {self.fallback_d0}")
        if self.seeds is not None and (not self.seeds or len(set(self.seeds)) != len(self.seeds)):
            raise ValueError("finetune seeds: give at least one, without repeats")
        for name in ("n_eval", "n_val", "batch_size", "min_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1")

    @property
    def tasks(self) -> tuple[str, ...]:
        return (self.task,) + ((self.calibration_task,) if self.calibration_task else ())

    def base_seeds(self, lab_seeds: Sequence[int]) -> tuple[int, ...]:
        seeds = tuple(self.seeds) if self.seeds is not None else (lab_seeds[0],)
        missing = [s for s in seeds if s not in lab_seeds]
        if missing:
            raise ValueError(f"finetune seeds {missing} are not seeds of the ladder {tuple(lab_seeds)}")
        return seeds

    def steps(self, D: int) -> int:
        return max(int(self.min_steps), math.ceil(self.epochs * D / self.batch_size))

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))


def quick_leg_config() -> FinetuneLegConfig:
    """The leg for ``--quick``: three D, fewer evaluation items and refits."""
    return FinetuneLegConfig(Ds=(64, 256, 1024), n_eval=128, n_val=512, n_boot=100)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def leg_dir(out: Path) -> Path:
    return Path(out) / LEG_DIR


def check_leg_config(out: Path, leg: FinetuneLegConfig) -> None:
    record_or_refuse(leg_dir(out) / LEG_CONFIG, leg.to_dict(), "a finetuning leg")


# ---------------------------------------------------------------- data

def eval_items(task: str, spec: TaskSpec, n_eval: int) -> list[dict]:
    """The ``n_eval`` scoring items: the task's test generator (the lab's own
    test items are the first ``spec.n_test`` of them)."""
    from .synthetic import test_set

    return test_set(task_kind(task), dataclasses.replace(spec, n_test=max(n_eval, spec.n_test)))[:n_eval]


def finetune_pool(task: str, spec: TaskSpec, n: int, n_eval: int) -> list[tuple[str, str]]:
    """``n`` distinct (prompt, answer) examples of the task's distribution
    from a fixed seed, never a scoring or test item; D examples are the first D."""
    from . import synthetic as syn

    kind = task_kind(task)
    exclude = {r["prompt"] for r in eval_items(task, spec, n_eval)} | set(syn.held_out_prompts(spec))
    rng = np.random.default_rng([DATA_SEED, TASK_KINDS.index(kind)])
    out, seen, tries = [], set(exclude), 0
    while len(out) < n:
        tries += 1
        if tries > 200 * n:
            raise ValueError(f"cannot draw {n} distinct {task} finetuning examples with {spec}; use smaller D")
        if kind.startswith("add"):
            d = spec.max_digits + (kind == "add_long")
            prompt, answer = syn.addition_example(syn._number(rng, d), syn._number(rng, d))
        else:
            if kind == "count":
                length = int(rng.integers(max(1, spec.max_len - 3), spec.max_len + 1))
            else:
                length = int(rng.integers(spec.max_len + 1, spec.max_len + 5))
            prompt, answer = syn.counting_example(syn._string(rng, length))
        if prompt in seen:
            continue
        seen.add(prompt)
        out.append((prompt, answer))
    return out


def finetune_examples(task: str, spec: TaskSpec, D: int, n_eval: int, pool_size: int):
    """The first D examples of the pool, as :class:`lm_eval_ext.tasks.emergence.Example`
    (prompt; completion = answer + newline, the lab's training layout: no
    BOS, the loss on the answer and its closing newline)."""
    from ..tasks.emergence import Example

    return [Example(p, a + "\n") for p, a in finetune_pool(task, spec, pool_size, n_eval)[:D]]


def register_tasks() -> None:
    """Let :class:`lm_eval_ext.finetune.train.FinetuneConfig` accept the lab's tasks."""
    from ..finetune.train import register_external_task

    for t in LAB_TASKS:
        register_external_task(t, t)


register_tasks()


# ---------------------------------------------------------------- measurements

def _load(path: Path):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()


def validation_loss(model, spec: TaskSpec, n_val: int, batch_size: int = 64) -> tuple[float, int]:
    """(mean answer-token NLL in nats, tokens) on ``n_val`` examples of the
    pretraining mixture drawn with :data:`VAL_SEED` (test items excluded, as
    in training): the loss the training loop minimises, on a fixed sample."""
    import torch

    from . import synthetic as syn

    exclude = syn.held_out_prompts(spec)
    total, n = 0.0, 0
    with torch.no_grad():
        for step in range(math.ceil(n_val / batch_size)):
            pairs = syn.training_batch(VAL_SEED, step, batch_size, spec, exclude)[:n_val - step * batch_size]
            ids, labels, mask = syn.encode_examples(pairs)
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
            y = labels[:, 1:]
            keep = y != -100
            total += float(torch.nn.functional.cross_entropy(logits[keep], y[keep], reduction="sum"))
            n += int(keep.sum())
    return total / n, n


def greedy_correct(model, items: list[dict], batch_size: int = 256) -> int:
    """How many items the model answers exactly (greedy decoding, the first
    line stripped, as the lab's PassUntil checker compares)."""
    import torch

    from . import synthetic as syn

    correct = 0
    max_new = max(len(r["target"]) for r in items) + 2
    for i in range(0, len(items), batch_size):
        chunk = items[i:i + batch_size]
        width = max(len(r["prompt"]) for r in chunk)
        ids = torch.zeros(len(chunk), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for j, r in enumerate(chunk):  # left padding: the prompt ends where generation starts
            x = [syn.encode_char(c) for c in r["prompt"]]
            ids[j, width - len(x):] = torch.tensor(x)
            mask[j, width - len(x):] = 1
        with torch.no_grad():
            gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new, do_sample=False,
                                 pad_token_id=0, eos_token_id=0)[:, width:]
        for j, r in enumerate(chunk):
            text = "".join("\0" if t == 0 else syn.ALPHABET[t - 1] for t in gen[j].tolist())
            correct += text.split("\0")[0].split("\n")[0].strip() == r["target"]
    return correct


def base_facts(out: Path, model_path: Path, leg: FinetuneLegConfig, spec: TaskSpec) -> dict:
    """L and few-shot (D = 0) greedy scores of one base checkpoint, cached in
    ``finetune/base/<model>.json``."""
    path = leg_dir(out) / "base" / f"{Path(model_path).name}.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    model = _load(model_path)
    L, ntok = validation_loss(model, spec, leg.n_val)
    scores = {}
    for task in leg.tasks:
        items = eval_items(task, spec, leg.n_eval)
        scores[task] = {"c": greedy_correct(model, items), "n": len(items)}
    marker = read_marker(model_path)
    doc = {"model": str(model_path), "checkpoint": Path(model_path).name, "L": L, "val_tokens": ntok,
           "N": marker["N"], "seed": marker["seed"], "size": marker["size"], "tokens": marker["tokens"],
           "flops": marker["flops"], "train_loss": marker["loss"], "fewshot": scores, "written_at": _now()}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, doc)
    return doc


def base_stage(out: Path, sizes: Sequence[Size], lab_seeds: Sequence[int], leg: FinetuneLegConfig,
               spec: TaskSpec) -> pd.DataFrame:
    """One row per base checkpoint (every seed of ``sizes``): checkpoint, model,
    N, seed, size, L, flops and the few-shot counts ``c_<task>``, ``n_<task>``."""
    rows = []
    for s in sizes:
        for seed in lab_seeds:
            f = base_facts(out, model_dir(Path(out) / "models", s, seed), leg, spec)
            row = {k: f[k] for k in ("checkpoint", "model", "N", "seed", "size", "L", "flops", "tokens",
                                     "train_loss")}
            for task, sc in f["fewshot"].items():
                row[f"c_{task}"], row[f"n_{task}"] = sc["c"], sc["n"]
            rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- finetuning

def _sweep_config(leg: FinetuneLegConfig, task: str):
    from ..finetune.train import FinetuneConfig

    # D and steps are set per run (steps = max(min_steps, ceil(epochs * D / batch)))
    return FinetuneConfig(task=task, D=min(leg.Ds), lr=leg.lr, epochs=leg.epochs, batch_size=leg.batch_size,
                          warmup_ratio=leg.warmup_ratio, max_length=256)


def _score_path(out: Path, task: str, label: str, D: int) -> Path:
    return leg_dir(out) / "scores" / task / f"{label}-D{D}.json"


def finetune_checkpoint(out: Path, base: dict, task: str, leg: FinetuneLegConfig, spec: TaskSpec, *,
                        progress: bool = False) -> list[dict]:
    """Finetune one base checkpoint on every D (skipping finished runs) and
    score every finetuned model (skipping scored ones). Returns the score rows."""
    from ..finetune.sweep import make_checkpoint, run_dir, run_sweep

    out = Path(out)
    ck = make_checkpoint(base["checkpoint"], str(base["model"]), loss=base["L"], N=base["N"],
                         flops=base["flops"], tokens=base["tokens"])
    sweep_dir = leg_dir(out) / task
    cfg = _sweep_config(leg, task)
    pool_size = max(leg.Ds)
    items = eval_items(task, spec, leg.n_eval)
    rows = []
    for D in sorted(set(leg.Ds)):
        d = run_dir(sweep_dir, ck, task, D, 0)
        sp = _score_path(out, task, ck.label, D)
        if not sp.is_file():
            # one D at a time, so that a killed run loses at most one finetune and its score
            run_sweep([ck], [D], sweep_dir, dataclasses.replace(cfg, D=D, steps=leg.steps(D)), seeds=(0,),
                      progress=progress,
                      examples=lambda c: finetune_examples(task, spec, c.D, leg.n_eval, pool_size))
            c = greedy_correct(_load(d), items)
            rec = json.loads((d / "finetune.json").read_text(encoding="utf-8"))
            sp.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(sp, {"checkpoint": ck.label, "model": str(d), "task": task, "D": D, "c": c,
                                   "n": len(items), "acc": c / len(items), "L": base["L"],
                                   "steps": leg.steps(D), "train_loss_last": (rec.get("losses") or [None])[-1],
                                   "finetune_seconds": rec.get("seconds"), "written_at": _now()})
        rows.append(json.loads(sp.read_text(encoding="utf-8")))
    return rows


def _ft_job(args, spawned: bool = True):
    out, base, task, leg, spec, device, threads = args
    if spawned and device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch is imported in this worker
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return finetune_checkpoint(out, base, task, leg, spec)
    finally:
        torch.set_num_threads(before)


def finetune_stage(out: Path, bases: pd.DataFrame, leg: FinetuneLegConfig, spec: TaskSpec, *, device: str,
                   workers: int) -> pd.DataFrame:
    """Finetune and score every (task, base checkpoint); the rows of every
    finetuned model: checkpoint, task, D, c, n, acc, L, ..."""
    # tiny models: a few threads each at most (more only add synchronisation)
    threads = max(1, min(4, (os.cpu_count() or 1) // max(1, workers)))
    jobs = []
    for task in leg.tasks:
        for base in bases.to_dict("records"):
            jobs.append((Path(out), base, task, leg, spec, device, threads))
    pending = [j for j in jobs if not all(_score_path(out, j[2], j[1]["checkpoint"], D).is_file() for D in leg.Ds)]
    if pending:
        print(f"[lab]     finetuning {len(pending)} (task, checkpoint) pairs x {len(set(leg.Ds))} D", flush=True)
    if pending and workers > 1 and len(pending) > 1:
        import multiprocessing as mp

        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as ex:
            list(ex.map(_ft_job, pending))
    else:
        for j in pending:
            _ft_job(j, spawned=False)
    rows = []
    for j in jobs:
        rows += finetune_checkpoint(*j[:5])  # every run and score exists now: reads them
    # the sweep's manifest of each task, with every checkpoint (read by the emergence analysis)
    from ..finetune.sweep import _manifest_rows, make_checkpoint, manifest_path, write_manifest

    for task in leg.tasks:
        cks = [make_checkpoint(b["checkpoint"], str(b["model"]), loss=b["L"], N=b["N"], flops=b["flops"],
                               tokens=b["tokens"]) for b in bases.to_dict("records")]
        write_manifest(manifest_path(leg_dir(out) / task, task), _manifest_rows(leg_dir(out) / task, cks, task))
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- fitting

def law_table(ft: pd.DataFrame, task: str) -> pd.DataFrame:
    """The emergence-law input for ``task``: checkpoint, L, D, perf, n."""
    d = ft[ft["task"] == task]
    return pd.DataFrame({"checkpoint": d["checkpoint"].to_numpy(), "L": d["L"].astype(float).to_numpy(),
                         "D": d["D"].astype(float).to_numpy(), "perf": (d["c"] / d["n"]).to_numpy(),
                         "n": d["n"].astype(float).to_numpy()})


def fewshot_table(bases: pd.DataFrame, task: str) -> pd.DataFrame:
    """The few-shot (D = 0) rows of ``task``: checkpoint, L, D = 0, perf, n."""
    return pd.DataFrame({"checkpoint": bases["checkpoint"].to_numpy(), "L": bases["L"].astype(float).to_numpy(),
                         "D": 0.0, "perf": (bases[f"c_{task}"] / bases[f"n_{task}"]).to_numpy(),
                         "n": bases[f"n_{task}"].astype(float).to_numpy()})


def below_ceiling(table: pd.DataFrame, ceiling: float) -> pd.DataFrame:
    """The rows the law is fitted to: perf below ``ceiling`` (all rows when ``ceiling`` is 1)."""
    if ceiling >= 1.0:
        return table
    return table[table["perf"] < ceiling].reset_index(drop=True)


def verdict_of(res) -> str | None:
    """The fit's verdict (``"emergence observed"`` / ``"no emergence in range"``) where the law reports one."""
    v = getattr(res, "verdict", None)
    if v is None:
        return None
    return v if isinstance(v, str) else str(getattr(v, "label", v))


def _finite(x) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _fit_quietly(fn, *args, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = fn(*args, **kw)
    return res, [str(w.message) for w in caught]


def calibrate(ft: pd.DataFrame, bases: pd.DataFrame, task: str, *, n_boot: int, seed: int = 0,
              ceiling: float = 1.0) -> dict:
    """D0 from ``task`` (one that emerges few-shot): its law's ``E(D)`` set
    equal to its observed few-shot emergence point (the curve fitted to every
    base checkpoint's D = 0 score). Returns a dict with ``d0`` (None on
    failure, with ``error``), the observed point, and the fits."""
    from analysis.emergence import calibrate_d0, fit_emergence_curve, fit_emergence_law

    doc: dict = {"task": task, "d0": None}
    try:
        table, few = law_table(ft, task), fewshot_table(bases, task)
        doc["rows_at_ceiling_left_out"] = {"finetuned": int(len(table) - len(below_ceiling(table, ceiling))),
                                           "few_shot": int(len(few) - len(below_ceiling(few, ceiling)))}
        law, lw = _fit_quietly(fit_emergence_law, below_ceiling(table, ceiling), n_boot=0, seed=seed)
        doc["law"] = law.to_dict()
        doc["law_warnings"] = lw
        doc["law_verdict"] = verdict_of(law)
        curve, cw = _fit_quietly(fit_emergence_curve, below_ceiling(few, ceiling), n_boot=n_boot, seed=seed)
        doc["fewshot_curve"] = curve.to_dict()
        doc["fewshot_warnings"] = cw
        doc["fewshot_verdict"] = verdict_of(curve)
        e = curve.emergence_loss().iloc[0]
        doc["observed_fewshot_E"] = {"E": _finite(e["E"]), "lower": _finite(e.get("lower")),
                                     "upper": _finite(e.get("upper"))}
        if doc["law_verdict"] == "no emergence in range" or doc["fewshot_verdict"] == "no emergence in range":
            raise ValueError(f"{task}: no emergence in range (finetuned law: {doc['law_verdict']}; "
                             f"few-shot curve: {doc['fewshot_verdict']})")
        if doc["observed_fewshot_E"]["E"] is None:
            raise ValueError(f"{task}: the few-shot curve has no emergence point")
        post = int(curve.side_counts["post"].sum())
        if post == 0:
            raise ValueError(f"{task}: no base checkpoint lies past the few-shot kink (it has not emerged)")
        doc["d0"] = calibrate_d0(law, doc["observed_fewshot_E"]["E"])
        doc["_fits"] = (law, curve)
    except (ValueError, np.linalg.LinAlgError) as exc:
        doc["error"] = str(exc)
    return doc


def fit_task(ft: pd.DataFrame, task: str, d0: float, *, n_boot: int, seed: int = 0, ceiling: float = 1.0):
    """(fit, warnings, E(D0) dict) of the task's emergence law (rows below ``ceiling``)."""
    from analysis.emergence import fit_emergence_law

    fit, w = _fit_quietly(fit_emergence_law, below_ceiling(law_table(ft, task), ceiling), d0=d0, n_boot=n_boot,
                          seed=seed)
    fs = fit.few_shot
    e = {"D0": float(d0), "E": _finite(fs["E"]), "lower": _finite(fs.get("lower")), "upper": _finite(fs.get("upper"))}
    return fit, w, e


def prediction_stage(out: Path, bases: pd.DataFrame, ft: pd.DataFrame, leg: FinetuneLegConfig,
                     largest: Size, lab_seeds: Sequence[int]) -> dict:
    """Write (once) ``finetune_prediction.json``: E(D0) of the task, with its
    interval and the fit's verdict, before the largest size is trained."""
    path = Path(out) / PREDICTION_FILE
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    from .ladder import is_trained

    root = Path(out) / "models"
    already = [str(model_dir(root, largest, s)) for s in lab_seeds if is_trained(model_dir(root, largest, s))]
    doc: dict = {"written_at": _now(), "task": leg.task, "largest_size": dataclasses.asdict(largest),
                 "largest_models_existing_when_written": already,
                 "note": "written before the largest size was trained" if not already else
                         "WARNING: some largest-size models existed when this was written",
                 "settings": leg.to_dict(),
                 "perf": "greedy exact-match accuracy on n_eval items (transformers generate, not lm-eval)",
                 "L": "mean answer-token NLL (nats) on a fixed sample of the pretraining mixture"}
    cal_fits = None
    if leg.d0 is not None:
        d0, how = float(leg.d0), "fixed (--ft_d0)"
    elif leg.calibration_task:
        cal = calibrate(ft, bases, leg.calibration_task, n_boot=leg.n_boot, ceiling=leg.ceiling)
        cal_fits = cal.pop("_fits", None)
        doc["calibration"] = cal
        if cal["d0"] is not None:
            d0, how = float(cal["d0"]), f"calibrated on {leg.calibration_task}"
        else:
            d0, how = float(leg.fallback_d0), (f"fixed fallback {leg.fallback_d0:g}: the calibration on "
                                                f"{leg.calibration_task} failed ({cal['error']})")
    else:
        d0, how = float(leg.fallback_d0), "fixed (no calibration task)"
    doc["d0"], doc["d0_how"] = d0, how
    fit = None
    try:
        fit, w, e = fit_task(ft, leg.task, d0, n_boot=leg.n_boot, ceiling=leg.ceiling)
        doc.update({"few_shot_emergence": e, "verdict": verdict_of(fit),
                    "verdict_reason": getattr(fit, "verdict_reason", None), "fit": fit.to_dict(),
                    "fit_warnings": w, "summary": fit.summary()})
    except (ValueError, np.linalg.LinAlgError) as exc:
        doc.update({"few_shot_emergence": None, "verdict": f"no fit: {exc}", "error": str(exc)})
    doc["base_checkpoints"] = bases.to_dict("records")
    doc["rows"] = law_table(ft, leg.task).to_dict("records")
    doc["rows_at_ceiling_left_out"] = int(len(doc["rows"]) - len(below_ceiling(law_table(ft, leg.task), leg.ceiling)))
    # the fit object, for the report's plot after the largest size (a rerun does not refit)
    with open(leg_dir(out) / FIT_PICKLE, "wb") as f:
        pickle.dump({"fit": fit, "calibration": cal_fits}, f)
    write_json_atomic(path, doc)
    try:
        plot_leg(out, doc, bases, ft, leg, fit, cal_fits, largest=None)
    except Exception as exc:  # noqa: BLE001 - a plot never blocks the prediction
        print(f"[lab]     (finetune plot failed: {exc})", flush=True)
    return doc


def load_fits(out: Path) -> dict:
    try:
        with open(leg_dir(out) / FIT_PICKLE, "rb") as f:
            return pickle.load(f)
    except Exception:  # noqa: BLE001 - stale or missing: the report goes without the curves
        return {"fit": None, "calibration": None}


# ---------------------------------------------------------------- the check

def _cp_lower(c: int, n: int, level: float = 0.95) -> float:
    from scipy import stats

    return 0.0 if c == 0 else float(stats.beta.ppf((1 - level) / 2, c, n - c + 1))


def check_prediction(prediction: dict, largest: pd.DataFrame, task: str, margin: float = 0.05,
                     lab_pu: dict | None = None) -> dict:
    """Compare the prediction with the largest size's seeds (rows of
    :func:`base_stage`): per seed, its L against E(D0) and its interval
    (``predicted``: "emerged" when L is below the interval, "not emerged"
    above it, "undecided" inside) and whether its few-shot accuracy has
    left the floor (``observed``: accuracy >= floor + margin and the 95%
    Clopper-Pearson lower bound above the floor; the floor is the fitted B)."""
    e = prediction.get("few_shot_emergence") or {}
    E, lo, hi = e.get("E"), e.get("lower"), e.get("upper")
    fit = prediction.get("fit") or {}
    B = (fit.get("params") or {}).get("B")
    floor = float(B) if B is not None else 0.0
    rows = []
    for r in largest.to_dict("records"):
        c, n = int(r[f"c_{task}"]), int(r[f"n_{task}"])
        acc = c / n
        observed = bool(acc >= floor + margin and _cp_lower(c, n) > floor)
        if E is None:
            predicted = "no prediction"
        elif lo is not None and hi is not None:
            predicted = "emerged" if r["L"] < lo else ("not emerged" if r["L"] > hi else "undecided")
        else:
            predicted = "emerged" if r["L"] < E else "not emerged"
        row = {"checkpoint": r["checkpoint"], "seed": int(r["seed"]), "L": float(r["L"]), "c": c, "n": n,
               "acc": acc, "acc_lower95": _cp_lower(c, n), "observed": "emerged" if observed else "not emerged",
               "L_below_E": None if E is None else bool(r["L"] < E), "predicted": predicted,
               "agree": None if predicted in ("undecided", "no prediction") else
               (predicted == ("emerged" if observed else "not emerged"))}
        if lab_pu and r["checkpoint"] in lab_pu:
            row["lab_pu"] = lab_pu[r["checkpoint"]]
        rows.append(row)
    n_agree = sum(1 for r in rows if r["agree"] is True)
    n_decided = sum(1 for r in rows if r["agree"] is not None)
    return {"task": task, "E": E, "lower": lo, "upper": hi, "d0": prediction.get("d0"),
            "verdict": prediction.get("verdict"), "floor": floor, "margin": margin, "per_seed": rows,
            "agree": n_agree, "decided": n_decided,
            "any_emerged": any(r["observed"] == "emerged" for r in rows),
            "mean_L": float(np.mean([r["L"] for r in rows])) if rows else None}


# ---------------------------------------------------------------- plot

def plot_leg(out: Path, prediction: dict, bases: pd.DataFrame, ft: pd.DataFrame, leg: FinetuneLegConfig,
             fit, cal_fits, largest: pd.DataFrame | None) -> list[Path]:
    """``finetune_law_<task>.png`` (perf vs L per D, the fitted law, E(D0);
    few-shot rows of the smaller and, once trained, the largest checkpoints)
    and ``finetune_calibration_<task>.png``. Uses
    :func:`analysis.emergence.plot.plot_emergence`."""
    from analysis.emergence.plot import plot_emergence

    paths = []
    out = Path(out)
    if fit is not None:
        few = fewshot_table(bases if largest is None else pd.concat([bases, largest]), leg.task)
        table = pd.concat([law_table(ft, leg.task), few], ignore_index=True)
        title = f"{leg.task}: finetuned (D > 0) and few-shot (D = 0); D0 = {prediction['d0']:.3g}"
        if largest is not None and len(largest):
            title += f"\nlargest size: L = {', '.join(f'{x:.3f}' for x in largest['L'])}"
        paths.append(plot_emergence(table, fit, out / f"finetune_law_{leg.task}.png", title=title))
    if cal_fits and leg.calibration_task:
        law, curve = cal_fits
        table = pd.concat([law_table(ft, leg.calibration_task), fewshot_table(bases, leg.calibration_task)],
                          ignore_index=True)
        import copy

        law = copy.copy(law)
        law.d0 = prediction["d0"]  # draw the law at the calibrated D0 (it meets the few-shot curve there)
        paths.append(plot_emergence(table, law, out / f"finetune_calibration_{leg.calibration_task}.png",
                                    fewshot=curve, title=f"{leg.calibration_task}: D0 calibration "
                                                          f"(D0 = {prediction['d0']:.3g})"))
    return paths


# ---------------------------------------------------------------- the leg in the lab

def before_largest(out: Path, cfg, leg: FinetuneLegConfig, *, device: str, workers: int) -> dict:
    """Stages 1-5 on the smaller sizes; returns the prediction (written once)."""
    out = Path(out)
    path = out / PREDICTION_FILE
    small, largest = list(cfg.sizes[:-1]), cfg.sizes[-1]
    if path.is_file():
        doc = json.loads(path.read_text(encoding="utf-8"))
        print(f"[lab]     finetune leg: prediction exists (written at {doc['written_at']}); "
              "nothing refitted or finetuned", flush=True)
        return doc
    spec = cfg.train.spec
    seeds = leg.base_seeds(cfg.seeds)
    bases = base_stage(out, small, cfg.seeds, leg, spec)
    ft = finetune_stage(out, bases[bases["seed"].isin(seeds)], leg, spec, device=device, workers=workers)
    return prediction_stage(out, bases, ft, leg, largest, cfg.seeds)


def after_largest(out: Path, cfg, leg: FinetuneLegConfig, prediction: dict, lab_outcome: dict | None) -> dict:
    """Stage 6: the largest size's L and few-shot score against the prediction;
    writes ``finetune_outcome.json`` and the plots, returns the outcome."""
    out = Path(out)
    spec = cfg.train.spec
    small, largest = list(cfg.sizes[:-1]), cfg.sizes[-1]
    bases = base_stage(out, small, cfg.seeds, leg, spec)
    big = base_stage(out, [largest], cfg.seeds, leg, spec)
    ft = pd.DataFrame([json.loads(p.read_text(encoding="utf-8"))
                       for t in leg.tasks for p in sorted((leg_dir(out) / "scores" / t).glob("*.json"))])
    lab_pu = None
    if lab_outcome and leg.task in (lab_outcome.get("tasks") or {}):
        per = lab_outcome["tasks"][leg.task].get("observed_per_model") or {}
        lab_pu = {Path(k).name: float(v) for k, v in per.items()}
    res = check_prediction(prediction, big, leg.task, leg.emerged_margin, lab_pu)
    res["prediction_written_at"] = prediction["written_at"]
    res["finetune_seeds"] = list(leg.base_seeds(cfg.seeds))
    res["largest_trained_at"] = {r["checkpoint"]: _dt.datetime.fromtimestamp(
        (model_dir(out / "models", largest, int(r["seed"])) / "lab_model.json").stat().st_mtime,
        _dt.timezone.utc).isoformat(timespec="seconds") for r in big.to_dict("records")}
    write_json_atomic(out / "finetune_outcome.json", res)
    fits = load_fits(out)
    try:
        plot_leg(out, prediction, bases, ft, leg, fits.get("fit"), fits.get("calibration"), largest=big)
    except Exception as exc:  # noqa: BLE001
        print(f"[lab]     (finetune plot failed: {exc})", flush=True)
    res["_tables"] = {"bases": bases, "largest": big, "ft": ft}
    return res
