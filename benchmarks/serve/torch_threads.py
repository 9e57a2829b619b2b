"""An export's Tagger with torch's own work on one thread (model/onnx_runtime.py `torch_on_one_thread`) or on all.

    python -m benchmarks.serve.torch_threads EXPORT_DIR [--rounds 4] [--name NAME]
        -> benchmarks/serve/results/torch_threads-NAME-<cpu kind>cpu.txt

One process, torch left at its default threads (one per core). The CoNLL-2003 test sentences with more than two
words (as the load test sends them) go through `Tagger.tag_batch` in batches of 8 (a served micro-batch) and of
256 (`nertune predict`'s default), alternately with the Tagger as shipped (one thread) and with
`torch_on_one_thread` replaced by a no-op (torch on all its threads beside the sessions). Each cell is the median
over --rounds of the time per batch; the order alternates each round. Time it on a quiet machine.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

import nertune.tag.tagger as tagger_module
from benchmarks.common import cpu_line, git_sha, write_report
from benchmarks.serve.load_test import sentences
from nertune.tag.tagger import Tagger

SHIPPED = tagger_module.torch_on_one_thread


def per_batch(tagger: Tagger, batches: list[list[str]]) -> float:
    started = time.perf_counter()
    for batch in batches:
        tagger.tag_batch(batch)
    return (time.perf_counter() - started) / len(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--name", default="int8")
    args = parser.parse_args()
    tagger = Tagger.load(args.export_dir)
    texts = sentences()
    sizes = {8: [texts[i : i + 8] for i in range(0, 8 * 300, 8)], 256: [texts[i : i + 256] for i in range(0, len(texts) - 255, 256)]}
    ways = {"one thread (shipped)": SHIPPED, "all threads": lambda model: contextlib.nullcontext()}
    seconds: dict[tuple[int, str], list[float]] = {(size, way): [] for size in sizes for way in ways}
    for batches in sizes.values():
        per_batch(tagger, batches[:5])  # warm-up
    for round_ in range(args.rounds):
        for size, batches in sizes.items():
            for way in list(ways) if round_ % 2 == 0 else list(ways)[::-1]:
                tagger_module.torch_on_one_thread = ways[way]
                seconds[(size, way)].append(per_batch(tagger, batches))
    tagger_module.torch_on_one_thread = SHIPPED
    lines = [
        cpu_line(),
        f"export {args.export_dir} ({tagger.backend}); torch threads {torch.get_num_threads()}; git {git_sha()}; "
        f"{args.rounds} rounds, alternated",
    ]
    for size, batches in sizes.items():
        one, every = (statistics.median(seconds[(size, way)]) for way in ways)
        lines.append(
            f"batches of {size:>3} ({len(batches)} a round): one thread {1000 * one:7.1f} ms, all threads {1000 * every:7.1f} ms "
            f"a batch -> {every / one:.2f}x  (rounds: {[round(1000 * s, 1) for s in seconds[(size, 'one thread (shipped)')]]} "
            f"vs {[round(1000 * s, 1) for s in seconds[(size, 'all threads')]]})"
        )
    write_report(__file__, f"torch_threads-{args.name}", lines)


if __name__ == "__main__":
    main()
