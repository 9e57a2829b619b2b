"""Entity scores the way conlleval (and seqeval's default mode) compute them.

Default mode: chunks as conlleval reads them — a chunk starts at B-X, or at an
I-X after O or after another type; it goes on over I-X of the same type.
Strict mode: IOB2 strict (seqeval mode="strict", scheme=IOB2): only B-X I-X…
chunks count, an I-X that does not continue one is ignored.

The two chunk rules are written out here rather than imported from seqeval:
seqeval's default-mode chunker sits in a module that imports scikit-learn
(2 s on every `nertune score`). tests/unit/test_scoring.py checks, on random and
invalid sequences, that both rules agree with seqeval exactly.

Tags are O, B-TYPE or I-TYPE (IOB2 read as written). One module, used by
training, `nertune evaluate`, `nertune score` and `nertune compare` alike.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

Chunk = tuple[str, int, int]  # (type, first word, last word), inclusive as seqeval does


def _parts(tag: str) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'); 'O' -> ('O', ''). conlleval splits at the first hyphen too."""
    if tag == "O":
        return "O", ""
    prefix, _, entity_type = tag.partition("-")
    if prefix not in ("B", "I") or not entity_type:
        raise ValueError(f"tag {tag!r} is not O, B-TYPE or I-TYPE")
    return prefix, entity_type


def conlleval_chunks(tags: Sequence[str]) -> list[Chunk]:
    chunks: list[Chunk] = []
    prev_prefix, prev_type, start = "O", "", 0
    for i, tag in enumerate([*tags, "O"]):
        prefix, entity_type = _parts(tag)
        if prev_prefix != "O" and (prefix != "I" or entity_type != prev_type):
            chunks.append((prev_type, start, i - 1))
        if prefix == "B" or (prefix == "I" and (prev_prefix == "O" or entity_type != prev_type)):
            start = i
        prev_prefix, prev_type = prefix, entity_type
    return chunks


def strict_chunks(tags: Sequence[str]) -> list[Chunk]:
    chunks: list[Chunk] = []
    current, start = None, 0
    for i, tag in enumerate([*tags, "O"]):
        prefix, entity_type = _parts(tag)
        if current is not None and not (prefix == "I" and entity_type == current):
            chunks.append((current, start, i - 1))
            current = None
        if prefix == "B":
            current, start = entity_type, i
    return chunks


def sentence_chunks(tags: Sequence[str], strict: bool = False) -> set[Chunk]:
    return set(strict_chunks(tags) if strict else conlleval_chunks(tags))


def sentence_counts(gold: Sequence[str], pred: Sequence[str], strict: bool = False) -> Counter:
    """Per-type true positives / predicted / gold, and word matches, for one sentence."""
    gold_chunks = sentence_chunks(gold, strict)
    pred_chunks = sentence_chunks(pred, strict)
    counts: Counter = Counter()
    for entity_type, *_ in gold_chunks:
        counts[("gold", entity_type)] += 1
    for entity_type, *_ in pred_chunks:
        counts[("pred", entity_type)] += 1
    for entity_type, *_ in gold_chunks & pred_chunks:
        counts[("tp", entity_type)] += 1
    counts["words"] += len(gold)
    counts["correct_words"] += sum(g == p for g, p in zip(gold, pred))
    return counts


def _prf(tp: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def scores_from_counts(counts: Counter) -> dict:
    """Micro-averaged entity P/R/F1, word accuracy, and per type (every type gold or predicted)."""
    types = sorted({key[1] for key in counts if isinstance(key, tuple)})
    per_type = {}
    for entity_type in types:
        p, r, f = _prf(counts[("tp", entity_type)], counts[("pred", entity_type)], counts[("gold", entity_type)])
        per_type[entity_type] = {"precision": p, "recall": r, "f1": f, "support": counts[("gold", entity_type)]}
    tp = sum(counts[("tp", t)] for t in types)
    n_pred = sum(counts[("pred", t)] for t in types)
    n_gold = sum(counts[("gold", t)] for t in types)
    precision, recall, f1 = _prf(tp, n_pred, n_gold)
    accuracy = counts["correct_words"] / counts["words"] if counts["words"] else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": accuracy,
        "per_type": per_type,
        # conlleval's header line: "processed W tokens with G phrases; found: P phrases; correct: C."
        "words": counts["words"],
        "gold_entities": n_gold,
        "pred_entities": n_pred,
        "correct_entities": tp,
    }


def score(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], strict: bool = False) -> dict:
    """Overall and per-type precision / recall / F1, and word accuracy."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentences but {len(pred)} predicted")
    total: Counter = Counter()
    for gold_tags, pred_tags in zip(gold, pred):
        if len(gold_tags) != len(pred_tags):
            raise ValueError(f"sentence with {len(gold_tags)} gold tags but {len(pred_tags)} predicted")
        total.update(sentence_counts(gold_tags, pred_tags, strict))
    return scores_from_counts(total)
