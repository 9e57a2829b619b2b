#!/usr/bin/env bash
# One full training run of a recipe on the embedded model and CoNLL-2003, as `nertune train --recipe` runs it.
# Usage: benchmarks/train/recipe_run.sh RECIPE [RUN_NAME] [extra nertune train flags...]
# Writes runs/RUN_NAME (the model), benchmarks/train/results/RUN_NAME.json (metrics.json + wall time + git sha)
# and benchmarks/train/results/RUN_NAME.log (the console).
set -euo pipefail
source "$(dirname "$0")/../common.sh"
recipe=$1
name=${2:-$recipe-cpu}
shift $(( $# >= 2 ? 2 : 1 ))
out=runs/$name
results=benchmarks/train/results
mkdir -p "$results"
start=$(date +%s)
.venv/bin/nertune train --recipe "$recipe" --output-dir "$out" --no-progress "$@" 2>&1 | tee "$results/$name.log"
end=$(date +%s)
.venv/bin/python - "$out/metrics.json" "$results/$name.json" "$((end - start))" <<'PY'
import json, sys
metrics = json.load(open(sys.argv[1]))
metrics["wall_seconds"] = int(sys.argv[3])
json.dump(metrics, open(sys.argv[2], "w"), indent=2)
PY
