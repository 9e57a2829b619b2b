"""torch's CPU dropout vs nertune's cheap-mask dropout (training/speed/dropout.py), in one process, alternated.

1. The mask alone and dropout forward + backward, for the shapes of a packed MiniLM step: a layer's
   attention probabilities (4 rows x 12 heads x 128 x 128), its hidden states (512 x 384) and the
   feed-forward width (512 x 1536). Best of 5 rounds each.
2. Forward + backward of the same random packed steps of 16 CoNLL-2003 sentences, with two copies of
   the embedded MiniLM (torch's dropout; the cheap one), in alternating blocks so drift hits both.

    .venv/bin/python -m benchmarks.train.dropout_mask [--steps 40] [--blocks 4] > benchmarks/train/results/dropout_mask.txt
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
import torch.nn.functional as F

from nertune.data.embedded import conll2003_files
from nertune.data.features import length_grouped_steps
from nertune.data.splits import load_splits
from nertune.model.load import load_for_training, load_tokenizer
from nertune.model.loss import window_weights
from nertune.model.word_scores import build_windows
from nertune.training.speed.dropout import cheap_dropout, use_cheap_dropout
from nertune.training.step import forward_backward


def best_ms(fn, repeats: int = 8) -> float:
    fn()
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(repeats):
            fn()
        best = min(best, (time.perf_counter() - started) / repeats * 1000)
    return best


def masks() -> None:
    print("shape | bernoulli_ mask | cheap mask | F.dropout fwd+bwd | cheap fwd+bwd   (ms, best of 5)")
    for shape in ((4, 12, 128, 128), (512, 384), (512, 1536)):
        x = torch.randn(shape, requires_grad=True)
        grad = torch.randn(shape)
        n = x.numel()
        rows = [
            best_ms(lambda: torch.empty(shape).bernoulli_(0.9)),
            best_ms(lambda: torch.empty(-(-n // 4), dtype=torch.int64).random_(-(2**63), 2**63 - 1).view(torch.int16)[:n] >= 6554 - 32768),
            best_ms(lambda: F.dropout(x, 0.1, True).backward(grad)),
            best_ms(lambda: cheap_dropout(x, 0.1).backward(grad)),
        ]
        print(f"{tuple(shape)} | " + " | ".join(f"{v:.2f}" for v in rows))


def steps_ab(n_steps: int, blocks: int) -> None:
    files = conll2003_files()
    splits = load_splits("files", str(files["train"]), str(files["validation"]), max_train_sentences=1600, max_eval_sentences=16)
    label2id = {label: i for i, label in enumerate(splits.labels)}
    tokenizer = load_tokenizer("embedded-minilm")
    sentences = splits.train.sentences
    windows = build_windows(tokenizer, [s.words for s in sentences], 510, [[label2id[t] for t in s.tags] for s in sentences])
    words = [len(s.words) for s in sentences]
    steps = length_grouped_steps([len(w.input_ids) for w in windows], 16, random.Random(1), group_by_length=False)[:n_steps]
    models = {
        "torch dropout": load_for_training("embedded-minilm", splits.labels).train(),
        "cheap dropout": load_for_training("embedded-minilm", splits.labels).train(),
    }
    use_cheap_dropout(models["cheap dropout"])

    def run(model) -> float:
        started = time.perf_counter()
        for step in steps:
            step_windows = [windows[i] for i in step]
            weights = window_weights(step_windows, words, "sentence", 16, sum(words[i] for i in step))
            forward_backward(model, step_windows, weights, tokenizer.pad_token_id, torch.device("cpu"), 8192, position_offset=0)
            model.zero_grad(set_to_none=True)
        return (time.perf_counter() - started) / len(steps) * 1000

    for model in models.values():
        run(model)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in models}
    for block in range(blocks):
        for name in list(models) if block % 2 == 0 else list(models)[::-1]:
            times[name].append(run(models[name]))
    print(f"\nforward + backward of {len(steps)} random packed steps of 16 sentences (ms a step, {blocks} alternated blocks):")
    for name, values in times.items():
        print(f"{name}: " + " / ".join(f"{v:.0f}" for v in values) + f"  median {statistics.median(values):.0f}")
    ratio = statistics.median(times["torch dropout"]) / statistics.median(times["cheap dropout"])
    print(f"cheap dropout: {ratio:.3f}x the speed of torch's (medians)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--blocks", type=int, default=4)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    masks()
    steps_ab(args.steps, args.blocks)


if __name__ == "__main__":
    main()
