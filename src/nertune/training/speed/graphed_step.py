"""The whole optimizer step as one CUDA graph per packed shape: forward, loss, backward, clip and AdamW.

training/speed/graphs.py replays the forward and backward of a step; what it leaves eager still costs the host
a step's worth of work the GPU then waits on: the loss and its unpacking gather, clipping, the AdamW
launches, and a [rows, 1, width, width] float attention mask copied from pageable memory, which the
driver may stage by waiting for the stream: several times the step's arithmetic for bert-base
(BENCHMARKS.md, "Measurements behind the code"). Here the host does three things a step:
pack the windows and write them into a pinned buffer, copy that buffer to the GPU without waiting,
and replay the shape's graph.

What the graph computes is the loop's eager step: the same packed rows (widths in 64-token buckets,
as training/speed/graphs.py), the attention mask built on the GPU from each token's window number, the loss
on the packed layout (model/loss.py: the same weighted sum, no unpacking for a softmax head), `clip_grad_norm_` and the
fused AdamW step, its learning rate read from a device tensor the host fills before each replay.
A CRF head's loss is in the graph too: its windows' words gathered from the packed rows into a fixed
[windows, words] layout (both rounded up, so shapes recur), and the partition function as a tree of
log-space matrix products (model/crf.py `log_likelihood`: no loop over the words, no host read); a step
whose tree would pass `fits_tree`'s size (long windows) runs eagerly, and a label set whose smallest layout
already does (`whole_step_fits`: 51 labels or more) is not graphed whole at all. One process, one pass a
step; a teacher's targets keep the step eager (training/speed/graphs.py).

Three things make a captured optimizer step safe:
- AdamW's moments must exist before any capture (a capture records kernels, it does not allocate
  state for later): the run's first step is eager, and makes them.
- The learning rate is a float everywhere else (the scheduler, checkpoints, logs); during a capture
  each param group's lr is swapped for its device tensor (and `capturable` set, which the fused
  kernel needs no other way), then swapped back.
- All shapes capture into one memory pool. That is safe in any replay order because nothing a graph
  leaves behind is read later from its pool: gradients are written and consumed within a replay,
  and the step's loss and gradient norm are copied out to tensors allocated before the capture.
"""

from __future__ import annotations

import time
import traceback
from contextlib import contextmanager
from typing import Callable, Sequence

import torch

from nertune.data.features import Window, distinct_inputs
from nertune.data.packing import block_attention_mask, pack_layout
from nertune.model.crf import crf_head, fits_tree
from nertune.model.loss import (
    CRF_LEAST_WORDS,
    CRF_WINDOWS_MULTIPLE,
    packed_crf_targets,
    packed_targets,
    weighted_packed_crf_loss,
    weighted_packed_token_loss,
)
from nertune.training.speed.graphs import MAX_SHAPES, GraphedForward
from nertune.training.step import forward_passes

WARM_UP = 3  # eager passes on a side stream before a capture (cuBLAS workspaces, autograd's lazy set-up)


def whole_step_fits(model) -> bool:
    """Whether `GraphedStep` can hold any step of `model`'s: with a CRF too many labels for even the smallest
    [windows, words] layout to fit `fits_tree` would send every step back to the eager path, forward included
    (the runner keeps the graphed forward alone instead)."""
    crf = crf_head(model)
    return crf is None or fits_tree(CRF_WINDOWS_MULTIPLE, CRF_LEAST_WORDS, crf.num_tags)


def capture_cuda_graph(warm_up: Callable[[], None], step: Callable[[], None], pool) -> Callable[[], None]:
    """PyTorch's whole-network capture: warm up on a side stream, capture `step`, return the replay."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(WARM_UP):
            warm_up()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        step()
    return graph.replay


class _Shape:
    """One step shape's buffers (named, as the host fills them): pinned host staging, their device copies, and the
    step's outputs."""

    def __init__(self, host: dict[str, torch.Tensor], device: torch.device):
        pinned = device.type == "cuda"  # a copy from pinned pages is truly asynchronous
        self.host = {name: torch.empty_like(t, pin_memory=pinned) for name, t in host.items()}
        self.on_device = {name: torch.empty_like(t, device=device) for name, t in host.items()}
        self.loss = torch.zeros((), device=device)
        self.norm = torch.zeros((), device=device)
        self.copied = torch.cuda.Event() if pinned else None
        self.replay: Callable[[], None] | None = None

    def load(self, host: dict[str, torch.Tensor]) -> None:
        if self.copied is not None:
            self.copied.synchronize()  # the previous copy out of these pinned pages has been made
        for name, tensor in host.items():
            self.host[name].copy_(tensor)
            self.on_device[name].copy_(self.host[name], non_blocking=True)
        if self.copied is not None:
            self.copied.record()


class GraphedStep:
    """`step(windows, weights)` runs one optimizer step from the shape's graph, or returns None where
    the loop's eager step must run instead (the first step; a step needing several passes; shapes
    past `max_shapes`).

    `capture(warm_up, step, pool)` is `capture_cuda_graph`; anything with its signature that returns
    a callable running `step` (on a CPU: `step` itself) runs the same bookkeeping without a GPU."""

    def __init__(
        self,
        model,
        optimizer,
        max_grad_norm: float | None,
        autocast: Callable,
        device,
        pad_id: int,
        position_offset: int,
        max_tokens: int,
        capture: Callable = capture_cuda_graph,
        max_shapes: int = MAX_SHAPES,
    ):
        self.model, self.autocast, self.device = model, autocast, torch.device(device)
        self.crf = crf_head(model)  # its loss is graphed too
        self.optimizer = getattr(optimizer, "optimizer", optimizer)  # the torch optimizer under Accelerate's wrapper
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.max_grad_norm, self.pad_id, self.position_offset, self.max_tokens = max_grad_norm, pad_id, position_offset, max_tokens
        self.capture, self.max_shapes = capture, max_shapes
        self.pool = torch.cuda.graph_pool_handle() if self.device.type == "cuda" else None
        self.lrs = [torch.zeros((), dtype=torch.float32, device=self.device) for _ in self.optimizer.param_groups]
        self.shapes: dict[tuple, _Shape] = {}
        self.capture_seconds = 0.0
        self.replays = 0
        self.eager_steps = 0
        self.failed: str | None = None  # why a capture failed: the run goes on with the eager step
        self.failed_at: str | None = None  # the failure's innermost frames, for metrics.json (a GPU run may be the only one)
        self._ready = False  # AdamW's moments exist

    def step(self, windows: Sequence[Window], weights: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """One optimizer step (gradient, clip, AdamW at each group's current lr); returns (loss, grad norm)."""
        lengths = [len(w.input_ids) for w in distinct_inputs(windows)[0]]  # a shared input is laid out once
        if self.failed or len(forward_passes(lengths, self.max_tokens)) != 1 or not self._moments_exist():
            self.eager_steps += 1
            return None
        packed = pack_layout(windows, self.pad_id, self.position_offset, 8, GraphedForward.width(lengths, 8))
        rows, width = packed.input_ids.shape
        fields = [packed.input_ids, packed.position_ids, packed.window_of_token]
        if packed.token_type_ids is not None:
            fields.append(packed.token_type_ids)
        host = {"ints": torch.stack(fields)}
        if self.crf is None:
            host["labels"], host["weights"] = packed_targets(windows, weights, packed.unpack, rows, width)
        else:
            host["crf"], host["weights"] = packed_crf_targets(windows, weights, packed.unpack)
            if not fits_tree(*host["crf"].shape[1:], self.crf.num_tags):
                self.eager_steps += 1
                return None
        key = tuple((name, *t.shape) for name, t in host.items())
        shape = self.shapes.get(key)
        if shape is None and len(self.shapes) >= self.max_shapes:
            self.eager_steps += 1
            return None
        if shape is None:
            shape = self.shapes[key] = _Shape(host, self.device)
            shape.load(host)
            if not self._capture(shape):
                del self.shapes[key]
                self.eager_steps += 1
                return None
        else:
            shape.load(host)
        for lr, group in zip(self.lrs, self.optimizer.param_groups):
            lr.fill_(group["lr"])  # the scheduler's float, read by the graph's AdamW from device memory
        with self._lr_tensors():  # a graph reads no Python state; without a GPU the step runs, and reads these
            shape.replay()
        self.replays += 1
        return shape.loss.clone(), (shape.norm.clone() if self.max_grad_norm else None)

    # ---- what a replay runs ------------------------------------------------

    def _loss(self, shape: _Shape) -> torch.Tensor:
        given = shape.on_device
        ids, positions, segment = given["ints"][0], given["ints"][1], given["ints"][2]
        inputs = {"input_ids": ids, "position_ids": positions, "attention_mask": block_attention_mask(segment)}
        if given["ints"].shape[0] > 3:
            inputs["token_type_ids"] = given["ints"][3]
        with self.autocast():
            logits = self.model(**inputs).logits
        if self.crf is None:
            return weighted_packed_token_loss(logits, given["labels"], given["weights"])
        return weighted_packed_crf_loss(self.crf, logits, given["crf"], given["weights"])

    def _whole_step(self, shape: _Shape) -> None:
        loss = self._loss(shape)
        loss.backward()
        if self.max_grad_norm:
            shape.norm.copy_(torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm, foreach=True))
        self.optimizer.step()
        shape.loss.copy_(loss.detach())

    def _warm_up(self, shape: _Shape) -> None:
        self._loss(shape).backward()  # no optimizer step: the warm-up changes no weight
        self.optimizer.zero_grad(set_to_none=True)

    def _capture(self, shape: _Shape) -> bool:
        """Capture the shape's step (which runs nothing yet); False, and `failed` says why, if it cannot be."""
        on_cuda = self.device.type == "cuda"
        if on_cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)  # the capture allocates the gradients it writes
        try:
            with self._lr_tensors():
                shape.replay = self.capture(lambda: self._warm_up(shape), lambda: self._whole_step(shape), self.pool)
        except Exception as error:  # nothing ran inside the capture: weights and moments are as they were
            self.failed = f"{type(error).__name__}: {error}"
            self.failed_at = traceback.format_exc(limit=-6)
            self.optimizer.zero_grad(set_to_none=True)
            return False
        finally:
            if on_cuda:
                torch.cuda.synchronize()
            self.capture_seconds += time.perf_counter() - started
        return True

    @contextmanager
    def _lr_tensors(self):
        groups = self.optimizer.param_groups
        saved = [(group["lr"], group.get("capturable", False)) for group in groups]
        for group, lr in zip(groups, self.lrs):
            group["lr"], group["capturable"] = lr, True
        try:
            yield
        finally:
            for group, (lr, capturable) in zip(groups, saved):
                group["lr"], group["capturable"] = lr, capturable

    def _moments_exist(self) -> bool:
        if not self._ready:
            state = self.optimizer.state
            self._ready = all(p in state and len(state[p]) > 0 for p in self.params)
        return self._ready

    def report(self) -> dict:
        return {
            "shapes": len(self.shapes),
            "capture_seconds": self.capture_seconds,
            "replays": self.replays,
            "eager_steps": self.eager_steps,
            "failed": self.failed,
            "failed_at": self.failed_at,
        }
