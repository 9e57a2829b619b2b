"""Training speed, side by side on one machine: nertune vs the Hugging Face Trainer (run_ner-style).

Same model, same slice of CoNLL-2003 train, same recipe (effective batch 16, lr, Adam, linear decay), same
epochs; time inside the training loop only. Each system runs in its own fresh process (so each gets its own
peak-memory figure and neither inherits the other's allocator or thread-pool state), one after the other,
in the order given; `--rounds 2` runs the pair twice with the order reversed the second time.
Prints sentences/s and ratios; writes benchmarks/train/results/train_speed-<tag>.json.

    .venv/bin/python -m benchmarks.train.train_speed --sentences 14041 --eval-sentences 3250       # Trainer batch 16
    .venv/bin/python -m benchmarks.train.train_speed --sentences 1600 --literal                     # Trainer batch 1 x accumulation 16

Like with like: the Trainer gets the precision nertune picks on this machine (training/precision.py: bf16
on a CPU with AVX-512 BF16 or AMX, else fp32), as `bf16=True, use_cpu=True`; both are recorded with the
CPU's model and flags. Both children import nertune, so both run with the oneDNN kernel cache it sets
(`ONEDNN_PRIMITIVE_CACHE_CAPACITY`, 16,384 unless the environment names one; each run records the value).

The Trainer at batch 16 averages the loss over the batch's labelled tokens; nertune runs with
`accumulation: token` here so both optimise the same objective (its default, `sentence`, is the
literal batch 1 x 16 recipe's, used with --literal).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile

import torch

from benchmarks.common import ROOT, cpu_name, git_sha, results_dir, versions, write_result
from nertune.data.embedded import resolve_model
from nertune.data.splits import load_splits
from nertune.evaluate.scoring import score
from nertune.machine import cpu_description
from nertune.training.precision import choose_precision
from nertune.training.recipe import load_recipe


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def nertune_precision() -> str:
    """What `mixed_precision: auto` gives on this machine ("bf16", "fp16" or "no")."""
    return choose_precision("auto", on_gpu=False).mixed  # the Trainer here runs with use_cpu=True


def run_system(system: str, args) -> dict:
    """One system's run, in this process (called in a child process)."""
    splits = load_splits(max_train_sentences=args.sentences, max_eval_sentences=args.eval_sentences)
    train, validation, labels = splits.train.sentences, splits.validation.sentences, splits.labels
    with tempfile.TemporaryDirectory() as tmp:
        if system == "trainer":
            from benchmarks.train.hf_baseline import first_subword_predictions, train_trainer  # noqa: PLC0415  (trainer child only)

            batch, accum = (1, 16) if args.literal else (16, 1)
            bf16 = nertune_precision() == "bf16"
            model, tokenizer, seconds = train_trainer(
                resolve_model(args.model),
                train,
                labels,
                tmp + "/hf",
                batch_size=batch,
                grad_accum=accum,
                epochs=args.epochs,
                learning_rate=args.learning_rate,
                seed=args.seed,
                use_cpu=True,
                bf16=bf16,
            )
            f1 = score([s.tags for s in validation], first_subword_predictions(model, tokenizer, validation))["f1"]
            result = {
                "system": f"Trainer, batch {batch} x accumulation {accum}",
                "precision": "bf16" if bf16 else "fp32",
                "train_seconds": seconds,
                "validation_f1": f1,
            }
        else:
            from nertune.training.loop import train_run  # noqa: PLC0415  (nertune child only)

            recipe = load_recipe(
                "seed",
                {
                    "model": args.model,
                    "max_train_sentences": args.sentences,
                    "max_eval_sentences": args.eval_sentences,
                    "epochs": args.epochs,
                    "learning_rate": args.learning_rate,
                    "seed": args.seed,
                    "output_dir": tmp + "/nertune",
                    "accumulation": "sentence" if args.literal else "token",
                },
            )
            metrics = train_run(recipe, progress=False)
            # Validation F1 with the same first-subword argmax as the Trainer's side (no constrained decoding).
            result = {
                "system": f"nertune, 16 sentences a step ({recipe.accumulation} semantics)",
                "precision": {"no": "fp32"}.get(metrics["precision"], metrics["precision"]),
                "train_seconds": metrics["train_seconds"],
                "validation_f1": metrics["validation"]["f1"],
            }
    result.update(
        sentences_per_second=len(train) * args.epochs / result["train_seconds"],
        peak_rss_mb=peak_rss_mb(),
        threads=torch.get_num_threads(),
        onednn_primitive_cache_capacity=os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY"),
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=768)
    parser.add_argument("--eval-sentences", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--model", default="embedded-minilm")
    parser.add_argument("--literal", action="store_true", help="Trainer runs batch 1 x accumulation 16 (the recipe as written)")
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    parser.add_argument("--seed", type=int, default=42, help="both sides' seed (the Trainer's and the recipe's)")
    parser.add_argument("--rounds", type=int, default=1, help="pairs of runs; every second round reverses the order")
    parser.add_argument("--tag", default=None)
    parser.add_argument("--first", choices=["trainer", "nertune"], default="trainer", help="which system runs first (in odd rounds)")
    parser.add_argument("--system", choices=["trainer", "nertune"], help=argparse.SUPPRESS)  # child process mode
    args = parser.parse_args()

    if args.system:
        print(json.dumps(run_system(args.system, args)))
        return

    child_args = [
        "--sentences",
        str(args.sentences),
        "--eval-sentences",
        str(args.eval_sentences),
        "--epochs",
        str(args.epochs),
        "--model",
        args.model,
        "--learning-rate",
        str(args.learning_rate),
        "--seed",
        str(args.seed),
        *(["--literal"] if args.literal else []),
    ]
    runs: list[dict] = []
    for round_index in range(args.rounds):
        order = ["trainer", "nertune"] if (round_index % 2 == 0) == (args.first == "trainer") else ["nertune", "trainer"]
        for system in order:
            child = subprocess.run(
                [sys.executable, "-m", "benchmarks.train.train_speed", *child_args, "--system", system],
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            if child.returncode != 0:
                sys.exit(f"{system} run failed:\n{child.stderr[-4000:]}")
            result = json.loads(child.stdout.strip().splitlines()[-1]) | {"round": round_index + 1, "key": system}
            runs.append(result)
            print(
                f"round {round_index + 1} {result['system']} ({result['precision']}): {result['sentences_per_second']:.1f} sentences/s, "
                f"validation F1 {result['validation_f1']:.4f}, peak RSS {result['peak_rss_mb']:.0f} MB",
                file=sys.stderr,
            )

    def summary(key: str) -> dict:
        mine = [r for r in runs if r["key"] == key]
        return {
            "system": mine[0]["system"],
            "sentences_per_second": statistics.median(r["sentences_per_second"] for r in mine),
            "train_seconds": statistics.median(r["train_seconds"] for r in mine),
            "validation_f1": statistics.median(r["validation_f1"] for r in mine),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in mine),
        }

    trainer, nertune = summary("trainer"), summary("nertune")
    results = {
        "command": "python -m benchmarks.train.train_speed " + " ".join(sys.argv[1:]),
        "sentences": args.sentences,
        "epochs": args.epochs,
        "eval_sentences": args.eval_sentences,
        "model": args.model,
        "learning_rate": args.learning_rate,
        "seed": args.seed,
        "literal": args.literal,
        "git_sha": git_sha(),
        "machine": platform.platform(),
        "processor": cpu_name(),
        "cpu": cpu_description(),
        "versions": versions(),
        "trainer": trainer,
        "nertune": nertune,
        "runs": runs,
        "speedup": nertune["sentences_per_second"] / trainer["sentences_per_second"],
        "speedup_per_round": [
            n["sentences_per_second"] / t["sentences_per_second"]
            for t, n in zip([r for r in runs if r["key"] == "trainer"], [r for r in runs if r["key"] == "nertune"])
        ],
        "f1_difference_points": 100 * (nertune["validation_f1"] - trainer["validation_f1"]),
    }
    tag = args.tag or ("literal" if args.literal else "batch16") + f"-{args.sentences}x{args.epochs}"
    out = write_result(results_dir(__file__) / f"train_speed-{tag}.json", results)
    print(f"speed-up {results['speedup']:.2f}x, F1 difference {results['f1_difference_points']:+.2f} points -> {out}", file=sys.stderr)
    print(json.dumps({k: results[k] for k in ("trainer", "nertune", "speedup", "f1_difference_points")}, indent=2))


if __name__ == "__main__":
    main()
