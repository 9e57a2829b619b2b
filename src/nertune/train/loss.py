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

from typing import Sequence

import torch

from nertune.data.features import Window


def window_weights(
    windows: Sequence[Window], words_in_sentence: Sequence[int], semantics: str, sentences_per_step: int, step_words: int, world_size: int = 1
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
