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

import contextlib

import torch

import nertune.tag.tagger as tagger_module
from benchmarks.common import cpu_line, git_sha, write_report
from benchmarks.serve.alternated import alternated, arguments, patched, summary
from benchmarks.serve.load_test import sentences
from nertune.tag.tagger import Tagger


def main() -> None:
    args = arguments(__doc__)
    tagger = Tagger.load(args.export_dir)
    texts = sentences()
    sizes = {8: [texts[i : i + 8] for i in range(0, 8 * 300, 8)], 256: [texts[i : i + 256] for i in range(0, len(texts) - 255, 256)]}
    ways = {
        "one thread (shipped)": contextlib.nullcontext,
        "all threads": lambda: patched(tagger_module, "torch_on_one_thread", lambda model: contextlib.nullcontext()),
    }
    seconds = alternated(tagger, sizes, ways, args.rounds)
    lines = [
        cpu_line(),
        f"export {args.export_dir} ({tagger.backend}); torch threads {torch.get_num_threads()}; git {git_sha()}; "
        f"{args.rounds} rounds, alternated",
    ]
    for size, batches in sizes.items():
        lines.append(summary(size, batches, seconds, "one thread (shipped)", "all threads"))
    write_report(__file__, f"torch_threads-{args.name}", lines)


if __name__ == "__main__":
    main()
