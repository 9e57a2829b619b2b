"""Run a model over whole word sequences and get one score vector per word.

Long sequences are covered by overlapping windows (see data/features.py);
every word gets scores from the window where it has the most context.
"""

from __future__ import annotations

import contextlib
import heapq
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from nertune.collector import pausing
from nertune.data.casing import casing_scheme, piece_types
from nertune.data.context import add_context, add_group_context, context_pieces_of, sentence_groups
from nertune.data.features import (
    Window,
    collate,
    encode_words,
    make_shared_windows,
    make_windows,
    model_inputs,
    pad_multiple_for,
    token_budget_batches,
)
from nertune.model.positions import max_pieces_for
from nertune.model.scored_rows import only_scored


def build_windows(
    tokenizer,
    sequences: Sequence[Sequence[str]],
    max_pieces: int,
    label_ids=None,
    config=None,
    documents: Sequence | None = None,
    shared_pieces: int = 0,
    shared_most: int = 16,
) -> list[Window]:
    """The model inputs for word sequences: training, evaluation, the Tagger and the ONNX check all come here.

    `config` is the model's: when it names a casing scheme (data/casing.py), every piece
    carries its word's casing class as its token type; when it sets document context
    (data/context.py), each sequence gets its neighbours of the same document as context.
    `documents` gives each sequence's document; None: each sequence is a document of its own.
    `shared_pieces` (training only): consecutive sequences of a document, up to that many pieces and
    `shared_most` sequences together, share one input with the context around them (make_shared_windows).
    """
    encoded = encode_words(tokenizer, sequences)
    if casing_scheme(config):
        for enc, words in zip(encoded, sequences):
            enc.token_type_ids = piece_types(words, enc.word_starts, len(enc.piece_ids))
    context = context_pieces_of(config)
    if shared_pieces and documents is not None:
        budget = min(shared_pieces, max_pieces - 2 * context)  # room left for the whole context on both sides
        groups = sentence_groups(encoded, documents, budget, shared_most)
        words = [len(enc.word_starts) for enc in encoded]
        centres = add_group_context(encoded, documents, groups, context, max_pieces)
        return make_shared_windows(centres, groups, words, tokenizer.cls_token_id, tokenizer.sep_token_id, max_pieces, label_ids)
    if context and documents is not None:
        encoded = add_context(encoded, documents, context, max_pieces)
    return make_windows(encoded, tokenizer.cls_token_id, tokenizer.sep_token_id, max_pieces, label_ids=label_ids)


@dataclass
class WordScores:
    logits: list[torch.Tensor]  # one [n_words, n_labels] tensor per sequence (float32, CPU)
    loss_sum: float  # summed cross-entropy over labelled words (when labels were given)
    labelled: int


@torch.no_grad()
def predict_word_logits(
    model,
    windows: Sequence[Window],
    n_sequences: int,
    words_per_sequence: Sequence[int],
    pad_id: int,
    device: torch.device | str = "cpu",
    max_tokens: int = 16384,
    max_rows: int = 256,
    autocast_dtype: torch.dtype | None = None,
    pad_multiple: int | None = None,
) -> WordScores:
    if pad_multiple is None:
        pad_multiple = pad_multiple_for(device)
    was_training = model.training
    model.eval()
    n_labels = model.config.num_labels
    logits_out: list[torch.Tensor | None] = [None] * len(words_per_sequence)
    loss_sum, labelled = 0.0, 0
    lengths = [len(w.input_ids) for w in windows]
    batches = [[windows[i] for i in indices] for indices in token_budget_batches(lengths, max_tokens, max_rows)]
    # A model with several sessions (model/onnx_runtime.py) runs that many passes at once; the others one by one.
    concurrent = getattr(model, "concurrent_passes", 1)
    batches = share_out(batches, concurrent, width=lambda window: len(window.input_ids))

    def forward(batch_windows: list[Window]) -> tuple[list[Window], torch.Tensor, torch.Tensor]:
        batch = collate(batch_windows, pad_id, multiple=pad_multiple)
        # no_grad here too, not only on the function: grad mode is per thread, and a pass may run in the pool's.
        with (
            torch.no_grad(),
            torch.autocast(device_type=torch.device(device).type, dtype=autocast_dtype, enabled=autocast_dtype is not None),
            only_scored(model, [w.first_pieces for w in batch_windows]),
        ):
            return batch_windows, batch["labels"], model(**model_inputs(batch, device)).logits.float()

    concurrent = min(concurrent, len(batches))
    with ThreadPoolExecutor(concurrent) if concurrent > 1 else contextlib.nullcontext() as pool:
        for batch_windows, labels, logits in pool.map(forward, batches) if pool else map(forward, batches):
            labels = labels.to(device)
            if (labels != -100).any():
                loss_sum += torch.nn.functional.cross_entropy(
                    logits.view(-1, n_labels), labels.view(-1), ignore_index=-100, reduction="sum"
                ).item()
                labelled += int((labels != -100).sum())
            _place(logits.cpu(), batch_windows, logits_out, words_per_sequence)
    if was_training:
        model.train()
    assert n_sequences == len(logits_out)
    return WordScores([torch.empty((n, n_labels)) if x is None else x for x, n in zip(logits_out, words_per_sequence)], loss_sum, labelled)


def share_out(batches: list[list], sessions: int, width: Callable) -> list[list]:
    """Passes for `sessions` sessions that run side by side, each taking the next pass as it comes free (several
    sessions: an int8 export). A pass costs about its rows times its padded width (`width` of its widest row):
    an int8 session's time grows with the tokens it is given (BENCHMARKS.md, serving). While cutting the pass
    that ends last would make the whole batch end sooner, cut it where the costlier half is cheapest (short rows
    in one pass, long ones in the other) and queue both halves last. So a served micro-batch of one pass gets
    both sessions, and passes of unequal cost end together instead of one session waiting for the other. The
    simulation assumes the call has the sessions to itself (the server tags one micro-batch at a time); it
    stops at the first cut that does not help, so the result is better, not always best."""
    batches = list(batches)
    if sessions < 2:
        return batches

    def cost(rows: list) -> int:
        return len(rows) * max(map(width, rows), default=0)

    if not batches:
        return batches
    end, last = _schedule(batches, sessions, cost)
    while len(batches[last]) >= 2:
        rows = sorted(batches[last], key=width)
        widths = [width(row) for row in rows]  # ascending: a half's widest row is its last
        cut = min(range(1, len(rows)), key=lambda k: max(k * widths[k - 1], (len(rows) - k) * widths[-1]))
        candidate = batches[:last] + batches[last + 1 :] + [rows[:cut], rows[cut:]]
        candidate_end, candidate_last = _schedule(candidate, sessions, cost)
        if candidate_end >= end:
            break
        batches, end, last = candidate, candidate_end, candidate_last
    return batches


def _schedule(batches: list[list], sessions: int, cost: Callable) -> tuple[int, int]:
    """(when the last pass ends, its index) with each pass, in order, on the session that comes free first."""
    free = [0] * sessions
    end, last = 0, 0
    for index, rows in enumerate(batches):
        finish = heapq.heappop(free) + cost(rows)
        heapq.heappush(free, finish)
        if finish >= end:
            end, last = finish, index
    return end, last


def _place(logits: torch.Tensor, windows: Sequence[Window], out: list, words_per_sequence: Sequence[int]) -> None:
    """Each owned word's scores (at its first piece) into its sequence's row of `out`, with one gather a pass:
    a window that owns its whole sequence (any that fits one window) hands over its rows as they are."""
    owned = [len(w.words) for w in windows]
    rows = torch.arange(len(windows)).repeat_interleave(torch.tensor(owned))
    picked = logits[rows, torch.tensor([p for w in windows for p in w.first_pieces], dtype=torch.long)]
    for window, scores in zip(windows, picked.split(owned)):
        n = words_per_sequence[window.sequence]
        if len(window.words) == n:
            out[window.sequence] = scores
        elif window.words:
            if out[window.sequence] is None:
                out[window.sequence] = torch.empty((n, logits.shape[-1]))
            out[window.sequence][window.words] = scores


@pausing
def sentence_word_logits(
    model, tokenizer, sentences: Sequence, device, autocast_dtype: torch.dtype | None, max_tokens: int, label_ids=None
) -> tuple[WordScores, list[Window]]:
    """Word scores of whole sentences (data/conll.py `Sentence`s) in the model's own windows: its window size,
    casing classes and document context. Returns the scores and the windows."""
    windows = build_windows(
        tokenizer, [s.words for s in sentences], max_pieces_for(model, tokenizer), label_ids, model.config, [s.document for s in sentences]
    )
    scores = predict_word_logits(
        model,
        windows,
        len(sentences),
        [len(s.words) for s in sentences],
        tokenizer.pad_token_id,
        device,
        autocast_dtype=autocast_dtype,
        max_tokens=max_tokens,
    )
    return scores, windows
