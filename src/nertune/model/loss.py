"""The loss of one optimizer step, under the two accumulation semantics.

`sentence`: each sentence's mean token loss counts equally — what batch 1 x
accumulation 16 computed in the Hugging Face Trainer before transformers 4.46:
    step loss = sum over sentences s of mean_t(loss_st) / sentences_per_step
`token`: every labelled word counts equally across the step:
    step loss = sum over all labelled words of loss / labelled words in the step

Both are a weighted sum of per-word losses, so the 16 sentences can run in any
number of forward passes and the gradient stays the same. (Accelerate's
`gradient_accumulation_steps` is *not* used: it would divide again.)
"""

from __future__ import annotations

from itertools import chain
from typing import Sequence

import numpy as np
import torch

from nertune.data.features import Window
from nertune.model.crf import log_likelihood, log_marginals


def window_weights(
    windows: Sequence[Window],
    words_in_sentence: Sequence[int],
    semantics: str,
    sentences_per_step: int,
    step_words: int,
    world_size: int = 1,
) -> list[float]:
    """Weight of each labelled word in each window (one number per window).

    Gradients are averaged over processes by data parallelism, so each
    process's share is multiplied by `world_size` to make the average a sum.
    """
    if semantics == "sentence":
        return [world_size / (max(1, words_in_sentence[w.sequence]) * sentences_per_step) for w in windows]
    if semantics == "token":
        return [world_size / max(1, step_words) for _ in windows]
    raise ValueError(f"unknown accumulation semantics {semantics!r}")


def weighted_token_loss(logits: torch.Tensor, labels: torch.Tensor, row_weights: torch.Tensor) -> torch.Tensor:
    """sum over rows of weight_row * sum of that row's per-word cross-entropy."""
    per_word = torch.nn.functional.cross_entropy(
        logits.float().transpose(1, 2), labels, ignore_index=-100, reduction="none"
    )  # [rows, length]; 0 where ignored
    return (per_word.sum(dim=1) * row_weights).sum()


def weighted_crf_loss(crf, logits: torch.Tensor, labels: torch.Tensor, row_weights: torch.Tensor) -> torch.Tensor:
    """sum over rows of weight_row * the CRF's negative log-likelihood of that row's gold tags.

    A row's tag sequence is its labelled words (labels != -100: the first pieces of the words the
    window owns), packed to the left. With `sentence` semantics the weight is 1 / (words x sentences
    per step), so each sentence counts its NLL per word, as the softmax loss counts its mean. A row
    with no labelled word adds nothing. `labels` may stay on the CPU: the packing needs no device sync.
    """
    left = _left_packed(labels, logits.device)
    if left is None:
        return _zero(crf, logits)
    keep, order, mask, tags = left
    emissions = logits[keep].float().gather(1, order.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
    log_likelihood = crf(emissions, tags, mask, reduction="none")
    return (-log_likelihood * row_weights[keep]).sum()


def weighted_soft_loss(logits: torch.Tensor, soft: torch.Tensor, row_weights: torch.Tensor) -> torch.Tensor:
    """sum over rows of weight_row * sum over its labelled words of the cross-entropy from a teacher's label
    probabilities `soft` ([rows, length, labels], all 0 where no word is labelled) to the softmax's."""
    per_word = -(soft.to(logits.device, non_blocking=True) * torch.log_softmax(logits.float(), dim=-1)).sum(dim=-1)
    return (per_word.sum(dim=1) * row_weights).sum()


def weighted_crf_soft_loss(crf, logits: torch.Tensor, labels: torch.Tensor, soft: torch.Tensor, row_weights: torch.Tensor) -> torch.Tensor:
    """`weighted_soft_loss` for a CRF head: the cross-entropy from the teacher's probabilities to the CRF's own
    marginals (model/crf.py), words packed to the left as `weighted_crf_loss` packs them."""
    left = _left_packed(labels, logits.device)
    if left is None:
        return _zero(crf, logits)
    keep, order, mask, _ = left
    index = order.unsqueeze(-1).expand(-1, -1, logits.shape[-1])
    emissions = logits[keep].float().gather(1, index)
    targets = soft.to(logits.device, non_blocking=True)[keep].gather(1, index)
    per_word = -(targets * log_marginals(crf, emissions, mask)).sum(dim=-1).masked_fill(~mask, 0.0)
    return (per_word.sum(dim=1) * row_weights[keep]).sum()


def _left_packed(labels: torch.Tensor, device):
    """The rows with a labelled word, each row's labelled positions first (in order), their mask and gold
    tags, on `device`; None when no row has one. Built on the host: no device sync."""
    keep = (labels != -100).any(dim=1).nonzero().squeeze(1)
    if len(keep) == 0:
        return None
    labels = labels[keep]
    labelled = labels != -100
    counts = labelled.sum(dim=1)
    width = int(counts.max())
    order = torch.sort((~labelled).to(torch.int8), dim=1, stable=True).indices[:, :width]  # labelled positions first, in order
    mask = torch.arange(width, device=labels.device)[None, :] < counts[:, None]
    tags = labels.gather(1, order).masked_fill(~mask, 0)
    return tuple(t.to(device, non_blocking=True) for t in (keep, order, mask, tags))


def _zero(crf, logits: torch.Tensor) -> torch.Tensor:
    """Zero, but reaching every parameter (data parallelism expects a gradient for each)."""
    return (logits.sum() + sum(p.sum() for p in crf.parameters())) * 0.0


def _labelled_pieces(windows: Sequence[Window], unpack: torch.Tensor) -> tuple[np.ndarray, ...]:
    """Each window's labelled word count, and for every labelled word, window by window: its window, its flat
    position in the packed rows (data/packing.py's `unpack`) and its label id."""
    counts = np.array([len(w.labels) if w.labels else 0 for w in windows], dtype=np.int64)
    total = int(counts.sum())
    owner = np.repeat(np.arange(len(windows)), counts)
    where = unpack.numpy()[owner, np.fromiter(chain.from_iterable(w.first_pieces for w in windows if w.labels), np.int64, total)]
    labels = np.fromiter(chain.from_iterable(w.labels for w in windows if w.labels), np.int64, total)
    return counts, owner, where, labels


def packed_targets(
    windows: Sequence[Window], weights: Sequence[float], unpack: torch.Tensor, rows: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels and loss weights laid out as the packed rows (data/packing.py): each window's label ids and
    weight at its labelled pieces, -100 and 0 elsewhere. With them the loss needs no unpacking (training/speed/graphed_step.py)."""
    _, owner, where, label_ids = _labelled_pieces(windows, unpack)
    labels = np.full(rows * width, -100, dtype=np.int64)
    labels[where] = label_ids
    token_weights = np.zeros(rows * width, dtype=np.float32)
    token_weights[where] = np.asarray(weights, dtype=np.float32)[owner]
    return torch.from_numpy(labels.reshape(rows, width)), torch.from_numpy(token_weights.reshape(rows, width))


def weighted_packed_token_loss(logits: torch.Tensor, labels: torch.Tensor, token_weights: torch.Tensor) -> torch.Tensor:
    """`weighted_token_loss` on the packed rows: sum over labelled pieces of weight x cross-entropy."""
    per_token = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="none")
    return (per_token * token_weights.flatten()).sum()


# packed_crf_targets' smallest layout: windows rounded up to a multiple of this, words to a power of two of at least this.
CRF_WINDOWS_MULTIPLE, CRF_LEAST_WORDS = 16, 64


def packed_crf_targets(
    windows: Sequence[Window],
    weights: Sequence[float],
    unpack: torch.Tensor,
    windows_multiple: int = CRF_WINDOWS_MULTIPLE,
    least_words: int = CRF_LEAST_WORDS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A CRF's targets on the packed rows (data/packing.py): `ints` [3, W, T] (each window's labelled positions as
    flat indices into the rows, its gold tags, its mask) and each window's weight [W], windows packed to the left as
    `weighted_crf_loss` packs them. W and T are rounded up (W to a multiple of `windows_multiple`, T to a power of two,
    at least `least_words`) so a CUDA graph's fixed shapes fit most steps; the extra windows weigh 0."""
    counts, owner, where, labels = _labelled_pieces(windows, unpack)
    rows = -(-max(1, len(windows)) // windows_multiple) * windows_multiple
    words = max(least_words, 1 << max(0, int(counts.max(initial=1)) - 1).bit_length())
    within = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)  # each word's place in its window
    ints = np.zeros((3, rows, words), dtype=np.int64)
    ints[0, owner, within], ints[1, owner, within], ints[2, owner, within] = where, labels, 1
    row_weights = np.zeros(rows, dtype=np.float32)
    row_weights[: len(windows)] = np.where(counts > 0, np.asarray(weights, dtype=np.float32), 0.0)
    return torch.from_numpy(ints), torch.from_numpy(row_weights)


def weighted_packed_crf_loss(crf, logits: torch.Tensor, ints: torch.Tensor, row_weights: torch.Tensor) -> torch.Tensor:
    """`weighted_crf_loss` on the packed rows, from `packed_crf_targets`: fixed shapes, no host reads."""
    index, tags, mask = ints[0], ints[1], ints[2].bool()
    emissions = logits.flatten(0, 1)[index]  # [W, T, labels]
    return -(log_likelihood(crf, emissions, tags, mask) * row_weights).sum()
