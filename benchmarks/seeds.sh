#!/usr/bin/env bash
# The noise band of a recipe (issue 25): one full run per seed, each as benchmarks/recipe_run.sh runs it, named
# RECIPE-seedN-CPUKIND (CPUKIND: bf16cpu where the CPU has AVX-512 BF16 / AMX, else avx2cpu; precision auto).
# Usage: benchmarks/seeds.sh RECIPE SEED [SEED...]      e.g. benchmarks/seeds.sh minilm-context-crf 43 44
# Then: .venv/bin/python benchmarks/noise_band.py   (mean ± sd per recipe and CPU kind, from the results files)
set -euo pipefail
cd "$(dirname "$0")/.."
recipe=$1
shift
if grep -qw -e avx512_bf16 -e amx_bf16 /proc/cpuinfo; then kind=bf16cpu; else kind=avx2cpu; fi
for seed in "$@"; do
  bash benchmarks/recipe_run.sh "$recipe" "$recipe-seed$seed-$kind" --seed "$seed"
done
