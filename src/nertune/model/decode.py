"""Word scores to IOB2 tags: argmax, or Viterbi constrained to valid IOB2.

Constrained decoding forbids I-X after O, after another type, or at the
start of a sentence, and finds the most probable valid sequence under the
model's per-word log-probabilities. A model with a CRF head (model/crf.py)
adds its learned start, transition and end scores to the same Viterbi, with
or without the constraint. Used the same way by evaluation, the Tagger
(PyTorch and ONNX) and serving.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from nertune.data.schemes import prefix_and_type
from nertune.model.crf import CrfScores


def allowed_transitions(labels: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(start_allowed [C], transition_allowed [C_prev, C_next]) as bool tensors."""
    n = len(labels)
    kinds = [prefix_and_type(label) for label in labels]
    start = torch.tensor([prefix != "I" for prefix, _ in kinds])
    allowed = torch.ones((n, n), dtype=torch.bool)
    for j, (prefix, entity_type) in enumerate(kinds):
        if prefix == "I":
            for i, (_, previous_type) in enumerate(kinds):
                allowed[i, j] = previous_type == entity_type
    return start, allowed


def viterbi(log_probs: torch.Tensor, start: torch.Tensor, allowed: torch.Tensor, crf: CrfScores | None = None) -> list[int]:
    """Best label path for one sequence of [n_words, C] word scores.

    A path's score is the sum of its words' scores, plus the CRF's start, transition and end
    scores when `crf` is given; only paths that start with a `start` label and step along
    `allowed` transitions count.
    """
    # NumPy, not torch: thousands of 9x9 steps, where torch's per-op overhead dominates.
    scores = log_probs.double().numpy()
    if scores.shape[0] == 0:
        return []
    transition = np.where(allowed.numpy(), 0.0, -np.inf)  # [prev, next]
    first = np.where(start.numpy(), 0.0, -np.inf)
    last = 0.0
    if crf is not None:
        crf_start, crf_end, crf_transitions = (t.double().numpy() for t in crf)
        first, transition, last = first + crf_start, transition + crf_transitions, crf_end
    score = scores[0] + first
    backpointers = []
    for t in range(1, scores.shape[0]):
        candidates = score[:, None] + transition
        best_prev = candidates.argmax(axis=0)
        backpointers.append(best_prev)
        score = candidates[best_prev, np.arange(len(best_prev))] + scores[t]
    score = score + last
    path = [int(score.argmax())]
    for best_prev in reversed(backpointers):
        path.append(int(best_prev[path[-1]]))
    return path[::-1]


def decode(
    logits: Sequence[torch.Tensor], id2label: dict[int, str], constrain: bool = True, crf: CrfScores | None = None
) -> list[list[str]]:
    """Tags for each sequence of word logits; `crf`: the model's CRF scores (model/crf.py crf_scores), None for softmax."""
    if not logits:
        return []
    # Batched over every word (row by row the same numbers as a call per sequence), then each sequence's slice.
    lengths = [len(x) for x in logits]
    if not constrain and crf is None:
        return [[id2label[i] for i in path] for path in slices(torch.cat(logits).argmax(-1).tolist(), lengths)]
    labels = [id2label[i] for i in range(len(id2label))]
    if constrain:
        start, allowed = allowed_transitions(labels)
    else:  # a CRF's own best path, any transition allowed
        start, allowed = torch.ones(len(labels), dtype=torch.bool), torch.ones((len(labels), len(labels)), dtype=torch.bool)
    all_log_probs = torch.cat(logits).float().log_softmax(-1)
    if crf is not None:
        # Learned transitions can make a path other than the words' argmax the best: always the full Viterbi.
        # (log-softmax only shifts each word's scores by a constant, so the best path is that of the raw logits the CRF was trained on.)
        return [[labels[i] for i in viterbi(x, start, allowed, crf)] for x in all_log_probs.split(lengths)]
    start_ok, allowed_ok = start.tolist(), allowed.tolist()
    out = []
    for path, log_probs in zip(slices(all_log_probs.argmax(-1).tolist(), lengths), all_log_probs.split(lengths)):
        # Most sentences are already valid IOB2: skip the dynamic programme for them.
        if _valid(path, start_ok, allowed_ok):
            out.append([labels[i] for i in path])
        else:
            out.append([labels[i] for i in viterbi(log_probs, start, allowed)])
    return out


def slices(values: list, lengths: Sequence[int]) -> list[list]:
    """`values` cut into consecutive pieces of `lengths` (one flat batch back into its sequences)."""
    out, begin = [], 0
    for n in lengths:
        out.append(values[begin : begin + n])
        begin += n
    return out


def _valid(path: list[int], start: list[bool], allowed: list[list[bool]]) -> bool:
    if path and not start[path[0]]:
        return False
    return all(allowed[a][b] for a, b in zip(path, path[1:]))
