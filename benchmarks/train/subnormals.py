"""Subnormal floats in a late run's optimizer moments, and what they cost a step (issue 26, the floor's levers).

    python -m benchmarks.train.subnormals CHECKPOINT [--steps 40] [--rounds 2]
        -> benchmarks/train/results/subnormals-<recipe>-step<N>-<precision>.json

CHECKPOINT is a `DIR/checkpoints/step-N` folder of a run, copied out (under any name) before the run removes it. The run is set
up from it as `nertune train --resume` sets it up; the next --steps steps of its epoch then run with the CPU's
flush-to-zero off, then on, each time from the same restored weights, moments and schedule, --rounds times
(alternating, so drift hits both sides). Also counted: the subnormal elements of the moments, and of the
moments after the off-side's steps; and the bound: one fused AdamW step on a tensor of the largest moment's size,
its first moment all normal or all subnormal, flush-to-zero off and on. Time it on a quiet machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import git_sha, results_dir, write_result
from benchmarks.train.first_steps import step_inputs
from nertune.machine import cpu_description
from nertune.training.precision import fresh_accelerator
from nertune.training.recipe import Recipe
from nertune.training.setup import setup


def subnormal_moments(optimizer) -> dict:
    """Subnormal elements of AdamW's moments: in all, and in the parameter that holds the most."""
    tiny = torch.finfo(torch.float32).tiny
    total = counted = worst = worst_size = 0
    for state in optimizer.state.values():
        for name in ("exp_avg", "exp_avg_sq"):
            moment = state[name]
            n = int(((moment != 0) & (moment.abs() < tiny)).sum())
            total, counted = total + n, counted + moment.numel()
            if n > worst:
                worst, worst_size = n, moment.numel()
    return {"subnormal": total, "elements": counted, "share": total / counted, "worst_tensor": [worst, worst_size]}


def adamw_bound(shape: tuple, repeats: int = 10) -> dict:
    """Milliseconds of one fused AdamW step (the loop's optimizer) on a `shape` tensor, by first moment and flush."""
    out = {}
    for flush in (False, True):
        torch.set_flush_denormal(flush)
        for moment, value in (("normal", 1e-20), ("subnormal", 1e-40)):
            param = torch.nn.Parameter(torch.randn(shape) * 0.02)
            optimizer = torch.optim.AdamW([param], lr=2e-5, weight_decay=0.0, fused=True)
            param.grad = torch.zeros_like(param)  # a row whose token did not come this step
            optimizer.step()
            optimizer.state[param]["exp_avg"].fill_(value)
            optimizer.state[param]["exp_avg_sq"].fill_(1e-12)
            times = []
            for _ in range(repeats):
                optimizer.state[param]["exp_avg"].fill_(value)  # the step decays it: start each from the same
                started = time.perf_counter()
                optimizer.step()
                times.append(time.perf_counter() - started)
            out[f"flush {'on' if flush else 'off'}, {moment} first moment"] = 1000 * sorted(times)[len(times) // 2]
    torch.set_flush_denormal(False)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    saved = json.loads((args.checkpoint / "state.json").read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory() as tmp, fresh_accelerator():
        shutil.copytree(args.checkpoint, Path(tmp) / "run" / "checkpoints" / f"step-{saved['step']}")
        recipe = Recipe.model_validate({**saved["recipe"], "output_dir": f"{tmp}/run"})
        run = setup(recipe, resume=True, progress=False)
        state = run.state
        inputs = step_inputs(run, state.steps_done, args.steps)
        weights = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
        moments, schedule = copy.deepcopy(run.optimizer.state_dict()), copy.deepcopy(run.scheduler.state_dict())
        at_start = subnormal_moments(run.optimizer)
        largest = max((m["exp_avg"] for m in run.optimizer.state.values()), key=lambda m: m.numel()).shape
        run.model.train()
        seconds: dict[str, list[float]] = {"off": [], "on": []}
        after = None
        for _ in range(args.rounds):
            for side in ("off", "on"):
                run.model.load_state_dict(weights)
                run.optimizer.load_state_dict(copy.deepcopy(moments))  # a copy: the fused step writes in place
                run.scheduler.load_state_dict(schedule)
                torch.set_flush_denormal(side == "on")
                started = time.perf_counter()
                for windows, step_weights in inputs:
                    float(run.steps(windows, step_weights).loss)
                seconds[side].append((time.perf_counter() - started) / len(inputs))
                torch.set_flush_denormal(False)
                if side == "off":
                    after = subnormal_moments(run.optimizer)
        bound = adamw_bound(tuple(largest))
    best = {side: min(times) for side, times in seconds.items()}
    result = {
        "checkpoint": f"seed {saved['recipe'].get('seed')}, global step {state.global_step}, epoch {state.epoch}",
        "recipe": saved["recipe"].get("output_dir"),
        "precision": run.precision,
        "steps": len(inputs),
        "sentences_per_step": run.sentences_per_step,
        "seconds_a_step": seconds,
        "sentences_per_second": {side: run.sentences_per_step / s for side, s in best.items()},
        "speedup_flush_on": best["off"] / best["on"],
        "subnormal_moments_at_checkpoint": at_start,
        "subnormal_moments_after_off_steps": after,
        "adamw_step_ms_on_largest_moment": {"shape": list(largest), **bound},
        "machine": cpu_description(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "git_sha": git_sha(),
    }
    name = Path(saved["recipe"].get("output_dir") or "run").name
    out = results_dir(__file__) / f"subnormals-{name}-step{state.global_step}-{run.precision}.json"
    write_result(out, result)
    shown = ("checkpoint", "sentences_per_second", "speedup_flush_on", "subnormal_moments_at_checkpoint", "adamw_step_ms_on_largest_moment")
    print(json.dumps({k: result[k] for k in shown}, indent=1))


if __name__ == "__main__":
    main()
