"""Word scores to IOB2 tags: argmax, or Viterbi constrained to valid IOB2.

Constrained decoding forbids I-X after O, after another type, or at the
start of a sentence, and finds the most probable valid sequence under the
model's per-word log-probabilities (no learned transitions: a softmax head
has none). Used the same way by evaluation, the Tagger and serving.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def allowed_transitions(labels: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(start_allowed [C], transition_allowed [C_prev, C_next]) as bool tensors."""
    n = len(labels)
    kinds = [(label.split("-", 1) + [None])[:2] if label != "O" else ["O", None] for label in labels]
    start = torch.tensor([prefix != "I" for prefix, _ in kinds])
    allowed = torch.ones((n, n), dtype=torch.bool)
    for j, (prefix, entity_type) in enumerate(kinds):
        if prefix == "I":
            for i, (_, previous_type) in enumerate(kinds):
                allowed[i, j] = previous_type == entity_type
    return start, allowed


def viterbi(log_probs: torch.Tensor, start: torch.Tensor, allowed: torch.Tensor) -> list[int]:
    """Best label path for one sequence of [n_words, C] log-probabilities."""
    # NumPy, not torch: thousands of 9x9 steps, where torch's per-op overhead dominates.
    scores = log_probs.double().numpy()
    if scores.shape[0] == 0:
        return []
    transition = np.where(allowed.numpy(), 0.0, -np.inf)  # [prev, next]
    score = scores[0] + np.where(start.numpy(), 0.0, -np.inf)
    backpointers = []
    for t in range(1, scores.shape[0]):
        candidates = score[:, None] + transition
        best_prev = candidates.argmax(axis=0)
        backpointers.append(best_prev)
        score = candidates[best_prev, np.arange(len(best_prev))] + scores[t]
    path = [int(score.argmax())]
    for best_prev in reversed(backpointers):
        path.append(int(best_prev[path[-1]]))
    return path[::-1]


def decode(logits: Sequence[torch.Tensor], id2label: dict[int, str], constrain: bool = True) -> list[list[str]]:
    """Tags for each sequence of word logits."""
    if not constrain:
        return [[id2label[int(i)] for i in x.argmax(-1)] for x in logits]
    labels = [id2label[i] for i in range(len(id2label))]
    start, allowed = allowed_transitions(labels)
    start_ok, allowed_ok = start.tolist(), allowed.tolist()
    out = []
    for x in logits:
        log_probs = x.float().log_softmax(-1)
        path = log_probs.argmax(-1).tolist()
        # Most sentences are already valid IOB2: skip the dynamic programme for them.
        if _valid(path, start_ok, allowed_ok):
            out.append([labels[i] for i in path])
        else:
            out.append([labels[i] for i in viterbi(log_probs, start, allowed)])
    return out


def _valid(path: list[int], start: list[bool], allowed: list[list[bool]]) -> bool:
    if path and not start[path[0]]:
        return False
    return all(allowed[a][b] for a, b in zip(path, path[1:]))
