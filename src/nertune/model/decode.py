"""Word scores to IOB2 tags: argmax, or Viterbi constrained to valid IOB2.

Constrained decoding forbids I-X after O, after another type, or at the
start of a sentence, and finds the most probable valid sequence under the
model's per-word log-probabilities. A model with a CRF head (model/crf.py)
adds its learned start, transition and end scores to the same Viterbi, with
or without the constraint. Used the same way by evaluation, the Tagger
(PyTorch and ONNX) and serving.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
import torch

from nertune.data.schemes import prefix_and_type
from nertune.model.crf import CrfScores


@functools.lru_cache(maxsize=32)
def allowed_transitions(labels: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(start_allowed [C], transition_allowed [C_prev, C_next]) as read-only bool arrays, made once per label set."""
    n = len(labels)
    kinds = [prefix_and_type(label) for label in labels]
    start = np.array([prefix != "I" for prefix, _ in kinds], dtype=bool)
    allowed = np.ones((n, n), dtype=bool)
    for j, (prefix, entity_type) in enumerate(kinds):
        if prefix == "I":
            for i, (_, previous_type) in enumerate(kinds):
                allowed[i, j] = previous_type == entity_type
    start.flags.writeable = allowed.flags.writeable = False
    return start, allowed


def viterbi_batch(
    scores: np.ndarray, lengths: Sequence[int], start: np.ndarray, allowed: np.ndarray, crf: CrfScores | None = None
) -> list[list[int]]:
    """Best label path of each sequence; `scores` holds the sequences' [n_words, C] word scores one after another
    (float64), `lengths` their word counts.

    A path's score is the sum of its words' scores, plus the CRF's start, transition and end
    scores when `crf` is given; only paths that start with a `start` label and step along
    `allowed` transitions count. The sequences advance together, longest first, so a step is a
    few NumPy calls over every sequence still running instead of a few per sequence (the
    serving and tagging paths decode thousands of short sentences). Memory: the words' scores
    and back-pointers, and one [sequences, C, C] step at a time, never a padding to the
    longest sequence. Each sequence's arithmetic, and so its path and its ties, are those of a
    step-by-step Viterbi over it alone.
    """
    transition = np.where(allowed, 0.0, -np.inf)  # [prev, next]
    first = np.where(start, 0.0, -np.inf)
    last = np.zeros(len(first))
    if crf is not None:
        crf_start, crf_end, crf_transitions = (t.double().numpy() for t in crf)
        first, transition, last = first + crf_start, transition + crf_transitions, last + crf_end
    lengths = np.asarray(lengths, dtype=np.int64)
    offsets = np.cumsum(lengths) - lengths  # each sequence's first word in `scores`
    order = np.argsort(-lengths, kind="stable")  # longest first: the sequences still running are always a prefix
    running = int((lengths > 0).sum())
    path_of_word = np.empty(len(scores), dtype=np.int64)
    if running:
        starts, steps = offsets[order[:running]], int(lengths[order[0]])
        # active[t]: how many sequences have a word at position t
        active = running - np.searchsorted(lengths[order[:running]][::-1], np.arange(steps), side="right")
        score = scores[starts] + first
        backpointers = []
        for t in range(1, steps):
            k = active[t]
            candidates = score[:k, :, None] + transition  # [sequence, prev, next]
            best_prev = candidates.argmax(axis=1)
            backpointers.append(best_prev)
            score[:k] = candidates.max(axis=1) + scores[starts[:k] + t]  # the value at best_prev
        state = (score + last).argmax(axis=1)
        for t in range(steps - 1, -1, -1):
            k = active[t]
            path_of_word[starts[:k] + t] = state[:k]
            if t:
                state[:k] = backpointers[t - 1][np.arange(k), state[:k]]
    return [path_of_word[offset : offset + n].tolist() for offset, n in zip(offsets, lengths)]


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
        start, allowed = allowed_transitions(tuple(labels))
    else:  # a CRF's own best path, any transition allowed
        start, allowed = np.ones(len(labels), dtype=bool), np.ones((len(labels), len(labels)), dtype=bool)
    all_log_probs = torch.cat(logits).float().log_softmax(-1)
    if crf is not None:
        # Learned transitions can make a path other than the words' argmax the best: always the full Viterbi.
        # (log-softmax only shifts each word's scores by a constant, so the best path is that of the raw logits the CRF was trained on.)
        paths = viterbi_batch(all_log_probs.double().numpy(), lengths, start, allowed, crf)
        return [[labels[i] for i in path] for path in paths]
    start_ok, allowed_ok = start.tolist(), allowed.tolist()
    paths = slices(all_log_probs.argmax(-1).tolist(), lengths)
    # Most sentences are already valid IOB2: only the others go through the dynamic programme.
    invalid = [i for i, path in enumerate(paths) if not _valid(path, start_ok, allowed_ok)]
    if invalid:
        log_probs = all_log_probs.split(lengths)
        redone = viterbi_batch(torch.cat([log_probs[i] for i in invalid]).double().numpy(), [lengths[i] for i in invalid], start, allowed)
        for i, path in zip(invalid, redone):
            paths[i] = path
    return [[labels[i] for i in path] for path in paths]


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
