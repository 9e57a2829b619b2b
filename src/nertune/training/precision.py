"""Mixed precision: what the recipe asks, what the hardware has, and why a run got what it got.

    choose_precision(requested, on_gpu) -> Precision(mixed, notice, why)

`mixed` is Accelerate's value ("bf16", "fp16" or "no"); `why` is recorded in metrics.json beside the
CPU's model and flags (cpu_description), so a number can always be traced to the kernels that made it.

On a CPU, bf16 autocast runs on native kernels only where the CPU has AVX-512 BF16 or AMX; elsewhere
torch emulates it. NERTUNE_CPU_BF16 overrides the detection, so both paths can be run on any machine:
`on` treats this CPU as having bf16 (emulated where it has none), `off` as having none, `auto` (the
default) reads /proc/cpuinfo.

Accelerate keeps its device and precision in process-wide singletons; `fresh_accelerator` clears them
before and after each run, so `nertune.train()` can be called again in the same process with another
precision (a notebook: a quick run, then a real one).
"""

from __future__ import annotations

import os
import platform
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import torch
from accelerate.state import AcceleratorState, GradientState

from nertune.errors import NertuneError

ENV = "NERTUNE_CPU_BF16"
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
RECORDED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx512_fp16")


class Precision(NamedTuple):
    mixed: str  # Accelerate's mixed_precision: "bf16", "fp16" or "no"
    notice: str | None  # said to the user when the run gets less than it asked for
    why: str  # recorded in metrics.json


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_description() -> dict:
    """The CPU's model name and the flags that decide which kernels run (for metrics.json and benchmarks)."""
    info = _cpuinfo()
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), platform.processor())
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    return {"model": model, "flags": {flag: flag in flags for flag in RECORDED_FLAGS}}


def cpu_bf16() -> tuple[bool, str]:
    """Whether training on this CPU may use bf16 autocast, and why."""
    setting = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if setting in ("on", "1", "true", "yes"):
        return True, f"{ENV}={setting}: bf16 forced on (emulated where the CPU has no bf16 instructions)"
    if setting in ("off", "0", "false", "no"):
        return False, f"{ENV}={setting}: this CPU is treated as having no bf16"
    if setting != "auto":
        raise NertuneError(f"{ENV}={setting!r} is not a setting", fix=f"set {ENV} to auto, on or off (or unset it)")
    flags = cpu_description()["flags"]
    found = [flag for flag in BF16_FLAGS if flags[flag]]
    if found:
        return True, f"the CPU has {' and '.join(found)}"
    return False, "the CPU has no avx512_bf16 or amx_bf16"


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
