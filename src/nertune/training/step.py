"""Forward and backward for the sentences of one optimizer step.

The step's windows run in as few padded forward passes as fit the token
budget; each pass's loss is already weighted (model/loss.py), so the summed
gradient is that of the recipe however the passes are cut.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, Sequence

import torch

from nertune.data.features import (
    Window,
    collate,
    collate_labels,
    collate_soft_labels,
    distinct_inputs,
    model_inputs,
    pad_multiple_for,
    token_budget_batches,
)
from nertune.data.packing import pack, packed_logits
from nertune.model.crf import crf_head
from nertune.model.loss import weighted_crf_loss, weighted_crf_soft_loss, weighted_soft_loss, weighted_token_loss
from nertune.model.scored_rows import only_scored, packed_positions
from nertune.training.speed.graphs import GraphedForward


def forward_passes(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """The step's windows (indices, by their lengths) in as few padded passes as fit `max_tokens` each."""
    return token_budget_batches(lengths, max_tokens, 4096) if lengths else []


def forward_backward(
    model,
    step_windows: Sequence[Window],
    weights: Sequence[float],
    pad_id: int,
    device: torch.device,
    max_tokens: int,
    backward: Callable[[torch.Tensor], None] = torch.Tensor.backward,
    no_sync: Callable[[], object] | None = None,
    autocast: Callable[[], object] = nullcontext,
    position_offset: int | None = None,
    graphs: GraphedForward | None = None,
    distill_weight: float = 0.0,
) -> torch.Tensor:
    """Accumulate the step's gradient into model parameters; return the step loss (detached).

    `position_offset` (data/packing.py's `packing_offset`): pack each pass's windows into shared
    rows instead of padding each to the longest; None: one window a row. `graphs` (training/speed/graphs.py):
    replay the packed forward and backward from CUDA graphs, rows bucketed to few widths."""
    step_inputs, row_of = distinct_inputs(step_windows)  # windows sharing an input run it once
    chunks = _windows_of_passes(forward_passes([len(w.input_ids) for w in step_inputs], max_tokens), row_of)
    step_loss = torch.zeros((), device=device)
    pad_multiple = pad_multiple_for(device)
    crf = crf_head(model)
    for index, chunk in enumerate(chunks):
        windows = [step_windows[i] for i in chunk]
        distinct, rows = distinct_inputs(windows)
        if position_offset is None:
            batch = collate(distinct, pad_id, multiple=pad_multiple)
            if len(distinct) != len(windows):
                batch["labels"] = collate_labels(windows, batch["labels"].shape[1])
        else:  # only the labels in collate's layout: the inputs are the packed rows
            width = graphs.width([len(w.input_ids) for w in distinct], pad_multiple) if graphs else None
            inputs, unpack = pack(windows, pad_id, position_offset, pad_multiple, width=width)
            batch = {"labels": collate_labels(windows, unpack.shape[1])}
        # Built on the host and sent without waiting: torch.tensor(..., device=cuda) would sync every step.
        row_weights = torch.tensor([weights[i] for i in chunk], dtype=torch.float32).to(device, non_blocking=True)
        # Data parallel: all-reduce gradients once, after the step's last pass.
        context = no_sync() if (no_sync is not None and index < len(chunks) - 1) else nullcontext()
        with context, autocast():
            first_pieces = [w.first_pieces for w in windows]
            if position_offset is None:
                with only_scored(model, _scored_of_inputs(first_pieces, rows, len(distinct))):  # the loss reads the first pieces only
                    logits = model(**model_inputs(batch, device)).logits  # token_type_ids too when the model has casing
                if len(distinct) != len(windows):  # one row per window, as the labels
                    logits = logits[torch.tensor(rows).to(logits.device, non_blocking=True)]
            elif graphs is not None:
                logits = graphs.logits(inputs, unpack, device)
            else:  # same logits, laid out as `batch` is
                with only_scored(model, packed_positions(first_pieces, unpack, *inputs["input_ids"].shape)):
                    logits = packed_logits(model, inputs, unpack, device)
            if crf is None:
                loss = weighted_token_loss(logits, batch["labels"].to(device, non_blocking=True), row_weights)
            else:
                loss = weighted_crf_loss(crf, logits, batch["labels"], row_weights)
            if distill_weight:
                soft = collate_soft_labels(windows, logits.shape[1], logits.shape[-1])
                if crf is None:
                    taught = weighted_soft_loss(logits, soft, row_weights)
                else:
                    taught = weighted_crf_soft_loss(crf, logits, batch["labels"], soft, row_weights)
                loss = (1 - distill_weight) * loss + distill_weight * taught
        backward(loss)
        step_loss += loss.detach()
    return step_loss


def _windows_of_passes(passes: list[list[int]], row_of: Sequence[int]) -> list[list[int]]:
    """Passes of distinct inputs as passes of the windows that read them (no input shared: the passes themselves)."""
    if sum(map(len, passes)) == len(row_of):
        return passes
    pass_of = {row: index for index, rows in enumerate(passes) for row in rows}
    out: list[list[int]] = [[] for _ in passes]
    for window, row in enumerate(row_of):
        out[pass_of[row]].append(window)
    return out


def _scored_of_inputs(first_pieces: Sequence[Sequence[int]], rows: Sequence[int], n_inputs: int) -> Sequence[Sequence[int]]:
    """Each input row's scored positions: those of every window reading it."""
    if n_inputs == len(rows):
        return first_pieces
    union: list[list[int]] = [[] for _ in range(n_inputs)]
    for pieces, row in zip(first_pieces, rows):
        union[row].extend(pieces)
    return [sorted(p) for p in union]
