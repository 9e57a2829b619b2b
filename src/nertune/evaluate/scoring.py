"""Entity scores the way conlleval (and seqeval's default mode) compute them.

Default mode: chunks as conlleval reads them — an I-X after O or after another
type starts a new chunk. Strict mode: IOB2 strict (seqeval mode="strict"),
where only well-formed B-X I-X… chunks count. One module, used by training,
`nertune evaluate` and `nertune score` alike.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

Chunk = tuple[str, int, int]  # (type, first word, last word), inclusive as seqeval does


def sentence_chunks(tags: Sequence[str], strict: bool = False) -> set[Chunk]:
    if strict:
        from seqeval.scheme import IOB2, Entities

        entities = Entities([list(tags)], IOB2, suffix=False).entities[0]
        return {(e.tag, e.start, e.end - 1) for e in entities}
    from seqeval.metrics.sequence_labeling import get_entities

    return set(get_entities(list(tags)))


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
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": accuracy, "per_type": per_type}


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
