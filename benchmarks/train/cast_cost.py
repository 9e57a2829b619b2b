"""What autocast's per-call weight cast costs a linear layer on this CPU (issue 26: where a bf16 step goes).

    python -m benchmarks.train.cast_cost > benchmarks/train/results/cast_cost.txt

One MiniLM feed-forward shape (rows × 384 @ 384 × 1,536), forward only, at the row counts of a seed step (314), a
make-train step (732) and a tagging pass (2,048): fp32; bf16 weights and inputs; fp32 tensors cast to bf16 in the
call; and under torch.autocast (as training runs it). The mean of 200 calls after 10 warm-up calls.
"""

from __future__ import annotations

import time

import torch

import nertune  # noqa: F401  (at import, as in a run: oneDNN's kernel cache, before the first kernel)
from benchmarks.common import cpu_line


def mean_us(call, n: int = 200) -> float:
    for _ in range(10):
        call()
    began = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - began) / n * 1e6


def autocast_linear(x, w, b):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return torch.nn.functional.linear(x, w, b)


def main() -> None:
    torch.manual_seed(0)
    print(f"{cpu_line()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    linear = torch.nn.functional.linear
    for rows in (314, 732, 2048):
        x, w, b = torch.randn(rows, 384), torch.randn(1536, 384), torch.randn(1536)
        xb, wb, bb = x.bfloat16(), w.bfloat16(), b.bfloat16()
        flop = 2 * rows * 384 * 1536
        fp32 = mean_us(lambda: linear(x, w, b))
        bf16 = mean_us(lambda: linear(xb, wb, bb))
        cast = mean_us(lambda: linear(x.bfloat16(), w.bfloat16(), b.bfloat16()))
        auto = mean_us(lambda: autocast_linear(x, w, b))
        print(
            f"rows {rows}: fp32 {fp32:.0f} us ({flop / fp32 / 1e3:.0f} GFLOP/s); bf16 {bf16:.0f} us ({flop / bf16 / 1e3:.0f} GFLOP/s); "
            f"cast in the call {cast:.0f} us; autocast {auto:.0f} us"
        )


if __name__ == "__main__":
    main()
