#!/usr/bin/env bash
# Issue 26, point 4: a run's test F1 in each precision it can tag in, with the project's own commands —
# `nertune evaluate` on the run (fp32, and auto: bf16 on a CPU that has it) and on its int8 ONNX export.
#   bash benchmarks/serve/export_f1.sh RUN_DIR [NAME]   -> benchmarks/serve/results/export_f1-NAME.txt
set -euo pipefail
run=$1
name=${2:-$(basename "$run")}
out=benchmarks/serve/results/export_f1-$name.txt
export_dir=$(mktemp -d)/int8
nertune=${NERTUNE:-.venv/bin/nertune}
{
  echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)"
  echo "# flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512_vnni|avx512_bf16|amx_bf16|amx_int8)$' | xargs)"
  "$nertune" export "$run" --onnx "$export_dir" --quantize int8 > /dev/null
  for target in "fp32:$run:--precision fp32" "auto:$run:--precision auto" "int8:$export_dir:"; do
    IFS=: read -r label dir flags <<< "$target"
    # shellcheck disable=SC2086  # flags is a word list
    "$nertune" evaluate "$dir" --data conll2003 --split test --json $flags 2> /dev/null \
      | python3 -c "import json,sys; r=json.load(sys.stdin); print('$label', 'f1', round(r['f1'], 4), 'precision', round(r['precision'], 4), 'recall', round(r['recall'], 4))"
  done
} | tee "$out"
rm -rf "$(dirname "$export_dir")"
