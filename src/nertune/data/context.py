"""Document context (FLERT, Schweter & Akbik 2020): neighbouring sentences as extra input.

A CoNLL sentence is often a fragment ("LONDON 1996-08-30") whose entities the
rest of the article explains. With `context_pieces: N` each sentence's window
gets up to N wordpieces of the sentences before it on its left and up to N of
the sentences after it on its right:

    [CLS] ...end of previous sentences | the sentence | start of next ones... [SEP]

Context is taken as whole words, nearest first, and never crosses a document
boundary (-DOCSTART- in CoNLL; one input text for the Tagger). Context pieces
are not words of the sentence: they get no label (-100) and no prediction, so
loss and tags are the centre sentence's alone. When the sentence and its
context do not fit the model's window, the context shrinks first; a sentence
too long for one window on its own gets no context (overlapping windows, as
without this option).

The setting is stored in the model's config.json (`nertune_context_pieces`),
so evaluate, the Tagger, serving and ONNX exports use it without flags.

Training can share one input among consecutive sentences (`sentence_groups`,
`add_group_context`: the recipe's `shared_window_pieces`): the group is the
centre, with the same context rule around it. `add_context` is the group of one.
"""

from __future__ import annotations

from typing import Iterator, Sequence

from nertune.data.features import Encoded

CONFIG_FIELD = "nertune_context_pieces"


def context_pieces_of(config) -> int:
    """Context wordpieces per side a model was trained with (0: none)."""
    return int(getattr(config, CONFIG_FIELD, 0) or 0) if config is not None else 0


def add_context(encoded: Sequence[Encoded], documents: Sequence, context_pieces: int, max_pieces: int) -> list[Encoded]:
    """Each sequence widened with whole words of its document neighbours; word_starts point into the centre."""
    return add_group_context(encoded, documents, [[i] for i in range(len(encoded))], context_pieces, max_pieces)


def sentence_groups(encoded: Sequence[Encoded], documents: Sequence, budget: int, most: int) -> list[list[int]]:
    """Runs of consecutive sequences of one document, each run's pieces at most `budget` together and at most
    `most` sequences (a sequence over the budget alone is a run of its own): the centres of shared windows."""
    groups: list[list[int]] = []
    used = 0
    for index, enc in enumerate(encoded):
        size = len(enc.piece_ids)
        joins = groups and documents[groups[-1][-1]] == documents[index] and used + size <= budget and len(groups[-1]) < most
        if joins:
            groups[-1].append(index)
            used += size
        else:
            groups.append([index])
            used = size
    return groups


def add_group_context(
    encoded: Sequence[Encoded], documents: Sequence, groups: Sequence[Sequence[int]], context_pieces: int, max_pieces: int
) -> list[Encoded]:
    """Each group of consecutive sequences as one centre, widened with whole words of the document around it;
    word_starts point at the centre's words, the group's sequences one after another."""
    out = []
    for group in groups:
        centre = _joined([encoded[i] for i in group])
        room = max_pieces - len(centre.piece_ids)
        if context_pieces <= 0 or room <= 0:
            out.append(centre)
            continue
        document = documents[group[0]]
        before = range(group[0] - 1, -1, -1)
        after = range(group[-1] + 1, len(encoded))
        left = _take(_words(encoded, documents, document, before, backwards=True), context_pieces)
        right = _take(_words(encoded, documents, document, after, backwards=False), context_pieces)
        # Too long together: each side keeps at least half the room, or all the other side leaves.
        n_left = min(_size(left), max(room - _size(right), room // 2))
        left = _take(iter(left), n_left)
        right = _take(iter(right), room - _size(left))
        left.reverse()  # taken nearest first; read in document order
        pieces = [p for word in left for p in word[0]]
        types = [t for word in left for t in word[1]]
        out.append(
            Encoded(
                piece_ids=pieces + centre.piece_ids + [p for word in right for p in word[0]],
                word_starts=[start + len(pieces) for start in centre.word_starts],
                token_type_ids=None
                if centre.token_type_ids is None
                else types + centre.token_type_ids + [t for word in right for t in word[1]],
            )
        )
    return out


def _joined(parts: Sequence[Encoded]) -> Encoded:
    """Sequences one after another as one; a single one as it is."""
    if len(parts) == 1:
        return parts[0]
    pieces: list[int] = []
    starts: list[int] = []
    types: list[int] | None = [] if parts[0].token_type_ids is not None else None
    for part in parts:
        starts.extend(len(pieces) + start for start in part.word_starts)
        pieces.extend(part.piece_ids)
        if types is not None:
            types.extend(part.token_type_ids)
    return Encoded(pieces, starts, types)


def _words(
    encoded: Sequence[Encoded], documents: Sequence, document, order: range, backwards: bool
) -> Iterator[tuple[list[int], list[int]]]:
    """(pieces, types) of each word of the neighbouring sequences of `document`, nearest first."""
    for other in order:
        if documents[other] != document:
            return
        enc = encoded[other]
        ends = [*enc.word_starts[1:], len(enc.piece_ids)]
        spans = list(zip(enc.word_starts, ends))
        for start, end in reversed(spans) if backwards else spans:
            types = enc.token_type_ids[start:end] if enc.token_type_ids is not None else [0] * (end - start)
            yield enc.piece_ids[start:end], types


def _take(words: Iterator[tuple[list[int], list[int]]], budget: int) -> list[tuple[list[int], list[int]]]:
    """Whole words, nearest first, until the next one would not fit."""
    taken, used = [], 0
    for word in words:
        if used + len(word[0]) > budget:
            break
        taken.append(word)
        used += len(word[0])
    return taken


def _size(words: Sequence[tuple[list[int], list[int]]]) -> int:
    return sum(len(word[0]) for word in words)
