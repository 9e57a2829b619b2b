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
    out = []
    for index, centre in enumerate(encoded):
        room = max_pieces - len(centre.piece_ids)
        if context_pieces <= 0 or room <= 0:
            out.append(centre)
            continue
        before = range(index - 1, -1, -1)
        after = range(index + 1, len(encoded))
        left = _take(_words(encoded, documents, documents[index], before, backwards=True), context_pieces)
        right = _take(_words(encoded, documents, documents[index], after, backwards=False), context_pieces)
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
