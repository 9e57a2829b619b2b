"""Forward + backward time of one step's windows: packed rows at three widths vs length-grouped padding.

The same random 16-sentence steps (first 1,600 CoNLL-2003 train sentences, embedded MiniLM, seed features)
go through each variant in turn, step by step in one process, so the VM's drift hits all alike:
  longest      packed rows as wide as the step's longest window (data/packing.py before row_width)
  row_width    packed rows at row_width's choice (the default)
  two-pass     the step's windows sorted and split where they fall to 60% of the longest: two packed passes
  grouped      length-grouped steps (other sentences), one window a row padded to the longest
Prints ms a step (steps 4.. of 100), sentences/s and the tokens and attention scores (R*W^2) carried.
Output recorded in benchmarks/train/results/packing_width.txt:

    .venv/bin/python -m benchmarks.train.packing_width
"""

import random
import time

import torch

from nertune.data.features import collate, collate_labels, length_grouped_steps
from nertune.data.packing import pack, packed_logits, row_width
from nertune.data.splits import load_splits
from nertune.model.load import load_for_training, load_tokenizer
from nertune.model.loss import weighted_token_loss
from nertune.model.positions import max_pieces_for
from nertune.model.word_scores import build_windows
from nertune.training.speed.embedding_grad import KeptEmbeddingGradient

torch.manual_seed(0)
splits = load_splits(max_train_sentences=1600, max_eval_sentences=10)
label2id = {label: i for i, label in enumerate(splits.labels)}
sentences = splits.train.sentences
tokenizer = load_tokenizer("embedded-minilm")
model = load_for_training("embedded-minilm", splits.labels).train()
kept = KeptEmbeddingGradient(model)  # as the training loop on one CPU process
windows = build_windows(
    tokenizer, [s.words for s in sentences], max_pieces_for(model, tokenizer), [[label2id[t] for t in s.tags] for s in sentences]
)
lengths = [len(w.input_ids) for w in windows]
random_steps = length_grouped_steps(lengths, 16, random.Random(1), False)[:100]
grouped_steps = length_grouped_steps(lengths, 16, random.Random(1), True)[:100]


def packed(step, width_rule):
    step_windows = [windows[i] for i in step]
    if width_rule == "two-pass":
        ordered = sorted(step_windows, key=lambda w: -len(w.input_ids))
        cut = next((i for i, w in enumerate(ordered) if len(w.input_ids) <= 0.6 * len(ordered[0].input_ids)), len(ordered))
        passes = [p for p in (ordered[:cut], ordered[cut:]) if p]
    else:
        passes = [step_windows]
    carried = scores = 0
    for part in passes:
        part_lengths = [len(w.input_ids) for w in part]
        width = max(part_lengths) if width_rule in ("longest", "two-pass") else row_width(part_lengths)
        inputs, unpack = pack(part, tokenizer.pad_token_id, 0, 1, width)
        rows = inputs["input_ids"].shape[0]
        carried, scores = carried + rows * width, scores + rows * width * width
        logits = packed_logits(model, inputs, unpack, "cpu")
        weighted_token_loss(logits, collate_labels(part, unpack.shape[1]), torch.full((len(part),), 1 / 160)).backward()
    return carried, scores


def grouped(step):
    batch = collate([windows[i] for i in step], tokenizer.pad_token_id, 1)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    weighted_token_loss(logits, batch["labels"], torch.full((len(step),), 1 / 160)).backward()
    rows, width = batch["input_ids"].shape
    return rows * width, rows * width * width


variants = {
    "longest": lambda k: packed(random_steps[k], "longest"),
    "row_width": lambda k: packed(random_steps[k], "row_width"),
    "two-pass": lambda k: packed(random_steps[k], "two-pass"),
    "grouped": lambda k: grouped(grouped_steps[k]),
}
seconds = dict.fromkeys(variants, 0.0)
tokens = dict.fromkeys(variants, 0)
attention = dict.fromkeys(variants, 0)
for k in range(len(random_steps)):
    for name, run in variants.items():
        began = time.perf_counter()
        carried, scores = run(k)
        elapsed = time.perf_counter() - began
        model.zero_grad(set_to_none=True)
        kept.reset()
        if k >= 3:  # warm-up steps left out
            seconds[name] += elapsed
            tokens[name] += carried
            attention[name] += scores
measured = len(random_steps) - 3
real = sum(lengths[i] for step in random_steps[3:] for i in step)
for name in variants:
    per_real = f"{tokens[name] / real:.3f} per real token" if name != "grouped" else "(other sentences)"
    print(
        f"{name:10s} {seconds[name] / measured * 1000:6.1f} ms a step  {16 * measured / seconds[name]:5.1f} sentences/s  "
        f"tokens {tokens[name]:,} {per_real}  attention scores {attention[name] / 1e6:.1f}M"
    )
