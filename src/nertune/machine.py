"""What this machine's CPU has, read from /proc/cpuinfo: its model, the flags that decide which kernels
run, and whether bf16 is native (AVX-512 BF16 or AMX), for training (training/precision.py) and tagging
(model/load.py `inference_dtype`) alike.

NERTUNE_CPU_BF16 overrides the detection, so both paths can be run on any machine: `on` treats this CPU as
having bf16 (emulated where it has none), `off` as having none, `auto` (the default) reads /proc/cpuinfo.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from nertune.errors import NertuneError

ENV = "NERTUNE_CPU_BF16"
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
RECORDED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx512_fp16")


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
    """Whether this CPU runs bf16 natively (or NERTUNE_CPU_BF16 says to treat it so), and why."""
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
