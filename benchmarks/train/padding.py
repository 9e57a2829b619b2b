"""Tokens a forward pass carries per real token, for one epoch of 16-sentence steps over CoNLL-2003 train.

grouped-50 / grouped-8: length-grouped steps (mega-batches of 50 or 8 steps), one window a row, padded to the
longest; random: the Trainer's random steps, padded the same way; random-packed-longest: random steps with the
windows packed into shared rows as wide as the longest (data/packing.py until row_width); random-packed: the same
at `row_width`'s width (a little wider where that saves a row), what training on a CPU uses; random-packed-8: widths
a multiple of 8 (a GPU's eager step); random-packed-bucketed: widths rounded up to 64 tokens, the few shapes a GPU's
CUDA graphs replay (training/speed/graphs.py), and -bucketed-32 at 32 (not used: it saves 2% for 50% more shapes), each with how many
(rows, width) shapes an epoch needs. No model runs: this is arithmetic on the real wordpiece lengths.
Output recorded in benchmarks/train/results/padding.txt:

    .venv/bin/python -m benchmarks.train.padding
"""

import random

from nertune.data.features import length_grouped_steps
from nertune.data.packing import pack_rows, row_width
from nertune.data.splits import load_splits
from nertune.model.load import load_tokenizer
from nertune.model.word_scores import build_windows
from nertune.training.speed.graphs import GraphedForward

train = load_splits("conll2003").train.sentences
tokenizer = load_tokenizer("embedded-minilm")
windows = build_windows(tokenizer, [s.words for s in train], 510, None)
assert len(windows) == len(train)  # no CoNLL sentence needs two windows at 510 pieces
lengths = [len(w.input_ids) for w in windows]
real = sum(lengths)


def carried(steps, packed):
    """(tokens carried, distinct (rows, width) shapes) for these steps."""
    total, shapes = 0, set()
    for step in steps:
        step_lengths = [lengths[i] for i in step]
        if packed and packed.startswith("bucketed"):
            width = GraphedForward.width(step_lengths, 8, int(packed.split("-")[1]))
        elif packed in ("row_width", "row_width-8"):
            width = row_width(step_lengths, 8 if packed == "row_width-8" else 1)
        else:
            width = max(step_lengths)
        rows = len(pack_rows(step_lengths, width)) if packed else len(step)
        total += width * rows
        shapes.add((rows, width))
    return total, len(shapes)


for name, group, mega, packed in (
    ("grouped-50", True, 50, None),
    ("grouped-8", True, 8, None),
    ("random", False, 50, None),
    ("random-packed-longest", False, 50, "longest"),
    ("random-packed", False, 50, "row_width"),
    ("random-packed-8", False, 50, "row_width-8"),
    ("random-packed-bucketed", False, 50, "bucketed-64"),
    ("random-packed-bucketed-32", False, 50, "bucketed-32"),
):
    steps = length_grouped_steps(lengths, 16, random.Random(42), group, mega)
    tokens, shapes = carried(steps, packed)
    print(f"{name:25s} {tokens / real:.3f} tokens carried per real token, {shapes} shapes")
