"""The pretrained embedded MiniLM, fine-tuned on one GPU: real scores, graphed vs eager, and make train's recipe.

gpu_speed.py times bert-base from random weights (its weights cannot travel), so its F1 says nothing about
what a user gets. This script trains the real embedded MiniLM-L6 on the whole CoNLL-2003 train split,
3 epochs, and scores the best epoch on the full validation and test splits (conlleval), for:

1. the seed recipe, the whole step graphed (training/speed/graphed_step.py: the default on one GPU);
2. minilm-context-crf (casing, document context, CRF) on packed rows, so the whole step is graphed, the CRF's
   loss included (issue 26, point 5: `make train`'s recipe ≤ 30 s in the loop);
3. the same with `--eager`: the same steps, so the graphs must learn what it learns;
4. `make train`'s recipe, minilm-context64-crf-5ep (64 pieces of context, 5 epochs), packed the same way;
5. minilm-context-crf as its recipe pins it (one window a row, so eager): 123 s in the loop before;
6. the seed recipe with `--eager` (measured before: graphed and eager learn the same).
Runs that would start after --skip-after seconds are skipped (one device session is all the script gets).

Compare with the same recipes on the 2-core CPU in fp32 (README, Results). The weights travel to the GPU
machine as fp16 (45 MB; the device tool carries 64 MiB) and are widened back to fp32 there: the training
starts from weights rounded to fp16, which moves each by at most 1 part in 2,048 (the 0.1% below fp16's
normal range by under 3e-8). For a CPU reference from the same start, train from the widened copy.

    bash benchmarks/gpu/gpu_prepare.sh --minilm        # here: also writes .gpu_bench/minilm-fp16 and test.txt
    BENCH=gpu_minilm bash benchmarks/gpu/gpu.sh        # there, with .whl and .gpu_bench carried: ~6 minutes on an H200
    .venv/bin/python -m benchmarks.gpu.gpu_minilm --smoke   # here: the same code on a CPU, 16 sentences (tests it)

Each run's result is written to the JSON as soon as it exists; a run that raises is recorded with its
traceback and the next one still runs (one device session is all a run gets).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from benchmarks.common import ROOT, results_dir, versions, write_result
from benchmarks.gpu.gpu_speed import card_name, choose_device, conll_files, failure
from nertune.atomic import atomic_dir
from nertune.console import console
from nertune.data.embedded import minilm_dir
from nertune.training.loop import train_run
from nertune.training.recipe import load_recipe

STARTED = time.perf_counter()
MODEL_FILES = ("config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
# Packed rows for a context + CRF recipe: the whole step graphed, the CRF's loss included (issue 26, point 5).
PACKED = {"pack": True, "group_by_length": False}
RUNS = (  # name, recipe, cuda_graphs (None: wherever they apply), other recipe fields; in the order they run
    ("seed_graphed", "seed", None, {}),
    ("context_crf_packed", "minilm-context-crf", None, PACKED),
    ("context_crf_packed_eager", "minilm-context-crf", False, PACKED),  # the same steps: the graphs must learn the same
    ("make_train_packed", "minilm-context64-crf-5ep", None, PACKED),
    ("context_crf", "minilm-context-crf", None, {}),  # as its recipe pins it: one window a row, so eager
    ("seed_eager", "seed", False, {}),  # measured before (docs/gpu.md): last
)
# --smoke (a CPU, where no graph applies): these would compute their twins above again (16 sentences, 1 epoch)
SMOKE_SKIPS = ("context_crf_packed_eager", "make_train_packed", "seed_eager")


def copy_in_dtype(source: Path, target: Path, dtype) -> None:
    """The model folder with its float weights cast to dtype (fp16 to travel, fp32 to train), written whole or not at all."""
    weights = load_file(source / "model.safetensors")
    with atomic_dir(target) as tmp:
        for name in MODEL_FILES:
            (tmp / name).write_bytes((source / name).read_bytes())
        save_file({k: v.to(dtype) if v.is_floating_point() else v for k, v in weights.items()}, tmp / "model.safetensors")


def one_run(recipe_name: str, cuda_graphs, fields: dict, model_dir: str, files: dict, output_dir: str, smoke: bool) -> dict:
    fields = {**fields, "model": model_dir, "data": "files", **files, "output_dir": output_dir, "cuda_graphs": cuda_graphs}
    if smoke:
        fields |= {"max_train_sentences": 16, "max_eval_sentences": 8, "epochs": 1}
    recipe = load_recipe(recipe_name, fields)
    started = time.perf_counter()
    metrics = train_run(recipe, progress=False)
    return {
        "recipe": recipe_name,
        "pack": recipe.pack,
        "epochs": recipe.epochs,
        "train_sentences": metrics["train_sentences"],
        "train_seconds": metrics["train_seconds"],  # the loop alone; capture is reported apart
        "wall_seconds": time.perf_counter() - started,  # load, loop, evaluations each epoch, final scoring, saving
        "precision": metrics["precision"],
        "best_epoch": metrics["best_epoch"],
        "epochs_log": [
            {k: e.get(k) for k in ("epoch", "train_loss", "sentences_per_second")}
            | {"validation_f1": (e.get("validation") or {}).get("f1")}
            for e in metrics["epochs"]
        ],
        "validation": metrics.get("validation"),
        "test": metrics.get("test"),
        "cuda_graphs": metrics["cuda_graphs"],  # None where no graph applied
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="CPU, 16 sentences, 1 epoch: tests the script, measures nothing")
    parser.add_argument("--data", type=Path, default=ROOT / ".gpu_bench", help="gpu_prepare.sh's folder")
    parser.add_argument("--prepare", type=Path, default=None, help="write the fp16 copy of the embedded MiniLM here and stop")
    parser.add_argument("--skip-after", type=float, default=330.0, help="start no further run once this many seconds have passed")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    if args.prepare:
        copy_in_dtype(minilm_dir(), args.prepare, torch.float16)
        return
    choose_device(args.smoke)
    out = args.out or (
        Path(os.environ["OUT"]) / "gpu_minilm.json" if os.environ.get("OUT") else results_dir(__file__) / "gpu_minilm-smoke.json"
    )
    results: dict = {
        "card": card_name(),
        "smoke": args.smoke,
        "model": "embedded MiniLM-L6 (pretrained; fp16 in transit, fp32 here)",
        "versions": versions(),
    }
    files = conll_files(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        carried = args.data / "minilm-fp16"
        if not carried.is_dir():  # here (--smoke): the same round trip from the embedded package
            carried = Path(tmp) / "minilm-fp16"
            copy_in_dtype(minilm_dir(), carried, torch.float16)
        model_dir = Path(tmp) / "minilm"
        copy_in_dtype(carried, model_dir, torch.float32)

        for name, recipe_name, cuda_graphs, fields in RUNS:
            if args.smoke and name in SMOKE_SKIPS:
                continue
            if time.perf_counter() - STARTED > args.skip_after:
                results[name] = {"skipped": f"{args.skip_after:.0f} s had passed"}
                continue
            try:
                results[name] = one_run(recipe_name, cuda_graphs, fields, str(model_dir), files, f"{tmp}/{name}", args.smoke)
                r = results[name]
                console.print(
                    f"{name}: {r['train_seconds']:.1f} s in the loop, {r['wall_seconds']:.1f} s in all; "
                    f"validation F1 {r['validation']['f1']:.4f}, test F1 {r['test']['f1']:.4f}",
                    highlight=False,
                )
            except Exception as error:
                results[name] = failure(error)
                console.print(f"[red]{name} failed:[/] {results[name]['error']}")
            results["script_seconds"] = time.perf_counter() - STARTED
            write_result(out, results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
