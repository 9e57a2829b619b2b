"""Where an int8 export's passes go inside ONNX Runtime, operator by operator (issue 26, tagging).

    python -m benchmarks.serve.ort_ops EXPORT_DIR [--name NAME]
        -> benchmarks/serve/results/ort_ops-NAME-<precision>cpu.txt

One session as nertune builds it for an int8 export (one of its two: one intra-op thread, threads not spinning,
every fusion but SkipLayerNormalization), with ONNX Runtime's profiler on:
1. the passes the Tagger makes over every CoNLL-2003 test sentence (its windows, length-sorted batches of <= 1,024
   padded tokens), each operator type's kernel time and share;
2. 1,024 tokens of random ids in five shapes, rows x length (64 x 16 ... 4 x 256), three times each: each shape's
   milliseconds a pass and the operator types that take them (whether fewer, longer rows would help).
Time it on a quiet machine.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from benchmarks.common import cpu_line, git_sha, write_report
from benchmarks.serve.tag_speed import test_texts
from nertune.data.features import collate, token_budget_batches
from nertune.data.words import sentence_words
from nertune.model.onnx_runtime import MODEL_FILE, UNFUSED
from nertune.model.word_scores import build_windows
from nertune.tag.tagger import Tagger

SHAPES = ((64, 16), (32, 32), (16, 64), (8, 128), (4, 256))


def profiled_session(path: Path, prefix: str):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_profiling = True
    options.profile_file_prefix = prefix
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=list(UNFUSED))


def kernel_times(session) -> tuple[list[dict], list[dict]]:
    """(model runs, node kernel events) from the session's profile, which is then deleted."""
    path = session.end_profiling()
    events = json.loads(Path(path).read_text())
    os.remove(path)
    runs = [e for e in events if e.get("name") == "model_run"]
    nodes = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    return runs, nodes


def by_op(nodes: list[dict]) -> collections.Counter:
    out = collections.Counter()
    for node in nodes:
        out[node["args"]["op_name"]] += node["dur"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export_dir")
    parser.add_argument("--name", default="int8")
    args = parser.parse_args()
    lines = [f"# ort_ops: {args.export_dir}, code {git_sha()}, onnxruntime {ort.__version__}", f"# {cpu_line()}"]
    scratch = tempfile.mkdtemp()

    _, texts = test_texts()
    tagger = Tagger.load(args.export_dir)
    sequences = [[w.text for w in sentence] for text in texts for sentence in sentence_words(text)]
    windows = build_windows(
        tagger.tokenizer, sequences, tagger.max_pieces, config=tagger.model.config, documents=list(range(len(sequences)))
    )
    lengths = [len(w.input_ids) for w in windows]
    batches = [
        collate([windows[i] for i in rows], tagger.tokenizer.pad_token_id, 1)
        for rows in token_budget_batches(lengths, tagger.max_tokens, 256)
    ]
    session = profiled_session(Path(args.export_dir) / MODEL_FILE, os.path.join(scratch, "passes"))
    names = [i.name for i in session.get_inputs()]
    feeds = [{n: b[n].numpy() for n in names} for b in batches]
    for feed in feeds[:3]:
        session.run(None, feed)
    began = time.perf_counter()
    for feed in feeds:
        session.run(None, feed)
    seconds = time.perf_counter() - began
    _, nodes = kernel_times(session)
    ops = by_op(nodes)
    total = sum(ops.values())
    padded = sum(b["attention_mask"].numel() for b in batches)
    lines.append(
        f"## 1. The test set's {len(feeds)} passes ({sum(lengths):,} tokens, {padded:,} with padding) "
        f"on one one-thread session: {seconds:.2f} s (+3 warm-up passes in the profile)"
    )
    lines += [f"{op}: {us / 1e6:.3f} s, {100 * us / total:.1f}%" for op, us in ops.most_common() if us / total >= 0.001]

    lines.append("## 2. 1,024 tokens in five shapes (rows x length), ms a pass: total, then the top operator types")
    session = profiled_session(Path(args.export_dir) / MODEL_FILE, os.path.join(scratch, "shapes"))
    rng = np.random.default_rng(0)
    order = []
    for _ in range(4):  # the first round warms up and is dropped
        for rows, length in SHAPES:
            feed = {
                "input_ids": rng.integers(1000, 20000, (rows, length)).astype(np.int64),
                "attention_mask": np.ones((rows, length), np.int64),
            }
            if "token_type_ids" in names:
                feed["token_type_ids"] = np.zeros((rows, length), np.int64)
            session.run(None, feed)
            order.append((rows, length))
    runs, nodes = kernel_times(session)
    per_shape = collections.defaultdict(collections.Counter)
    for run, shape in list(zip(runs, order))[len(SHAPES) :]:
        per_shape[shape].update(by_op([n for n in nodes if run["ts"] <= n["ts"] <= run["ts"] + run["dur"]]))
    for shape in SHAPES:
        ops = per_shape[shape]
        ms = {op: us / 3e3 for op, us in ops.items()}  # 3 passes, microseconds
        lines.append(
            f"{shape[0]} x {shape[1]}: {sum(ms.values()):.1f} ms; "
            + ", ".join(f"{op} {v:.1f}" for op, v in sorted(ms.items(), key=lambda kv: -kv[1])[:4])
        )
    print("\n".join(lines))
    write_report(__file__, f"ort_ops-{args.name}", lines)


if __name__ == "__main__":
    main()
