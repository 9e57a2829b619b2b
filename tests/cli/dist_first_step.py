"""Run by tests/cli/test_distributed.py under torchrun (or plain python for one process).

Computes the accumulated gradient of the first optimizer step — the loop's own sampler,
weights and forward/backward, through Accelerate's DDP — with dropout off, under both
loss semantics (one process start pays for both), and writes them (rank 0) to one
safetensors file, each name prefixed by its semantics: "sentence/bert.embeddings…".
"""

import random
import sys

import torch
from accelerate import Accelerator
from safetensors.torch import save_file

from nertune.data.features import length_grouped_steps
from nertune.data.splits import load_splits
from nertune.model.load import load_for_training, load_tokenizer
from nertune.model.loss import window_weights
from nertune.model.positions import max_pieces_for
from nertune.model.word_scores import build_windows
from nertune.training.step import forward_backward

accelerator = Accelerator(cpu=True)
world, rank = accelerator.num_processes, accelerator.process_index
splits = load_splits(max_train_sentences=64)
sentences = splits.train.sentences
label2id = {label: i for i, label in enumerate(splits.labels)}
tokenizer = load_tokenizer("embedded-minilm")
torch.manual_seed(0)
model = load_for_training("embedded-minilm", splits.labels)
windows = build_windows(
    tokenizer, [s.words for s in sentences], max_pieces_for(model, tokenizer), [[label2id[t] for t in s.tags] for s in sentences]
)
model = accelerator.prepare(model)
model.eval()  # dropout off: the comparison is exact up to float rounding
step = length_grouped_steps([len(w.input_ids) for w in windows], 16, random.Random(42))[0]
mine = step[rank::world]
words = [len(s.words) for s in sentences]
step_windows = [windows[i] for i in mine]
grads = {}
for semantics in ("sentence", "token"):
    model.zero_grad(set_to_none=True)
    weights = window_weights(step_windows, words, semantics, 16, sum(words[i] for i in step), world)
    forward_backward(model, step_windows, weights, tokenizer.pad_token_id, accelerator.device, 8192, backward=accelerator.backward)
    grads.update(
        {
            f"{semantics}/{n}": p.grad.detach().clone().contiguous()
            for n, p in accelerator.unwrap_model(model).named_parameters()
            if p.grad is not None
        }
    )
if accelerator.is_main_process:
    save_file(grads, sys.argv[1], metadata={"world_size": str(world), "step": ",".join(map(str, step))})
accelerator.wait_for_everyone()
