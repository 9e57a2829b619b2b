#!/usr/bin/env bash
# Issue 26, point 4: a run's test F1 in each precision it can tag in, with the project's own commands —
# `nertune evaluate` on the run (fp32, and auto: bf16 on a CPU that has it) and on its int8 ONNX export.
#   bash benchmarks/serve/export_f1.sh RUN_DIR [NAME]   -> benchmarks/serve/results/export_f1-NAME.txt
set -euo pipefail
run=$(realpath "$1")
name=${2:-$(basename "$run")}
cd "$(dirname "$0")/../.."
out=benchmarks/serve/results/export_f1-$name.txt
nertune=${NERTUNE:-$PWD/.venv/bin/nertune}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
score() {  # label, folder, --precision value: one line of test scores, the weights the run used included
  "$nertune" evaluate "$2" --data conll2003 --split test --json --precision "$3" 2> "$scratch/$1.err" \
    | python3 -c "import json,sys; r=json.load(sys.stdin); print('$1', r['weights'], 'f1', round(r['f1'], 4), 'precision', round(r['precision'], 4), 'recall', round(r['recall'], 4))" \
    || { cat "$scratch/$1.err" >&2; exit 1; }
}
{
  echo "# $(date -u +%FT%TZ) $(git describe --always --dirty) $run"
  echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs); flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512_vnni|avx512_bf16|amx_bf16|amx_int8)$' | xargs)"
  "$nertune" export "$run" --onnx "$scratch/int8" --quantize int8 > "$scratch/export.log" 2>&1 || { cat "$scratch/export.log" >&2; exit 1; }
  score fp32 "$run" fp32
  score auto "$run" auto
  score int8 "$scratch/int8" auto
} | tee "$out"
