"""nertune's scores against seqeval's on a whole CoNLL-2003 split, and how long scoring takes.

Predictions are the gold tags with realistic errors put in (seeded): entity
types swapped, boundaries moved, B- written as I- (I- after O), entities
dropped and spurious ones added. Both modes are compared on every number,
per type included, and `nertune score`'s bootstrap interval is timed.

    .venv/bin/python -m benchmarks.quality.scoring_agreement [--split test] [--out benchmarks/quality/results/scoring_agreement.json]
"""

from __future__ import annotations

import argparse
import random
import time
import warnings

from seqeval.metrics import accuracy_score, classification_report
from seqeval.scheme import IOB2

from benchmarks.common import results_dir, write_result
from nertune.data.conll import read_conll
from nertune.data.embedded import conll2003_files
from nertune.evaluate.bootstrap import f1_interval, sentence_totals
from nertune.evaluate.scoring import score

TYPES = ["PER", "LOC", "ORG", "MISC"]


def corrupt(tags: list[str], rng: random.Random) -> list[str]:
    out = list(tags)
    for i, tag in enumerate(tags):
        r = rng.random()
        if tag.startswith("B-") and r < 0.04:
            out[i] = "I-" + tag[2:]  # I- after O: conlleval still starts a chunk, strict does not
        elif tag != "O" and r < 0.08:
            out[i] = tag[:2] + rng.choice(TYPES)  # type switch, possibly mid-entity
        elif tag != "O" and r < 0.10:
            out[i] = "O"  # entity cut or dropped
        elif tag == "O" and r < 0.01:
            out[i] = rng.choice(["B-", "I-"]) + rng.choice(TYPES)  # spurious, sometimes invalid
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", default=str(results_dir(__file__) / "scoring_agreement.json"))
    args = parser.parse_args()

    sentences = read_conll(conll2003_files()[args.split]).sentences
    rng = random.Random(0)
    gold = [s.tags for s in sentences]
    pred = [corrupt(t, rng) for t in gold]
    results = {"split": args.split, "sentences": len(gold), "words": sum(map(len, gold))}
    for mode, strict in (("conlleval", False), ("strict", True)):
        started = time.perf_counter()
        ours = score(gold, pred, strict=strict)
        ours_seconds = time.perf_counter() - started
        options = {"mode": "strict", "scheme": IOB2} if strict else {}
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = classification_report(gold, pred, output_dict=True, zero_division=0, **options)
        seqeval_seconds = time.perf_counter() - started
        differences = [
            abs(ours["f1"] - theirs["micro avg"]["f1-score"]),
            abs(ours["precision"] - theirs["micro avg"]["precision"]),
            abs(ours["recall"] - theirs["micro avg"]["recall"]),
            abs(ours["accuracy"] - accuracy_score(gold, pred)),
        ]
        for t, v in ours["per_type"].items():
            differences += [abs(v["f1"] - theirs[t]["f1-score"]), abs(v["support"] - theirs[t]["support"])]
        started = time.perf_counter()
        interval = f1_interval(sentence_totals(gold, pred, strict))
        results[mode] = {
            "precision": ours["precision"],
            "recall": ours["recall"],
            "f1": ours["f1"],
            "accuracy": ours["accuracy"],
            "f1_95": [interval["low"], interval["high"]],
            "max_abs_difference_vs_seqeval": max(differences),
            "nertune_seconds": round(ours_seconds, 3),
            "seqeval_seconds": round(seqeval_seconds, 3),
            "bootstrap_1000_seconds": round(time.perf_counter() - started, 3),
        }
        print(
            f"{mode}: F1 {ours['f1']:.4f} (95% {interval['low']:.4f}-{interval['high']:.4f}); largest difference from seqeval "
            f"{max(differences):.2e}; nertune {ours_seconds:.2f} s, seqeval {seqeval_seconds:.2f} s"
        )
    write_result(args.out, results)


if __name__ == "__main__":
    main()
