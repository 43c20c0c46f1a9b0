"""Command line: ``lm-eval-ext`` or ``python -m lm_eval_ext``.

    task-dir        print the directory to pass to lm_eval --include_path
    sandbox-info    say what isolation the code-execution sandbox has here
    check           score human-eval-format samples (task_id, completion)
    passuntil       sample tasks adaptively until every instance passes r times
    finetune        finetune a checkpoint on --train_size examples of an emergence task
    finetune-sweep  finetune checkpoints x --train_sizes (resumable) and write the manifest
    lm-eval ARGS    the lm_eval command line, with this package's components
                    registered first (e.g. --model hf-shared-prefix)

Flags follow lm-eval's conventions, as in python -m analysis and
python -m lm_eval_ext.lab: snake_case names, --output_path for the output,
--seed for one seed, comma-separated lists (--train_sizes 10,100,1000).
Earlier spellings still accepted: --out (now --output_path), and in
finetune(-sweep) --D (now --train_size / --train_sizes) and --batch_size
(now --train_batch_size).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

from .conventions.flags import (HelpFormatter, add_command, add_legacy_alias, add_list_argument, add_output_path,
                              plain)

#: old spelling -> the flag it now spells (shown in help as an alias), per command.
BACKWARD_COMPATIBLE_ALIASES = {"--out": "--output_path"}

#: old spellings still accepted but hidden, per command: the name stood for
#: another setting in another command, so it is no flag of the vocabulary.
LEGACY_ALIASES = {
    "finetune": {"--D": "--train_size", "--batch_size": "--train_batch_size"},
    "finetune-sweep": {"--D": "--train_sizes", "--batch_size": "--train_batch_size"},
}

#: removed flags: an error naming the new flag (none in lm-eval-ext so far).
RENAMED_FLAGS: dict[str, dict[str, str]] = {}


def _cmd_task_dir(args) -> int:
    from . import task_dir

    print(task_dir())
    return 0


def _cmd_sandbox_info(args) -> int:
    from .execution.sandbox import isolation

    iso = isolation()
    print(iso.describe())
    if iso.note:
        print("note:", iso.note)
    return 0 if iso.strong else 1


def _input_error(message: str) -> int:
    """Report bad input as one line on stderr; the exit status of bad input."""
    print(" ".join(str(message).split("\n")), file=sys.stderr)
    return 2


def _read_samples(path: Path) -> list[tuple[int, dict]]:
    """(1-based line, sample) for every sample; ValueError("FILE:LINE: ...")
    (FileNotFoundError for a missing file) for anything malformed."""
    from .conventions.jsonl import iter_jsonl, json_type

    rows = []
    for lineno, row in iter_jsonl(path, unique_keys=True):
        where = f"{path}:{lineno}"
        if not isinstance(row, dict):
            raise ValueError(f"{where}: expected a JSON object with task_id and completion, got {json_type(row)}")
        for key in ("task_id", "completion"):
            if key not in row:
                raise ValueError(f"{where}: no {key} (a sample needs string fields task_id and completion)")
            if not isinstance(row[key], str):
                raise ValueError(f"{where}: {key} must be a string, not {json_type(row[key])}")
        rows.append((lineno, row))
    if not rows:
        raise ValueError(f"{path}: no samples")
    return rows


def _same_file(a, b) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, RuntimeError):
        return False


def _cmd_check(args) -> int:
    """Exit status: 0 scored, 1 the sandbox failed some programs, 2 bad input
    (one line on stderr naming the file and line), 130 interrupted."""
    if not args.confirm_run_unsafe_code:
        print("This executes model-written code. It runs in a sandbox (see `lm-eval-ext sandbox-info`),\n"
              "but you must confirm it, as with lm_eval: add --confirm_run_unsafe_code.", file=sys.stderr)
        return 2
    from .execution.checker import VerdictCache, check_samples
    from .execution.sandbox import Limits
    from .tasks.humaneval import load_problems
    from .passuntil.stats import estimate_instance, pass_at_k

    samples_path = Path(args.samples)
    out = Path(args.output_path) if args.output_path else samples_path.with_name(samples_path.name + "_results.jsonl")
    if _same_file(out, samples_path):
        return _input_error(f"{out}: the output would overwrite the samples: give another --output_path")
    if not out.parent.is_dir():
        return _input_error(f"{out}: cannot write the output: no directory {out.parent}")
    if out.is_dir():  # before any program runs (open() below would say so only after all ran)
        return _input_error(f"{out}: cannot write the output (Is a directory)")
    if args.cache and any(_same_file(args.cache, p) for p in (samples_path, out, args.problems)):
        return _input_error(f"{args.cache}: --cache must be a file of its own (verdicts are appended to it)")
    try:
        numbered = _read_samples(samples_path)
    except FileNotFoundError:
        return _input_error(f"{samples_path}: {'not a file' if samples_path.exists() else 'file not found'}")
    except ValueError as exc:
        return _input_error(str(exc))
    try:
        problems, origin = load_problems(args.problems)
    except FileNotFoundError:
        return _input_error(f"{args.problems}: file not found (--problems takes human-eval, hub or a "
                            f"JSONL(.gz) file)")
    except ValueError as exc:  # FILE:LINE: what is wrong
        return _input_error(str(exc))
    except Exception as exc:  # noqa: BLE001 - human-eval not installed, the hub unreachable, ...
        if not isinstance(exc, (RuntimeError, OSError)) and args.problems not in ("hub", "auto"):
            raise
        return _input_error(f"--problems {args.problems}: {type(exc).__name__}: {exc}")
    by_id = {p["task_id"]: p for p in problems}
    for lineno, s in numbered:
        if s["task_id"] not in by_id:
            import difflib

            close = difflib.get_close_matches(s["task_id"], list(by_id), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            return _input_error(f"{samples_path}:{lineno}: task_id {s['task_id']!r} is not among the "
                                f"{len(by_id)} problems of {origin}{hint}")
    samples = [s for _, s in numbered]
    try:
        cache = VerdictCache(args.cache) if args.cache else None
    except OSError as exc:
        return _input_error(f"{args.cache}: cannot use as the verdict cache ({exc.strerror or exc})")
    try:
        results = check_samples(by_id, samples, limits=Limits(timeout=args.timeout), workers=args.workers,
                                cache=cache, progress="check")
    except KeyboardInterrupt:
        if cache is not None:
            print(f"\ninterrupted: {len(cache)} verdicts are kept in {args.cache}; "
                  f"rerun the same command to resume", file=sys.stderr)
        else:
            print("\ninterrupted; nothing was kept: add --cache FILE to make a check resumable", file=sys.stderr)
        return 130
    finally:
        if cache is not None:
            cache.close()
    try:
        with open(out, "w", encoding="utf-8") as f:
            for r in results:
                f.write(json.dumps(r) + "\n")
    except OSError as exc:
        return _input_error(f"{out}: cannot write the output ({exc.strerror or exc})")
    # Per-problem summary: n, c, PU with its interval, pass@1.
    counts: dict[str, list[int]] = {}
    statuses: dict[str, int] = {}
    for r in results:
        nc = counts.setdefault(r["task_id"], [0, 0])
        nc[0] += 1
        nc[1] += r["passed"]
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    pus = [c / n for n, c in counts.values()]
    print(f"problems from {origin}")
    print(f"{len(results)} samples of {len(counts)} problems -> {out}")
    print("statuses: " + ", ".join(f"{k}={v}" for k, v in sorted(statuses.items())))
    print(f"mean PU over problems: {sum(pus) / len(pus):.6f}")
    if statuses.get("sandbox_error"):
        print(f"error: the sandbox could not run {statuses['sandbox_error']} samples (status sandbox_error): "
              "their verdicts say nothing about the model", file=sys.stderr)
        return 1
    if args.verbose:
        for tid, (n, c) in counts.items():
            e = estimate_instance(n, c)
            print(f"  {tid}: n={n} c={c} pass@1={float(pass_at_k(n, c, 1)):.4f} "
                  f"CI=[{e.lower:.4g}, {e.upper:.4g}]{' censored' if e.censored else ''}")
    return 0


def _cmd_passuntil(args) -> int:
    from .sampling.adaptive import StopRule
    from .sampling.runner import run_adaptive

    try:
        rule = StopRule(r=args.r, cap=args.cap, first=args.first, growth=args.growth,
                        rel_precision=args.rel_precision, budget=args.budget)
        metadata = json.loads(args.metadata) if args.metadata else None
        ks = list(args.pass_at_k)
    except (ValueError, json.JSONDecodeError) as exc:
        raise SystemExit(f"error: {exc}")
    tasks = list(dict.fromkeys(t for t in args.tasks if t))
    if not tasks:
        raise SystemExit("error: --tasks: no task given")
    include = args.include_path
    if include is None and any(t.startswith("passuntil_") for t in tasks):
        from . import task_dir

        include = str(task_dir())
    model_args = ",".join(a for a in args.model_args if a) if args.model_args else ""
    gen_kwargs = ",".join(args.gen_kwargs) if args.gen_kwargs else None
    try:
        res = run_adaptive(tasks, args.model, model_args, output_path=args.output_path, rule=rule,
                           seed=args.seed, include_path=include, limit=args.limit, metadata=metadata,
                           gen_kwargs=gen_kwargs, batch_size=args.batch_size, device=args.device,
                           chunk_samples=args.chunk_samples, ks=ks,
                           confirm_run_unsafe_code=args.confirm_run_unsafe_code,
                           shared_prefix=not args.no_shared_prefix, num_fewshot=args.num_fewshot,
                           apply_chat_template=args.apply_chat_template,
                           system_instruction=args.system_instruction,
                           fewshot_as_multiturn=args.fewshot_as_multiturn, log_samples=args.log_samples,
                           overlap=False if args.no_overlap else None, check_workers=args.check_workers)
    except ValueError as exc:  # SettingsMismatch, unknown task, bad task config
        raise SystemExit(f"error: {exc}")
    from lm_eval.utils import make_table

    # as lm_eval run prints its results
    print(f"{args.model} ({model_args}), gen_kwargs: ({gen_kwargs}), limit: {args.limit}, "
          f"num_fewshot: {args.num_fewshot}, batch_size: {args.batch_size}")
    print(make_table(res))
    return 0


def _seed(value: str) -> int:
    """One integer seed (a clear error for lm-eval's list of four)."""
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r}: the engine takes one integer seed (every lm-eval call's seeds are derived from it "
            "and the call's round and chunk), not lm-eval's list of four") from None


def _limit(value: str) -> int | float:
    """lm-eval's --limit: a count, or a fraction of the documents when < 1."""
    x = float(value)
    if not (x > 0 and math.isfinite(x)):
        raise argparse.ArgumentTypeError(f"{value!r}: expected a count or a fraction > 0")
    return int(x) if x >= 1 and x == int(x) else x


def _batch_size(value: str) -> int | str:
    """lm-eval's --batch_size: an integer, 'auto' or 'auto:N'."""
    return int(value) if value.isdigit() else value


def _bool_flag(value: str) -> bool:
    return value.lower() in ("true", "1", "yes")


def _add_passuntil_args(a) -> None:
    """The engine's flags: lm-eval's own (same names, short forms and meaning as
    ``lm_eval run``) and the sampling rule's."""
    a.add_argument("--model", "-M", default="hf", help="lm-eval model backend (hf, vllm, local-completions, ...)")
    a.add_argument("--model_args", "-a", nargs="+", default=None,
                   help="as for lm_eval: pretrained=DIR,dtype=float32 or pretrained=DIR dtype=float32")
    add_list_argument(a, "--tasks", "-t", extend=True, required=True, metavar="TASK",
                      help="generate_until tasks with a pass/fail filter, comma- or space-separated (as lm_eval "
                           "--tasks; repeat to add); run one after the other, one results file for all")
    a.add_argument("--include_path", default=None, help="task directory (default: this package's for passuntil_*)")
    a.add_argument("--output_path", "-o", required=True,
                   help="directory: results in OUTPUT_PATH/<model_name_sanitized>/ as lm-eval writes them "
                        "(the resumable state in .passuntil_state/ there)")
    a.add_argument("--log_samples", "-s", action="store_true",
                   help="also write samples_<task>_<date>.jsonl (per instance counts, estimates, completions)")
    a.add_argument("--num_fewshot", "-f", type=int, default=None, help="as lm_eval --num_fewshot")
    a.add_argument("--apply_chat_template", nargs="?", const=True, default=False, metavar="TEMPLATE",
                   help="as lm_eval --apply_chat_template (optionally a template name)")
    a.add_argument("--fewshot_as_multiturn", type=_bool_flag, nargs="?", const=True, default=None,
                   help="as lm_eval (default: on with --apply_chat_template)")
    a.add_argument("--system_instruction", default=None, help="as lm_eval --system_instruction")
    a.add_argument("--r", type=int, default=2, help="stop an instance at r passes")
    a.add_argument("--cap", type=int, default=10_000, help="most samples per instance")
    a.add_argument("--first", type=int, default=8, help="samples per instance in the first round")
    a.add_argument("--growth", type=float, default=2.0, help="per-round growth of the batch")
    a.add_argument("--rel_precision", type=float, default=None,
                   help="also stop an instance once its interval half-width is this fraction of its estimate")
    a.add_argument("--budget", type=int, default=None, help="total samples for each task")
    a.add_argument("--seed", type=_seed, default=1234, help="the run's seed (one integer)")
    a.add_argument("--limit", "-L", type=_limit, default=None,
                   help="only the first N instances (or a fraction < 1 of them), as lm_eval --limit")
    a.add_argument("--metadata", default=None, help="JSON passed to the task, as lm_eval --metadata")
    a.add_argument("--gen_kwargs", nargs="+", default=None, help="as lm_eval --gen_kwargs")
    a.add_argument("--batch_size", "-b", type=_batch_size, default=None, help="as lm_eval --batch_size")
    a.add_argument("--device", default=None, help="as lm_eval --device (cuda, cuda:0, cpu, mps)")
    a.add_argument("--chunk_samples", type=int, default=4096,
                   help="samples per lm-eval call, i.e. per checkpoint of the state")
    add_list_argument(a, "--pass_at_k", item_type=int, default=[1], metavar="K", help="k of the pass@k reported")
    a.add_argument("--check_workers", type=_positive_int, default=None, metavar="N",
                   help="processes that execute model-written code (default: every CPU); give the checker "
                        "the cores generation does not use")
    a.add_argument("--no_overlap", action="store_true",
                   help="score each chunk before generating the next (default: a chunk's code is executed "
                        "while the next chunk is generated; the outcomes are the same)")
    a.add_argument("--no_shared_prefix", action="store_true",
                   help="with --model hf, do not share the prompt's prefill across samples")
    a.add_argument("--confirm_run_unsafe_code", action="store_true",
                   help="as lm_eval: required by tasks that execute model-written code")


def _finetune_config(args, D: int, seed: int):
    from .finetune.train import FinetuneConfig

    target = tuple(args.lora_target) if args.lora_target else None
    return FinetuneConfig(task=args.task, D=D, seed=seed, sample=args.sample, lr=args.lr, steps=args.steps,
                          epochs=args.epochs, batch_size=args.train_batch_size, grad_accum=args.grad_accum,
                          weight_decay=args.weight_decay, warmup_ratio=args.warmup_ratio,
                          max_length=args.max_length, lora=args.lora, lora_r=args.lora_r,
                          lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout, lora_target=target)


def _cmd_finetune(args) -> int:
    from .finetune.train import finetune

    try:
        cfg = _finetune_config(args, args.train_size, args.seed)
        res = finetune(args.base, args.output_path, cfg, data_source=args.data, dtype=args.dtype)
    except (ValueError, RuntimeError, FileExistsError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}")
    print(f"wrote {res.out_dir}: {len(res.losses)} steps, answer-token loss "
          f"{res.losses[0]:.4f} -> {res.losses[-1]:.4f}")
    print(f"evaluate: lm_eval run --model hf --model_args pretrained={Path(res.out_dir).resolve()} "
          f"--tasks emergence_{cfg.task} --include_path {_emergence_dir()}")
    return 0


def _emergence_dir() -> Path:
    from . import task_dir

    return task_dir() / "emergence"


def _cmd_finetune_sweep(args) -> int:
    from .finetune.sweep import make_checkpoint, read_checkpoint_table, run_sweep

    try:
        cks = read_checkpoint_table(args.checkpoints) if args.checkpoints else []
        for spec in args.checkpoint or []:
            label, sep, path = spec.partition("=")
            if not sep or not path:
                raise ValueError(f"--checkpoint {spec!r}: expected LABEL=PATH")
            cks.append(make_checkpoint(label, path))
        if not cks:
            raise ValueError("give checkpoints with --checkpoint LABEL=PATH or --checkpoints CSV")
        if not args.train_sizes or not args.seeds:
            raise ValueError("give at least one --train_sizes value and one --seeds value")
        cfg = _finetune_config(args, max(args.train_sizes), args.seeds[0])
        rep = run_sweep(cks, args.train_sizes, args.output_path, cfg, seeds=tuple(args.seeds), data_source=args.data,
                        dtype=args.dtype)
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}")
    print(f"trained {len(rep.trained)}, already done {len(rep.skipped)}; manifest: {rep.manifest} "
          f"({len(rep.rows)} models)")
    print(f"evaluate each `model` of the manifest: lm_eval run --model hf --model_args pretrained=MODEL "
          f"--tasks emergence_{cfg.task},emergence_loss --include_path {_emergence_dir()} --output_path OUT")
    return 0


EMERGENCE_TASKS = ("gsm8k", "mmlu", "csqa", "cola")


def _emergence_task(value: str) -> str:
    """--task of finetune(-sweep): one of the emergence tasks."""
    if value not in EMERGENCE_TASKS:
        raise argparse.ArgumentTypeError(f"{value!r}: choose from {', '.join(EMERGENCE_TASKS)}")
    return value


def _add_finetune_args(p) -> None:
    """The flags finetune and finetune-sweep share (the training's settings)."""
    p.add_argument("--task", required=True, type=_emergence_task, metavar="{" + ",".join(EMERGENCE_TASKS) + "}",
                   help="the emergence task to finetune on")
    add_output_path(p, None, "output directory", required=True)
    p.add_argument("--data", default=None,
                   help="hub (default) or a local directory DIR/<task>/train.jsonl (see emergence_data)")
    p.add_argument("--sample", choices=["first", "random"], default="first",
                   help="the first N training examples, or a sample of N drawn with the seed")
    p.add_argument("--lr", type=float, default=1e-5, help="peak learning rate")
    p.add_argument("--steps", type=int, default=None,
                   help="optimiser steps (default: epochs * N / (train_batch_size * grad_accum))")
    p.add_argument("--epochs", type=float, default=3.0, help="epochs over the N examples, unless --steps is given")
    batch = p.add_argument("--train_batch_size", type=int, default=8, help="training examples per micro-batch")
    add_legacy_alias(p, "--batch_size", batch)
    p.add_argument("--grad_accum", type=int, default=1, help="micro-batches per optimiser step")
    p.add_argument("--weight_decay", type=float, default=0.0, help="AdamW weight decay")
    p.add_argument("--warmup_ratio", type=float, default=0.0, help="share of the steps in linear warmup")
    p.add_argument("--max_length", type=int, default=1024, help="tokens per example (prompt cut from the left)")
    p.add_argument("--lora", action="store_true", help="LoRA instead of full finetuning (merged before saving)")
    p.add_argument("--lora_r", type=int, default=8, help="LoRA rank (with --lora)")
    p.add_argument("--lora_alpha", type=int, default=16, help="LoRA scaling alpha (with --lora)")
    p.add_argument("--lora_dropout", type=float, default=0.0, help="LoRA dropout (with --lora)")
    add_list_argument(p, "--lora_target", default=None, metavar="MODULE",
                      help="module names LoRA adapts (default: peft's for the architecture)")
    p.add_argument("--dtype", default="float32", help="torch dtype to load and train in")


NO_BUILTIN_TASKS = "--no_builtin_tasks"
_NO_BUILTIN_TASKS_OLD = "--no-builtin-tasks"  # the earlier spelling, still accepted


def _index_include_path_only() -> None:
    """Make lm-eval's TaskManager index only ``--include_path``.

    The lm_eval CLI always indexes lm-eval's own ~12,000 task YAMLs before it
    loads a task (12.8 s per call measured on the 2-core development
    machine), even when every task it runs comes from --include_path.  This
    changes only that default (``include_defaults=False``); everything else is
    lm-eval's own CLI.
    """
    from lm_eval.tasks import TaskManager

    init = TaskManager.__init__
    if getattr(init, "_lm_eval_ext_include_path_only", False):
        return

    def __init__(self, *args, include_defaults: bool = False, **kwargs):
        init(self, *args, include_defaults=include_defaults, **kwargs)

    __init__._lm_eval_ext_include_path_only = True
    TaskManager.__init__ = __init__


def _lm_eval_passthrough(argv: list[str]) -> int:
    """lm-eval 0.4.13 resolves --model before it reads any task (so before any
    task's utils.py could register ours): register, then hand over.
    ``--no_builtin_tasks`` (before lm-eval's own arguments) skips indexing
    lm-eval's built-in tasks: only tasks under --include_path can then run."""
    import lm_eval_ext.registration  # noqa: F401
    from lm_eval.__main__ import cli_evaluate

    if argv[:1] in ([NO_BUILTIN_TASKS], [_NO_BUILTIN_TASKS_OLD]):
        argv = argv[1:]
        if "--include_path" not in argv and not any(a.startswith("--include_path=") for a in argv):
            print(f"error: {NO_BUILTIN_TASKS} needs --include_path (only those tasks are indexed)",
                  file=sys.stderr)
            return 2
        _index_include_path_only()
    sys.argv = ["lm_eval", *argv]
    cli_evaluate()
    return 0


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (0 < value < math.inf):
        raise argparse.ArgumentTypeError(f"must be a positive, finite number of seconds: {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _add_command(sub, name: str, help: str):
    return add_command(sub, name, help=help, renamed=RENAMED_FLAGS.get(name))


def build_parser() -> argparse.ArgumentParser:
    """The parser of lm-eval-ext (every subcommand but lm-eval, which hands
    its arguments to lm_eval unparsed)."""
    parser = argparse.ArgumentParser(prog="lm-eval-ext", description=plain(__doc__), formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND",
                                title="commands (lm-eval-ext COMMAND --help)")
    _add_command(sub, "task-dir", "print the task config directory (for --include_path)").set_defaults(
        fn=_cmd_task_dir)
    _add_command(sub, "sandbox-info", "report the code-execution sandbox's isolation").set_defaults(
        fn=_cmd_sandbox_info)
    p = _add_command(sub, "check", "execute human-eval-format samples and write each verdict")
    p.add_argument("samples", help="JSONL(.gz) with task_id and completion per line")
    p.add_argument("--problems", default="human-eval",
                   help="human-eval (the packaged copy), hub, or a problems JSONL(.gz) path")
    add_output_path(p, None, "output JSONL, one verdict per sample (default: SAMPLES_results.jsonl)",
                    metavar="FILE")
    p.add_argument("--timeout", type=_positive_seconds, default=10.0, help="wall-clock seconds per program")
    p.add_argument("--workers", type=_positive_int, default=None, help="parallel sandboxes (default: all CPUs)")
    p.add_argument("--cache", help="JSONL file of verdicts kept across runs (resume an interrupted check)")
    p.add_argument("--confirm_run_unsafe_code", action="store_true", help="required: this runs model code")
    p.add_argument("-v", "--verbose", action="store_true", help="print every problem's counts")
    p.set_defaults(fn=_cmd_check)
    a = _add_command(sub, "passuntil", "adaptive sample-until-pass through lm-eval (resumable)")
    _add_passuntil_args(a)
    a.set_defaults(fn=_cmd_passuntil)
    f = _add_command(sub, "finetune", "finetune one checkpoint on N examples of an emergence task")
    f.add_argument("--base", required=True, help="checkpoint directory or hub name")
    n = f.add_argument("--train_size", type=int, required=True, metavar="N", help="number of training examples")
    add_legacy_alias(f, "--D", n)
    f.add_argument("--seed", type=int, default=0,
                   help="the random seed (data order, LoRA init and dropout, the sample with --sample random)")
    _add_finetune_args(f)
    f.set_defaults(fn=_cmd_finetune)
    w = _add_command(sub, "finetune-sweep",
                     "finetune checkpoints x train sizes x seeds (resumable); write manifest_<task>.csv")
    add_list_argument(w, "--checkpoint", extend=True, metavar="CKPT",
                      help="base checkpoints as LABEL=PATH (or repeat the flag)")
    w.add_argument("--checkpoints", metavar="CSV",
                   help="CSV with checkpoint, path and optionally loss, flops, N, tokens")
    n = add_list_argument(w, "--train_sizes", item_type=int, required=True, metavar="N",
                          help="numbers of training examples, e.g. 10,100,1000")
    add_legacy_alias(w, "--D", n)
    add_list_argument(w, "--seeds", item_type=int, default=[0], metavar="SEED",
                      help="random seeds: one finetune per checkpoint, train size and seed")
    _add_finetune_args(w)
    w.set_defaults(fn=_cmd_finetune_sweep)
    _add_command(sub, "lm-eval", "run the lm_eval CLI with this package registered (args follow; "
                                 "--no_builtin_tasks first: index only --include_path, 12.8 s faster)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["lm-eval"]:
        return _lm_eval_passthrough(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return args.fn(args)
