"""Does torch.compile speed up a CPU training step? (issue 26, the floor's levers): eager against each encoder
layer under `torch.compile(dynamic=True)`, same steps, one process.

    python -m benchmarks.train.compile_layers [RECIPE ...]      (default: seed minilm-context-crf-5ep)
        -> benchmarks/train/results/compile_layers-<cpu kind>.txt

Each recipe is set up as `nertune train` sets it up (training/setup.py) on 2,000 training sentences and runs 20
warm-up steps (the compile happens there) and 40 timed steps, three times: eager, compiled, eager again. The
compiled run uses torch's dropout (`cheap_dropout: false`): the cheap mask's `random_` breaks the graph in every
layer. Dynamic shapes: one graph for every row count and width, no recompiles (TORCH_LOGS=recompiles shows none).
Time it on a quiet machine.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from benchmarks.common import git_sha, results_dir
from benchmarks.train.first_steps import first_steps
from nertune.machine import cpu_bf16, cpu_description


def measure(recipe_name: str, compiled: bool, say, steps: int = 40) -> float:
    with first_steps(recipe_name, 20 + steps, cheap_dropout=not compiled) as (run, inputs):
        if compiled:
            for layer in run.model.base_model.encoder.layer:
                layer.compile(dynamic=True)
        started = time.perf_counter()
        for windows, weights in inputs[:20]:
            float(run.steps(windows, weights).loss)
        warm = time.perf_counter() - started
        started = time.perf_counter()
        losses = [float(run.steps(windows, weights).loss) for windows, weights in inputs[20:]]
        ms = (time.perf_counter() - started) / steps * 1000
        say(
            f"{recipe_name} {run.precision} {'compiled' if compiled else 'eager   '} {ms:7.1f} ms/step "
            f"(first 20 steps {warm:.1f} s; mean loss {sum(losses) / steps:.4f})"
        )
        return ms


def main() -> None:
    lines = [f"{cpu_description()}, torch {torch.__version__}, {torch.get_num_threads()} threads, code {git_sha()}"]

    def say(text: str) -> None:
        lines.append(text)
        print(text, flush=True)

    for recipe_name in sys.argv[1:] or ["seed", "minilm-context-crf-5ep"]:
        first, compiled, again = (measure(recipe_name, c, say) for c in (False, True, False))
        say(f"{recipe_name}: eager / compiled {((first + again) / 2) / compiled:.3f}")
    out = Path(results_dir(__file__)) / f"compile_layers-{'bf16cpu' if cpu_bf16()[0] else 'avx2cpu'}.txt"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
