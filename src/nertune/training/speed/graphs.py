"""CUDA graphs for the training forward and backward: each packed shape captured once, then replayed.

On a GPU the seed recipe's step (16 sentences, ~370 wordpieces) is launch-bound: bert-base's ~1,000
kernels a step take longer to launch from Python than to run. A captured graph replays them all in
one launch (BENCHMARKS.md, "Measurements behind the code"). Graphs need fixed shapes, and packed rows make them few: rows are
rounded up to a multiple of 64 tokens, so an epoch of CoNLL needs about a dozen (rows, width) shapes,
each captured the first time it shows up, for a few percent more tokens than rows a multiple of 8 wide
(BENCHMARKS.md, "Measurements behind the code").

What stays eager: packing on the host, the loss (and a CRF), clipping and the fused AdamW step.
The windows still see only themselves, so the logits are those of the eager packed forward. The loop
graphs the whole step instead where it can (training/speed/graphed_step.py); this one serves a teacher's
targets (distillation) and a run whose whole-step capture failed, steps of several passes included.
Capture needs autocast's weight-cast cache off (the loop's Accelerator is set so on a GPU): a cast
cached outside the graph would be replayed stale after every optimizer step.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import torch

from nertune.data.packing import packed_logits, row_width

BUCKET = 64  # rows are a multiple of this many tokens wide
MAX_SHAPES = 64  # beyond this many captured shapes, new ones run eagerly (each holds its own GPU memory)


def graphs_unavailable(device: torch.device, world_size: int, position_offset: int | None, precision: str) -> str | None:
    """Why the training step cannot be graphed here, or None when it can."""
    if device.type != "cuda":
        return "CUDA graphs need a CUDA device"
    if world_size > 1:
        return "CUDA graphs are not used with several processes (data parallelism all-reduces inside the backward)"
    if position_offset is None:
        return "CUDA graphs need packed rows (pack: true, and an encoder packing knows)"
    if precision == "fp16":
        return "CUDA graphs are not used with fp16 loss scaling (not measured); bf16 and fp32 are graphed"
    return None


class _Logits(torch.nn.Module):
    """The model as a function of tensors alone, which is what a captured graph replays."""

    def __init__(self, model, names: Sequence[str]):
        super().__init__()
        self.model, self.names = model, tuple(names)

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, tensors))).logits


class GraphedForward:
    """The packed training forward (and its backward), replayed from a graph per input shape.

    `capture` is torch.cuda.make_graphed_callables; anything with its signature that returns a module
    (the module itself, on a CPU) runs the same bookkeeping without a GPU."""

    def __init__(self, model, capture: Callable = torch.cuda.make_graphed_callables, max_shapes: int = MAX_SHAPES):
        self.model, self.capture, self.max_shapes = model, capture, max_shapes
        self.graphs: dict[tuple, torch.nn.Module] = {}
        self.capture_seconds = 0.0
        self.eager_passes = 0  # shapes past max_shapes
        # The warm-up inside each capture runs on a side stream; the parameters' gradient accumulators it
        # leaves behind make autograd warn on every later backward. The streams are synchronised anyway.
        if hasattr(torch.autograd.graph, "set_warn_on_accumulate_grad_stream_mismatch"):
            torch.autograd.graph.set_warn_on_accumulate_grad_stream_mismatch(False)

    @staticmethod
    def width(lengths: Sequence[int], multiple: int, bucket: int = BUCKET) -> int:
        """Row width for these windows: `row_width`'s, rounded up to the bucket (the same few shapes recur)."""
        return -(-row_width(lengths, multiple) // bucket) * bucket

    def logits(self, inputs: dict[str, torch.Tensor], unpack: torch.Tensor, device) -> torch.Tensor:
        """`packed_logits` (data/packing.py), through a graph: call under the step's autocast, with grad on."""
        names = tuple(inputs)
        key = (names, *(tuple(t.shape) for t in inputs.values()))
        graphed = self.graphs.get(key)
        if graphed is None and len(self.graphs) >= self.max_shapes:
            self.eager_passes += 1
            return packed_logits(self.model, inputs, unpack, device)
        moved = tuple(inputs[name].to(device, non_blocking=True) for name in names)
        if graphed is None:
            on_cuda = torch.device(device).type == "cuda"
            if on_cuda:
                torch.cuda.synchronize()
            started = time.perf_counter()
            graphed = self.graphs[key] = self.capture(_Logits(self.model, names), moved, allow_unused_input=True)
            if on_cuda:
                torch.cuda.synchronize()
            self.capture_seconds += time.perf_counter() - started
        return graphed(*moved).flatten(0, 1)[unpack.to(device, non_blocking=True)]

    def report(self) -> dict:
        return {"shapes": len(self.graphs), "capture_seconds": self.capture_seconds, "eager_passes": self.eager_passes}
