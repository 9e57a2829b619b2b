"""bf16 weights with fp32 master copies against bf16 autocast over fp32 weights: the same steps, alternated.

    python -m benchmarks.train.bf16_weights [--recipe seed] [--steps 30] [--rounds 3]
        -> benchmarks/train/results/bf16_weights-<recipe>.txt

Issue 26's listed lever for the casts (14-18% of a bf16 step, profile_step): under autocast every linear layer
casts its fp32 weight and its fp32 input to bf16 in the forward and the gradients back in the backward. The
other way: the model's weights in bf16 (the residual stream, layer norms and softmax then run on bf16 tensors),
autocast off, AdamW on fp32 master copies; after the backward each gradient is copied into its master's, after
the update each master into its weight. A CRF head stays fp32 (its forward algorithm sums over the whole
sentence). Side A is the run as `nertune train` sets it up; side B a copy of its model. Both start from the
same weights and take the same steps; the report gives each side's ms a step per round and the losses of
the first steps (how far the numerics drift). Time it on a quiet machine.
"""

from __future__ import annotations

import argparse
import copy
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from benchmarks.common import git_sha, results_dir
from benchmarks.train.first_steps import first_steps
from nertune.data import packing
from nertune.machine import cpu_description
from nertune.training.step import forward_backward


class MasterWeights:
    """Side B: a bf16 copy of the model, fused AdamW over fp32 masters, the run's clipping."""

    def __init__(self, run):
        self.model = copy.deepcopy(run.model)
        crf = getattr(self.model, "crf", None)
        kept = {id(p) for p in crf.parameters()} if crf is not None else set()
        self.low = [p for p in self.model.parameters() if id(p) not in kept]
        for p in self.low:
            p.data = p.data.to(torch.bfloat16)
        for module in self.model.modules():  # the used-rows embedding's table of rows never trained
            if isinstance(getattr(module, "loaded", None), torch.Tensor):
                module.loaded = module.loaded.to(torch.bfloat16)
        embedding = self.model.get_input_embeddings()  # sparse rows added into a kept dense buffer, as side A's
        self.embedding, self.buffer = embedding, torch.zeros_like(embedding.weight) if embedding.sparse else None
        self.masters = [p.detach().float().clone() for p in self.low]
        kept_params = [p for p in self.model.parameters() if id(p) in kept]
        groups = [{"params": self.masters}] + ([{"params": kept_params}] if kept_params else [])
        first = run.optimizer.param_groups[0]
        self.optimizer = torch.optim.AdamW(
            groups, lr=first["lr"], betas=first["betas"], eps=first["eps"], weight_decay=first["weight_decay"], fused=True
        )
        self.clipped = self.masters + kept_params
        self.rates = [group["lr"] for group in run.optimizer.param_groups]
        self.run = run

    def step(self, windows, weights) -> float:
        run = self.run
        if self.buffer is not None:
            self.embedding.weight.grad = self.buffer.zero_()
        loss = forward_backward(
            self.model,
            windows,
            weights,
            run.steps.pad_id,
            run.device,
            run.recipe.max_tokens_per_forward,
            autocast=nullcontext,
            position_offset=run.steps.position_offset,
        )
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.low]
        for master, grad in zip(self.masters, grads):
            master.grad = grad.float()
        for mine, rate in zip(self.optimizer.param_groups, self.rates):  # the rates side A's last step took
            mine["lr"] = rate
        if run.recipe.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.clipped, run.recipe.max_grad_norm, foreach=True)
        self.optimizer.step()
        with torch.no_grad():
            torch._foreach_copy_(self.low, self.masters[: len(self.low)])
        for p in self.model.parameters():
            p.grad = None
        for master in self.masters:
            master.grad = None
        return float(loss)


MASK_DTYPE = [torch.float32]  # side B's packed rows take their additive mask in the weights' dtype


def model_dtype_mask(segment: torch.Tensor, original=packing.block_attention_mask) -> torch.Tensor:
    return original(segment).to(MASK_DTYPE[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="seed")
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    packing.block_attention_mask = model_dtype_mask
    lines = []
    with first_steps(args.recipe, args.warmup + args.steps, args.sentences) as (run, inputs):
        side_b = MasterWeights(run)
        side_b.model.train()

        def side_a(windows, weights) -> float:
            MASK_DTYPE[0] = torch.float32
            side_b.rates = [group["lr"] for group in run.optimizer.param_groups]
            return float(run.steps(windows, weights).loss)

        def b(windows, weights) -> float:
            MASK_DTYPE[0] = torch.bfloat16
            return side_b.step(windows, weights)

        losses = {"A": [], "B": []}
        for windows, weights in inputs[: args.warmup]:  # same first steps from the same weights
            losses["A"].append(side_a(windows, weights))
            losses["B"].append(b(windows, weights))
        timed = inputs[args.warmup :]
        tokens = sum(len(w.input_ids) for windows, _ in timed for w in windows) / len(timed)
        times = {"A": [], "B": []}
        for round_ in range(args.rounds):
            for name, fn in (("A", side_a), ("B", b)) if round_ % 2 == 0 else (("B", b), ("A", side_a)):
                started = time.perf_counter()
                for windows, weights in timed:
                    losses[name].append(fn(windows, weights))
                times[name].append((time.perf_counter() - started) / len(timed) * 1000)
    lines.append(
        f"recipe {args.recipe}, {cpu_description()}, torch {torch.__version__}, {torch.get_num_threads()} threads, code {git_sha()}"
    )
    step = f"{run.sentences_per_step} sentences ({tokens:.0f} window tokens a step)"
    lines.append(f"{len(timed)} steps a round of {step}, {args.rounds} rounds alternated")
    lines.append("A: bf16 autocast over fp32 weights (the run as set up); B: bf16 weights, fp32 masters in fused AdamW")
    for name in "AB":
        lines.append(f"{name}: ms a step per round " + ", ".join(f"{t:.1f}" for t in times[name]) + f"; best {min(times[name]):.1f}")
    lines.append(f"B / A, best rounds: {min(times['B']) / min(times['A']):.3f}; A / B speed-up {min(times['A']) / min(times['B']):.3f}x")
    lines.append("losses of the first steps, A: " + " ".join(f"{x:.4f}" for x in losses["A"][: args.warmup]))
    lines.append("losses of the first steps, B: " + " ".join(f"{x:.4f}" for x in losses["B"][: args.warmup]))
    lines.append("losses of the last steps, A: " + " ".join(f"{x:.4f}" for x in losses["A"][-5:]))
    lines.append("losses of the last steps, B: " + " ".join(f"{x:.4f}" for x in losses["B"][-5:]))
    report = "\n".join(lines) + "\n"
    (Path(results_dir(__file__)) / f"bf16_weights-{args.recipe}.txt").write_text(report, encoding="utf-8")
    print(report)


if __name__ == "__main__":
    main()
