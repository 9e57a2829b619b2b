"""Mixed precision as the recipe asks, as far as the hardware allows."""

from __future__ import annotations

from pathlib import Path

import torch


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def choose_precision(requested: str, on_gpu: bool) -> tuple[str, str | None]:
    """Accelerate's mixed_precision value, and a notice when we fell back."""
    if requested == "no":
        return "no", None
    if on_gpu:
        if requested in ("auto", "bf16") and torch.cuda.is_bf16_supported():
            return "bf16", None
        if requested == "bf16":
            return "fp16", "this GPU has no bf16: using fp16 with loss scaling"
        return "fp16", None
    if requested in ("auto", "bf16") and cpu_has_bf16():
        return "bf16", None
    return "no", f"mixed precision ({requested}) needs bf16 hardware; this CPU has none, so training runs in fp32"
