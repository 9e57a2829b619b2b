"""What CUDA graphs buy a bert-base training step on a GPU (issue 6, point 7: ≤ 30 s for 3 epochs).

The seed recipe is 878 optimizer steps an epoch of 16 sentences (~370 wordpieces): on a GPU that is
launch-bound, not arithmetic-bound (bert-base's ~1,000 kernels a step take longer to launch than to
run). So this times the same random steps, from the same saved weights, two ways:

  eager    nertune's step as the loop runs it: packed rows at `row_width`, `forward_backward`,
           clip, fused AdamW (bf16 autocast, no host sync in the step)
  graphed  the same step with nertune's CUDA graphs (training/speed/graphs.py): forward and backward
           captured once per packed shape (rows in 64-token widths, so few shapes); the loss,
           clip and fused AdamW stay eager.
  whole_step  the whole optimizer step (forward, loss, backward, clip, AdamW) from one graph per
           shape (training/speed/graphed_step.py), what the loop runs now.

In both graphed modes each shape is captured the first time it shows up, as in the loop, and the
capture seconds are reported apart and taken off the timed steps' time.

(The results of d657c12 and 4c1586a came from this script's first version, which did the same
capture inline, before the loop had it, and captured every shape before the clock started.)

Both print ms a step and the mean training loss of the last steps (the same numbers of the same data
from the same start, so the two losses should agree within dropout noise). Here, on a CPU,
`--smoke` runs the same code with the capture left out (a tiny model): it tests the script only.

    BENCH=gpu_step bash benchmarks/gpu/gpu.sh                      # on the GPU machine (gpu_prepare.sh here first)
    .venv/bin/python -m benchmarks.gpu.gpu_step --smoke            # here
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig, BertForTokenClassification

from benchmarks.common import ROOT, results_dir, versions, write_result
from benchmarks.gpu.gpu_speed import card_name, choose_device, data_files, failure
from nertune.data.features import length_grouped_steps
from nertune.data.packing import pack
from nertune.data.splits import load_splits
from nertune.model.loss import window_weights
from nertune.model.word_scores import build_windows
from nertune.training.speed.graphed_step import GraphedStep, capture_cuda_graph
from nertune.training.speed.graphs import GraphedForward
from nertune.training.step import forward_backward

STEPS_PER_EPOCH = 878  # CoNLL-2003 train, 16 sentences a step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny model, no capture: tests the script")
    parser.add_argument("--data", type=Path, default=ROOT / ".gpu_bench", help="gpu_prepare.sh's folder")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per mode (default 400; smoke 6)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = choose_device(args.smoke)
    on_gpu = device.type == "cuda"
    n_steps = args.steps or (6 if args.smoke else 400)
    warm = 2 if args.smoke else 20  # steps before the clock starts (kernels, allocator)
    out = args.out or (
        Path(os.environ["OUT"]) / "gpu_step.json" if os.environ.get("OUT") else results_dir(__file__) / "gpu_step-smoke.json"
    )

    train_path, valid_path, tokenizer_dir = data_files(args.data)
    splits = load_splits("files", train_path, valid_path, max_train_sentences=None, max_eval_sentences=16)
    sentences, labels = splits.train.sentences, splits.labels
    label2id = {label: i for i, label in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tiny = dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=2, intermediate_size=128) if args.smoke else {}
    torch.manual_seed(0)
    model = BertForTokenClassification(BertConfig(**tiny, num_labels=len(labels))).to(device).train()
    initial = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    windows = build_windows(tokenizer, [s.words for s in sentences], 510, [[label2id[t] for t in s.tags] for s in sentences])
    words = [len(s.words) for s in sentences]
    steps = length_grouped_steps([len(w.input_ids) for w in windows], 16, random.Random(42), group_by_length=False)
    steps = steps[: warm + n_steps]
    autocast = (
        (lambda: torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False))
        if on_gpu
        else (lambda: torch.autocast("cpu", enabled=False))
    )

    def sync() -> None:
        if on_gpu:
            torch.cuda.synchronize()

    def optimizer_for() -> torch.optim.Optimizer:
        model.load_state_dict(initial)  # in place: the captured graphs keep pointing at these parameters
        return torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.0, fused=True)

    def run(step_fn, optimizer, captures=lambda: 0.0) -> dict:
        """`step_fn(windows, weights)`: one whole optimizer step, its loss. Captures inside the timed steps
        (`captures()`: seconds so far) are taken off the time, as the loop does."""
        losses, started = [], None
        for index, step in enumerate(steps):
            if index == warm:
                sync()
                started, captured = time.perf_counter(), captures()
            step_windows = [windows[s] for s in step]
            weights = window_weights(step_windows, words, "sentence", 16, sum(words[s] for s in step))
            losses.append(step_fn(step_windows, weights))
            optimizer.zero_grad(set_to_none=True)
        sync()
        seconds = time.perf_counter() - started - (captures() - captured)
        last = torch.stack(losses[-100:]).float().mean().item()
        ms = 1000 * seconds / n_steps
        return {
            "ms_per_step": ms,
            "sentences_per_second": 16 * n_steps / seconds,
            "mean_loss_last_100": last,
            "three_epochs_seconds_projected": 3 * STEPS_PER_EPOCH * ms / 1000,
        }

    def eager_update(forward_backward_fn, optimizer):
        """forward_backward_fn's gradient, then what the loop does eagerly: clip and the fused AdamW step."""

        def step_fn(step_windows, weights):
            loss = forward_backward_fn(step_windows, weights)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            return loss

        return step_fn

    results: dict = {
        "card": card_name(),
        "smoke": args.smoke,
        "model": "bert-base random init" if not args.smoke else "tiny BERT",
        "timed_steps": n_steps,
        "warm_up_steps": warm,
        "versions": versions(),
    }

    # -- host work alone: what the CPU spends preparing a packed step ------------------------------
    started = time.perf_counter()
    for step in steps:
        step_windows = [windows[s] for s in step]
        pack(step_windows, tokenizer.pad_token_id, 0, 8)
    results["host_pack_ms_per_step"] = 1000 * (time.perf_counter() - started) / len(steps)

    # -- eager: nertune's step ----------------------------------------------------------------------
    def eager_step(step_windows, weights):
        return forward_backward(model, step_windows, weights, tokenizer.pad_token_id, device, 8192, autocast=autocast, position_offset=0)

    optimizer = optimizer_for()
    results["eager"] = run(eager_update(eager_step, optimizer), optimizer)
    write_result(out, results)
    print(f"eager: {results['eager']}", flush=True)

    # -- graphed: nertune's step with training/speed/graphs.py, as the loop runs it on one GPU ------------------
    capture = torch.cuda.make_graphed_callables if on_gpu else (lambda module, args, **_: module)
    graphs = GraphedForward(model, capture=capture)

    def graphed_step(step_windows, weights):
        return forward_backward(
            model, step_windows, weights, tokenizer.pad_token_id, device, 8192, autocast=autocast, position_offset=0, graphs=graphs
        )

    try:
        optimizer = optimizer_for()
        graphed = run(eager_update(graphed_step, optimizer), optimizer, captures=lambda: graphs.capture_seconds)
        graphed.update(shapes_captured=graphs.report()["shapes"], capture_seconds=graphs.capture_seconds)
        results["graphed"] = graphed
        results["graphed_speedup_vs_eager"] = results["eager"]["ms_per_step"] / graphed["ms_per_step"]
    except Exception as error:  # a failed capture is a result too: say what broke
        results["graphed"] = failure(error)
    write_result(out, results)
    print(f"graphed: {results['graphed']}", flush=True)

    # -- the whole step graphed: training/speed/graphed_step.py, what the loop runs on one GPU (softmax head) ---------
    optimizer = optimizer_for()
    model.zero_grad(set_to_none=True)
    whole_capture = capture_cuda_graph if on_gpu else (lambda warm_up, step, pool: step)
    whole = GraphedStep(model, optimizer, 1.0, autocast, device, tokenizer.pad_token_id, 0, 8192, capture=whole_capture)

    def whole_step(step_windows, weights):
        done = whole.step(step_windows, weights)
        if done is None:  # the first step (it makes AdamW's moments), as in the loop
            return eager_update(eager_step, optimizer)(step_windows, weights)
        return done[0]

    try:
        result = run(whole_step, optimizer, captures=lambda: whole.capture_seconds)
        result.update(whole.report())
        results["whole_step"] = result
        results["whole_step_speedup_vs_eager"] = results["eager"]["ms_per_step"] / result["ms_per_step"]
    except Exception as error:
        results["whole_step"] = failure(error)
    write_result(out, results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
