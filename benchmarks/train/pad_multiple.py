"""Pass widths rounded up to a multiple of N on a bf16 CPU: fewer oneDNN kernels to build, more padding to carry.

    python -m benchmarks.train.pad_multiple [--multiples 1 16 32] [--rounds 2] [--sentences 1000] [--name NAME]
        -> benchmarks/train/results/pad_multiple-NAME.json (default: the CPU kind)

On a CPU nertune pads a pass to its longest window only (data/features.py `pad_multiple_for`: 1), so nearly every
pass brings a width oneDNN has not built kernels for; each is built (JIT) and kept in its cache
(benchmarks/train/onednn_kernels.sh counts them). This trains `minilm-context64-crf-5ep` for 1 epoch on the first
--sentences training sentences (16 evaluation sentences) in a fresh process per run, with every pass padded to a
multiple of N, the multiples alternated over --rounds (their order reversed each round), and records each run's time
in the loop, its peak memory and its validation loss; one more run per multiple with ONEDNN_VERBOSE counts the
kernels it builds. Time it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import cpu_kind, cpu_line, git_sha, results_dir, versions, write_result

# The run, in a fresh interpreter: nertune's padding multiple replaced where the training step and the scorer read it.
RUN = """
import sys
import nertune.model.word_scores as scores
import nertune.training.step as step
multiple = int(sys.argv[1])
step.pad_multiple_for = scores.pad_multiple_for = lambda device: multiple
from nertune.cli import main
sys.argv = ["nertune", *sys.argv[2:]]
main()
"""


def run(multiple: int, sentences: int, out: Path, verbose: bool) -> dict:
    args = ["train", "--recipe", "minilm-context64-crf-5ep", "--epochs", "1", "--max-train-sentences", str(sentences)]
    args += ["--max-eval-sentences", "16", "--seed", "44", "--output-dir", str(out), "--no-progress"]
    env = {**os.environ, **({"ONEDNN_VERBOSE": "profile_create"} if verbose else {})}
    done = subprocess.run([sys.executable, "-c", RUN, str(multiple), *args], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    if verbose:
        return {"kernels_built": done.stdout.count("create:cache_miss")}
    metrics = json.loads((out / "metrics.json").read_text())
    return {
        "train_seconds": metrics["train_seconds"],
        "peak_rss_mib": metrics["peak_memory"]["host_rss_mib"],
        "validation_loss": metrics["validation"]["loss"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--multiples", type=int, nargs="+", default=[1, 16, 32])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--name", default=None)
    args = parser.parse_args()
    results: dict[int, dict] = {m: {"runs": []} for m in args.multiples}
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(args.rounds):
            order = args.multiples if round_ % 2 == 0 else args.multiples[::-1]
            for multiple in order:
                got = run(multiple, args.sentences, Path(scratch) / f"r{round_}-m{multiple}", verbose=False)
                results[multiple]["runs"].append(got)
                print(f"round {round_ + 1}, multiple {multiple}: {got}", flush=True)
        for multiple in args.multiples:
            results[multiple].update(run(multiple, args.sentences, Path(scratch) / f"v-m{multiple}", verbose=True))
            print(f"multiple {multiple}: {results[multiple]['kernels_built']} kernels built", flush=True)
    for multiple, result in results.items():
        result["best_train_seconds"] = min(r["train_seconds"] for r in result["runs"])
    out = results_dir(__file__) / f"pad_multiple-{args.name or cpu_kind() + 'cpu'}.json"
    write_result(out, {"cpu": cpu_line(), "git_sha": git_sha(), "sentences": args.sentences, "results": results, "versions": versions()})
    print(f"-> {out}")


if __name__ == "__main__":
    main()
