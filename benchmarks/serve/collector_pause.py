"""Tagging with Python's cyclic garbage collector paused (nertune/collector.py) and running (issue 26, tagging).

    python -m benchmarks.serve.collector_pause RUN_DIR [--sentences 3453] [--rounds 6]
        -> benchmarks/serve/results/collector_pause-<precision>cpu.txt

RUN_DIR exported as fp32 and int8 ONNX, and RUN_DIR itself as the Tagger loads it (bf16 where the CPU has it);
for each, `Tagger.tag_batch` over the first --sentences CoNLL test sentences (one text each, as tag_speed.py
tags them), alternated: A with the pause as nertune ships it, B with `collector.paused` swapped for a context that
does nothing (the code before the pause), --rounds rounds each. Reported per system: sentences/s per round, the
medians' ratio, and in B's rounds the collections per generation and the seconds they took (from gc.callbacks).
The entities must be the same both ways. Time it on a quiet machine.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import tempfile
import time
from pathlib import Path

import onnxruntime as ort
import transformers

import nertune.collector as collector
from benchmarks.common import cpu_line, git_sha, write_report
from benchmarks.serve.tag_speed import test_texts
from nertune.export.onnx import export_onnx
from nertune.tag.tagger import Tagger


@contextlib.contextmanager
def collector_running():
    """B: the pause replaced by nothing, as nertune tagged before it."""
    shipped = collector.paused
    collector.paused = contextlib.nullcontext
    try:
        yield
    finally:
        collector.paused = shipped


class Collections:
    """Collections per generation, and their seconds, while recording."""

    def __init__(self):
        self.count, self.seconds, self._began, self.on = [0, 0, 0], [0.0, 0.0, 0.0], 0.0, False
        gc.callbacks.append(self._record)

    def _record(self, phase: str, info: dict) -> None:
        if not self.on:
            return
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.count[info["generation"]] += 1
            self.seconds[info["generation"]] += time.perf_counter() - self._began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--sentences", type=int, default=None, help="default: every test sentence")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    _, texts = test_texts(args.sentences)
    lines = [f"{cpu_line()}; onnxruntime {ort.__version__}; code {git_sha()}", ""]
    lines.append(
        f"{args.run_dir}, tag_batch over {len(texts)} test sentences, A (paused) and B (running) alternated, {args.rounds} rounds:"
    )
    print("\n".join(lines), flush=True)
    collections = Collections()
    with tempfile.TemporaryDirectory() as tmp:
        systems = {}
        for quantize in ("int8", None):
            target = Path(tmp) / (quantize or "fp32")
            export_onnx(args.run_dir, target, quantize)
            systems[f"ONNX {quantize or 'fp32'}"] = Tagger.load(target)
        tagger = Tagger.load(args.run_dir)
        systems[f"Tagger {tagger.precision}"] = tagger
        for name, tagger in systems.items():
            tagger.tag_batch(texts[:200])  # warm up
            rates: dict[str, list[float]] = {"A": [], "B": []}
            outputs = {}
            collections.count, collections.seconds = [0, 0, 0], [0.0, 0.0, 0.0]
            for _ in range(args.rounds):
                for side in ("A", "B"):
                    with collector_running() if side == "B" else contextlib.nullcontext():
                        gc.collect()  # each side starts from the same empty young generations
                        collections.on = side == "B"
                        began = time.perf_counter()
                        outputs[side] = tagger.tag_batch(texts)
                        rates[side].append(len(texts) / (time.perf_counter() - began))
                        collections.on = False
            if outputs["A"] != outputs["B"]:
                raise SystemExit(f"{name}: the entities differ with the collector paused")
            a, b = statistics.median(rates["A"]), statistics.median(rates["B"])
            per_round = [
                f"{n} {c / args.rounds:.1f} ({s / args.rounds:.3f} s)" for n, c, s in zip((0, 1, 2), collections.count, collections.seconds)
            ]
            lines += [
                f"  {name:12s} A paused  {' '.join(f'{r:6.0f}' for r in rates['A'])} sentences/s, median {a:6.0f}",
                f"  {'':12s} B running {' '.join(f'{r:6.0f}' for r in rates['B'])} sentences/s, median {b:6.0f}   A/B {a / b:.2f}x",
                f"  {'':12s} B's collections a round, by generation: {', '.join(per_round)}",
            ]
            print("\n".join(lines[-3:]), flush=True)
    write_report(__file__, "collector_pause", lines)


if __name__ == "__main__":
    main()
