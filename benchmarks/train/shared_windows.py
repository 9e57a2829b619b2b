"""Shared training windows against a window per sentence: the same epoch of make train's recipe side by side.

    python -m benchmarks.train.shared_windows [--pieces 0 128 256] [--rounds 2] [--sentences 2000] [--name NAME]
        -> benchmarks/train/results/shared_windows-NAME.json (default: the CPU kind)

Trains `minilm-context64-crf-5ep` for 1 epoch on the first --sentences training sentences (64 evaluation
sentences) in a fresh process per run, with `--shared-window-pieces N` for each N of --pieces (0: a window per
sentence, make train's recipe as it is), the values alternated over --rounds (their order reversed each round), and
records each run's time in the loop, its peak memory, validation loss and F1. The pieces the
inputs carry are load-independent (context_cost.py); this is the time they take. Time it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import cpu_kind, cpu_line, git_sha, results_dir, versions, write_result


def run(pieces: int, sentences: int, out: Path) -> dict:
    args = ["train", "--recipe", "minilm-context64-crf-5ep", "--epochs", "1", "--max-train-sentences", str(sentences)]
    args += ["--max-eval-sentences", "64", "--shared-window-pieces", str(pieces), "--output-dir", str(out), "--no-progress"]
    done = subprocess.run([sys.executable, "-m", "nertune", *args], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    metrics = json.loads((out / "metrics.json").read_text())
    return {
        "train_seconds": metrics["train_seconds"],
        "peak_rss_mib": metrics["peak_memory"]["host_rss_mib"],
        "validation_loss": metrics["validation"]["loss"],
        "validation_f1": metrics["validation"]["f1"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pieces", type=int, nargs="+", default=[0, 128, 256])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--name", default=None)
    args = parser.parse_args()
    results: dict[int, dict] = {p: {"runs": []} for p in args.pieces}
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(args.rounds):
            for pieces in args.pieces if round_ % 2 == 0 else args.pieces[::-1]:
                got = run(pieces, args.sentences, Path(scratch) / f"r{round_}-p{pieces}")
                results[pieces]["runs"].append(got)
                print(f"round {round_ + 1}, shared_window_pieces {pieces}: {got}", flush=True)
    base = min(r["train_seconds"] for r in results[args.pieces[0]]["runs"])
    for pieces, result in results.items():
        result["best_train_seconds"] = min(r["train_seconds"] for r in result["runs"])
        result["speedup_vs_first"] = base / result["best_train_seconds"]
        print(f"shared_window_pieces {pieces}: best {result['best_train_seconds']:.1f} s, {result['speedup_vs_first']:.2f}x", flush=True)
    out = results_dir(__file__) / f"shared_windows-{args.name or cpu_kind() + 'cpu'}.json"
    write_result(out, {"cpu": cpu_line(), "git_sha": git_sha(), "sentences": args.sentences, "results": results, "versions": versions()})
    print(f"-> {out}")


if __name__ == "__main__":
    main()
