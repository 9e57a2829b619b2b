#!/usr/bin/env bash
# How many oneDNN kernels (primitives) a short training run builds: each new matrix shape is a cache miss, built
# (JIT) and kept in oneDNN's primitive cache (16,384 entries: src/nertune/__init__.py), so shapes that never repeat
# cost time and memory. The run: minilm-context64-crf-5ep, 1 epoch on the first 1,000 training sentences (63 steps),
# 16 evaluation sentences, seed 44, one thread, bf16 (needs a CPU with AVX-512 BF16 or AMX).
#   bash benchmarks/train/onednn_kernels.sh NAME [SRC [FLAGS...]]   -> benchmarks/train/results/onednn_kernels-NAME.txt
# SRC: the nertune source tree to run (default: this checkout's src), e.g. a `git worktree` of an older commit;
# FLAGS: more `nertune train` flags (e.g. --shared-window-pieces 128).
set -euo pipefail
name=$1
cd "$(dirname "$0")/../.."
src=$(realpath "${2:-src}")
out=benchmarks/train/results/onednn_kernels-$name.txt
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
PYTHONPATH=$src OMP_NUM_THREADS=1 ONEDNN_VERBOSE=profile_create .venv/bin/nertune train --recipe minilm-context64-crf-5ep \
  --epochs 1 --max-train-sentences 1000 --max-eval-sentences 16 --seed 44 --output-dir "$scratch/run" --no-progress "${@:3}" \
  > "$scratch/log" 2>&1 || { tail -5 "$scratch/log" >&2; exit 1; }
grep 'create:cache_miss' "$scratch/log" > "$scratch/misses" || true
python3 - "$scratch/misses" "$(git -C "$src" describe --always --dirty)${3:+ flags: ${*:3}}" <<'PY' | tee "$out"
import collections, re, sys
rows = [line.rstrip().split(",") for line in open(sys.argv[1])]
kinds = collections.Counter()
for row in rows:
    dims = row[-2]  # e.g. 2368x384:384x384 (a matrix product) or 192x148x32:192x32x148 (a batched one)
    kind = "batched matmul" if re.fullmatch(r"\d+x\d+x\d+:\d+x\d+x\d+", dims) else "matmul" if re.fullmatch(r"\d+x\d+:\d+x\d+", dims) else row[5]
    kinds[kind] += 1
print(f"# code {sys.argv[2]}; cpu: {open('/proc/cpuinfo').read().split('model name')[1].split(':')[1].splitlines()[0].strip()}")
print(f"kernels built: {len(rows)}, {sum(float(r[-1]) for r in rows) / 1000:.2f} s building them")
for kind, count in kinds.most_common():
    print(f"  {kind}: {count}")
PY
