"""Samples per second: lm-eval's ``hf`` vs ``hf-shared-prefix`` on PassUntil-style sampling.

Workload: a few distinct ~300-token prompts, each requested ``repeats`` times
(what lm-eval sends for ``repeats: K``), sampled with do_sample=True,
temperature=1.0 and up to 32 new tokens, on a random GPT-2 (4 layers x 256
dims by default, built locally like tests/tiny_model.py; no download).
Compared, in one run:

* ``hf`` at batch size 1 (lm-eval's CLI default),
* ``hf`` at batch size = repeats,
* ``hf-shared-prefix`` at batch size = repeats (one prompt prefill per batch).

    python bench/bench_shared_prefix.py [--repeats 10] [--prompts 3] [--prompt-tokens 300] [--gen-tokens 32]

Each configuration runs once to warm up, then ``--rounds`` times; the best
round is reported. Ratios are what to compare; absolute numbers depend on the
machine. torch runs on one thread unless ``--threads`` says otherwise: on a
shared machine, more threads than free cores make timings erratic.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.tiny_model

import torch  # noqa: E402

import lm_eval_ext.sampling.shared_prefix  # noqa: E402,F401  (registers hf-shared-prefix)
from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.api.registry import get_model  # noqa: E402
from tests.tiny_model import build_tiny_model, humaneval_corpus  # noqa: E402


def make_prompts(tokenizer, n: int, n_tokens: int) -> list[str]:
    """n distinct prompts of about n_tokens tokens, cut from HumanEval text."""
    corpus = humaneval_corpus()
    prompts = []
    for i in range(n):
        text, j = "", i * 7
        while len(tokenizer(text).input_ids) < n_tokens:
            text += corpus[j % len(corpus)]
            j += 1
        prompts.append(tokenizer.decode(tokenizer(text).input_ids[:n_tokens]))
    return prompts


def run(lm, prompts, repeats, gen_tokens, seed) -> tuple[float, list[str]]:
    gen_kwargs = {"until": ["<never-stops>"], "max_gen_toks": gen_tokens, "do_sample": True, "temperature": 1.0}
    reqs = [Instance("generate_until", None, (p, dict(gen_kwargs)), i)
            for i, p in enumerate(p for p in prompts for _ in range(repeats))]
    torch.manual_seed(seed)
    start = time.perf_counter()
    out = lm.generate_until(reqs, disable_tqdm=True)
    return time.perf_counter() - start, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=10, help="samples per prompt (lm-eval repeats)")
    ap.add_argument("--prompts", type=int, default=3, help="distinct prompts")
    ap.add_argument("--prompt-tokens", type=int, default=300)
    ap.add_argument("--gen-tokens", type=int, default=32)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1; 0 = torch's choice). With more threads than free cores, "
                         "torch's OpenMP threads spin and timings swing by 10x")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    model_dir = build_tiny_model(
        Path(tempfile.gettempdir()) / f"lm_eval_ext_bench_gpt2_{args.layers}x{args.dim}",
        n_layer=args.layers, n_embd=args.dim, n_head=max(1, args.dim // 64), n_positions=1024,
    )
    model_args = f"pretrained={model_dir},dtype=float32,device={args.device}"
    configs = [
        ("hf, batch 1", "hf", 1),
        (f"hf, batch {args.repeats}", "hf", args.repeats),
        (f"hf-shared-prefix, batch {args.repeats}", "hf-shared-prefix", args.repeats),
    ]
    lms = {label: get_model(name).create_from_arg_string(f"{model_args},batch_size={bs}")
           for label, name, bs in configs}
    prompts = make_prompts(lms[configs[0][0]].tokenizer, args.prompts, args.prompt_tokens)
    n = args.prompts * args.repeats
    print(f"random GPT-2 {args.layers} layers x {args.dim} dims; {args.prompts} prompts x {args.repeats} repeats "
          f"= {n} samples; ~{args.prompt_tokens}-token prompts, {args.gen_tokens} new tokens, do_sample, "
          f"temperature 1.0; torch threads {torch.get_num_threads()}; device {args.device}; "
          f"best of {args.rounds} rounds")

    rate = {}
    outputs = {}
    for label, _, _ in configs:
        run(lms[label], prompts[:1], 2, 4, seed=0)  # warm-up
        times = []
        for r in range(args.rounds):
            seconds, out = run(lms[label], prompts, args.repeats, args.gen_tokens, seed=r)
            times.append(seconds)
            if r == 0:
                outputs[label] = out
        best = min(times)
        rate[label] = n / best
        print(f"  {label:<34} {rate[label]:8.1f} samples/s  ({best:.2f} s)")

    base1, baseK, shared = (label for label, _, _ in configs)
    print(f"ratio hf-shared-prefix / hf batch {args.repeats}: {rate[shared] / rate[baseK]:.2f}x")
    print(f"ratio hf-shared-prefix / hf batch 1:  {rate[shared] / rate[base1]:.2f}x")
    print(f"ratio hf batch {args.repeats} / hf batch 1:           {rate[baseK] / rate[base1]:.2f}x")
    stats = lms[shared].shared_prefill_stats
    print(f"shared prefill: {stats['shared_batches']} batches shared, {stats['fallback_batches']} fell back")
    same = sum(a == b for a, b in zip(outputs[shared], outputs[baseK]))
    print(f"same seed, hf-shared-prefix vs hf at batch {args.repeats}: {same}/{n} samples identical")


if __name__ == "__main__":
    main()
