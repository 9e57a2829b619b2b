#!/usr/bin/env bash
# Which precision should `mixed_precision: auto` pick on this CPU? make train's recipe, full corpus, run twice
# on a quiet machine: bf16 (forced with NERTUNE_CPU_BF16=on where the CPU has no bf16: torch emulates it) and
# fp32. Writes benchmarks/train/results/precision-{bf16,fp32}-CPUKIND.{json,log} (recipe_run.sh) and
# benchmarks/train/results/precision-CPUKIND.json: time in the loop, validation/test F1 of each, the ratio, the CPU.
# Usage: benchmarks/train/cpu_precision.sh [RECIPE]     (default minilm-context-crf)
set -euo pipefail
source "$(dirname "$0")/../common.sh"
recipe=${1:-minilm-context-crf}
kind=$(cpu_kind)
busy=$(pgrep -fc 'python|pytest|nertune' || true)
echo "cpu kind: $kind; other python processes at start: $busy (time only on a quiet machine)"
NERTUNE_CPU_BF16=on bash benchmarks/train/recipe_run.sh "$recipe" "precision-bf16-$kind" --mixed-precision bf16
bash benchmarks/train/recipe_run.sh "$recipe" "precision-fp32-$kind" --mixed-precision no
.venv/bin/python - "$kind" "$busy" <<'PY'
import json, subprocess, sys
kind, busy = sys.argv[1], int(sys.argv[2])
runs = {p: json.load(open(f"benchmarks/train/results/precision-{p}-{kind}.json")) for p in ("bf16", "fp32")}
row = lambda m: {"train_seconds": round(m["train_seconds"], 1), "validation_f1": m["validation"]["f1"], "test_f1": m["test"]["f1"],
                 "precision": m["precision"], "precision_why": m.get("precision_why")}
summary = {
    "question": "bf16 or fp32 by default on this CPU (make train's recipe, full corpus)",
    "cpu": runs["fp32"]["machine"]["cpu"], "lscpu_model": subprocess.run(["lscpu"], capture_output=True, text=True).stdout.split("Model name:")[1].splitlines()[0].strip(),
    "other_python_processes_at_start": busy,
    "bf16": row(runs["bf16"]), "fp32": row(runs["fp32"]),
    "bf16_speedup": round(runs["fp32"]["train_seconds"] / runs["bf16"]["train_seconds"], 3),
    "validation_f1_delta_points": round(100 * (runs["bf16"]["validation"]["f1"] - runs["fp32"]["validation"]["f1"]), 2),
    "test_f1_delta_points": round(100 * (runs["bf16"]["test"]["f1"] - runs["fp32"]["test"]["f1"]), 2),
    "git_sha": runs["fp32"]["git_sha"],
}
summary["keep_bf16"] = summary["bf16_speedup"] > 1 and abs(summary["validation_f1_delta_points"]) <= 0.2
json.dump(summary, open(f"benchmarks/train/results/precision-{kind}.json", "w"), indent=2)
print(json.dumps(summary, indent=2))
PY
