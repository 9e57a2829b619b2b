"""The recipe ablations table (issue 7): each full run's validation and test scores, argmax and constrained.

For every RUN name: the training run's metrics (benchmarks/train/results/RUN.json, written by recipe_run.sh:
first-subword argmax, as the Trainer reports) and, when the model directory runs/RUN is here, the same
model decoded with valid-IOB2 Viterbi constraints (nertune.evaluate.model_scores.evaluate_sentences, the code
behind `nertune evaluate --constrain`, the Tagger's default). Results already in
benchmarks/train/results/ablations.json are kept for runs whose model directory is gone.
The best recipe is picked on validation F1 only. For a CRF model the training run's scores are its
own Viterbi path (decode with the learned transitions, no IOB2 constraint).

    .venv/bin/python -m benchmarks.train.ablations seed-minilm-cpu minilm-lr1e-4-cpu minilm-casing-cpu minilm-context-cpu
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from benchmarks.common import ROOT, results_dir, write_result
from nertune.data.splits import load_splits
from nertune.evaluate.model_scores import evaluate_sentences
from nertune.model.load import load_tokenizer, load_trained

RESULTS = results_dir(__file__)
KEYS = ("precision", "recall", "f1", "accuracy")


def headline(metrics: dict) -> dict:
    return {k: round(metrics[k], 4) for k in KEYS}


def constrained_scores(model_dir: Path) -> dict:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model, tokenizer = load_trained(model_dir), load_tokenizer(str(model_dir))
    splits = load_splits("conll2003")
    return {
        name: headline(evaluate_sentences(model, tokenizer, getattr(splits, name).sentences, constrain=True)["metrics"])
        for name in ("validation", "test")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+")
    args = parser.parse_args()
    out_path = RESULTS / "ablations.json"
    table = json.loads(out_path.read_text()) if out_path.exists() else {}
    for run in args.runs:
        metrics = json.loads((RESULTS / f"{run}.json").read_text())
        recipe = metrics["recipe"]
        row = {
            "recipe": {
                k: recipe.get(k)
                for k in ("learning_rate", "warmup_ratio", "epochs", "casing", "context_pieces", "crf", "accumulation", "seed", "pack")
            },
            "best_epoch": metrics["best_epoch"],
            "epochs_validation_f1": [round(e["validation"]["f1"], 4) for e in metrics["epochs"]],
            "train_seconds": round(metrics["train_seconds"]),
            "git_sha": metrics.get("git_sha"),
            "argmax": {name: headline(metrics[name]) for name in ("validation", "test")},
        }
        model_dir = ROOT / "runs" / run
        if (model_dir / "config.json").exists():
            print(f"{run}: constrained decoding on validation and test ...", file=sys.stderr)
            row["constrained"] = constrained_scores(model_dir)
        elif "constrained" in table.get(run, {}):
            row["constrained"] = table[run]["constrained"]
        table[run] = row
    write_result(out_path, table)
    print(markdown(table))


def markdown(table: dict) -> str:
    lines = [
        "| run | lr / warm-up / epochs | steps | casing | context | head | decoding | val P | val R | val F1 | test P | test R | test F1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run, row in table.items():
        r = row["recipe"]
        for decoding in ("argmax", "constrained"):
            if decoding not in row:
                continue
            v, t = row[decoding]["validation"], row[decoding]["test"]
            steps = "random, packed" if r.get("pack") else "length-grouped"  # runs before `pack` existed were grouped
            lines.append(
                f"| {run} | {r['learning_rate']:g} / {r['warmup_ratio']:g} / {r['epochs']} | {steps} | "
                f"{'yes' if r.get('casing') else 'no'} | "
                f"{r.get('context_pieces') or 0} | {'CRF' if r.get('crf') else 'softmax'} | {_decoding(decoding, r)} | "
                f"{v['precision']:.4f} | {v['recall']:.4f} | {v['f1']:.4f} | "
                f"{t['precision']:.4f} | {t['recall']:.4f} | {t['f1']:.4f} |"
            )
    best = max(table, key=lambda run: max(row["validation"]["f1"] for key, row in table[run].items() if key in ("argmax", "constrained")))
    lines.append(f"\nBest on validation F1: {best}.")
    return "\n".join(lines)


def _decoding(decoding: str, recipe: dict) -> str:
    if recipe.get("crf"):  # a CRF model's unconstrained decoding is its own Viterbi path, not the per-word argmax
        return "CRF Viterbi" if decoding == "argmax" else "CRF + IOB2 constrained"
    return decoding


if __name__ == "__main__":
    main()
