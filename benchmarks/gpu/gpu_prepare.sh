#!/usr/bin/env bash
# Run HERE (with PyPI), before `bash benchmarks/gpu/gpu.sh` on a GPU machine that can fetch nothing.
#
#   .whl/        the cp312 manylinux wheels nertune needs that the GPU image lacks (pydantic and its needs)
#   .gpu_bench/  CoNLL-2003 train/valid/test and the MiniLM uncased tokenizer files (bert-base's 30,522-piece vocab)
#   --minilm     also .gpu_bench/minilm-fp16/: the embedded MiniLM's weights in fp16 (45 MB), for gpu_minilm.py
#
# Both folders are git-ignored: name them in the device tool's `carry` (`.whl`, `.gpu_bench`).
set -euo pipefail
source "$(dirname "$0")/../common.sh"
PY=${PYTHON:-.venv/bin/python}

# Same versions as the development venv, so the GPU run validates recipes exactly as here.
# typing_extensions travels too: pydantic needs a recent one and the image's version is unknown.
# pytorch-crf: the CRF head (gpu_minilm.py trains make train's CRF recipe).
WHEELS=(pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 typing_extensions==4.16.0 pytorch-crf==0.7.2)
rm -rf .whl && mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"

rm -rf .gpu_bench && mkdir -p .gpu_bench/conll .gpu_bench/tokenizer
"$PY" - <<'PY'
import shutil
from nertune.data.embedded import conll2003_files, minilm_dir

files = conll2003_files()
shutil.copy(files["train"], ".gpu_bench/conll/train.txt")
shutil.copy(files["validation"], ".gpu_bench/conll/valid.txt")
shutil.copy(files["test"], ".gpu_bench/conll/test.txt")
for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):  # no weights: bert-base is random init there
    shutil.copy(minilm_dir() / name, f".gpu_bench/tokenizer/{name}")
PY
if [ "${1:-}" = "--minilm" ]; then "$PY" -m benchmarks.gpu.gpu_minilm --prepare .gpu_bench/minilm-fp16; fi
ls -la .whl .gpu_bench/*
du -shc .whl .gpu_bench
