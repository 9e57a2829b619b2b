#!/usr/bin/env bash
# The full seed recipe on the embedded model and CoNLL-2003, as `make train` runs it.
# Writes benchmarks/train/results/seed-minilm-<machine>.json (metrics.json + wall time) and the console log.
# Usage: benchmarks/train/seed_recipe.sh [RUN_NAME]     (default seed-minilm-cpu)
set -euo pipefail
source "$(dirname "$0")/../common.sh"
name=${1:-seed-minilm-cpu}
out=runs/$name
results=benchmarks/train/results
mkdir -p "$results"
start=$(date +%s)
.venv/bin/nertune train --output-dir "$out" --no-progress 2>&1 | tee "$results/$name.log"
end=$(date +%s)
.venv/bin/python - "$out/metrics.json" "$results/$name.json" "$((end - start))" <<'PY'
import json, sys
metrics = json.load(open(sys.argv[1]))
metrics["wall_seconds"] = int(sys.argv[3])
json.dump(metrics, open(sys.argv[2], "w"), indent=2)
PY
