#!/usr/bin/env bash
# The noise band of a recipe (issue 25): one full run per seed, each as benchmarks/train/recipe_run.sh runs it, named
# RECIPE-seedN-CPUKIND (CPUKIND: bf16cpu where the CPU has AVX-512 BF16 / AMX, else avx2cpu; precision auto).
# Usage: benchmarks/train/seeds.sh RECIPE SEED [SEED...]      e.g. benchmarks/train/seeds.sh minilm-context-crf 43 44
# Then: .venv/bin/python -m benchmarks.train.noise_band   (mean ± sd per recipe and CPU kind, from the results files)
set -euo pipefail
source "$(dirname "$0")/../common.sh"
recipe=$1
shift
kind=$(cpu_kind)
for seed in "$@"; do
  bash benchmarks/train/recipe_run.sh "$recipe" "$recipe-seed$seed-$kind" --seed "$seed"
done
