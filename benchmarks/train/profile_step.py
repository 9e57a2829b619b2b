"""Where a training step's time goes (issue 26, the floor's levers): torch.profiler over steps of a recipe.

    python -m benchmarks.train.profile_step [--recipe minilm-context-crf] [--steps 40] [--warmup 10]
        -> benchmarks/train/results/profile_step-<recipe>-<precision>.txt

The run is set up exactly as `nertune train` sets it up (training/setup.py: windows, packing, precision,
cheap dropout, used rows), on the first --sentences training sentences; the steps are the first epoch's,
drawn from the recipe's seed, and run through the run's own step runner. The report: seconds a step,
sentences a second, and the operators by self CPU time. Time it on a quiet machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.common import git_sha, results_dir
from benchmarks.train.first_steps import first_steps
from nertune.machine import cpu_description


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="minilm-context-crf")
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rows", type=int, default=30, help="operators listed")
    args = parser.parse_args()
    with first_steps(args.recipe, args.warmup + args.steps, args.sentences) as (run, inputs):
        for windows, weights in inputs[: args.warmup]:
            run.steps(windows, weights)
        timed = inputs[args.warmup :]
        started = time.perf_counter()
        for windows, weights in timed:
            float(run.steps(windows, weights).loss)
        seconds = (time.perf_counter() - started) / len(timed)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for windows, weights in timed:
                float(run.steps(windows, weights).loss)
        tokens = sum(len(w.input_ids) for windows, _ in timed for w in windows) / len(timed)
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows)
    report = (
        f"recipe {args.recipe}, {run.precision}, {cpu_description()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"code {git_sha()}\n{len(timed)} steps of {run.sentences_per_step} sentences ({tokens:.0f} window tokens a step): "
        f"{seconds * 1000:.1f} ms a step, {run.sentences_per_step / seconds:.1f} sentences/s (unprofiled)\n\n{table}\n"
    )
    out = Path(results_dir(__file__)) / f"profile_step-{args.recipe}-{run.precision}.txt"
    out.write_text(report, encoding="utf-8")
    print(report)


if __name__ == "__main__":
    main()
