"""``python -m lm_eval_ext.lab [--quick] --output_path DIR [knobs]``: see lm_eval_ext.lab.pipeline."""

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

DESCRIPTION = """\
Train a ladder of tiny transformers on synthetic tasks, predict the largest
one's PassUntil PU before training it, then train it and compare; writes
OUTPUT_PATH/report.md. Rerun with the same --output_path to continue.
"""

EPILOG = """\
Flags follow lm-eval's conventions, as in lm-eval-ext and python -m analysis:
snake_case names, --output_path for the output directory, comma-separated
lists (--tasks lab_add,lab_count). Earlier spellings still accepted: --out,
--ft_D, --batch_size (now --train_batch_size); --seeds is now --n_seeds.
"""

#: old spelling -> the flag it now spells (shown in help as an alias).
BACKWARD_COMPATIBLE_ALIASES = {"--out": "--output_path", "--ft_D": "--ft_train_sizes"}

#: old spellings still accepted but hidden: the name is another command's
#: flag with another meaning (lm-eval's --batch_size is the evaluation's).
LEGACY_ALIASES = {"--batch_size": "--train_batch_size"}

#: removed flags: an error naming the new flag (finetune-sweep --seeds is a
#: list of seed values, the lab's was a count).
RENAMED_FLAGS = {"--seeds": "--n_seeds"}


def _default(full, quick=None) -> str:
    """The help's default: the full run's, and --quick's where it differs."""
    from ..conventions.flags import format_default

    f = format_default(full)
    q = f if quick is None else format_default(quick)
    return f"(default: {f})" if f == q else f"(default: {f}; with --quick: {q})"


def build_parser() -> argparse.ArgumentParser:
    """The parser of python -m lm_eval_ext.lab."""
    from ..conventions.flags import (HelpFormatter, RenamedFlag, add_legacy_alias, add_list_argument,
                                   add_output_path)
    from .finetune_leg import FinetuneLegConfig, quick_leg_config
    from .pipeline import ALL_TASKS, LabConfig, quick_config

    full, quick = LabConfig(), quick_config()
    leg, qleg = FinetuneLegConfig(), quick_leg_config()

    def sizes(cfg):
        return [f"{s.d_model}x{s.n_layer}x{s.n_head}" for s in cfg.sizes]

    p = argparse.ArgumentParser(prog="python -m lm_eval_ext.lab", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=HelpFormatter)
    add_output_path(p, None, "output directory (rerun with the same to resume)", required=True)
    p.add_argument("--quick", action="store_true",
                   help="a small ladder (5 one-layer sizes x 2 seeds, 200 steps; about 3 minutes on 2 CPU cores)")
    add_list_argument(p, "--sizes", metavar="SIZE",
                      help="WIDTHxLAYERS[xHEADS] sizes, smallest to largest (the largest is predicted) "
                           + _default(sizes(full), sizes(quick)))
    p.add_argument("--n_seeds", type=int, metavar="K",
                   help="seeds per size (0..K-1) " + _default(len(full.seeds), len(quick.seeds)))
    for old, new in RENAMED_FLAGS.items():
        p.add_argument(old, action=RenamedFlag, new=new)
    p.add_argument("--steps", type=int,
                   help="training steps per model " + _default(full.train.steps, quick.train.steps))
    batch = p.add_argument("--train_batch_size", type=int,
                           help="training batch size " + _default(full.train.batch_size, quick.train.batch_size))
    for old in LEGACY_ALIASES:
        add_legacy_alias(p, old, batch)
    p.add_argument("--lr", type=float, help="peak learning rate " + _default(full.train.lr, quick.train.lr))
    p.add_argument("--lr_width_ref", type=int, metavar="REF",
                   help="scale the peak lr by min(1, REF / width) (muP-style) (default: off)")
    add_list_argument(p, "--tasks", metavar="TASK",
                      help=f"tasks, from {','.join(ALL_TASKS)} " + _default(full.tasks, quick.tasks))
    p.add_argument("--task", help="the primary task (the headline prediction) "
                   + _default(full.primary_task, quick.primary_task))
    p.add_argument("--evaluator", choices=["adaptive", "cli"],
                   help="adaptive sample-until-r-passes or the lm_eval CLI with fixed repeats "
                   + _default(full.evaluator, quick.evaluator))
    p.add_argument("--r", type=int, help="adaptive: passes per instance " + _default(full.r, quick.r))
    p.add_argument("--cap", type=int, help="adaptive: samples per instance at most " + _default(full.cap, quick.cap))
    p.add_argument("--budget", type=int, help="adaptive: samples per (model, task) at most (0: none) "
                   + _default(full.budget or 0, quick.budget or 0))
    p.add_argument("--repeats", type=int, help="cli: samples per instance " + _default(full.repeats, quick.repeats))
    p.add_argument("--max_digits", type=int, help="addition operands in training: 1..D digits "
                   + _default(full.train.spec.max_digits, quick.train.spec.max_digits))
    p.add_argument("--max_len", type=int, help="counting strings in training: length 1..L "
                   + _default(full.train.spec.max_len, quick.train.spec.max_len))
    p.add_argument("--n_test", type=int, help="instances per test set "
                   + _default(full.train.spec.n_test, quick.train.spec.n_test))
    p.add_argument("--no_cli_check", action="store_true",
                   help="do not also score the held-out model through the lm_eval CLI")
    g = p.add_argument_group("finetuning leg (--finetune): predict few-shot emergence of the long task by "
                             "finetuning the smaller checkpoints (Snell et al. 2024)")
    g.add_argument("--finetune", action="store_true",
                   help="after the smaller sizes, finetune them on N examples of --ft_task, fit the emergence law "
                   "and write finetune_prediction.json (E(D0)) before the largest size is trained")
    g.add_argument("--ft_task", help="the task to finetune on " + _default(leg.task, qleg.task))
    g.add_argument("--ft_calibration_task",
                   help="task D0 is calibrated on, one that emerges few-shot ('none': fixed D0) "
                   + _default(leg.calibration_task, qleg.calibration_task))
    add_list_argument(g, "--ft_train_sizes", "--ft_D", item_type=int, metavar="N",
                      help="numbers of finetuning examples, each >= 3 " + _default(leg.Ds, qleg.Ds))
    add_list_argument(g, "--ft_seeds", metavar="SEED",
                      help="ladder seeds whose checkpoints are finetuned, or 'all' (default: the first seed)")
    g.add_argument("--ft_lr", type=float, help="finetuning learning rate " + _default(leg.lr, qleg.lr))
    g.add_argument("--ft_epochs", type=float,
                   help="epochs over the N examples " + _default(leg.epochs, qleg.epochs))
    g.add_argument("--ft_min_steps", type=int,
                   help="optimiser steps at least " + _default(leg.min_steps, qleg.min_steps))
    g.add_argument("--ft_batch_size", type=int,
                   help="finetuning batch size " + _default(leg.batch_size, qleg.batch_size))
    g.add_argument("--ft_n_eval", type=int, help="items each model is scored on " + _default(leg.n_eval, qleg.n_eval))
    g.add_argument("--ft_d0", type=float, help="a fixed D0 (>= 1) instead of the calibration")
    g.add_argument("--ft_boot", type=int, help="bootstrap refits of the law " + _default(leg.n_boot, qleg.n_boot))
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:0, mps")
    p.add_argument("--workers", type=int, default=2, help="models trained / scored in parallel on CPU")
    return p


def main(argv: list[str] | None = None) -> int:
    from .ladder import parse_sizes
    from .pipeline import LabConfig, quick_config, run_lab

    p = build_parser()
    a = p.parse_args(argv)

    cfg = quick_config() if a.quick else LabConfig()
    train, spec = cfg.train, cfg.train.spec
    if a.max_digits or a.max_len or a.n_test:
        spec = dataclasses.replace(spec, **{k: v for k, v in (("max_digits", a.max_digits), ("max_len", a.max_len),
                                                             ("n_test", a.n_test)) if v})
    train = dataclasses.replace(train, spec=spec, **{k: v for k, v in (("steps", a.steps),
                                                                       ("batch_size", a.train_batch_size),
                                                                       ("lr", a.lr), ("lr_width_ref", a.lr_width_ref)) if v})
    changes = {"train": train}
    if a.sizes:
        try:
            changes["sizes"] = tuple(parse_sizes(",".join(a.sizes)))
        except ValueError as exc:
            p.error(str(exc))
    if a.n_seeds:
        changes["seeds"] = tuple(range(a.n_seeds))
    if a.tasks:
        changes["tasks"] = tuple(a.tasks)
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
        run_lab(a.output_path, cfg, device=a.device, workers=a.workers, finetune=leg)
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
    if a.ft_train_sizes:
        ch["Ds"] = tuple(sorted(set(a.ft_train_sizes)))
    if a.ft_seeds:
        if [s.strip().lower() for s in a.ft_seeds] == ["all"]:
            ch["seeds"] = tuple(cfg.seeds)
        else:
            try:
                ch["seeds"] = tuple(int(x) for x in a.ft_seeds)
            except ValueError:
                raise ValueError(f"--ft_seeds: {','.join(a.ft_seeds)!r} is not 'all' or a list of seeds") from None
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
