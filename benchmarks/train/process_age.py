"""Does a training process slow down as it ages? (issue 26: `make train`'s epochs slow down one after another.)

    python -m benchmarks.train.process_age [--recipe minilm-context-crf-8ep] [--sentences 2000] [--epochs 8]
        -> benchmarks/train/results/process_age-<recipe>-<precision>.json

The same fixed steps (the first 37 of epoch 1 on the first --sentences sentences, after 3 to warm up, from the
initial weights, best of 2 passes) are timed in this fresh process; then the real loop (`nertune.train`) runs
--epochs epochs on those sentences in the same process; then the fixed steps again, again after `gc.collect()`,
and again after glibc's `malloc_trim(0)`. A fresh process started right after (`--fresh-only`) times the fixed
steps alone, so a slower machine and an older process can be told apart. Set allocator or oneDNN variables
(LD_PRELOAD, ONEDNN_PRIMITIVE_CACHE_CAPACITY) before the command: the result records them.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import subprocess
import sys
import tempfile
import time

from benchmarks.common import git_sha, results_dir, write_result

STEPS, WARMUP = 37, 3


def fixed_steps(recipe: str, sentences: int) -> float:
    """Sentences a second over the fixed steps (best of 2 passes from the same initial weights)."""
    from benchmarks.train.first_steps import first_steps  # noqa: PLC0415  (torch after the environment is read)

    with first_steps(recipe, WARMUP + STEPS, sentences=sentences) as (run, inputs):
        initial = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
        for windows, weights in inputs[:WARMUP]:
            float(run.steps(windows, weights).loss)
        best = 0.0
        for _ in range(2):
            run.model.load_state_dict(initial)
            run.optimizer.state.clear()
            started = time.perf_counter()
            for windows, weights in inputs[WARMUP:]:
                float(run.steps(windows, weights).loss)
            best = max(best, run.sentences_per_step * STEPS / (time.perf_counter() - started))
    return best


def rss_kib() -> int:
    return int(next(line for line in open("/proc/self/status") if line.startswith("VmRSS")).split()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="minilm-context-crf-8ep")
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--fresh-only", action="store_true", help="time the fixed steps alone and print the rate")
    args = parser.parse_args()
    if args.fresh_only:
        print(f"{fixed_steps(args.recipe, args.sentences):.2f}")
        return
    import torch  # noqa: PLC0415

    import nertune  # noqa: PLC0415
    from nertune.machine import cpu_description  # noqa: PLC0415

    rates = {"fresh process": fixed_steps(args.recipe, args.sentences)}
    memory = {"fresh process": rss_kib()}
    with tempfile.TemporaryDirectory() as tmp:
        metrics = nertune.train(
            args.recipe,
            progress=False,
            max_train_sentences=args.sentences,
            max_eval_sentences=100,
            epochs=args.epochs,
            output_dir=f"{tmp}/run",
        )
    for label, remedy in (
        ("after the loop", None),
        ("after gc.collect()", gc.collect),
        ("after malloc_trim(0)", lambda: ctypes.CDLL("libc.so.6").malloc_trim(0)),
    ):
        if remedy:
            remedy()
        rates[label], memory[label] = fixed_steps(args.recipe, args.sentences), rss_kib()
    command = [
        sys.executable, "-m", "benchmarks.train.process_age", "--recipe", args.recipe, "--sentences", str(args.sentences), "--fresh-only",
    ]  # fmt: skip
    fresh = subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    rates["a fresh process, right after"] = float(fresh)
    result = {
        "recipe": args.recipe,
        "precision": metrics["precision"],
        "fixed_steps": f"the first {STEPS} steps of epoch 1 on {args.sentences} sentences, {WARMUP} before them to warm up",
        "sentences_per_second": rates,
        "rss_kib": memory,
        "loop_epochs_sentences_per_second": [e["sentences_per_second"] for e in metrics["epochs"]],
        "aged_over_fresh_right_after": rates["after the loop"] / rates["a fresh process, right after"],
        "environment": {k: os.environ.get(k) for k in ("LD_PRELOAD", "ONEDNN_PRIMITIVE_CACHE_CAPACITY", "MALLOC_ARENA_MAX")},
        "machine": cpu_description(),
        "torch": torch.__version__,
        "git_sha": git_sha(),
    }
    tag = "-".join(f"{k.lower()}" for k, v in result["environment"].items() if v)
    name = f"process_age-{args.recipe}-{metrics['precision']}{'-' + tag if tag else ''}.json"
    write_result(results_dir(__file__) / name, result)
    for label, rate in rates.items():
        print(f"{label:30s} {rate:6.1f} sentences/s")
    print("loop epochs:", [round(r, 1) for r in result["loop_epochs_sentences_per_second"]])


if __name__ == "__main__":
    main()
