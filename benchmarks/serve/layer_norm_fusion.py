"""ONNX Runtime's SkipLayerNormalization against the Add and LayerNormalization it fuses (issue 26, int8 tagging).

    python -m benchmarks.serve.layer_norm_fusion RUN_DIR [--sentences 1000] [--rounds 6]
        -> benchmarks/serve/results/layer_norm_fusion-<precision>cpu.txt

1. The kernels alone: one [1, rows, 384] residual add + layer norm as SkipLayerNormalization and as Add +
   LayerNormalization (the session told not to fuse them again), and the feed-forward's bias + GELU as BiasGelu
   and as Add + Gelu; threads not spinning (nertune's sessions) and spinning; µs a call.
2. The real model: RUN_DIR exported twice, fp32 and int8, as nertune exported before 2026-11-29 (every fusion,
   SkipLayerNormalization included, and a session free to fuse it) and as it exports now (the add and the layer
   norm apart, in the file and in the session); `Tagger.tag_batch` over the first --sentences test sentences,
   the two alternated for --rounds rounds (sentences/s per round, the median compared); the test F1 of each
   export (conlleval, first-subword argmax, every test sentence) and how many test texts get the same entities.
Time it on a quiet machine.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import transformers
from onnx import TensorProto, helper, numpy_helper

import nertune.export.onnx as exporter
import nertune.model.onnx_runtime as runtime
from benchmarks.common import cpu_line, git_sha, write_report
from benchmarks.serve.tag_speed import same_entities, test_texts
from nertune.evaluate.model_scores import evaluate_sentences
from nertune.model.load import load_tokenizer
from nertune.model.onnx_runtime import OnnxTokenClassifier
from nertune.tag.tagger import Tagger

HIDDEN = 384


def kernel_session(nodes, inputs, spin: str, disabled: Sequence[str]):
    initial = {"gamma": np.ones(HIDDEN), "beta": np.zeros(HIDDEN), "bias": np.zeros(4 * HIDDEN)}
    graph = helper.make_graph(
        nodes,
        "g",
        inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(v.astype(np.float32), k) for k, v in initial.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level = 0, 1, 3
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)


def kernels() -> list[str]:
    def tensor(name, width):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, None, width])

    ms = "com.microsoft"
    cases = {
        "SkipLayerNormalization": ([helper.make_node("SkipLayerNormalization", ["x", "s", "gamma", "beta"], ["y"], domain=ms)], []),
        "Add + LayerNormalization": (
            [helper.make_node("Add", ["x", "s"], ["a"]), helper.make_node("LayerNormalization", ["a", "gamma", "beta"], ["y"], axis=-1)],
            runtime.UNFUSED,
        ),
        "BiasGelu": ([helper.make_node("BiasGelu", ["x", "bias"], ["y"], domain=ms)], []),
        "Add + Gelu": (
            [helper.make_node("Add", ["x", "bias"], ["a"]), helper.make_node("Gelu", ["a"], ["y"], domain=ms)],
            ["BiasGeluFusion"],
        ),
    }
    lines = []
    rng = np.random.default_rng(0)
    for rows in (256, 1024):
        x, s = (rng.standard_normal((1, rows, HIDDEN), dtype=np.float32) for _ in range(2))
        wide = rng.standard_normal((1, rows, 4 * HIDDEN), dtype=np.float32)
        for spin, how in (("0", "not spinning"), ("1", "spinning")):
            for name, (nodes, disabled) in cases.items():
                norm = "LayerNorm" in name
                feeds = {"x": x, "s": s} if norm else {"x": wide}
                inputs = [tensor("x", HIDDEN), tensor("s", HIDDEN)] if norm else [tensor("x", 4 * HIDDEN)]
                session = kernel_session(nodes, inputs, spin, disabled)
                for _ in range(20):
                    session.run(None, feeds)
                began, calls = time.perf_counter(), 300
                for _ in range(calls):
                    session.run(None, feeds)
                lines.append(f"   {rows:5d} rows, {how:12s} {name:26s} {(time.perf_counter() - began) / calls * 1e6:7.1f} µs")
    return lines


def fuse_as_before(raw: Path, fused: Path, config) -> Path:
    """export/onnx.py's `_fuse` before 2026-11-29: every fusion of ONNX Runtime's BERT optimizer."""
    from onnxruntime.transformers.optimizer import optimize_model  # noqa: PLC0415

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    optimized = optimize_model(str(raw), model_type="bert", num_heads=config.num_attention_heads, hidden_size=config.hidden_size)
    optimized.save_model_to_file(str(fused))
    return fused


@contextlib.contextmanager
def as_before():
    """Exports and sessions made inside are as they were before 2026-11-29: every fusion, in the file and on load."""
    fuse_now, unfused_now = exporter._fuse, runtime.UNFUSED
    exporter._fuse, runtime.UNFUSED = fuse_as_before, ()
    try:
        yield
    finally:
        exporter._fuse, runtime.UNFUSED = fuse_now, unfused_now


def made(before: bool):
    return as_before() if before else contextlib.nullcontext()


def export_both(run_dir: str, folder: Path) -> dict[str, Path]:
    out = {}
    for quantize in (None, "int8"):
        for name in ("before", "now"):
            out[f"{quantize or 'fp32'} {name}"] = target = folder / f"{quantize or 'fp32'}-{name}"
            with made(name == "before"):
                exporter.export_onnx(run_dir, target, quantize)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    lines = [f"{cpu_line()}; onnxruntime {ort.__version__}; code {git_sha()}", "", "1. kernels alone:"]
    lines += kernels()
    print("\n".join(lines))
    sentences, texts = test_texts()
    timed = texts[: args.sentences]
    with tempfile.TemporaryDirectory() as tmp:
        exports = export_both(args.run_dir, Path(tmp))
        lines += ["", f"2. {args.run_dir}, tag_batch over the first {len(timed)} test sentences, {args.rounds} alternated rounds:"]
        for kind in ("int8", "fp32"):
            with as_before():
                before = Tagger.load(exports[f"{kind} before"])
            now = Tagger.load(exports[f"{kind} now"])
            ops = {
                name: sum(
                    node.op_type == "SkipLayerNormalization" for node in onnx.load(exports[f"{kind} {name}"] / "model.onnx").graph.node
                )
                for name in ("before", "now")
            }
            for tagger in (before, now):
                tagger.tag_batch(timed[:200])
            speed = {"before": [], "now": []}
            for round_ in range(args.rounds):
                order = (("before", before), ("now", now)) if round_ % 2 == 0 else (("now", now), ("before", before))
                for name, tagger in order:
                    began = time.perf_counter()
                    tagger.tag_batch(timed)
                    speed[name].append(len(timed) / (time.perf_counter() - began))
            middle = {name: statistics.median(values) for name, values in speed.items()}
            agree = same_entities(before.tag_batch(texts), now.tag_batch(texts))
            f1 = {}
            for name in ("before", "now"):
                with made(name == "before"):
                    model = OnnxTokenClassifier(exports[f"{kind} {name}"])
                f1[name] = evaluate_sentences(model, load_tokenizer(str(exports[f"{kind} {name}"])), sentences)["metrics"]["f1"]
            for name in ("before", "now"):
                lines.append(
                    f"   {kind} {name:6s} (SkipLayerNormalization nodes in the file: {ops[name]:2d}): "
                    + ", ".join(f"{v:.0f}" for v in speed[name])
                    + f" sentences/s; median {middle[name]:.1f}; test F1 {f1[name]:.4f}"
                )
            lines.append(f"   {kind}: now / before {middle['now'] / middle['before']:.3f}x; same entities on {agree:.1%} of the test texts")
            print("\n".join(lines[-3:]))
    write_report(__file__, "layer_norm_fusion", lines)


if __name__ == "__main__":
    main()
