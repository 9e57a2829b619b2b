"""Words to model inputs: wordpieces, first-subword labels, windows, batches.

Shared by training, evaluation and the Tagger, so all three see a sentence
the same way. A sentence longer than the model's window is covered by
overlapping windows; each word is *owned* by the window where its first piece
has the most context on both sides, and only owned words are labelled or
predicted there. Nothing is ever truncated.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Sequence

import torch


@dataclass
class Encoded:
    """One word sequence as wordpieces (no special tokens)."""

    piece_ids: list[int]
    word_starts: list[int]  # index into piece_ids of each word's first piece
    token_type_ids: list[int] | None = None  # token type of each piece (casing classes, data/casing.py); None: all 0


@dataclass
class Window:
    """One model input: [CLS] pieces [SEP], with the words it owns."""

    sequence: int  # which word sequence (sentence) it came from
    input_ids: list[int]
    first_pieces: list[int]  # index in input_ids of each owned word's first piece
    words: list[int]  # index in the sequence of each owned word
    labels: list[int]  # label id per owned word (empty when predicting)
    token_type_ids: list[int] = field(default_factory=list)  # token type per input id; empty: the model's default (all 0)
    soft_labels: torch.Tensor | None = None  # [owned words, labels]: a teacher's label probabilities (training/distill.py)
    input_key: int = -1  # windows with the same key >= 0 share one input (make_shared_windows); -1: an input of its own


def encode_words(tokenizer, sequences: Sequence[Sequence[str]], batch_size: int = 2048) -> list[Encoded]:
    """Tokenize word lists; a word the tokenizer drops (e.g. U+200B) becomes [UNK]."""
    unk = tokenizer.unk_token_id
    encoded: list[Encoded] = []
    for start in range(0, len(sequences), batch_size):
        chunk = [list(words) for words in sequences[start : start + batch_size]]
        batch = tokenizer(chunk, is_split_into_words=True, add_special_tokens=False)
        for row, words in enumerate(chunk):
            ids = batch["input_ids"][row]
            word_ids = batch.word_ids(row)
            pieces_of = [[] for _ in words]
            for piece, word in zip(ids, word_ids):
                if word is not None:
                    pieces_of[word].append(piece)
            piece_ids: list[int] = []
            starts: list[int] = []
            for pieces in pieces_of:
                starts.append(len(piece_ids))
                piece_ids.extend(pieces or [unk])
            encoded.append(Encoded(piece_ids, starts))
    return encoded


def window_spans(length: int, size: int, stride: int) -> list[tuple[int, int]]:
    """Spans [start, end) of at most `size` covering range(length), overlapping by `stride`."""
    if length <= size:
        return [(0, length)]
    step = max(1, size - stride)
    spans = []
    start = 0
    while True:
        end = min(start + size, length)
        spans.append((start, end))
        if end == length:
            return spans
        start += step


def make_windows(
    encoded: Sequence[Encoded],
    cls_id: int,
    sep_id: int,
    max_pieces: int,
    stride: int | None = None,
    label_ids: Sequence[Sequence[int]] | None = None,
) -> list[Window]:
    """Windows over every sequence; every word is owned by exactly one window."""
    stride = max_pieces // 2 if stride is None else stride
    windows: list[Window] = []
    for index, enc in enumerate(encoded):
        spans = window_spans(len(enc.piece_ids), max_pieces, stride)
        owner = _owners(enc.word_starts, spans)
        for span_index, (start, end) in enumerate(spans):
            words = [w for w, o in enumerate(owner) if o == span_index]
            windows.append(
                Window(
                    sequence=index,
                    input_ids=[cls_id, *enc.piece_ids[start:end], sep_id],
                    first_pieces=[enc.word_starts[w] - start + 1 for w in words],
                    words=words,
                    labels=[label_ids[index][w] for w in words] if label_ids is not None else [],
                    token_type_ids=[0, *enc.token_type_ids[start:end], 0] if enc.token_type_ids is not None else [],
                )
            )
    return windows


def make_shared_windows(
    encoded: Sequence[Encoded],
    groups: Sequence[Sequence[int]],
    words_in_sequence: Sequence[int],
    cls_id: int,
    sep_id: int,
    max_pieces: int,
    label_ids: Sequence[Sequence[int]] | None = None,
) -> list[Window]:
    """A window per sequence, where the sequences of a group share one input (`encoded[g]`: the group's centre
    and its context, data/context.py's `add_group_context`). Each keeps its own words, labels and loss row; only
    the model input is shared. A group of one is `make_windows`' window (overlapping ones when it is too long); a
    larger group must fit one window (data/context.py's `sentence_groups` budget sees to it)."""
    windows: list[Window] = []
    for key, (enc, group) in enumerate(zip(encoded, groups)):
        if len(group) == 1:
            [index] = group
            labels = [label_ids[index]] if label_ids is not None else None
            for window in make_windows([enc], cls_id, sep_id, max_pieces, label_ids=labels):
                window.sequence = index
                windows.append(window)
            continue
        input_ids = [cls_id, *enc.piece_ids, sep_id]
        assert len(enc.piece_ids) <= max_pieces, "a shared group larger than the model's window"
        types = [0, *enc.token_type_ids, 0] if enc.token_type_ids is not None else []
        offset = 0
        for index in group:
            n = words_in_sequence[index]
            windows.append(
                Window(
                    sequence=index,
                    input_ids=input_ids,
                    first_pieces=[start + 1 for start in enc.word_starts[offset : offset + n]],
                    words=list(range(n)),
                    labels=list(label_ids[index]) if label_ids is not None else [],
                    token_type_ids=types,
                    input_key=key,
                )
            )
            offset += n
    return windows


def distinct_inputs(windows: Sequence[Window]) -> tuple[list[Window], list[int]]:
    """The model inputs of `windows` once each (a window stands for its shared input), and each window's row among them."""
    if all(w.input_key < 0 for w in windows):
        return list(windows), list(range(len(windows)))
    inputs: list[Window] = []
    row_of_key: dict[int, int] = {}
    rows = []
    for window in windows:
        if window.input_key < 0:
            rows.append(len(inputs))
            inputs.append(window)
            continue
        row = row_of_key.get(window.input_key)
        if row is None:
            row = row_of_key[window.input_key] = len(inputs)
            inputs.append(window)
        rows.append(row)
    return inputs, rows


def _owners(word_starts: Sequence[int], spans: Sequence[tuple[int, int]]) -> list[int]:
    if len(spans) == 1:
        return [0] * len(word_starts)
    owners = []
    for piece in word_starts:
        best, best_context = 0, -1
        for index, (start, end) in enumerate(spans):
            if start <= piece < end:
                context = min(piece - start, end - 1 - piece)
                if context > best_context:
                    best, best_context = index, context
        owners.append(best)
    return owners


def pad_multiple_for(device) -> int:
    """Lengths rounded up to a multiple of 8 feed GPU tensor cores; a CPU only pays for the padding
    (BENCHMARKS.md, "Measurements behind the code")."""
    return 8 if torch.device(device).type == "cuda" else 1


def collate(windows: Sequence[Window], pad_id: int, multiple: int = 8) -> dict[str, torch.Tensor]:
    """Pad to the longest window, rounded up to a multiple of 8 (tensor-core and SIMD friendly)."""
    longest = max(len(w.input_ids) for w in windows)
    length = -(-longest // multiple) * multiple
    # Padded lists and one tensor each: a tensor per row costs more than the rows' numbers.
    pads = [length - len(w.input_ids) for w in windows]
    batch = {
        "input_ids": torch.tensor([w.input_ids + [pad_id] * pad for w, pad in zip(windows, pads)], dtype=torch.long),
        "attention_mask": torch.tensor([[1] * (length - pad) + [0] * pad for pad in pads], dtype=torch.long),
        "labels": collate_labels(windows, length),
    }
    if any(w.token_type_ids for w in windows):  # casing classes; padding is type 0 like [CLS]/[SEP]
        batch["token_type_ids"] = torch.tensor(
            [w.token_type_ids + [0] * (length - len(w.token_type_ids)) for w in windows], dtype=torch.long
        )
    return batch


def collate_labels(windows: Sequence[Window], length: int) -> torch.Tensor:
    """[windows, length] label ids at each owned word's first piece, -100 elsewhere (collate's layout)."""
    labels = torch.full((len(windows), length), -100, dtype=torch.long)
    for row, window in enumerate(windows):
        if window.labels:
            labels[row, window.first_pieces] = torch.tensor(window.labels)
    return labels


def collate_soft_labels(windows: Sequence[Window], length: int, n_labels: int) -> torch.Tensor:
    """[windows, length, labels]: each owned word's teacher probabilities at its first piece, 0 elsewhere."""
    soft = torch.zeros((len(windows), length, n_labels))
    for row, window in enumerate(windows):
        if window.soft_labels is not None:
            soft[row, window.first_pieces] = window.soft_labels
    return soft


def model_inputs(batch: dict[str, torch.Tensor], device) -> dict[str, torch.Tensor]:
    """What the model takes from a collated batch: token_type_ids only when the windows carry them
    (some encoders, e.g. DistilBERT, have no such argument)."""
    names = ("input_ids", "attention_mask", "token_type_ids")
    return {name: batch[name].to(device, non_blocking=True) for name in names if name in batch}


def length_grouped_steps(
    lengths: Sequence[int], sentences_per_step: int, rng: random.Random, group_by_length: bool = True, megabatch_steps: int = 50
) -> list[list[int]]:
    """Indices of the sentences in each optimizer step, for one epoch.

    With grouping (Hugging Face's LengthGroupedSampler idea): shuffle, cut into
    mega-batches of 50 steps, sort each by length, cut into steps, shuffle the
    steps. Each step still holds `sentences_per_step` random-ish sentences, but
    of similar length, so padding costs little.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if not group_by_length:
        return [order[i : i + sentences_per_step] for i in range(0, len(order), sentences_per_step)]
    mega = sentences_per_step * megabatch_steps
    steps = []
    for start in range(0, len(order), mega):
        block = sorted(order[start : start + mega], key=lambda i: -lengths[i])
        steps.extend(block[i : i + sentences_per_step] for i in range(0, len(block), sentences_per_step))
    rng.shuffle(steps)
    return steps


def shared_steps(groups: Sequence[Sequence[int]], sentences_per_step: int, rng: random.Random) -> list[list[int]]:
    """The sentences of each optimizer step for one epoch, a group (sentences sharing an input) never split.

    Groups in random order, then by size, largest first, first-fit into steps of at most `sentences_per_step`
    sentences; the steps are shuffled. How many steps that makes depends on the sizes alone
    (`shared_steps_per_epoch`), so the schedule is known before the first epoch. All groups of one: the
    ungrouped `length_grouped_steps` over them."""
    if all(len(g) == 1 for g in groups):
        steps = length_grouped_steps([0] * len(groups), sentences_per_step, rng, group_by_length=False)
        return [[groups[g][0] for g in step] for step in steps]
    order = list(range(len(groups)))
    rng.shuffle(order)
    order.sort(key=lambda g: -len(groups[g]))  # stable: ties stay in random order
    bins = _first_fit([len(groups[g]) for g in order], sentences_per_step)
    steps = [[s for item in members for s in groups[order[item]]] for members in bins]
    rng.shuffle(steps)
    return steps


def shared_steps_per_epoch(group_sizes: Sequence[int], sentences_per_step: int) -> int:
    """How many steps `shared_steps` cuts an epoch into: the same first fit of the same sizes."""
    if all(size == 1 for size in group_sizes):
        return -(-len(group_sizes) // sentences_per_step)
    return len(_first_fit(sorted(group_sizes, reverse=True), sentences_per_step))


def _first_fit(sizes: Sequence[int], capacity: int) -> list[list[int]]:
    """Items (indices into `sizes`, in order) in bins: each into the first bin with room, else a new one."""
    bins: list[list[int]] = []
    free: list[int] = []
    for item, size in enumerate(sizes):
        for index, room in enumerate(free):
            if size <= room:
                bins[index].append(item)
                free[index] -= size
                break
        else:
            bins.append([item])
            free.append(capacity - size)
    return bins


def token_budget_batches(windows_lengths: Sequence[int], max_tokens: int, max_rows: int) -> list[list[int]]:
    """Group window indices (sorted by length) into batches under a padded-token budget."""
    order = sorted(range(len(windows_lengths)), key=lambda i: windows_lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = max([windows_lengths[index]] + [windows_lengths[i] for i in current[-1:]])
        if current and ((len(current) + 1) * longest > max_tokens or len(current) >= max_rows):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches
