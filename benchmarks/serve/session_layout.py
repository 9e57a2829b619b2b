"""One ONNX Runtime session on every core against two sessions that split them (issue 26, tagging).

    python -m benchmarks.serve.session_layout RUN_DIR [--rounds 4] [--latency-texts 200]
        -> benchmarks/serve/results/session_layout-<precision>cpu.txt

RUN_DIR exported as int8 and fp32 ONNX. For each export, two layouts of the same Tagger, alternated for --rounds
rounds: A, two sessions of half the threads each, a batch's passes two at a time; B, one session with all the
threads, passes one by one. nertune picks A for int8 exports and B for fp32 (`session_layout`; before 2026-11-29,
B for both). Each round: `tag_batch` over all 3,453
CoNLL test sentences (one text each, as tag_speed.py tags them), then --latency-texts random test sentences one a
call (p50 / p99 ms). Entities must be the same both ways. Time it on a quiet machine.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import onnxruntime as ort
import torch
import transformers

from benchmarks.common import cpu_line, git_sha, write_report
from benchmarks.serve.tag_speed import test_texts
from benchmarks.serve.tagger_costs import latency_ms
from nertune.export.onnx import MODEL_FILE, export_onnx
from nertune.model.onnx_runtime import session, session_layout
from nertune.tag.tagger import Tagger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--latency-texts", type=int, default=200)
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    _, texts = test_texts()
    lone = random.Random(0).sample(texts, args.latency_texts)
    threads = torch.get_num_threads()
    count, each = session_layout(int8=True)
    lines = [
        f"{cpu_line()}; onnxruntime {ort.__version__}; torch threads {threads}; code {git_sha()}",
        "",
        f"{args.run_dir}; A: {count} sessions x {each} threads, passes {count} at a time; B: 1 session x {threads} threads,"
        f" passes one by one; {args.rounds} alternated rounds of tag_batch over {len(texts)} test sentences, then"
        f" {len(lone)} single texts:",
    ]
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for quantize in ("int8", None):
            target = Path(tmp) / (quantize or "fp32")
            export_onnx(args.run_dir, target, quantize)
            tagger = Tagger.load(target)
            layouts = {"A": [session(target / MODEL_FILE, each) for _ in range(count)], "B": [session(target / MODEL_FILE, threads)]}
            rates, p50s, p99s, outputs = {"A": [], "B": []}, {"A": [], "B": []}, {"A": [], "B": []}, {}
            for side, sessions in layouts.items():  # warm up
                tagger.model.run_on(sessions)
                tagger.tag_batch(texts[:200])
            for _ in range(args.rounds):
                for side, sessions in layouts.items():
                    tagger.model.run_on(sessions)
                    began = time.perf_counter()
                    outputs[side] = tagger.tag_batch(texts)
                    rates[side].append(len(texts) / (time.perf_counter() - began))
                    p50, p99 = latency_ms(tagger, lone, warm=0)
                    p50s[side].append(p50)
                    p99s[side].append(p99)
            if outputs["A"] != outputs["B"]:
                raise SystemExit(f"{quantize or 'fp32'}: the entities differ between the layouts")
            a, b = statistics.median(rates["A"]), statistics.median(rates["B"])
            for side in ("A", "B"):
                lines.append(
                    f"  {quantize or 'fp32':4s} {side}: tag_batch {' '.join(f'{r:6.0f}' for r in rates[side])} sentences/s,"
                    f" median {statistics.median(rates[side]):6.0f}; single text p50 {statistics.median(p50s[side]):.2f} ms,"
                    f" p99 {statistics.median(p99s[side]):.2f} ms (medians over rounds)"
                )
            lines.append(f"  {quantize or 'fp32':4s} A/B tag_batch {a / b:.2f}x")
            print("\n".join(lines[-3:]), flush=True)
    write_report(__file__, "session_layout", lines)


if __name__ == "__main__":
    main()
