"""A model folder loaded to tag with: an `nertune export` folder through ONNX Runtime, on the CPU, in the precision
it was exported in; a run folder in PyTorch, its weights in the precision asked (model/load.py `inference_dtype`).
The Tagger and `nertune evaluate` / `compare` both load here, so a folder is scored as it tags."""

from __future__ import annotations

from pathlib import Path

import torch

from nertune.model.load import check_export_precision, for_inference, inference_dtype, load_tokenizer, load_trained, model_precision
from nertune.model.onnx_runtime import OnnxTokenClassifier, is_export


def load_for_tagging(directory: str | Path, device: str | None = None, precision: str = "auto"):
    """(model, tokenizer, device): the device is "cpu" for an export; else the one given, or cuda when available."""
    if is_export(directory):
        model = OnnxTokenClassifier(directory)
        check_export_precision(precision, model_precision(model))
        return model, load_tokenizer(str(directory)), "cpu"
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = for_inference(load_trained(directory), inference_dtype(precision, device)).to(device)
    return model, load_tokenizer(str(directory)), device
