"""`nertune export`: a trained model as an ONNX Runtime model, fp32 or int8.

    trained model dir (safetensors, manifest checked)
      -> torch.onnx.export with eager attention (the plain MatMul/Softmax
         pattern ONNX Runtime's optimizer recognises)
      -> ONNX Runtime's BERT optimizer fuses Attention, BiasGelu and
         EmbedLayerNorm (fewer, bigger kernels); the residual add and its layer
         norm stay two nodes (model/onnx_runtime.py keeps them apart)
      -> int8: dynamic quantization of the weights, one scale per output
         channel, 7-bit range (activations are quantized on the fly, per batch)
      -> checked against the PyTorch model on a padded batch
      -> one directory, written atomically: model.onnx, config.json, the
         tokenizer, crf.safetensors for a model with a CRF head (decoding
         uses its transitions, model/crf.py), recipe.yaml when there is one,
         and nertune_export.json
         (what was done, the sha256 of model.onnx, the check's numbers).

The result loads with `Tagger.load(OUT)` and works with `nertune predict/serve`
exactly like the PyTorch directory (see model/onnx_runtime.py).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import warnings
from pathlib import Path

import torch

from nertune.atomic import _umask, atomic_dir, write_json
from nertune.console import console
from nertune.data.casing import SCHEMES, casing_scheme
from nertune.data.features import collate, model_inputs
from nertune.errors import NertuneError
from nertune.model.crf import CRF_FILE, has_crf
from nertune.model.load import load_tokenizer, load_trained, sha256
from nertune.model.onnx_runtime import EXPORT_FILE, MODEL_FILE, is_export, session  # noqa: F401  (is_export: for callers)
from nertune.model.positions import max_pieces_for
from nertune.model.word_scores import build_windows

QUANTIZATIONS = ("int8",)
OPSET = 17
# Encoders ONNX Runtime's "bert" fusion handles (same layer layout as BERT).
FUSABLE = ("bert", "roberta", "xlm-roberta", "camembert", "electra")
# Exported fp32 logits must match PyTorch this closely (float32 rounding in fused kernels).
FP32_TOLERANCE = 1e-3
CHECK_TEXTS = [
    "George Washington flew from Washington to Paris on Monday to meet officials of the European Union .",
    "EU rejects German call to boycott British lamb .",
    "Peter Blackburn",
    "BRUSSELS 1996-08-22",
]


def export_onnx(model_dir: str | Path, out: str | Path, quantize: str | None = None) -> dict:
    """Write an ONNX Runtime model of `model_dir` to `out`; returns what nertune_export.json holds."""
    model_dir, out = Path(model_dir), Path(out)
    if quantize not in (None, *QUANTIZATIONS):
        raise NertuneError(f"unknown quantization {quantize!r}", fix="use --quantize int8, or leave it out for fp32")
    _check_out(model_dir, out)
    if is_export(model_dir):
        raise NertuneError(
            "is already an ONNX export",
            path=str(model_dir),
            fix="export from the PyTorch model directory (the --output-dir of `nertune train`)",
        )
    model = load_trained(model_dir)  # manifest and safetensors checked, no remote code
    if not any(a.endswith("ForTokenClassification") for a in (model.config.architectures or [])):
        raise NertuneError(
            "is not a token-classification model (config.json architectures)",
            path=str(model_dir),
            fix="export a directory written by `nertune train`",
        )
    tokenizer = load_tokenizer(str(model_dir))
    model.set_attn_implementation("eager")
    model.eval()
    started = time.perf_counter()
    with atomic_dir(out) as tmp:
        os.chmod(tmp, 0o777 & ~_umask())  # a directory like any other, not mkdtemp's private 0700
        console.print(f"exporting {model_dir} to ONNX (opset {OPSET})")
        _torch_export(model, tmp / "raw.onnx")
        fused = _fuse(tmp / "raw.onnx", tmp / "fused.onnx", model.config)
        if quantize == "int8":
            console.print("quantizing weights to int8 (dynamic, per channel, 7-bit range)")
            _quantize_int8(fused, tmp / MODEL_FILE)
        else:
            shutil.copyfile(fused, tmp / MODEL_FILE)
        for scratch in ("raw.onnx", "fused.onnx"):
            (tmp / scratch).unlink(missing_ok=True)
        check = compare_with_torch(model, tokenizer, tmp / MODEL_FILE)
        if quantize is None and check["max_abs_logit_diff"] > FP32_TOLERANCE:
            raise NertuneError(
                f"the exported model's logits differ from PyTorch's by {check['max_abs_logit_diff']:.2g}",
                path=str(model_dir),
                fix="this is a bug in the export; please report it with the model's config.json",
            )
        model.config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if (model_dir / "recipe.yaml").is_file():
            shutil.copyfile(model_dir / "recipe.yaml", tmp / "recipe.yaml")
        weights = [MODEL_FILE]
        if has_crf(model.config):  # the graph gives the emissions; the CRF's scores travel beside it
            shutil.copyfile(model_dir / CRF_FILE, tmp / CRF_FILE)
            weights.append(CRF_FILE)
        info = {
            "format": 1,
            "model": MODEL_FILE,
            "source": str(model_dir.resolve()),
            "quantize": quantize,
            "weight_bits": 7 if quantize == "int8" else None,  # exports before 2026-11-30 used 8 (and have no field)
            "fused": fused != tmp / "raw.onnx",
            "opset": OPSET,
            "sha256": {name: sha256(tmp / name) for name in weights},
            "check": check,
            "seconds": round(time.perf_counter() - started, 1),
            "versions": _versions(),
        }
        write_json(tmp / EXPORT_FILE, info)
    return info


def _check_out(model_dir: Path, out: Path) -> None:
    """Never replace anything but an earlier export: atomic_dir swaps the whole directory."""
    if out.resolve() == model_dir.resolve():
        raise NertuneError("the output directory is the model directory", path=str(out), fix="pass a new directory to --onnx")
    if out.exists() and not (out.is_dir() and (is_export(out) or not any(out.iterdir()))):
        raise NertuneError(
            "exists and is not an earlier ONNX export; refusing to replace it",
            path=str(out),
            fix="pass a new directory to --onnx, or delete this one",
        )


def _torch_export(model, path: Path) -> None:
    # Two rows, one padded: the traced graph must keep the mask path general.
    ids = torch.full((2, 16), 1000, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    inputs = {"input_ids": ids, "attention_mask": mask}
    scheme = casing_scheme(model.config)
    if scheme:  # casing classes come in as token types; without them the graph keeps BERT's constant zeros
        inputs["token_type_ids"] = torch.arange(ids.numel()).view_as(ids) % SCHEMES[scheme]
    axes = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes; checked below instead
        torch.onnx.export(
            model,
            tuple(inputs.values()),
            str(path),
            input_names=list(inputs),
            output_names=["logits"],  # forward's order
            dynamic_axes={**{name: axes for name in inputs}, "logits": axes},
            opset_version=OPSET,
            dynamo=False,  # the TorchScript exporter: the dynamo one needs onnxscript
        )


def _fuse(raw: Path, fused: Path, config) -> Path:
    """ONNX Runtime's transformer fusions; a model it does not know is exported unfused."""
    if getattr(config, "model_type", None) not in FUSABLE:
        return raw
    from onnxruntime.transformers.fusion_options import FusionOptions  # noqa: PLC0415  (optional: onnx extra)
    from onnxruntime.transformers.optimizer import optimize_model  # noqa: PLC0415

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    options = FusionOptions("bert")
    options.enable_skip_layer_norm = False  # its CPU kernel is slower than the Add and LayerNormalization it fuses
    optimized = optimize_model(
        str(raw), model_type="bert", num_heads=config.num_attention_heads, hidden_size=config.hidden_size, optimization_options=options
    )
    optimized.save_model_to_file(str(fused))
    return fused


def _quantize_int8(source: Path, target: Path) -> None:
    import onnx  # noqa: PLC0415  (optional: onnx extra)
    from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: PLC0415  (optional: onnx extra)

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer's "consider pre-processing" notice (meant for CNNs)
    try:
        quantize_dynamic(
            source,
            target,
            weight_type=QuantType.QInt8,
            per_channel=True,  # one scale per output column: closer to fp32 than one per matrix (benchmarks/serve/tag_speed.py)
            # 7-bit weights: without VNNI, ONNX Runtime's uint8 x int8 kernel adds pairs of products in 16 bits, which
            # full-range weights overflow (int8_variants.py: test F1 -0.45 -> -0.01 points on AVX2, same speed).
            reduce_range=True,
            # The fused graph drops some intermediate type annotations the quantizer looks up.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        root.setLevel(level)


def compare_with_torch(model, tokenizer, onnx_path: Path) -> dict:
    """Logits of the ONNX model vs PyTorch's on a padded batch of CHECK_TEXTS (real positions only)."""
    # The windows every other path builds (casing types included), padded like a real batch.
    windows = build_windows(tokenizer, [t.split() for t in CHECK_TEXTS], max_pieces_for(model, tokenizer), config=model.config)
    batch = model_inputs(collate(windows, tokenizer.pad_token_id), "cpu")
    with torch.no_grad():
        expected = model(**batch).logits
    (got,) = session(onnx_path).run(["logits"], {name: tensor.numpy() for name, tensor in batch.items()})
    real = batch["attention_mask"].bool()
    got = torch.from_numpy(got)
    return {
        "tokens": int(real.sum()),
        "max_abs_logit_diff": float((got - expected).abs()[real].max()),
        "argmax_agreement": float((got.argmax(-1) == expected.argmax(-1))[real].float().mean()),
    }


def _versions() -> dict:
    import onnx  # noqa: PLC0415  (optional: onnx extra)
    import onnxruntime  # noqa: PLC0415  (optional: onnx extra)
    import transformers  # noqa: PLC0415  (no transformers at import)

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
