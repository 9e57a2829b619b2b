#!/usr/bin/env bash
# nertune vs the Hugging Face Trainer on bert-base, one epoch of CoNLL-2003 on one GPU (issue 6, point 7).
#
# Run `bash benchmarks/gpu/gpu_prepare.sh` here first; then on the GPU machine (Python 3.12, torch, transformers,
# accelerate there; nothing fetched), with `.whl` and `.gpu_bench` carried:
#     bash benchmarks/gpu/gpu.sh
# Fits in 6 minutes on an H100/H200. Results: $OUT/gpu_speed.json when $OUT is set, else benchmarks/gpu/results/.
set -euo pipefail
source "$(dirname "$0")/../common.sh"
PY=${PYTHON:-python3}

for need in .whl .gpu_bench/conll/train.txt .gpu_bench/tokenizer/vocab.txt; do
  [ -e "$need" ] || { echo "error: $need is missing — fix: run 'bash benchmarks/gpu/gpu_prepare.sh' first and carry .whl and .gpu_bench" >&2; exit 2; }
done
# The wheels the image lacks (pydantic & co.), into a private folder: the image's own packages stay untouched.
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
# nertune from src/ (not installed there); the benchmarks package from the repository root, where -m finds it.
export PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi: not available"
"$PY" -c 'import sys, torch, transformers; print(f"python {sys.version.split()[0]}, torch {torch.__version__} (CUDA {torch.version.cuda}), transformers {transformers.__version__}")'
# BENCH=gpu_minilm runs the pretrained MiniLM benchmark instead (gpu_prepare.sh --minilm first); BENCH=gpu_step the
# step-level timing. A name with .py is taken too.
bench=${BENCH:-gpu_speed}
exec "$PY" -m "benchmarks.gpu.${bench%.py}" "$@"
