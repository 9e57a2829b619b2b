#!/usr/bin/env bash
# `nertune serve` under load_test.py with two versions of nertune, alternated A B B A A B B A ...:
# A is an older nertune's src/ (e.g. `git archive REV src | tar -x -C /tmp/old`), B this checkout.
#
#   bash benchmarks/serve/load_test_ab.sh OLD_SRC MODEL_OR_EXPORT NAME [ROUNDS]
#     -> benchmarks/serve/results/NAME-<cpu kind>.txt (avx2cpu or bf16cpu), each run's JSON under $TMPDIR/NAME.*
#
# Only the served code differs (PYTHONPATH puts OLD_SRC in front for A). Time it on a quiet machine.
set -euo pipefail
old_src=$(realpath "$1") model=$2 name=$3 rounds=${4:-4}
cd "$(dirname "$0")/../.."
source benchmarks/common.sh
out=$(mktemp -d "${TMPDIR:-/tmp}/$name.XXXX")
order=()
for ((i = 0; i < rounds; i++)); do
  if ((i % 2 == 0)); then order+=(A B); else order+=(B A); fi
done
n=0
for side in "${order[@]}"; do
  n=$((n + 1))
  if [[ $side == A ]]; then pythonpath=$old_src; else pythonpath=${PYTHONPATH:-}; fi
  PYTHONPATH=$pythonpath .venv/bin/python -m benchmarks.serve.load_test "$model" --requests 2000 --concurrency 16 \
    --time-limit 600 --out "$out/$n-$side.json" --note "$name $side" >"$out/$n-$side.log" 2>&1
done
.venv/bin/python - "$out" "$old_src" "$model" >"benchmarks/serve/results/$name-$(cpu_kind).txt" <<'EOF'
import json, statistics, sys
from pathlib import Path
from benchmarks.common import cpu_line, git_sha
out, old, model = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
runs = sorted(out.glob("*.json"), key=lambda p: int(p.name.split("-")[0]))
print(cpu_line())
print(f"A: {old}; B: {git_sha()}; served: {model}; 2,000 requests from 16 clients each (5% malformed), run order as listed")
rates = {"A": [], "B": []}
for path in runs:
    side = path.stem.split("-")[1]
    phase = json.loads(path.read_text())["batched"]["concurrent"]
    rates[side].append((phase["requests_per_second"], phase["latency_ms_valid"]["p99"]))
    print(f"{path.stem:>5}  {phase['requests_per_second']:6.1f} req/s  p50 {phase['latency_ms_valid']['p50']:6.1f} ms  "
          f"p99 {phase['latency_ms_valid']['p99']:6.1f} ms  {phase['batching']['mean_requests_per_batch']:.2f} requests a batch, "
          f"model busy {phase['batching']['model_busy_fraction']:.3f}, 5xx {phase['server_errors_5xx']}")
a, b = (statistics.median(r for r, _ in rates[s]) for s in "AB")
pa, pb = (statistics.median(p for _, p in rates[s]) for s in "AB")
print(f"medians: A {a:.1f} req/s (p99 {pa:.1f} ms), B {b:.1f} req/s (p99 {pb:.1f} ms): B/A {b / a:.2f}x")
EOF
cat "benchmarks/serve/results/$name-$(cpu_kind).txt"
