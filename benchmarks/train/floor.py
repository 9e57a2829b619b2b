"""How far a finished run's time in the loop is from what the machine's arithmetic allows (issue 26).

    python -m benchmarks.train.floor RUN_DIR [--out FILE]

For the run in RUN_DIR (its recipe.yaml and metrics.json) this replays the training data the way the loop
cut it (the same windows, the same per-epoch steps from the recipe's seed, the same forward passes and
their padding or packing) and counts the tokens carried, context and padding included. Then:

    FLOPs = 6 x non-embedding parameters x tokens  +  attention (12 x layers x hidden x sum of rows' width^2)

and the floor is FLOPs / the GEMM rate this script measures now, on this machine, in the run's precision
(bf16 autocast or fp32), on matrices of the model's own shapes. The report is time in loop / floor. Time it
on a quiet machine: the rate is measured, not looked up.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch
import yaml

from benchmarks.common import git_sha, results_dir, versions, write_result
from nertune.data.features import collate, length_grouped_steps
from nertune.data.packing import pack_layout
from nertune.data.splits import load_splits
from nertune.machine import cpu_description
from nertune.model.load import load_for_training, load_tokenizer
from nertune.model.positions import max_pieces_for, packing_offset
from nertune.model.word_scores import build_windows
from nertune.training.recipe import Recipe, labels_for
from nertune.training.setup import read_options
from nertune.training.step import forward_passes


def recipe_windows(recipe: Recipe):
    """(model, tokenizer, train sentences, their labelled windows), built as the loop builds them for `recipe`."""
    splits = load_splits(
        recipe.data, recipe.train, recipe.validation, recipe.test, recipe.max_train_sentences, recipe.max_eval_sentences,
        options=read_options(recipe),
    )  # fmt: skip
    labels = labels_for(recipe.model, splits.labels)
    tokenizer = load_tokenizer(recipe.model)
    model = load_for_training(recipe.model, labels, recipe.dropout, recipe.casing, recipe.context_pieces, recipe.crf)
    sentences = splits.train.sentences
    label2id = {label: i for i, label in enumerate(labels)}
    windows = build_windows(
        tokenizer, [s.words for s in sentences], max_pieces_for(model, tokenizer), [[label2id[t] for t in s.tags] for s in sentences],
        model.config, [s.document for s in sentences],
    )  # fmt: skip
    return model, tokenizer, sentences, windows


def tokens_carried(recipe: Recipe) -> dict:
    """Tokens and attention work of every forward pass the run made, replayed from its recipe."""
    model, tokenizer, sentences, windows = recipe_windows(recipe)
    windows_of: list[list[int]] = [[] for _ in sentences]
    for index, window in enumerate(windows):
        windows_of[window.sequence].append(index)
    offset = packing_offset(model) if recipe.pack else None
    group = offset is None if recipe.group_by_length is None else recipe.group_by_length
    piece_lengths = [sum(len(windows[i].input_ids) for i in w) for w in windows_of]
    order = random.Random(recipe.seed)
    real = carried = attention = passes = 0
    for _ in range(recipe.epochs):
        for step in length_grouped_steps(piece_lengths, recipe.sentences_per_step, order, group):
            step_windows = [windows[i] for s in step for i in windows_of[s]]
            for chunk in forward_passes([len(w.input_ids) for w in step_windows], recipe.max_tokens_per_forward):
                chosen = [step_windows[i] for i in chunk]
                if offset is None:
                    rows = collate(chosen, tokenizer.pad_token_id)["input_ids"]
                else:
                    rows = pack_layout(chosen, tokenizer.pad_token_id, offset).input_ids
                real += sum(len(w.input_ids) for w in chosen)
                carried += rows.numel()
                attention += rows.shape[0] * rows.shape[1] ** 2
                passes += 1
    config = model.config
    embedding = sum(p.numel() for name, p in model.named_parameters() if "embeddings" in name)
    return {
        "real_tokens": real,  # the windows' own tokens: sentence, context, [CLS] and [SEP]
        "tokens_carried": carried, "attention_rows_width2": attention, "forward_passes": passes,
        "non_embedding_parameters": sum(p.numel() for p in model.parameters()) - embedding,
        "layers": config.num_hidden_layers, "hidden": config.hidden_size, "intermediate": config.intermediate_size,
        "tokens_per_pass": carried / max(1, passes),
    }  # fmt: skip


def gemm_rate(rows: int, hidden: int, intermediate: int, precision: str, seconds: float = 5.0) -> float:
    """FLOP/s of the model's own matmuls (rows x hidden @ hidden x intermediate and back), in the run's precision."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    # operands already in the run's dtype: autocast casts each weight once a pass, which is not the matmul's time
    a, b = torch.randn(rows, hidden, dtype=dtype), torch.randn(hidden, intermediate, dtype=dtype)
    c, d = torch.randn(rows, intermediate, dtype=dtype), torch.randn(intermediate, hidden, dtype=dtype)
    for _ in range(3):
        torch.mm(a, b), torch.mm(c, d)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b), torch.mm(c, d)
        done += 1
    elapsed = time.perf_counter() - start
    return done * 2 * (2 * rows * hidden * intermediate) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    run = Path(args.run_dir)
    recipe = Recipe(**yaml.safe_load((run / "recipe.yaml").read_text()))
    metrics = json.loads((run / "metrics.json").read_text())
    precision = metrics["precision"] if metrics["precision"] in ("bf16", "fp16") else "fp32"
    carried = tokens_carried(recipe)
    flops = 6 * carried["non_embedding_parameters"] * carried["tokens_carried"]
    flops += 12 * carried["layers"] * carried["hidden"] * carried["attention_rows_width2"]
    rate = gemm_rate(int(carried["tokens_per_pass"]), carried["hidden"], carried["intermediate"], precision)
    floor = flops / rate
    result = {
        "run": str(run), "recipe": metrics["recipe"], "precision": precision, "train_seconds": metrics["train_seconds"],
        **carried, "flops": flops, "gemm_flops_per_second": rate, "floor_seconds": floor,
        "time_over_floor": metrics["train_seconds"] / floor, "padding": carried["tokens_carried"] / carried["real_tokens"],
        "machine": {"cpu": cpu_description(), "threads": torch.get_num_threads()}, "git": git_sha(), "versions": versions(),
    }  # fmt: skip
    out = Path(args.out) if args.out else results_dir(__file__) / f"floor-{run.name}.json"
    write_result(out, result)
    print(
        f"{run.name}: {metrics['train_seconds']:.0f} s in the loop; floor {floor:.0f} s "
        f"({flops / 1e12:.1f} TFLOP at {rate / 1e9:.0f} GFLOP/s {precision}); time / floor = {result['time_over_floor']:.2f}; "
        f"tokens carried / window tokens = {result['padding']:.2f} -> {out}"
    )


if __name__ == "__main__":
    main()
