"""The step runner the loop calls once a step, chosen once when a run is set up: graphed or eager.

`step_runner(...)` picks the fastest path that applies (training/speed/: the whole step or the forward and
backward from CUDA graphs on one GPU; eager everywhere else) and `StepRunner` runs it, falling back with a
notice when a capture fails. Every path computes the same step (tests of the graphed step).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import torch

from nertune.data.features import Window
from nertune.training.speed.embedding_grad import KeptEmbeddingGradient
from nertune.training.speed.graphed_step import GraphedStep, whole_step_fits
from nertune.training.speed.graphs import GraphedForward, graphs_unavailable
from nertune.training.step import forward_backward


class StepResult(NamedTuple):
    loss: torch.Tensor  # the step's loss, detached, on the device
    grad_norm: torch.Tensor | None  # before clipping; None when the recipe does not clip
    capture_seconds: float  # spent capturing CUDA graphs in this step: reported apart, not as training time


class StepRunner:
    """One optimizer step: forward and backward of the step's windows, clip, AdamW, the schedule, zeroed grads.

    Chosen once when a run is set up (`step_runner`): on one GPU with packed rows the whole step replays from
    a CUDA graph per shape (a CRF head's loss included), or the forward and backward alone do (a teacher's
    targets, a CRF with too many labels for the graphed loss); otherwise eager. The few steps a whole-step run
    cannot hold (the first, one too big for one pass, a CRF's past model/crf.py `fits_tree`) run eagerly,
    forward included. A capture that fails falls back to the next path and says so once. What it computes is
    the same on every path.
    """

    def __init__(
        self,
        model,
        optimizer,
        scheduler,
        accelerator,
        recipe,
        pad_id: int,
        position_offset: int | None,
        graphs: GraphedForward | None = None,
        whole_step: GraphedStep | None = None,
        kept_embedding_grad: KeptEmbeddingGradient | None = None,
        say: Callable[[str], None] = print,
    ):
        self.model, self.optimizer, self.scheduler, self.accelerator = model, optimizer, scheduler, accelerator
        self.recipe, self.pad_id, self.position_offset = recipe, pad_id, position_offset
        self.graphs, self.whole_step, self.kept_embedding_grad, self.say = graphs, whole_step, kept_embedding_grad, say
        self.world = accelerator.num_processes
        self.failure_said = False

    def __call__(self, step_windows: Sequence[Window], weights: Sequence[float]) -> StepResult:
        accelerator, model, whole_step = self.accelerator, self.model, self.whole_step
        captured = self.capture_seconds()
        graphed = whole_step.step(step_windows, weights) if whole_step else None
        if graphed is not None:  # forward, loss, backward, clip and AdamW replayed from one graph
            loss, grad_norm = graphed
        else:
            loss = forward_backward(
                model,
                step_windows,
                weights,
                self.pad_id,
                accelerator.device,
                self.recipe.max_tokens_per_forward,
                backward=accelerator.backward,
                no_sync=(lambda: accelerator.no_sync(model)) if self.world > 1 else None,
                autocast=accelerator.autocast,
                position_offset=self.position_offset,
                # with the whole step graphed, its few eager steps (the first, any too big) capture nothing more
                graphs=self.graphs if not whole_step or whole_step.failed else None,
                distill_weight=self.recipe.distill_weight if self.recipe.teachers else 0.0,
            )
            if not step_windows:  # a process with no sentences this step still joins the all-reduce
                accelerator.backward(sum(p.sum() * 0 for p in model.parameters()))
            max_norm = self.recipe.max_grad_norm
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), max_norm) if max_norm else None
            self.optimizer.step()
            if whole_step and whole_step.failed and not self.failure_said:
                self.say(
                    f"CUDA graph of the whole step failed ({whole_step.failed}); "
                    "the forward and backward stay graphed, the rest runs eagerly"
                )
                self.failure_said = True
        capture = self.capture_seconds() - captured
        if not accelerator.optimizer_step_was_skipped:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.kept_embedding_grad:
            self.kept_embedding_grad.reset()
        return StepResult(loss, grad_norm, capture)

    def capture_seconds(self) -> float:
        return (self.graphs.capture_seconds if self.graphs else 0.0) + (self.whole_step.capture_seconds if self.whole_step else 0.0)

    def describe(self) -> str:
        """What a run's first line says about graphs ("" when eager)."""
        if not self.graphs:
            return ""
        what = "the whole step" if self.whole_step else "forward and backward"
        return f", CUDA graphs ({what}: each new packed shape captured once, its time reported apart)"

    def report(self) -> dict | None:
        """metrics.json's `cuda_graphs`: None when eager."""
        if not self.graphs:
            return None
        return {**self.graphs.report(), "whole_step": self.whole_step.report() if self.whole_step else None}


def step_runner(
    model, optimizer, scheduler, accelerator, recipe, pad_id: int, position_offset: int | None, precision: str, say: Callable[[str], None]
) -> StepRunner:
    """The fastest step that applies to this run (after `accelerator.prepare`); a notice where a recipe's
    `cuda_graphs: true` cannot be honoured."""
    device, world = accelerator.device, accelerator.num_processes
    # CPU, one process: the embedding's gradient stays allocated between steps (training/speed/embedding_grad.py)
    kept = KeptEmbeddingGradient(model) if (device.type == "cpu" and world == 1 and recipe.kept_embedding_grad) else None
    graphs = whole_step = None
    if recipe.cuda_graphs is not False:
        why_not = graphs_unavailable(device, world, position_offset, precision)
        if why_not is None:
            graphs = GraphedForward(model)
        elif recipe.cuda_graphs:
            say(f"cuda_graphs: {why_not}; the steps run eagerly")
    # A teacher's targets stay eager, and a CRF's loss past any layout's tree too: they keep the graphed forward alone.
    if graphs and not recipe.teachers and whole_step_fits(model):
        whole_step = GraphedStep(
            model, optimizer, recipe.max_grad_norm, accelerator.autocast, device, pad_id, position_offset, recipe.max_tokens_per_forward
        )
    return StepRunner(model, optimizer, scheduler, accelerator, recipe, pad_id, position_offset, graphs, whole_step, kept, say)
