"""The emergence lab, end to end: train a ladder, predict the largest rung
before it exists, train it, and compare.

Stages (each resumable; a rerun skips what is finished):

1. train every size but the largest, for every seed (:mod:`.ladder`);
2. score them on the lab's PassUntil tasks through lm-eval (:mod:`.evaluate`);
3. forecast the largest size with the forecasting core (:mod:`.forecast`:
   the task law ``PU(N) = exp(-c N^-alpha)`` among the forms of
   :func:`analysis.forecast.fit_forecast`, each seed its own model) and write
   ``prediction.json`` -- the largest size's PU with its
   prediction interval, timestamped -- *before* the largest model is trained
   (a rerun keeps the first prediction);
4. train and score the largest size; compare observed with predicted;
5. the seed-distribution analysis (``analysis.seeds``);
6. ``report.md`` with PNG plots (:mod:`.report`).

With ``finetune=`` (``--finetune``) the finetuning leg
(:mod:`.finetune_leg`) runs between 3 and 4: the smaller checkpoints are
finetuned on D examples of the length-generalisation task, the emergence law
(Snell et al. 2024) is fitted and its few-shot emergence point ``E(D0)`` is
written to ``finetune_prediction.json``, also before the largest model is
trained; after 4 it is checked against the largest model's loss and
few-shot score.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from .ladder import (DEFAULT_SIZES, MANIFEST, Size, TrainSettings, count_parameters, is_trained, model_dir,
                     record_or_refuse, train_model, write_manifest)
from ..conventions.files import write_json_atomic
from ..conventions.console import quiet_upstream
from .forecast import fit_and_predict, per_model_pu, task_counts, task_observations
from .synthetic import TaskSpec

log = logging.getLogger(__name__)

CONFIG_FILE = "lab_config.json"
PREDICTION_FILE = "prediction.json"
OUTCOME_FILE = "outcome.json"
ALL_TASKS = ("lab_add", "lab_count", "lab_add_long", "lab_count_long")


@dataclasses.dataclass(frozen=True)
class LabConfig:
    """Everything that fixes a lab run's results (a rerun must match it)."""

    sizes: tuple[Size, ...] = DEFAULT_SIZES
    seeds: tuple[int, ...] = (0, 1, 2)
    train: TrainSettings = TrainSettings()
    tasks: tuple[str, ...] = ALL_TASKS
    primary_task: str = "lab_add"
    evaluator: str = "adaptive"  # or "cli"
    repeats: int = 32  # cli: samples per instance
    r: int = 2  # adaptive: passes to reach
    cap: int = 512  # adaptive: samples per instance at most
    budget: int | None = 1024  # adaptive: samples per (model, task) at most
    eval_seed: int = 1234
    batch_size: int = 128
    cli_check: bool = True  # also score the held-out model through the lm_eval CLI

    def __post_init__(self):
        if len(self.sizes) < 3:
            raise ValueError("the lab needs at least 3 sizes: 2 to fit the law, the largest to predict")
        if len(set(s.name for s in self.sizes)) != len(self.sizes):
            raise ValueError("size names must be distinct")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError("give at least one seed, without repeats")
        unknown = [t for t in self.tasks if t not in ALL_TASKS]
        if unknown:
            raise ValueError(f"unknown lab task(s) {unknown}; choose from {ALL_TASKS}")
        if self.primary_task not in self.tasks:
            raise ValueError(f"the primary task {self.primary_task!r} must be one of the tasks {self.tasks}")
        if self.evaluator not in ("adaptive", "cli"):
            raise ValueError(f"evaluator must be 'adaptive' or 'cli', not {self.evaluator!r}")

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))


def quick_config() -> LabConfig:
    """The ``--quick`` ladder: 5 one-layer sizes (~1.2k to ~37k parameters,
    about 30x), 2 seeds, 200 steps, the two in-distribution tasks (16
    instances each) scored by the adaptive sampler with a small cap, and the
    held-out model also through the real ``lm_eval`` CLI. The primary task
    is counting: after 200 steps addition is mostly below what 16 samples
    per instance resolve."""
    sizes = (Size("q8", 8, 1, 2), Size("q12", 12, 1, 2), Size("q20", 20, 1, 2), Size("q32", 32, 1, 2),
             Size("q48", 48, 1, 4))
    return LabConfig(sizes=sizes, seeds=(0, 1),
                     train=TrainSettings(steps=200, warmup=20, checkpoint_every=100, spec=TaskSpec(n_test=16)),
                     tasks=("lab_count", "lab_add"), primary_task="lab_count", evaluator="adaptive", r=2,
                     cap=16, budget=None, repeats=16)


# ---------------------------------------------------------------- config, files

def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def check_config(out: Path, cfg: LabConfig) -> None:
    """Record the config; refuse to continue a directory made with another."""
    record_or_refuse(out / CONFIG_FILE, cfg.to_dict(), "a lab run")


# ---------------------------------------------------------------- stages

def _train_job(args) -> dict:
    root, size, seed, settings, device, threads = args
    import torch

    quiet_upstream()  # in a spawned worker too: transformers' save bar off in logs
    torch.set_num_threads(threads)
    return train_model(root, size, seed, settings, device=device, progress=True)


def train_stage(root: Path, sizes: Sequence[Size], cfg: LabConfig, *, device: str, workers: int) -> None:
    jobs = [(root, s, seed, cfg.train, device, max(1, (os.cpu_count() or 1) // workers))
            for s in sizes for seed in cfg.seeds if not is_trained(model_dir(root, s, seed))]
    if not jobs:
        return
    if workers <= 1 or len(jobs) == 1 or device != "cpu":
        for j in jobs:
            _train_job(j)
            write_manifest(root)
        return
    import multiprocessing as mp

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as ex:
        for _ in ex.map(_train_job, jobs):
            write_manifest(root)  # after each finished model, in order
    write_manifest(root)


def eval_stage(out: Path, sizes: Sequence[Size], cfg: LabConfig, *, device: str) -> None:
    """Score every (size, seed) not scored yet, one model after the other in
    this process (lm-eval and torch are imported once; on a small CPU the
    imports cost more than scoring a tiny model)."""
    from .evaluate import DONE, evaluate_adaptive, evaluate_cli

    root = out / "models"
    for s in sizes:
        for seed in cfg.seeds:
            m = model_dir(root, s, seed)
            e = out / "eval" / m.name
            if (e / DONE).is_file():
                continue
            if cfg.evaluator == "cli":
                evaluate_cli(m, e, cfg.tasks, cfg.train.spec, repeats=cfg.repeats, device=device,
                             batch_size=cfg.batch_size, seed=cfg.eval_seed)
            else:
                evaluate_adaptive(m, e, cfg.tasks, cfg.train.spec, r=cfg.r, cap=cfg.cap, budget=cfg.budget,
                                  device=device, batch_size=cfg.batch_size, seed=cfg.eval_seed)


def cli_check_stage(out: Path, largest: Size, cfg: LabConfig, *, device: str) -> dict:
    """Score the held-out largest model (first seed) once more through the
    real ``lm_eval`` command line, as any user would, with a fixed budget of
    ``repeats`` samples per instance: an independent measurement of the PU
    the adaptive sampler observed. Returns {task: {pu, n_samples, n_passed}}."""
    from .evaluate import evaluate_cli, newest_results

    m = model_dir(out / "models", largest, cfg.seeds[0])
    e = evaluate_cli(m, out / "eval_cli" / m.name, cfg.tasks, cfg.train.spec, repeats=cfg.repeats, device=device,
                     batch_size=cfg.batch_size, seed=cfg.eval_seed)
    res = newest_results(e)
    found = {}
    for task in cfg.tasks:
        r = res["results"].get(task)
        if r is None:
            raise RuntimeError(f"lm_eval CLI results in {e} lack task {task}")
        found[task] = {"pu": r["pu,passuntil"], "n_samples": r["n_samples,passuntil"],
                       "n_passed": r["n_passed,passuntil"], "model": str(m), "dir": str(e)}
    return found


def load_counts(out: Path, sizes: Sequence[Size], cfg: LabConfig) -> pd.DataFrame:
    """One row per (model, task, instance) with n, c, N, seed, size name."""
    from analysis.ingest import attach_sizes, read_instances, read_manifest

    from .evaluate import newest_outputs

    files = []
    for s in sizes:
        for seed in cfg.seeds:
            files += newest_outputs(out / "eval" / model_dir(out / "models", s, seed).name)
    if not files:
        raise FileNotFoundError(f"no evaluation outputs under {out / 'eval'}")
    inst = read_instances(files)
    man = read_manifest(out / "models" / MANIFEST)
    df = attach_sizes(inst, man)
    want = {str(model_dir(out / "models", s, seed)) for s in sizes for seed in cfg.seeds}
    missing = want - set(df["model"])
    if missing:
        raise ValueError(f"no evaluation results for {sorted(missing)} under {out / 'eval'}")
    return df[df["model"].isin(want)].reset_index(drop=True)


def prediction_stage(out: Path, df: pd.DataFrame, cfg: LabConfig, largest: Size) -> dict:
    """Write (once) the prediction for the largest size, before it is trained."""
    path = out / PREDICTION_FILE
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    root = out / "models"
    already = [str(model_dir(root, largest, s)) for s in cfg.seeds if is_trained(model_dir(root, largest, s))]
    n_target = float(count_parameters(largest, cfg.train.spec))
    tasks = {}
    for task in cfg.tasks:
        train = task_counts(df, task)
        try:
            fit, pred = fit_and_predict(train, n_target)
        except ValueError as exc:  # e.g. fewer than 2 sizes with data
            tasks[task] = {"error": str(exc)}
            continue
        tasks[task] = {"prediction": pred, "fit": fit.to_dict(),
                       "train_sizes": sorted(float(x) for x in train["N"].unique())}
    doc = {"written_at": _now(), "largest_size": dataclasses.asdict(largest), "N": n_target,
           "primary_task": cfg.primary_task, "seeds": list(cfg.seeds),
           "largest_models_existing_when_written": already,
           "note": "written before the largest size was trained" if not already else
                   "WARNING: some largest-size models existed when this was written",
           "tasks": tasks}
    write_json_atomic(path, doc)
    return doc


def outcome(df: pd.DataFrame, prediction: dict, cfg: LabConfig, n_largest: float) -> dict:
    """Observed vs predicted for each task.  The observation is the mean PU
    over the largest size's seeds; the interval as written is for one new
    model (between-model scatter included), so it is conservative for a
    mean of seeds.  The refit on the same smaller sizes reproduces the
    stored prediction; ``*_with_obs_noise`` recomputes its interval for the
    sampling budget the held-out models actually drew."""
    res = {}
    for task in cfg.tasks:
        entry = prediction["tasks"].get(task, {})
        d = task_counts(df, task)
        held = d[np.isclose(d["N"], n_largest)]
        train = d[~np.isclose(d["N"], n_largest)]
        obs = task_observations(held)
        pu = float(obs["p"].mean())
        se = float(np.sqrt(obs["var_p"].sum()) / len(obs))
        row = {"observed": pu, "observed_se": se, "observed_per_model": dict(zip(obs["model"], obs["p"].astype(float)))}
        if "prediction" in entry:
            p = entry["prediction"]
            _, full = fit_and_predict(train, n_largest, budget=float(obs["budget"].mean()))
            row.update({"predicted": p["pu"], "lower": p["lower"], "upper": p["upper"],
                        "verdict": p.get("verdict"),
                        "lower_with_obs_noise": full["lower"], "upper_with_obs_noise": full["upper"],
                        "inside": bool(p["lower"] <= pu <= p["upper"]),
                        "inside_with_obs_noise": bool(full["lower"] <= pu <= full["upper"]),
                        "ratio_observed_to_predicted": float(pu / p["pu"]) if p["pu"] > 0 else None})
        else:
            row["error"] = entry.get("error", "no prediction")
        res[task] = row
    return res


def seed_stage(models: pd.DataFrame, cfg: LabConfig) -> dict:
    """Run analysis.seeds over the per-model PU of every task."""
    from analysis.seeds.distributions import seed_distributions

    out = {"tasks": {}}
    for task in cfg.tasks:
        d = models[models["task"] == task][["N", "seed", "value"]]
        try:
            res = seed_distributions(d, value="value", size="N", seed="seed")
        except (ValueError, TypeError) as exc:
            out["tasks"][task] = {"error": str(exc)}
            continue
        out["tasks"][task] = {"result": res}
    return out


# ---------------------------------------------------------------- the whole run

def run_lab(out: str | os.PathLike, cfg: LabConfig = LabConfig(), *, device: str = "cpu", workers: int = 2,
            finetune=None) -> dict:
    """Run (or continue) the lab in ``out``; returns the outcome dict also
    written to ``out/outcome.json``, and writes ``out/report.md``.
    ``finetune``: a :class:`~.finetune_leg.FinetuneLegConfig` to run the
    finetuning leg too (None: the lab without it)."""
    from .report import write_report

    quiet_upstream()  # upstream bars off in logs; lm-eval's per-task-load warning once
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    check_config(out, cfg)
    if finetune is not None:
        from . import finetune_leg

        finetune.base_seeds(cfg.seeds)  # unknown seeds: fail before any work
        finetune_leg.check_leg_config(out, finetune)
    root = out / "models"
    small, largest = list(cfg.sizes[:-1]), cfg.sizes[-1]
    timings = {}

    def stamp(name):
        timings[name] = _now()

    stamp("start")
    print(f"[lab] 1/5 training {len(small)} sizes x {len(cfg.seeds)} seeds (all but the largest)", flush=True)
    train_stage(root, small, cfg, device=device, workers=workers)
    print(f"[lab] 2/5 scoring them with the {cfg.evaluator} evaluator", flush=True)
    eval_stage(out, small, cfg, device=device)
    df_small = load_counts(out, small, cfg)
    prediction = prediction_stage(out, df_small, cfg, largest)
    p = prediction["tasks"].get(cfg.primary_task, {}).get("prediction")
    if p:
        print(f"[lab] 3/5 predicted {cfg.primary_task} PU of {largest.name} (N={prediction['N']:.0f}) before "
              f"training it: {p['pu']:.4g} [{p['lower']:.4g}, {p['upper']:.4g}] -> {out / PREDICTION_FILE}",
              flush=True)
    ft_prediction = None
    if finetune is not None:
        print(f"[lab] 3/5 finetuning leg: the smaller checkpoints finetuned on D = "
              f"{', '.join(str(d) for d in sorted(set(finetune.Ds)))} examples of {finetune.task}", flush=True)
        stamp("finetune_leg_start")
        ft_prediction = finetune_leg.before_largest(out, cfg, finetune, device=device, workers=workers)
        stamp("finetune_leg_done")
        e = ft_prediction.get("few_shot_emergence") or {}
        print(f"[lab]     predicted few-shot emergence of {finetune.task}: E(D0={ft_prediction['d0']:.3g}) = "
              f"{_fmt_e(e)} nats; verdict: {ft_prediction.get('verdict')} -> {out / finetune_leg.PREDICTION_FILE}",
              flush=True)
    print(f"[lab] 4/5 training and scoring the largest size {largest.name}", flush=True)
    train_stage(root, [largest], cfg, device=device, workers=workers)
    eval_stage(out, [largest], cfg, device=device)
    cli = {}
    if cfg.cli_check:
        print(f"[lab]     and once more through the lm_eval CLI ({cfg.repeats} samples per instance)", flush=True)
        cli = cli_check_stage(out, largest, cfg, device=device)
    stamp("largest_done")
    df = load_counts(out, cfg.sizes, cfg)
    n_largest = float(df.loc[df["model"].str.endswith(f"/{largest.name}-s{cfg.seeds[0]}"), "N"].iloc[0])
    if not np.isclose(n_largest, prediction["N"]):
        raise RuntimeError(f"the largest model has N={n_largest}, the prediction was made for {prediction['N']}")
    result = outcome(df, prediction, cfg, n_largest)
    models = per_model_pu(df)
    seeds = seed_stage(models, cfg)
    print("[lab] 5/5 report", flush=True)
    doc = {"primary_task": cfg.primary_task, "largest": largest.name, "N_largest": n_largest,
           "prediction_written_at": prediction["written_at"], "tasks": result, "lm_eval_cli": cli,
           "this_invocation": timings}
    ft = None
    if finetune is not None:
        ft = finetune_leg.after_largest(out, cfg, finetune, ft_prediction, doc)
        doc["finetune"] = {k: v for k, v in ft.items() if not k.startswith("_")}
        _print_finetune_check(ft)
    write_json_atomic(out / OUTCOME_FILE, doc)
    models.to_csv(out / "per_model_pu.csv", index=False)
    report = write_report(out, cfg, df, models, prediction, doc, seeds,
                          finetune=None if ft is None else (finetune, ft_prediction, ft))
    r = result.get(cfg.primary_task, {})
    if "predicted" in r:
        print(f"[lab] {cfg.primary_task}: predicted {r['predicted']:.4g} [{r['lower']:.4g}, {r['upper']:.4g}], "
              f"observed {r['observed']:.4g} ({'inside' if r['inside'] else 'OUTSIDE'} the interval)", flush=True)
    print(f"[lab] report: {report}", flush=True)
    return doc


def _fmt_e(e: dict) -> str:
    if not e or e.get("E") is None:
        return "none"
    if e.get("lower") is None:
        return f"{e['E']:.4g}"
    return f"{e['E']:.4g} [{e['lower']:.4g}, {e['upper']:.4g}]"


def _print_finetune_check(ft: dict) -> None:
    for r in ft["per_seed"]:
        print(f"[lab]     {r['checkpoint']}: L = {r['L']:.4g} vs predicted E(D0) = {_fmt_e(ft)}: predicted "
              f"{r['predicted']}; few-shot accuracy {r['c']}/{r['n']} -> observed {r['observed']}", flush=True)
