"""How far tagging is from what the machine's matrix multiplies allow, for the Tagger and for
transformers.pipeline (issue 26, point 4).

    python -m benchmarks.serve.tag_floor RUN_DIR [--export INT8_DIR] [--out FILE]

Every CoNLL-2003 test sentence as raw text, tagged by the PyTorch Tagger (its own precision, `auto`) and by
pipeline("token-classification", aggregation_strategy="first") one text a call in the same dtype, and, with
--export, by the Tagger on an ONNX export. A counting pass (not timed) records the shape of every forward pass
each PyTorch system makes (a hook on the model), padding and context included. Then, for each:

    FLOPs = 2 x non-embedding parameters x tokens carried  +  attention (4 x layers x hidden x sum of rows' width^2)

and the floor is FLOPs / the GEMM rate measured now, in the same precision, on the model's own matrices at
the Tagger's tokens per pass (benchmarks/train/floor.py's `gemm_rate`). The timed passes alternate the systems
over --rounds parts of the test set (tag_speed.py's `interleaved`: each part's fastest of --repeats passes).

What it answers: a system's time / floor, and the largest speed-up over the pipeline any implementation could
reach doing the Tagger's arithmetic in that precision: pipeline seconds / the Tagger's floor. Time it on a
quiet machine: the rate is measured, not looked up.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
import transformers

from benchmarks.common import git_sha, results_dir, versions, write_result
from benchmarks.serve.tag_speed import interleaved, test_texts
from benchmarks.train.floor import gemm_rate
from nertune.console import console
from nertune.machine import cpu_description
from nertune.tag.tagger import Tagger

SPEEDUP_GOAL = 6.0  # issue 26, point 4: the Tagger against the pipeline


class PassShapes:
    """Rows x width of every forward pass a PyTorch model makes while counting."""

    def __init__(self, model: torch.nn.Module):
        self.shapes: list[tuple[int, int]] = []
        self.counting = False
        model.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, _module, args, kwargs):
        if self.counting:
            ids = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
            self.shapes.append(tuple(ids.shape))

    def count(self, run, texts: list[str]) -> dict:
        self.shapes, self.counting = [], True
        try:
            run(texts)
        finally:
            self.counting = False
        return {
            "forward_passes": len(self.shapes),
            "tokens_carried": sum(r * w for r, w in self.shapes),
            "attention_rows_width2": sum(r * w * w for r, w in self.shapes),
        }


def non_embedding_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if "embeddings" not in name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--export", help="an ONNX export of the same model, timed beside (no floor: its kernels are ONNX Runtime's)")
    parser.add_argument("--sentences", type=int, default=None, help="first N test sentences (default all 3,453)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    from transformers import pipeline  # noqa: PLC0415

    transformers.logging.set_verbosity_error()
    _, texts = test_texts(args.sentences)
    tagger = Tagger.load(args.run_dir, device="cpu")  # precision auto, as users get it
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[tagger.precision]
    ner = pipeline("token-classification", model=args.run_dir, aggregation_strategy="first", device="cpu", dtype=dtype)
    systems = {"pipeline": lambda part: [ner(t) for t in part], "tagger": tagger.tag_batch}
    if args.export:
        systems["export"] = Tagger.load(args.export).tag_batch
    for run in systems.values():
        run(texts[:16])  # warm-up

    counted = {"tagger": PassShapes(tagger.model).count(tagger.tag_batch, texts)}
    counted["pipeline"] = PassShapes(ner.model).count(systems["pipeline"], texts)
    config = tagger.model.config
    parameters = non_embedding_parameters(tagger.model)
    tokens_per_pass = counted["tagger"]["tokens_carried"] / counted["tagger"]["forward_passes"]
    rate = gemm_rate(int(tokens_per_pass), config.hidden_size, config.intermediate_size, tagger.precision)

    seconds, _ = interleaved(systems, texts, args.rounds, args.repeats)
    result: dict = {
        "run": args.run_dir, "export": args.export, "sentences": len(texts), "precision": tagger.precision,
        "tagger_max_tokens": tagger.max_tokens, "non_embedding_parameters": parameters, "layers": config.num_hidden_layers,
        "hidden": config.hidden_size, "gemm_flops_per_second": rate, "gemm_rows": int(tokens_per_pass), "systems": {},
        "machine": {"cpu": cpu_description(), "threads": torch.get_num_threads(), "load_average_at_start": os.getloadavg()},
        "rounds": args.rounds, "repeats": args.repeats, "git": git_sha(), "versions": versions(),
    }  # fmt: skip
    for name, parts in seconds.items():
        entry = {"seconds": sum(parts), "part_seconds": parts, "sentences_per_second": len(texts) / sum(parts)}
        if name in counted:
            c = counted[name]
            flops = 2 * parameters * c["tokens_carried"] + 4 * config.num_hidden_layers * config.hidden_size * c["attention_rows_width2"]
            entry |= c | {"flops": flops, "floor_seconds": flops / rate, "time_over_floor": sum(parts) / (flops / rate)}
        result["systems"][name] = entry
    pipeline_seconds = result["systems"]["pipeline"]["seconds"]
    for name, entry in result["systems"].items():
        entry["speedup_vs_pipeline"] = pipeline_seconds / entry["seconds"]
    result["tagger_speedup_at_its_floor"] = pipeline_seconds / result["systems"]["tagger"]["floor_seconds"]
    result["load_average_at_end"] = os.getloadavg()
    out = Path(args.out) if args.out else results_dir(__file__) / f"tag_floor-{Path(args.run_dir).name}.json"
    write_result(out, result)
    for name, entry in result["systems"].items():
        floor = f"; floor {entry['floor_seconds']:.1f} s, time / floor {entry['time_over_floor']:.2f}" if "flops" in entry else ""
        console.print(
            f"{name}: {entry['seconds']:.1f} s, {entry['sentences_per_second']:.1f} sentences/s, "
            f"{entry['speedup_vs_pipeline']:.2f}x the pipeline{floor}",
            markup=False,
        )
    console.print(
        f"GEMM {rate / 1e9:.0f} GFLOP/s {tagger.precision} at {int(tokens_per_pass)} rows; the Tagger at its floor would be "
        f"{result['tagger_speedup_at_its_floor']:.2f}x the pipeline (goal {SPEEDUP_GOAL:g}x) -> {out}",
        markup=False,
    )


if __name__ == "__main__":
    main()
