"""Issue 26's point 2 over seeds: `train_speed.py` results of one setting, one per seed, read together.

"At the same F1 (±0.2)" compares two training runs' validation F1; one run a side is one draw of dropout and
order, and seeds of one recipe spread by about that much on their own (README, the noise band). So this reads one result file
per seed (same corpus slice, epochs, model, CPU and precision on both sides, refused otherwise) and reports
each side's mean ± sample standard deviation, the paired difference seed by seed and its mean, and the
speed-up per seed. Writes benchmarks/train/results/train_speed-seeds-<tag>.json.

    .venv/bin/python -m benchmarks.train.train_speed_seeds --tag batch16-full-3ep-avx2cpu \\
        benchmarks/train/results/train_speed-batch16-full-3ep-avx2cpu-2.json \\
        benchmarks/train/results/train_speed-batch16-full-3ep-avx2cpu-seed43.json ...

A file written before `--seed` existed ran seed 42 on both sides (the Trainer's and the recipe's default).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from benchmarks.common import results_dir, write_result
from benchmarks.train.noise_band import band

SAME = ("sentences", "epochs", "eval_sentences", "model", "learning_rate", "literal", "cpu")


def read(paths: list[Path]) -> list[dict]:
    """The result files, each with its seed; exits naming the file when they are not one setting."""
    runs = []
    for path in paths:
        data = json.loads(path.read_text())
        data["seed"] = data.get("seed", 42)
        data["file"] = path.name
        runs.append(data)
    first = runs[0]
    for run in runs[1:]:
        for key in SAME:
            if run.get(key) != first.get(key):
                _refuse(f"{run['file']}: {key} is {run.get(key)!r}, {first['file']} has {first.get(key)!r}; pass results of one setting")
        for side in ("trainer", "nertune"):
            if run[side]["system"] != first[side]["system"] or _precision(run, side) != _precision(first, side):
                _refuse(f"{run['file']}: {side} ran another system or precision than in {first['file']}; pass results of one setting")
    seeds = [run["seed"] for run in runs]
    if len(set(seeds)) != len(seeds):
        _refuse(f"seeds {seeds}: one result file per seed")
    return sorted(runs, key=lambda run: run["seed"])


def _refuse(message: str) -> None:
    print(message, file=sys.stderr)
    sys.exit(2)


def _precision(run: dict, side: str) -> str:
    return run["runs"][[r["key"] for r in run["runs"]].index(side)]["precision"]


def summarize(runs: list[dict]) -> dict:
    per_seed = [
        {
            "seed": run["seed"],
            "file": run["file"],
            "git_sha": run["git_sha"],
            "trainer_validation_f1": run["trainer"]["validation_f1"],
            "nertune_validation_f1": run["nertune"]["validation_f1"],
            "difference_points": 100 * (run["nertune"]["validation_f1"] - run["trainer"]["validation_f1"]),
            "trainer_sentences_per_second": run["trainer"]["sentences_per_second"],
            "nertune_sentences_per_second": run["nertune"]["sentences_per_second"],
            "speedup": run["speedup"],
        }
        for run in runs
    ]
    trainer = [100 * row["trainer_validation_f1"] for row in per_seed]
    nertune = [100 * row["nertune_validation_f1"] for row in per_seed]
    return {
        "seeds": [row["seed"] for row in per_seed],
        "cpu": runs[0]["cpu"],
        "precision": {side: _precision(runs[0], side) for side in ("trainer", "nertune")},
        "setting": {key: runs[0].get(key) for key in SAME if key != "cpu"},
        "per_seed": per_seed,
        "trainer_validation_f1_points": band(trainer),
        "nertune_validation_f1_points": band(nertune),
        "difference_points": band([row["difference_points"] for row in per_seed]),
        "speedup": {
            "min": min(row["speedup"] for row in per_seed),
            "median": statistics.median(row["speedup"] for row in per_seed),
            "max": max(row["speedup"] for row in per_seed),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", type=Path, help="train_speed-*.json, one per seed")
    parser.add_argument("--tag", required=True)
    args = parser.parse_args()
    summary = summarize(read(args.results))
    out = write_result(results_dir(__file__) / f"train_speed-seeds-{args.tag}.json", summary)
    for row in summary["per_seed"]:
        print(
            f"seed {row['seed']}: Trainer {row['trainer_validation_f1']:.4f}, nertune {row['nertune_validation_f1']:.4f} "
            f"({row['difference_points']:+.2f} points), {row['speedup']:.2f}x"
        )
    parts = [
        f"{name} {_points(summary[key])}"
        for name, key in (("Trainer", "trainer_validation_f1_points"), ("nertune", "nertune_validation_f1_points"))
    ]
    print(f"validation F1 (points): {', '.join(parts)}; difference {_points(summary['difference_points'], sign=True)} -> {out}")


def _points(stat: dict, sign: bool = False) -> str:
    mean = f"{stat['mean']:+.2f}" if sign else f"{stat['mean']:.2f}"
    return mean + (f" ± {stat['sd']:.2f}" if stat["sd"] is not None else "")


if __name__ == "__main__":
    main()
