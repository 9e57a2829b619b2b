"""Other int8 graphs against the one `nertune export --quantize int8` writes (issue 26, tagging).

    python -m benchmarks.serve.int8_variants RUN_DIR [--rounds 3] [--variants dynamic,fastgelu,static] [--name NAME]
        -> benchmarks/serve/results/int8_variants[-NAME]-<cpu kind>cpu.txt (cpu kind: bf16 or avx2)

RUN_DIR exported in several ways: `dynamic`, nertune's export (dynamic int8, per channel, exact BiasGelu); `fastgelu`,
the same with ONNX Runtime's tanh approximation of GELU (`FusionOptions.enable_gelu_approximation`); `static`,
the fp32 export quantized statically (`quantize_static`: QDQ, per channel, uint8 activations, MinMax ranges over the
fp32 Tagger's passes on the first 400 training sentences); `full_range`, nertune's export with 8-bit weights (as it
was before 2026-11-30: the weights are 7-bit since, ONNX Runtime's advice for CPUs without VNNI, whose uint8 x int8
instruction adds pairs of products in 16 bits and can saturate); `uint8`, the export with uint8 weights (uint8 x
uint8 kernels, which do not saturate). `Tagger.tag_batch` over all 3,453 test sentences, the
variants asked for alternated for --rounds rounds (sentences/s, medians compared), and each one's test F1 (conlleval,
first-subword argmax). Time it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import onnx
import onnxruntime as ort
import transformers
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.transformers.fusion_options import FusionOptions

import nertune.export.onnx as exporter
from benchmarks.common import cpu_line, git_sha, write_report
from benchmarks.serve.tag_speed import test_texts
from nertune.data.conll import read_conll
from nertune.data.embedded import conll2003_files
from nertune.evaluate.model_scores import evaluate_sentences
from nertune.model.load import load_tokenizer, sha256
from nertune.model.onnx_runtime import EXPORT_FILE, MODEL_FILE, OnnxTokenClassifier
from nertune.tag.tagger import Tagger


def export_quantized(run_dir: str, target: Path, **changes) -> None:
    """nertune's int8 export with some of `quantize_dynamic`'s arguments changed."""
    import onnxruntime.quantization as quantization  # noqa: PLC0415

    shipped = quantization.quantize_dynamic
    quantization.quantize_dynamic = lambda *args, **kwargs: shipped(*args, **{**kwargs, **changes})
    try:
        exporter.export_onnx(run_dir, target, "int8")
    finally:
        quantization.quantize_dynamic = shipped


def export_fastgelu(run_dir: str, target: Path) -> None:
    exact = FusionOptions.__init__

    def approximate(self, *args, **kwargs):
        exact(self, *args, **kwargs)
        self.enable_gelu_approximation = True

    FusionOptions.__init__ = approximate
    try:
        exporter.export_onnx(run_dir, target, "int8")
    finally:
        FusionOptions.__init__ = exact


class Passes(CalibrationDataReader):
    """The inputs of each pass the fp32 Tagger runs over `texts`."""

    def __init__(self, fp32_export: Path, texts: list[str]):
        tagger = Tagger.load(fp32_export)
        shipped = tagger.model.session
        self.feeds: list[dict] = []

        class Recorder:  # stands in for the ONNX Runtime session, keeping each pass's inputs
            def run(_, names, feeds):
                self.feeds.append(feeds)
                return shipped.run(names, feeds)

        tagger.model.run_on([Recorder()])
        tagger.tag_batch(texts)
        self._next = iter(self.feeds)

    def get_next(self):
        return next(self._next, None)


def export_static(fp32_export: Path, target: Path, calibration: list[str]) -> int:
    shutil.copytree(fp32_export, target)
    passes = Passes(fp32_export, calibration)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_static(
            str(fp32_export / MODEL_FILE),
            str(target / MODEL_FILE),
            passes,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        root.setLevel(level)
    info = json.loads((target / EXPORT_FILE).read_text())
    info["quantize"], info["sha256"][MODEL_FILE] = "int8", sha256(target / MODEL_FILE)
    (target / EXPORT_FILE).write_text(json.dumps(info))
    return len(passes.feeds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default="dynamic,fastgelu,static", help="comma-separated; dynamic (the shipped export) is the base")
    parser.add_argument("--name", default=None, help="results file int8_variants-NAME-<cpu kind>cpu.txt")
    args = parser.parse_args()
    names = tuple(dict.fromkeys(["dynamic", *args.variants.split(",")]))
    transformers.logging.set_verbosity_error()
    sentences, texts = test_texts()
    lines = [f"{cpu_line()}; onnxruntime {ort.__version__}; code {git_sha()}", ""]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)

        def static() -> int:  # the fp32 export, calibrated on the first 400 training sentences: the passes it saw
            exporter.export_onnx(args.run_dir, folder / "fp32")
            calibration = [" ".join(s.words) for s in read_conll(conll2003_files()["train"]).sentences[:400]]
            return export_static(folder / "fp32", folder / "static", calibration)

        builders = {
            "dynamic": lambda: exporter.export_onnx(args.run_dir, folder / "dynamic", "int8"),
            "fastgelu": lambda: export_fastgelu(args.run_dir, folder / "fastgelu"),
            "full_range": lambda: export_quantized(args.run_dir, folder / "full_range", reduce_range=False),
            "uint8": lambda: export_quantized(args.run_dir, folder / "uint8", weight_type=QuantType.QUInt8, reduce_range=False),
            "static": static,
        }
        built = {name: builders[name]() for name in names}
        calibrated = f"; static calibrated on {built['static']} passes" if "static" in built else ""
        lines.append(f"{args.run_dir}{calibrated}; {args.rounds} alternated rounds over {len(texts)} test texts:")
        taggers = {name: Tagger.load(folder / name) for name in names}
        for tagger in taggers.values():
            tagger.tag_batch(texts[:200])
        rates: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(args.rounds):
            for name, tagger in taggers.items():
                began = time.perf_counter()
                tagger.tag_batch(texts)
                rates[name].append(len(texts) / (time.perf_counter() - began))
        base = statistics.median(rates["dynamic"])
        for name in names:
            model = OnnxTokenClassifier(folder / name)
            f1 = evaluate_sentences(model, load_tokenizer(str(folder / name)), sentences)["metrics"]["f1"]
            ops = Counter(node.op_type for node in onnx.load(folder / name / MODEL_FILE).graph.node)
            lines.append(
                f"  {name:8s} {' '.join(f'{r:6.0f}' for r in rates[name])} sentences/s, median {statistics.median(rates[name]):6.0f}"
                f" ({statistics.median(rates[name]) / base:.2f}x dynamic); test F1 {f1:.4f}; most common nodes"
                f" {', '.join(f'{op} {n}' for op, n in ops.most_common(4))}"
            )
            print(lines[-1], flush=True)
    write_report(__file__, f"int8_variants-{args.name}" if args.name else "int8_variants", lines)


if __name__ == "__main__":
    main()
