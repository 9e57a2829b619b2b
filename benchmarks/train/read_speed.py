"""Seconds to read the three embedded CoNLL-2003 files (`read_conll`, every check on), for one or more checkouts
of nertune side by side: each round runs every checkout once, in a fresh process, the order alternating.

    python -m benchmarks.train.read_speed [CHECKOUT ...] [--rounds 7] [--name NAME]

A checkout is a folder with nertune's `src/` (a `git worktree` of an older commit, say); none: this one. Every
`nertune train`, `evaluate` and `compare` on the embedded corpus pays this once per process, and so does
most of the test suite. Time it on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks.common import ROOT, cpu_line, write_report

CHILD = """
import time
from nertune.data.conll import read_conll
from nertune.data.embedded import conll2003_files
began = time.perf_counter()
sentences = sum(len(read_conll(path).sentences) for path in conll2003_files().values())
print(time.perf_counter() - began, sentences)
"""


def read_once(checkout: Path) -> tuple[float, int]:
    env = {**os.environ, "PYTHONPATH": str(checkout / "src")}
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), int(out[1])


def git_rev(checkout: Path) -> str:
    """The commit of a git checkout, else the folder's name (an unpacked `git archive REV src`, say)."""
    done = subprocess.run(["git", "-C", str(checkout), "describe", "--always", "--dirty"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else checkout.name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkouts", nargs="*", type=Path)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--name", default="read_speed")
    args = parser.parse_args()
    checkouts = args.checkouts or [ROOT]
    seconds: dict[Path, list[float]] = {c: [] for c in checkouts}
    counts = set()
    for round_ in range(args.rounds):
        for checkout in checkouts if round_ % 2 == 0 else checkouts[::-1]:
            took, sentences = read_once(checkout)
            seconds[checkout].append(took)
            counts.add(sentences)
    assert len(counts) == 1, f"the checkouts read different sentences: {counts}"
    first = statistics.median(seconds[checkouts[0]])
    lines = [cpu_line(), f"{args.rounds} alternated rounds, a fresh process each; {counts.pop():,} sentences in the three files", ""]
    for checkout, times in seconds.items():
        median = statistics.median(times)
        lines.append(
            f"{git_rev(checkout):>14}  median {median:.3f} s  (min {min(times):.3f}, max {max(times):.3f})  {first / median:.2f}x the first"
        )
    print("\n".join(lines))
    write_report(__file__, args.name, lines)


if __name__ == "__main__":
    main()
