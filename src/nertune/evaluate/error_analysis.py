"""Where the entity errors are: a breakdown by kind, and a type confusion matrix.

Each gold entity that is not predicted exactly is put in one kind, looking at
the predicted entities that overlap it:

- wrong_type: one has exactly its span, with another type;
- wrong_boundary: one has its type, with another span;
- wrong_type_and_boundary: they overlap it with another type and another span;
- missed: none overlaps it.

Each predicted entity that overlaps no gold entity is `spurious`. So
missed + wrong_* = gold entities - correct. (A predicted entity that
overlaps a gold one is never spurious: it is counted once through that gold
entity's kind.)

Confusion: each gold entity (rows) against the type of the predicted entity
overlapping it most (columns; "O" when none), plus spurious predictions in
the "O" row. Cell (T, T) counts exact matches and boundary errors whose
largest overlap has the right type; cells off the diagonal are type errors,
misses (column "O") and spurious entities (row "O").
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Sequence

from nertune.evaluate.scoring import Chunk, sentence_chunks

KINDS = ("wrong_type", "wrong_boundary", "wrong_type_and_boundary", "missed", "spurious")
NONE = "O"


def _overlap(a: Chunk, b: Chunk) -> int:
    return max(0, min(a[2], b[2]) - max(a[1], b[1]) + 1)


def _gold_kind(gold: Chunk, overlapping: list[Chunk]) -> str:
    if not overlapping:
        return "missed"
    if any(p[1:] == gold[1:] for p in overlapping):
        return "wrong_type"
    if any(p[0] == gold[0] for p in overlapping):
        return "wrong_boundary"
    return "wrong_type_and_boundary"


def sentence_errors(gold_chunks: set[Chunk], pred_chunks: set[Chunk]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(kind, type) of each error and (gold type, predicted type) of each confusion cell, for one sentence."""
    errors: list[tuple[str, str]] = []
    cells: list[tuple[str, str]] = []
    for gold in sorted(gold_chunks, key=lambda c: c[1]):
        if gold in pred_chunks:
            cells.append((gold[0], gold[0]))
            continue
        overlapping = [p for p in pred_chunks if _overlap(gold, p)]
        errors.append((_gold_kind(gold, overlapping), gold[0]))
        best = max(overlapping, key=lambda p: (_overlap(gold, p), -p[1]), default=None)
        cells.append((gold[0], best[0] if best else NONE))
    for pred in sorted(pred_chunks, key=lambda c: c[1]):
        if not any(_overlap(pred, g) for g in gold_chunks):
            errors.append(("spurious", pred[0]))
            cells.append((NONE, pred[0]))
    return errors, cells


def error_breakdown(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], strict: bool = False) -> dict:
    """{"correct", each kind: count, "per_type": {type: {kind: count}}, "confusion": {gold: {pred: count}}}."""
    kinds: Counter = Counter()
    per_type: dict[str, Counter] = defaultdict(Counter)
    confusion: dict[str, Counter] = defaultdict(Counter)
    correct = 0
    for gold_tags, pred_tags in zip(gold, pred, strict=True):
        gold_chunks, pred_chunks = sentence_chunks(gold_tags, strict), sentence_chunks(pred_tags, strict)
        correct += len(gold_chunks & pred_chunks)
        errors, cells = sentence_errors(gold_chunks, pred_chunks)
        for kind, entity_type in errors:
            kinds[kind] += 1
            per_type[entity_type][kind] += 1
        for gold_type, pred_type in cells:
            confusion[gold_type][pred_type] += 1
    return {
        "correct": correct,
        **{kind: kinds[kind] for kind in KINDS},
        "per_type": {t: {kind: per_type[t][kind] for kind in KINDS} for t in sorted(per_type)},
        "confusion": {g: dict(sorted(confusion[g].items())) for g in sorted(confusion)},
    }
