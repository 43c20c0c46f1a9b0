#!/usr/bin/env bash
# Set up the project in .venv and run the main job on its embedded default:
# the emergence lab. It trains a ladder of tiny transformers (5 sizes x 3
# seeds) on synthetic tasks, scores them with PassUntil through lm-eval, fits
# the task scaling law, writes the largest model's predicted PU BEFORE training
# it, then trains it and reports predicted vs observed, with the seed
# analysis, in lab_out/report.md. Offline; about 10-15 minutes on 2 CPU cores
# after installation. Extra arguments go to the lab (e.g. --quick, --device cuda).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q -e '.[test]'
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/python -m lm_eval_ext.lab --output_path lab_out "$@"
echo "== report: lab_out/report.md (plots beside it)"
