"""`nertune export MODEL_DIR --onnx OUT [--quantize int8]`: a model for ONNX Runtime.

OUT is a directory that `Tagger.load`, `nertune predict` and `nertune serve`
take in place of MODEL_DIR (see export/onnx.py). A summary of the export is
printed to stdout as JSON; progress goes to stderr.
"""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer

from nertune.cli.app import app
from nertune.errors import NertuneError
from nertune.model.load import require_model_dir


@app.command()
def export(
    model_dir: str = typer.Argument(..., help="A model directory (the --output-dir of `nertune train`)."),
    onnx: Optional[str] = typer.Option(None, "--onnx", help="Write an ONNX Runtime model directory here."),
    quantize: Optional[str] = typer.Option(
        None, "--quantize", help="int8: dynamic int8 quantization of the weights (about 4x smaller, faster on CPU)."
    ),
):
    """Export a trained model for fast CPU inference with ONNX Runtime (fp32, or int8 with --quantize int8)."""
    if onnx is None:
        raise NertuneError("nothing to export to", fix="nertune export MODEL_DIR --onnx OUT_DIR [--quantize int8]")
    require_model_dir(model_dir)
    from nertune.export.onnx import QUANTIZATIONS  # noqa: PLC0415  (CLI start-up: no torch)

    if quantize is not None and quantize not in QUANTIZATIONS:
        raise NertuneError(f"unknown --quantize {quantize!r}", fix="use --quantize int8, or leave it out for fp32")
    try:
        import onnx as _onnx  # noqa: F401, PLC0415  (optional: onnx extra)
        import onnxruntime  # noqa: F401, PLC0415  (optional: onnx extra)
    except ImportError:
        raise NertuneError("onnx and onnxruntime are not installed", fix="pip install 'nertune[onnx]'") from None
    from nertune.console import console  # noqa: PLC0415  (CLI start-up: rich console)
    from nertune.export.onnx import export_onnx  # noqa: PLC0415  (CLI start-up: no torch)

    info = export_onnx(model_dir, onnx, quantize)
    check = info["check"]
    console.print(
        f"[green]wrote {onnx}[/] ({info['quantize'] or 'fp32'}; logits within {check['max_abs_logit_diff']:.2g} of PyTorch, "
        f"same argmax on {check['argmax_agreement']:.1%} of check tokens)"
    )
    sys.stdout.write(json.dumps({"output_dir": onnx, **info}, indent=2) + "\n")
