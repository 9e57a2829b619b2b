"""`nertune compare` verdicts between the two best recipes, seed by seed: is B better than A on validation, on test?

    .venv/bin/python -m benchmarks.train.compare_top [--out NAME] A_RUN:B_RUN [A_RUN:B_RUN ...]
        -> benchmarks/train/results/NAME.json (default compare_top; each pair's `nertune compare --json`, per split)
           + a table

Each pair is two finished run folders trained with the same seed; the paired bootstrap (1,000 resamples of
sentences) says whether the 95% interval of F1(B) - F1(A) excludes 0. Decoding as `make train` prints it (a
CRF's own Viterbi path).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from benchmarks.common import git_sha, results_dir, write_result

NERTUNE = str(Path(sys.executable).with_name("nertune"))


def compare(a: str, b: str, split: str) -> dict:
    args = [NERTUNE, "compare", a, b, "--split", split, "--json", "--precision", "fp32"]  # as the recorded verdicts were scored
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="compare_top", help="results file name, without .json")
    parser.add_argument("pairs", nargs="+", metavar="A_RUN:B_RUN")
    args = parser.parse_args()
    rows = []
    for pair in args.pairs:
        a, b = pair.split(":")
        for split in ("validation", "test"):
            result = compare(a, b, split)
            rows.append({"a": a, "b": b, "split": split, **result})
            print(
                f"| {Path(a).name} | {Path(b).name} | {split} | {result['a']['f1']:.4f} | {result['b']['f1']:.4f} "
                f"| {result['difference']:+.4f} [{result['low']:+.4f}, {result['high']:+.4f}] | {result['verdict']} |",
                flush=True,
            )
    write_result(results_dir(__file__) / f"{args.out}.json", {"git_sha": git_sha(), "pairs": rows})


if __name__ == "__main__":
    main()
