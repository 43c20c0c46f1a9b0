"""``python -m lm_eval_ext.lab [--quick] --out DIR [knobs]``: see lm_eval_ext.lab.pipeline."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str] | None = None) -> int:
    from .ladder import parse_sizes
    from .pipeline import ALL_TASKS, LabConfig, quick_config, run_lab

    p = argparse.ArgumentParser(prog="python -m lm_eval_ext.lab", description=(
        "Train a ladder of tiny transformers on synthetic tasks, predict the largest one's PassUntil PU "
        "before training it, then train it and compare; writes DIR/report.md. Rerun to continue."))
    p.add_argument("--out", required=True, help="output directory (rerun with the same to resume)")
    p.add_argument("--quick", action="store_true",
                   help="a small ladder (5 one-layer sizes x 2 seeds, 200 steps; about 3 minutes on 2 CPU cores)")
    p.add_argument("--sizes", help="WIDTHxLAYERS[xHEADS],... smallest to largest (largest is predicted), "
                   "e.g. 12x1,20x1,32x2,48x2,64x2")
    p.add_argument("--seeds", type=int, help="number of seeds per size (0..K-1)")
    p.add_argument("--steps", type=int, help="training steps per model")
    p.add_argument("--batch_size", type=int, help="training batch size")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--lr_width_ref", type=int, help="scale the peak lr by min(1, REF / width) (muP-style)")
    p.add_argument("--tasks", help=f"comma-separated, from {','.join(ALL_TASKS)}")
    p.add_argument("--task", help="the primary task (the headline prediction)")
    p.add_argument("--evaluator", choices=["adaptive", "cli"],
                   help="adaptive sample-until-r-passes (default) or the lm_eval CLI with fixed repeats")
    p.add_argument("--r", type=int, help="adaptive: passes per instance")
    p.add_argument("--cap", type=int, help="adaptive: samples per instance at most")
    p.add_argument("--budget", type=int, help="adaptive: samples per (model, task) at most (0: none)")
    p.add_argument("--repeats", type=int, help="cli: samples per instance")
    p.add_argument("--max_digits", type=int, help="addition operands in training: 1..D digits")
    p.add_argument("--max_len", type=int, help="counting strings in training: length 1..L")
    p.add_argument("--n_test", type=int, help="instances per test set")
    p.add_argument("--no_cli_check", action="store_true",
                   help="do not also score the held-out model through the lm_eval CLI")
    g = p.add_argument_group("finetuning leg (--finetune): predict few-shot emergence of the long task by "
                             "finetuning the smaller checkpoints (Snell et al. 2024)")
    g.add_argument("--finetune", action="store_true",
                   help="after the smaller sizes, finetune them on D examples of --ft_task, fit the emergence law "
                   "and write finetune_prediction.json (E(D0)) before the largest size is trained")
    g.add_argument("--ft_task", help="the task to finetune on (default lab_add_long)")
    g.add_argument("--ft_calibration_task",
                   help="task D0 is calibrated on, one that emerges few-shot (default lab_add; 'none': fixed D0)")
    g.add_argument("--ft_D", help="comma-separated D values (>= 3; default 64,256,1024,4096)")
    g.add_argument("--ft_seeds", help="ladder seeds whose checkpoints are finetuned, comma-separated or 'all' "
                   "(default: the first seed)")
    g.add_argument("--ft_lr", type=float, help="finetuning learning rate (default 1e-3)")
    g.add_argument("--ft_epochs", type=float, help="epochs over the D examples (default 10)")
    g.add_argument("--ft_min_steps", type=int, help="optimiser steps at least (default 50)")
    g.add_argument("--ft_batch_size", type=int, help="finetuning batch size (default 32)")
    g.add_argument("--ft_n_eval", type=int, help="items each model is scored on (default 256)")
    g.add_argument("--ft_d0", type=float, help="a fixed D0 (>= 1) instead of the calibration")
    g.add_argument("--ft_boot", type=int, help="bootstrap refits of the law (default 200)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:0, mps")
    p.add_argument("--workers", type=int, default=2, help="models trained / scored in parallel on CPU")
    a = p.parse_args(argv)

    cfg = quick_config() if a.quick else LabConfig()
    train, spec = cfg.train, cfg.train.spec
    if a.max_digits or a.max_len or a.n_test:
        spec = dataclasses.replace(spec, **{k: v for k, v in (("max_digits", a.max_digits), ("max_len", a.max_len),
                                                             ("n_test", a.n_test)) if v})
    train = dataclasses.replace(train, spec=spec, **{k: v for k, v in (("steps", a.steps), ("batch_size", a.batch_size),
                                                                       ("lr", a.lr), ("lr_width_ref", a.lr_width_ref)) if v})
    changes = {"train": train}
    if a.sizes:
        try:
            changes["sizes"] = tuple(parse_sizes(a.sizes))
        except ValueError as exc:
            p.error(str(exc))
    if a.seeds:
        changes["seeds"] = tuple(range(a.seeds))
    if a.tasks:
        changes["tasks"] = tuple(t.strip() for t in a.tasks.split(",") if t.strip())
    if a.task:
        changes["primary_task"] = a.task
    for k in ("evaluator", "r", "cap", "repeats"):
        if getattr(a, k) is not None:
            changes[k] = getattr(a, k)
    if a.no_cli_check:
        changes["cli_check"] = False
    if a.budget is not None:
        changes["budget"] = a.budget or None
    try:
        cfg = dataclasses.replace(cfg, **changes)
        leg = finetune_config(a, cfg) if a.finetune else None
        t0 = time.time()
        run_lab(a.out, cfg, device=a.device, workers=a.workers, finetune=leg)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"[lab] done in {time.time() - t0:.0f} s", flush=True)
    return 0


def finetune_config(a, cfg):
    """The finetuning leg's settings from the ``--ft_*`` options."""
    from .finetune_leg import FinetuneLegConfig, quick_leg_config

    leg = quick_leg_config() if a.quick else FinetuneLegConfig()
    ch = {}
    if a.ft_task:
        ch["task"] = a.ft_task
    if a.ft_calibration_task:
        ch["calibration_task"] = None if a.ft_calibration_task.lower() == "none" else a.ft_calibration_task
    if a.ft_D:
        try:
            ch["Ds"] = tuple(sorted({int(x) for x in a.ft_D.split(",") if x.strip()}))
        except ValueError:
            raise ValueError(f"--ft_D: {a.ft_D!r} is not a comma-separated list of integers") from None
    if a.ft_seeds:
        if a.ft_seeds.strip().lower() == "all":
            ch["seeds"] = tuple(cfg.seeds)
        else:
            try:
                ch["seeds"] = tuple(int(x) for x in a.ft_seeds.split(",") if x.strip())
            except ValueError:
                raise ValueError(f"--ft_seeds: {a.ft_seeds!r} is not 'all' or a list of seeds") from None
    for opt, key in (("ft_lr", "lr"), ("ft_epochs", "epochs"), ("ft_min_steps", "min_steps"),
                     ("ft_batch_size", "batch_size"), ("ft_n_eval", "n_eval"), ("ft_d0", "d0"),
                     ("ft_boot", "n_boot")):
        if getattr(a, opt) is not None:
            ch[key] = getattr(a, opt)
    leg = dataclasses.replace(leg, **ch)
    leg.base_seeds(cfg.seeds)
    return leg


if __name__ == "__main__":
    sys.exit(main())
