"""Training speed, side by side in one process: nertune vs the Hugging Face Trainer (run_ner-style).

Same model, same slice of CoNLL-2003 train, same recipe (effective batch 16), same epochs; time in the
training loop only. Prints sentences/s and ratios; writes benchmarks/results/train_speed-<tag>.json.

    .venv/bin/python benchmarks/train_speed.py --sentences 768 --epochs 1          # effective batch 16 both
    .venv/bin/python benchmarks/train_speed.py --sentences 256 --literal            # Trainer batch 1 x accumulation 16
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from hf_baseline import first_subword_predictions, train_trainer  # noqa: E402
from nertune.data.embedded import resolve_model  # noqa: E402
from nertune.data.splits import load_splits  # noqa: E402
from nertune.evaluate.scoring import score  # noqa: E402
from nertune.train.loop import train_run  # noqa: E402
from nertune.train.recipe import load_recipe  # noqa: E402
from nertune.train.report import versions  # noqa: E402


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=768)
    parser.add_argument("--eval-sentences", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--model", default="embedded-minilm")
    parser.add_argument("--literal", action="store_true", help="Trainer runs batch 1 x accumulation 16 (the recipe as written)")
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    parser.add_argument("--tag", default=None)
    args = parser.parse_args()

    splits = load_splits(max_train_sentences=args.sentences, max_eval_sentences=args.eval_sentences)
    train, validation, labels = splits.train.sentences, splits.validation.sentences, splits.labels
    model_path = resolve_model(args.model)
    results: dict = {"sentences": len(train), "epochs": args.epochs, "model": args.model, "literal": args.literal,
                     "threads": torch.get_num_threads(), "machine": platform.platform(), "versions": versions()}

    with tempfile.TemporaryDirectory() as tmp:
        # -- Hugging Face Trainer ------------------------------------------------------------
        batch, accum = (1, 16) if args.literal else (16, 1)
        model, tokenizer, seconds = train_trainer(model_path, train, labels, tmp + "/hf", batch_size=batch, grad_accum=accum,
                                                  epochs=args.epochs, learning_rate=args.learning_rate, use_cpu=True)
        predictions = first_subword_predictions(model, tokenizer, validation)
        hf_f1 = score([s.tags for s in validation], predictions)["f1"]
        results["trainer"] = {"batch_size": batch, "grad_accum": accum, "train_seconds": seconds,
                              "sentences_per_second": len(train) * args.epochs / seconds, "validation_f1": hf_f1}
        print(f"Trainer (batch {batch} x accum {accum}): {results['trainer']['sentences_per_second']:.1f} sentences/s, "
              f"validation F1 {hf_f1:.4f}", file=sys.stderr)
        del model

        # -- nertune (the seed recipe's gradient, fast path) ----------------------------------
        recipe = load_recipe("seed", {"model": args.model, "max_train_sentences": args.sentences, "max_eval_sentences": args.eval_sentences,
                                      "epochs": args.epochs, "learning_rate": args.learning_rate, "output_dir": tmp + "/nertune"})
        metrics = train_run(recipe, progress=False)
        results["nertune"] = {"train_seconds": metrics["train_seconds"],
                              "sentences_per_second": len(train) * args.epochs / metrics["train_seconds"],
                              "validation_f1": metrics["validation"]["f1"]}
        print(f"nertune: {results['nertune']['sentences_per_second']:.1f} sentences/s, validation F1 {metrics['validation']['f1']:.4f}",
              file=sys.stderr)

    results["speedup"] = results["nertune"]["sentences_per_second"] / results["trainer"]["sentences_per_second"]
    results["f1_difference_points"] = 100 * (results["nertune"]["validation_f1"] - results["trainer"]["validation_f1"])
    results["peak_rss_mb"] = peak_rss_mb()
    tag = args.tag or ("literal" if args.literal else "batch16") + f"-{args.sentences}x{args.epochs}"
    out = Path(__file__).resolve().parent / "results" / f"train_speed-{tag}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"speed-up {results['speedup']:.2f}x, F1 difference {results['f1_difference_points']:+.2f} points -> {out}", file=sys.stderr)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
