"""Mixed precision: what the recipe asks, what the hardware has, and why a run got what it got.

    choose_precision(requested, on_gpu) -> Precision(mixed, notice, why)

`mixed` is Accelerate's value ("bf16", "fp16" or "no"); `why` is recorded in metrics.json beside the
CPU's model and flags (cpu_description), so a number can always be traced to the kernels that made it.

On a CPU, bf16 runs on native kernels only where the CPU has AVX-512 BF16 or AMX (nertune/machine.py,
which NERTUNE_CPU_BF16 overrides); elsewhere torch emulates it.

Accelerate keeps its device and precision in process-wide singletons; `fresh_accelerator` clears them
before and after each run, so `nertune.train()` can be called again in the same process with another
precision (a notebook: a quick run, then a real one).

`flush_denormals` sets the CPU's flush-to-zero for the run and restores the caller's setting after: Adam's first
moment of an embedding row decays by 0.9 a step once its token stops coming, reaches subnormal floats after
~700 steps and stays there (0.9 x a few ulps rounds back up), and each subnormal operand costs the CPU a
microcode assist (BENCHMARKS.md, "Why the epochs slow down": a few percent of a late step).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import NamedTuple

import torch
from accelerate.state import AcceleratorState, GradientState

from nertune.machine import cpu_bf16


class Precision(NamedTuple):
    mixed: str  # Accelerate's mixed_precision: "bf16", "fp16" or "no"
    notice: str | None  # said to the user when the run gets less than it asked for
    why: str  # recorded in metrics.json


def choose_precision(requested: str, on_gpu: bool) -> Precision:
    """Accelerate's mixed_precision value for the recipe's `mixed_precision`, with a notice when we fell back."""
    if requested == "no":
        return Precision("no", None, "the recipe asks for fp32 (mixed_precision: no)")
    if on_gpu:
        if requested in ("auto", "bf16") and torch.cuda.is_bf16_supported():
            return Precision("bf16", None, "the GPU supports bf16")
        if requested == "bf16":
            return Precision("fp16", "this GPU has no bf16: using fp16 with loss scaling", "the GPU has no bf16")
        return Precision("fp16", None, "the GPU has no bf16" if requested == "auto" else "the recipe asks for fp16")
    if requested == "fp16":
        return Precision(
            "no",
            "fp16 with loss scaling is for GPUs: on a CPU training runs in fp32 (use bf16 where the CPU has it)",
            "fp16 asked on a CPU",
        )
    usable, why = cpu_bf16()
    if usable:
        return Precision("bf16", None, why)
    return Precision("no", f"mixed precision ({requested}) on a CPU needs bf16 and {why}, so training runs in fp32", why)


def flushing_denormals() -> bool:
    """Whether this thread flushes subnormal floats to zero (torch has a setter, not a getter)."""
    return torch.tensor([1e-39], dtype=torch.float32).mul(1.0).item() == 0.0


@contextmanager
def flush_denormals():
    """Subnormal floats read and written as zero inside, the caller's setting restored after (a no-op where the
    CPU cannot flush). Changes nothing a model learns: a subnormal moment moves a weight by less than its ulp."""
    before = flushing_denormals()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


def reset_accelerator_state() -> None:
    AcceleratorState._reset_state(reset_partial_state=True)  # a live process group is kept: Accelerate re-checks it
    GradientState._reset_state()


@contextmanager
def fresh_accelerator():
    """Accelerate's process-wide state cleared on the way in and on the way out."""
    reset_accelerator_state()
    try:
        yield
    finally:
        reset_accelerator_state()
