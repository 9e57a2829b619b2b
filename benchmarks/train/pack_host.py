"""Host time to lay out one packed training step: numpy scatters vs writing window by window.

A graphed GPU step (training/speed/graphed_step.py) waits on this host work every step. `pack_layout` and
`packed_targets` (data/packing.py, model/loss.py) build the rows with numpy scatters over the
concatenated windows; until 5dc3713 they wrote each window into tensors one slice at a time (kept
below as the reference). Both run on the same random 16-sentence CoNLL-2003 steps, alternating
in one process, one thread, with the 64-token bucketed width included; their outputs are
checked identical first. Output recorded in benchmarks/train/results/pack_host.txt:

    .venv/bin/python -m benchmarks.train.pack_host
"""

from __future__ import annotations

import random
import statistics
import time

import torch

from nertune.data.features import length_grouped_steps
from nertune.data.packing import Packed, pack_layout, pack_rows, row_width
from nertune.data.splits import load_splits
from nertune.model.load import load_tokenizer
from nertune.model.loss import packed_targets, window_weights
from nertune.model.word_scores import build_windows
from nertune.training.speed.graphs import GraphedForward


def pack_layout_by_window(windows, pad_id, position_offset, multiple=1, width=None) -> Packed:
    """The window-by-window layout (pack before 5dc3713)."""
    lengths = [len(w.input_ids) for w in windows]
    longest = -(-max(lengths) // multiple) * multiple
    width = row_width(lengths, multiple) if width is None else width
    rows = pack_rows(lengths, width)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    segment = torch.full((len(rows), width), -1, dtype=torch.long)
    types = torch.zeros((len(rows), width), dtype=torch.long) if any(w.token_type_ids for w in windows) else None
    unpack = torch.zeros((len(windows), longest), dtype=torch.long)
    for row, members in enumerate(rows):
        start = 0
        for index in members:
            window, n = windows[index], lengths[index]
            input_ids[row, start : start + n] = torch.tensor(window.input_ids)
            positions[row, start : start + n] = torch.arange(position_offset, position_offset + n)
            segment[row, start : start + n] = index
            if types is not None and window.token_type_ids:
                types[row, start : start + n] = torch.tensor(window.token_type_ids)
            unpack[index, :n] = torch.arange(row * width + start, row * width + start + n)
            start += n
    return Packed(input_ids, positions, segment, types, unpack)


def packed_targets_by_window(windows, weights, unpack, rows, width):
    labels = torch.full((rows * width,), -100, dtype=torch.long)
    token_weights = torch.zeros(rows * width, dtype=torch.float32)
    for index, window in enumerate(windows):
        if window.labels:
            where = unpack[index, window.first_pieces]
            labels[where] = torch.tensor(window.labels)
            token_weights[where] = weights[index]
    return labels.view(rows, width), token_weights.view(rows, width)


def main() -> None:
    torch.set_num_threads(1)
    splits = load_splits("conll2003", max_train_sentences=3000, max_eval_sentences=16)
    sentences = splits.train.sentences
    label2id = {label: i for i, label in enumerate(splits.labels)}
    windows = build_windows(
        load_tokenizer("embedded-minilm"), [s.words for s in sentences], 510, [[label2id[t] for t in s.tags] for s in sentences]
    )
    words = [len(s.words) for s in sentences]
    steps = length_grouped_steps([len(w.input_ids) for w in windows], 16, random.Random(0), False)

    def step_inputs(step):
        step_windows = [windows[i] for i in step]
        return step_windows, window_weights(step_windows, words, "sentence", 16, sum(words[i] for i in step))

    def run(layout, targets, step_windows, weights):
        width = GraphedForward.width([len(w.input_ids) for w in step_windows], 8)
        packed = layout(step_windows, 0, 0, 8, width)
        return packed, targets(step_windows, weights, packed.unpack, *packed.input_ids.shape)

    for step in steps:  # identical outputs first
        new, old = (
            run(pack_layout, packed_targets, *step_inputs(step)),
            run(pack_layout_by_window, packed_targets_by_window, *step_inputs(step)),
        )
        for a, b in zip([*new[0], *new[1]], [*old[0], *old[1]]):
            assert (a is None and b is None) or torch.equal(a, b)

    timings = {"numpy scatters (pack_layout + packed_targets)": [], "window by window (before 5dc3713)": []}
    for _ in range(5):  # alternating rounds over all steps
        for name, (layout, targets) in zip(timings, ((pack_layout, packed_targets), (pack_layout_by_window, packed_targets_by_window))):
            prepared = [step_inputs(step) for step in steps]
            started = time.perf_counter()
            for step_windows, weights in prepared:
                run(layout, targets, step_windows, weights)
            timings[name].append(1000 * (time.perf_counter() - started) / len(steps))
    print(f"{len(steps)} random 16-sentence CoNLL-2003 steps, outputs identical; ms a step, median of 5 rounds (one thread):")
    medians = {name: statistics.median(values) for name, values in timings.items()}
    for name, value in medians.items():
        print(f"  {name:48s} {value:.3f}")
    fast, slow = medians.values()
    print(f"  ratio {slow / fast:.2f}x")


if __name__ == "__main__":
    main()
