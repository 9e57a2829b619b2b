"""Bootstrap confidence intervals for entity F1, and the paired test between two systems.

Sentences are resampled with replacement (entities within a sentence are not
independent, sentences roughly are); each resample's F1 is micro-averaged over
its entity counts, exactly as the full score is. The interval is the
percentile interval. For two systems on the same data the *same* resamples
score both (paired bootstrap, Koehn 2004; Berg-Kirkpatrick et al. 2012), so
the interval of the difference says whether a change is real.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from nertune.evaluate.scoring import sentence_chunks

RESAMPLES = 1000
LEVEL = 0.95


def sentence_totals(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], strict: bool = False) -> np.ndarray:
    """[n_sentences, 3]: correct, predicted and gold entities of each sentence."""
    rows = []
    for gold_tags, pred_tags in zip(gold, pred, strict=True):
        g, p = sentence_chunks(gold_tags, strict), sentence_chunks(pred_tags, strict)
        rows.append((len(g & p), len(p), len(g)))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


def f1_of(sums: np.ndarray) -> np.ndarray:
    """F1 from summed (correct, predicted, gold): 2·correct / (predicted + gold), 0 when both are 0."""
    denominator = sums[..., 1] + sums[..., 2]
    return np.where(denominator > 0, 2 * sums[..., 0] / np.maximum(denominator, 1), 0.0)


def _resampled_sums(totals: Sequence[np.ndarray], resamples: int, seed: int, block: int = 200):
    """Yield the per-resample sums of each system's totals, over the same resampled sentences."""
    n = len(totals[0])
    rng = np.random.default_rng(seed)
    for start in range(0, resamples, block):
        index = rng.integers(0, n, size=(min(block, resamples - start), n))
        yield [t[index].sum(axis=1) for t in totals]


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    low, high = np.quantile(values, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(low), float(high)


def f1_interval(totals: np.ndarray, resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0) -> dict:
    """{"f1", "low", "high", "level", "resamples"}: the percentile bootstrap interval of F1."""
    if len(totals) == 0:
        return {"f1": 0.0, "low": 0.0, "high": 0.0, "level": level, "resamples": 0}
    f1s = np.concatenate([f1_of(sums) for (sums,) in _resampled_sums([totals], resamples, seed)])
    low, high = _interval(f1s, level)
    return {"f1": float(f1_of(totals.sum(axis=0))), "low": low, "high": high, "level": level, "resamples": resamples}


def paired_bootstrap(totals_a: np.ndarray, totals_b: np.ndarray, resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0) -> dict:
    """F1 of A and B, the difference B - A with its interval, and how often B beat A over the resamples."""
    if totals_a.shape != totals_b.shape:
        raise ValueError("both systems must be scored on the same sentences")
    if len(totals_a) == 0:
        raise ValueError("no sentences to compare")
    differences, wins = [], 0
    for sums_a, sums_b in _resampled_sums([totals_a, totals_b], resamples, seed):
        delta = f1_of(sums_b) - f1_of(sums_a)
        differences.append(delta)
        wins += int((delta > 0).sum())
    differences = np.concatenate(differences)
    low, high = _interval(differences, level)
    f1_a, f1_b = float(f1_of(totals_a.sum(axis=0))), float(f1_of(totals_b.sum(axis=0)))
    return {
        "f1_a": f1_a,
        "f1_b": f1_b,
        "difference": f1_b - f1_a,
        "low": low,
        "high": high,
        "level": level,
        "resamples": resamples,
        "b_better_share": wins / resamples,
    }


def verdict(result: dict) -> str:
    """One line a user can act on."""
    percent = round(100 * result["level"])
    if result["low"] > 0:
        return f"B is better: the {percent}% interval of F1(B) - F1(A) lies above 0"
    if result["high"] < 0:
        return f"A is better: the {percent}% interval of F1(B) - F1(A) lies below 0"
    return f"no clear difference: the {percent}% interval of F1(B) - F1(A) contains 0"
