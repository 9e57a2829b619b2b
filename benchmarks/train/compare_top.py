"""`nertune compare` verdicts between the two best recipes, seed by seed: is B better than A on validation, on test?

    .venv/bin/python -m benchmarks.train.compare_top [--out NAME] A_RUN:B_RUN [A_RUN:B_RUN ...]
        -> benchmarks/train/results/NAME.json (default compare_top; each pair's `nertune compare --json`, per split)
           + a table

Each pair is two finished run folders trained with the same seed; the paired bootstrap (1,000 resamples of
sentences) says whether the 95% interval of F1(B) - F1(A) excludes 0. Decoding as `make train` prints it (a
CRF's own Viterbi path). With --keep, the pairs and splits NAME.json already holds are kept as scored (each row
names the commit it was scored at), so the seeds of a long run can be compared as each one finishes.
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
    parser.add_argument("--keep", action="store_true", help="keep the rows NAME.json already holds; score only the rest")
    parser.add_argument("pairs", nargs="+", metavar="A_RUN:B_RUN")
    args = parser.parse_args()
    out = results_dir(__file__) / f"{args.out}.json"
    kept = {}
    if args.keep and out.exists():
        old = json.loads(out.read_text())
        kept = {(r["a"]["source"], r["b"]["source"], r["split"]): {"git_sha": old["git_sha"], **r} for r in old["pairs"]}
    rows = []
    for pair in args.pairs:
        a, b = pair.split(":")
        for split in ("validation", "test"):
            result = kept.get((a, b, split)) or {"split": split, "git_sha": git_sha(), **compare(a, b, split)}
            rows.append(result)
            print(
                f"| {Path(a).name} | {Path(b).name} | {split} | {result['a']['f1']:.4f} | {result['b']['f1']:.4f} "
                f"| {result['difference']:+.4f} [{result['low']:+.4f}, {result['high']:+.4f}] | {result['verdict']} |",
                flush=True,
            )
    write_result(out, {"git_sha": git_sha(), "pairs": rows})


if __name__ == "__main__":
    main()
