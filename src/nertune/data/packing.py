"""Several windows in one row of a forward pass, each seeing only itself.

Random steps (the Trainer's composition: any 16 sentences together) padded to
their longest window carry ~2.4x the real tokens on CoNLL. Packing lays the
windows end to end in rows (first-fit decreasing; as wide as the longest window,
or a little wider where that saves a row: `row_width`), gives each its own
positions 0.. and a block-diagonal attention mask, so every window computes
exactly what it would alone, with ~1.03x the real tokens. The
logits are then gathered back to the usual one-window-a-row layout, so the loss
(and a CRF) see what `collate` would have given them.

Only for encoders whose absolute positions start at a known offset and that
take a ready-made 4D mask (BERT and its kin, RoBERTa's family): model/positions.py's
`packing_offset` says which.
"""

from __future__ import annotations

from itertools import chain, repeat
from typing import NamedTuple, Sequence

import numpy as np
import torch

from nertune.data.features import Window, distinct_inputs


def pack_rows(lengths: Sequence[int], width: int) -> list[list[int]]:
    """Window indices per row: first-fit decreasing into rows of `width` tokens."""
    rows: list[list[int]] = []
    free: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for row, room in enumerate(free):
            if lengths[index] <= room:
                rows[row].append(index)
                free[row] -= lengths[index]
                break
        else:
            rows.append([index])
            free.append(width - lengths[index])
    return rows


def row_width(lengths: Sequence[int], multiple: int = 1, attention_tokens: float = 512.0) -> int:
    """The row width that carries the fewest tokens once the windows are packed.

    Rows as wide as the longest window leave, on average, half a row empty at the end. A slightly wider row often fits
    the same windows in one row fewer. Each candidate row count r is tried at the narrowest width first-fit
    decreasing fits it in; the cost r*w*(1 + w/attention_tokens) also charges for attention
    scores growing with the width (w/512, fitted: BENCHMARKS.md, "Measurements behind the code").
    """
    longest, total = max(lengths), sum(lengths)
    best_cost, best_width = None, 0
    for rows in range(-(-total // longest), 0, -1):
        width = -(-max(longest, -(-total // rows)) // multiple) * multiple
        while len(pack_rows(lengths, width)) > rows:
            width += multiple
        cost = rows * width * (1 + width / attention_tokens)
        if best_cost is None or cost < best_cost:
            best_cost, best_width = cost, width
        if width > 4 * longest:  # wider only costs more attention
            break
    return best_width


class Packed(NamedTuple):
    """Windows laid out in rows: per token its piece id, position, window (-1: padding) and casing class."""

    input_ids: torch.Tensor  # [rows, width]
    position_ids: torch.Tensor
    window_of_token: torch.Tensor  # the window each token belongs to (-1: padding): what the block mask is made of
    token_type_ids: torch.Tensor | None  # casing classes (data/casing.py); None: all 0
    unpack: torch.Tensor  # [windows, longest]: each window's tokens as flat indices into the rows


def pack_layout(windows: Sequence[Window], pad_id: int, position_offset: int, multiple: int = 1, width: int | None = None) -> Packed:
    """Where each window goes: `pack` without the attention mask (which `block_attention_mask` makes, on any device).

    Built from the windows' tokens concatenated, with numpy scatters: a graphed GPU step waits on this
    host work (with model/loss.py's packed_targets; several times faster than writing window by window
    into tensors: BENCHMARKS.md, "Measurements behind the code"). Windows that share an input
    (data/features.py's `make_shared_windows`) share its tokens: laid out once, unpacked once per window."""
    windows, row_of = distinct_inputs(windows)
    lengths = np.array([len(w.input_ids) for w in windows], dtype=np.int64)
    longest = -(-int(lengths.max()) // multiple) * multiple  # collate's width, the layout `unpack` gives back
    width = row_width(lengths.tolist(), multiple) if width is None else width
    rows = pack_rows(lengths.tolist(), width)
    starts = np.empty(len(windows), dtype=np.int64)  # each window's first token, as a flat index into the rows
    for row, members in enumerate(rows):
        offset = row * width
        for index in members:
            starts[index] = offset
            offset += lengths[index]
    total = int(lengths.sum())
    owner = np.repeat(np.arange(len(windows)), lengths)  # each token's window, in window order
    within = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)  # its index inside the window
    flat = starts[owner] + within

    def laid_out(values, fill: int) -> torch.Tensor:
        grid = np.full(len(rows) * width, fill, dtype=np.int64)
        grid[flat] = values
        return torch.from_numpy(grid.reshape(len(rows), width))

    input_ids = laid_out(np.fromiter(chain.from_iterable(w.input_ids for w in windows), np.int64, total), pad_id)
    types = None
    if any(w.token_type_ids for w in windows):  # casing classes; a window without them is all type 0
        types = laid_out(
            np.fromiter(chain.from_iterable(w.token_type_ids or repeat(0, len(w.input_ids)) for w in windows), np.int64, total), 0
        )
    unpack = np.zeros((len(windows), longest), dtype=np.int64)
    unpack[owner, within] = flat
    if len(row_of) != len(windows):
        unpack = unpack[row_of]
    return Packed(input_ids, laid_out(within + position_offset, 0), laid_out(owner, -1), types, torch.from_numpy(unpack))


def block_attention_mask(segment: torch.Tensor) -> torch.Tensor:
    """[rows, 1, width, width] additive float mask: token i attends to token j only within one window.

    A padding token attends to itself alone (a row of the mask with nothing allowed would make softmax
    NaN). Additive float: what both the SDPA and eager attention paths add to their scores."""
    same = (segment[:, :, None] == segment[:, None, :]) & (segment[:, :, None] >= 0)
    same |= torch.eye(segment.shape[1], dtype=torch.bool, device=segment.device)[None]
    mask = torch.zeros(same.shape, dtype=torch.float32, device=segment.device).masked_fill_(~same, torch.finfo(torch.float32).min)
    return mask[:, None]


def pack(
    windows: Sequence[Window], pad_id: int, position_offset: int, multiple: int = 1, width: int | None = None
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Model inputs for the windows packed in rows, and the index that unpacks the logits.

    Rows are `width` tokens wide (default: `row_width`'s choice). Returns (inputs, unpack):
    `model(**inputs).logits.flatten(0, 1)[unpack]` has the [windows, longest, labels] layout
    of `collate(windows)` (`unpack.shape[1]`: the longest window rounded up to `multiple`, as
    collate pads); padding positions point at row 0, token 0 and are ignored by the loss as
    collate's are.
    """
    packed = pack_layout(windows, pad_id, position_offset, multiple, width)
    inputs = {
        "input_ids": packed.input_ids,
        "position_ids": packed.position_ids,
        "attention_mask": block_attention_mask(packed.window_of_token),
    }
    if packed.token_type_ids is not None:
        inputs["token_type_ids"] = packed.token_type_ids
    return inputs, packed.unpack


def packed_logits(model, inputs: dict[str, torch.Tensor], unpack: torch.Tensor, device) -> torch.Tensor:
    """Run the packed rows and return logits in collate's one-window-a-row layout.

    (Under fp16/bf16 autocast, attention casts the float mask with its inputs: the
    float32 minimum becomes -inf, harmless since no row of the mask is all masked.)"""
    moved = {name: tensor.to(device, non_blocking=True) for name, tensor in inputs.items()}
    logits = model(**moved).logits
    return logits.flatten(0, 1)[unpack.to(device, non_blocking=True)]
