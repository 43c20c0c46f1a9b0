"""Samples per second: the adaptive engine vs plain lm-eval ``repeats``.

Same model (a random GPT-2, 4 layers x 256 dims, built locally), same prompts
(~300-token cuts of HumanEval text), same number of samples (``--repeats``
per prompt, sampled at temperature 1.0, up to ``--gen-tokens`` tokens), the
same PassUntil filter (exact match; nothing passes, so no early stopping
helps the engine):

* plain lm-eval, ``simple_evaluate`` with ``repeats: K`` at batch size 1 (the
  CLI default: K separate generate calls per prompt);
* plain lm-eval at batch size K;
* the engine (``lm_eval_ext.sampling.runner.run_adaptive``) drawing K samples
  per prompt in one round: one batch of all prompts' samples, the prompt's
  prefill shared across its samples (``hf-shared-prefix``).

    python bench/bench_engine_throughput.py [--prompts 4] [--repeats 16] [--gen-tokens 32]

Target: at least 5x against both. On a 2-core CPU, batching buys little and
decoding dominates, so expect the target against batch size 1 only; on a GPU
both gaps widen. Ratios from one run; torch on one thread (``--threads``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

for _v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_v, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.tiny_model

import torch  # noqa: E402

import lm_eval  # noqa: E402
import lm_eval_ext.registration  # noqa: E402,F401
from lm_eval.api.registry import get_model  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402
from lm_eval_ext.sampling.adaptive import StopRule  # noqa: E402
from lm_eval_ext.sampling.runner import run_adaptive  # noqa: E402
from tests.tiny_model import build_tiny_model, humaneval_corpus  # noqa: E402
from tests.toy_task import write_exact_match_task  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=16)
    ap.add_argument("--prompt-tokens", type=int, default=300)
    ap.add_argument("--gen-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    root = Path(tempfile.mkdtemp(prefix="bench_engine_"))
    model_dir = build_tiny_model(root / "model", n_layer=4, n_embd=256, n_head=4, n_positions=1024)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    corpus, prompts = humaneval_corpus(), []
    for i in range(args.prompts):
        text, j = "", i * 7
        while len(tok(text).input_ids) < args.prompt_tokens:
            text += corpus[j % len(corpus)]
            j += 1
        prompts.append(tok.decode(tok(text).input_ids[: args.prompt_tokens]))
    tasks = write_exact_match_task(root, "bench_passuntil", [{"prompt": p, "target": "\x00never"} for p in prompts],
                                   max_gen_toks=args.gen_tokens, until="<never-stops>")
    tm = TaskManager(include_path=str(tasks), include_defaults=False)
    k, n = args.repeats, args.prompts
    total = k * n
    margs = f"pretrained={model_dir},dtype=float32"

    def plain(batch):
        lm = get_model("hf").create_from_arg_string(margs, {"batch_size": batch, "device": args.device})
        task = tm.load(["bench_passuntil"])["tasks"]["bench_passuntil"]
        task.set_config("repeats", k)
        t = time.perf_counter()
        res = lm_eval.simple_evaluate(model=lm, tasks=[task], task_manager=tm, log_samples=True,
                                      bootstrap_iters=0, verbosity="ERROR")
        dt = time.perf_counter() - t
        assert sum(len(s["filtered_resps"][0]) for s in res["samples"]["bench_passuntil"]) == total
        return dt

    def engine():
        lm = get_model("hf-shared-prefix").create_from_arg_string(margs, {"batch_size": total, "device": args.device})
        t = time.perf_counter()
        res = run_adaptive("bench_passuntil", lm, output_path=root / "engine", include_path=tasks,
                           rule=StopRule(r=10**6, cap=k, first=k), chunk_samples=total, progress=False)
        dt = time.perf_counter() - t
        assert res["passuntil"]["samples_spent"] == total
        return dt

    engine()  # warm-up (first-call costs), then a fresh output directory
    import shutil

    shutil.rmtree(root / "engine")
    t_b1, t_bk, t_eng = plain(1), plain(k), engine()
    print(f"{n} prompts x {k} samples, ~{args.prompt_tokens} prompt tokens, {args.gen_tokens} new tokens, "
          f"{args.threads} torch thread(s), device {args.device}")
    for label, t in (("lm-eval repeats, batch 1", t_b1), (f"lm-eval repeats, batch {k}", t_bk),
                     (f"engine, batch {total}, shared prefill", t_eng)):
        print(f"  {label:<40} {total / t:7.1f} samples/s")
    print(f"engine vs batch 1: {t_b1 / t_eng:.1f}x, vs batch {k}: {t_bk / t_eng:.1f}x (target >= 5x)")


if __name__ == "__main__":
    main()
