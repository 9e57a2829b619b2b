"""Load and save token-classification models: safetensors only, no remote code.

A model directory nertune writes is a plain Hugging Face directory
(config.json with id2label / label2id, model.safetensors, tokenizer files)
plus `manifest.json`, written last, holding the sha256 of every weight file:
a directory without a matching manifest was not finished or was altered.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import struct
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from nertune.atomic import _umask, write_json
from nertune.data.casing import add_casing
from nertune.data.embedded import resolve_model
from nertune.errors import NertuneError
from nertune.machine import cpu_bf16

if TYPE_CHECKING:
    import torch

MANIFEST = "manifest.json"
WEIGHT_SUFFIXES = (".safetensors",)


def _quiet_transformers() -> None:
    import transformers  # noqa: PLC0415  (CLI start-up: no transformers)

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def load_tokenizer(name: str):
    from transformers import AutoTokenizer  # noqa: PLC0415  (CLI start-up: no transformers)

    _quiet_transformers()
    path = resolve_model(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError) as error:
        raise NertuneError(
            f"cannot load a tokenizer from {name!r} ({str(error).splitlines()[0]})",
            fix="pass a local model folder or a Hugging Face model id",
        ) from None
    if not getattr(tokenizer, "is_fast", False):
        raise NertuneError(f"tokenizer of {name!r} is not a fast tokenizer", fix="use a model that ships tokenizer.json")
    return tokenizer


def dropout_overrides(config, dropout: float | None) -> dict:
    """Every dropout probability in a config set to `dropout` (names differ per architecture)."""
    if dropout is None:
        return {}
    return {key: dropout for key, value in config.to_dict().items() if "dropout" in key and isinstance(value, float)}


def load_for_training(
    name: str, labels: list[str], dropout: float | None = None, casing: bool = False, context_pieces: int = 0, crf: bool = False
):
    """A pretrained encoder with a fresh classification head over `labels`.

    `dropout` (when given) replaces the config's dropout probabilities, e.g. 0.0
    to make runs comparable step by step. `casing` adds token type rows for the
    words' casing classes (data/casing.py), recorded in config.json; so is
    `context_pieces` (data/context.py; 0: none). `crf` adds a CRF head
    (model/crf.py): a fresh one, or the one of the nertune run it continues from.
    """
    from transformers import AutoConfig, AutoModelForTokenClassification  # noqa: PLC0415  (CLI start-up: no transformers)

    _quiet_transformers()
    path = resolve_model(name)
    if Path(path).is_dir():  # e.g. continuing from a nertune run: its weights are checked like any load
        verify_manifest(Path(path))
    _refuse_pickles(path)
    try:
        overrides = dropout_overrides(AutoConfig.from_pretrained(path, trust_remote_code=False), dropout)
        model = AutoModelForTokenClassification.from_pretrained(
            path,
            **overrides,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
            use_safetensors=True,
            trust_remote_code=False,
            ignore_mismatched_sizes=True,  # a model fine-tuned on other labels gets a new head
        )
    except (OSError, ValueError) as error:
        raise NertuneError(
            f"cannot load model {name!r} ({str(error).splitlines()[0]})",
            fix="pass a local folder with model.safetensors or a Hugging Face model id",
        ) from None
    if casing:
        add_casing(model)
    from nertune.data.context import CONFIG_FIELD as CONTEXT_FIELD  # noqa: PLC0415  (CLI start-up: no torch)

    if context_pieces:
        setattr(model.config, CONTEXT_FIELD, context_pieces)
    elif hasattr(model.config, CONTEXT_FIELD):  # continuing from a context model: this recipe says none
        delattr(model.config, CONTEXT_FIELD)
    from nertune.model.crf import CONFIG_FIELD as CRF_FIELD  # noqa: PLC0415  (CLI start-up: no torch)
    from nertune.model.crf import CRF_FILE, add_crf, load_crf  # noqa: PLC0415  (CLI start-up: no torch)

    if crf:
        add_crf(model)
        if Path(path).is_dir() and (Path(path) / CRF_FILE).is_file() and model_labels(path) == list(labels):
            load_crf(model, path)  # continuing from a CRF run over the same labels: its transitions too
    elif hasattr(model.config, CRF_FIELD):  # continuing from a CRF model: this recipe says softmax
        delattr(model.config, CRF_FIELD)
    return model


def model_labels(path: str | Path) -> list[str]:
    """A model folder's labels in their head's order (config.json id2label); [] where there is none to read."""
    try:
        config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
        return [label for _, label in sorted((int(i), label) for i, label in (config.get("id2label") or {}).items())]
    except (OSError, ValueError, TypeError, AttributeError):
        return []  # the loader says what is wrong with the folder


PRECISIONS = ("auto", "fp32", "bf16")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise NertuneError(f"unknown precision {precision!r}", fix="use --precision auto, fp32 or bf16")
    return precision


def inference_dtype(precision: str, device) -> torch.dtype:
    """The weights' dtype for tagging: `auto` is bf16 on a CPU that runs it natively (nertune/machine.py), else
    fp32 (on a GPU too: bf16 tagging there is unmeasured); `fp32` / `bf16` as said (bf16 is emulated on a CPU without it)."""
    import torch  # noqa: PLC0415  (CLI start-up: no torch)

    device = torch.device(device)
    if check_precision(precision) == "auto":
        precision = "bf16" if device.type == "cpu" and cpu_bf16()[0] else "fp32"
    if precision == "bf16" and device.type == "cuda":
        with torch.cuda.device(device):
            if not torch.cuda.is_bf16_supported(including_emulation=False):
                raise NertuneError(f"{device} has no bf16", fix="use --precision fp32 (or auto)")
    return torch.bfloat16 if precision == "bf16" else torch.float32


def for_inference(model, dtype: torch.dtype):
    """The model with its weights in `dtype`, for tagging; a CRF head stays fp32: its path scores are sums over a
    whole sentence, which bf16 would round to steps of 0.5."""
    model = model.to(dtype)
    if getattr(model, "crf", None) is not None:
        model.crf.float()
    return model


def model_precision(model) -> str:
    """ "fp32", "bf16", "fp16" (the encoder's weights), or "int8" for an int8 ONNX export."""
    if getattr(model, "backend", "").startswith("onnxruntime"):
        return "int8" if model.backend.endswith("int8") else "fp32"
    import torch  # noqa: PLC0415  (CLI start-up: no torch)

    weights = next(model.parameters(), None)
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(getattr(weights, "dtype", None), "fp32")


def check_export_precision(precision: str, export_precision: str) -> None:
    """An export runs in the precision it was exported in: `auto` or that precision, nothing else."""
    if check_precision(precision) not in ("auto", export_precision):
        raise NertuneError(
            f"an ONNX export runs in the precision it was exported in ({export_precision}), not {precision}",
            fix="drop --precision (auto), or tag with the PyTorch run folder",
        )


def require_model_dir(directory: str | Path) -> Path:
    """The directory, or a one-line error: the commands call this before importing torch, so a typo costs no 5 s."""
    folder = Path(directory)
    if not folder.is_dir():
        raise NertuneError("model directory not found", path=str(directory), fix="pass the --output-dir of a training run")
    return folder


def load_trained(directory: str | Path, verify: bool = True):
    """A model nertune (or anyone) fine-tuned for token classification."""
    directory = require_model_dir(directory)
    from transformers import AutoModelForTokenClassification  # noqa: PLC0415  (CLI start-up: no transformers)

    _quiet_transformers()
    if verify:
        verify_manifest(directory)
    _refuse_pickles(str(directory))
    try:
        model = AutoModelForTokenClassification.from_pretrained(directory, use_safetensors=True, trust_remote_code=False)
    except (OSError, ValueError) as error:
        raise NertuneError(
            f"cannot load model ({str(error).splitlines()[0]})",
            path=str(directory),
            fix="the directory needs config.json and model.safetensors",
        ) from None
    from nertune.model.crf import load_crf  # noqa: PLC0415  (CLI start-up: no torch)

    load_crf(model, directory)  # when config.json says the model has a CRF head
    return model


def _refuse_pickles(path: str) -> None:
    """Safetensors only, and whole: checked before transformers opens anything in a local folder."""
    folder = Path(path)
    if not folder.is_dir():
        return
    if not any(folder.glob("*.safetensors")) and any(folder.glob("*.bin")):
        raise NertuneError(
            "only pickled weights (*.bin) found; nertune loads safetensors only", path=path, fix="convert the weights to model.safetensors"
        )
    for weights in sorted(folder.glob("*.safetensors")):
        check_safetensors(file_in(folder, weights.name, "the folder"))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_model(model, tokenizer, directory: str | Path) -> None:
    """Write model + tokenizer into `directory` file by file, atomically, manifest last."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_saves(directory)
    staging = Path(tempfile.mkdtemp(prefix=".model.", suffix=".tmp", dir=directory))
    from nertune.model.crf import CRF_FILE, save_crf  # noqa: PLC0415  (CLI start-up: no torch)

    # The CRF goes to its own file (model/crf.py): model.safetensors keeps exactly the Hugging Face keys.
    crf = model._modules.pop("crf", None)
    try:
        try:
            model.save_pretrained(staging, safe_serialization=True)
        finally:
            if crf is not None:
                model.crf = crf
        if crf is not None:
            save_crf(crf, staging)
        tokenizer.save_pretrained(staging)
        old_manifest = directory / MANIFEST
        if old_manifest.exists():
            old_manifest.unlink()  # the set is being replaced: not whole until the new manifest lands
        for item in staging.iterdir():
            os.chmod(item, (0o777 if item.is_dir() else 0o666) & ~_umask())  # the user's umask, like every other file
            os.replace(item, directory / item.name)
        if crf is None:
            (directory / CRF_FILE).unlink(missing_ok=True)  # an earlier CRF model's, no longer this model's
        weights = sorted(p.name for p in directory.iterdir() if p.name.endswith(WEIGHT_SUFFIXES))
        write_json(
            directory / MANIFEST,
            {
                "format": 1,
                "sha256": {name: sha256(directory / name) for name in weights},
                "size": {name: (directory / name).stat().st_size for name in weights},
            },
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_stale_saves(directory: Path) -> None:
    """Staging folders a kill during an earlier save_model left behind."""
    for stale in Path(directory).glob(".model.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)


def verify_manifest(directory: Path) -> None:
    manifest_path = directory / MANIFEST
    if not manifest_path.exists():
        return  # a directory not written by nertune (e.g. a hub download): nothing to check
    unreadable = NertuneError(
        "manifest.json is unreadable", path=str(manifest_path), fix="re-save the model, or delete manifest.json to skip the check"
    )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        expected = dict(manifest["sha256"])
        sizes = dict(manifest.get("size") or {})
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise unreadable from None
    for name, digest in expected.items():
        if _plain_name(name) and not os.path.lexists(directory / name):
            raise NertuneError(f"weight file {name} is missing", path=str(directory), fix="copy the whole model directory again")
        file = file_in(directory, name, MANIFEST)
        # the size first: a wrong one needs no hashing of what may be gigabytes
        size = file.stat().st_size
        if size != sizes.get(name, size) or not isinstance(digest, str) or sha256(file) != digest:
            raise NertuneError(
                f"weight file {name} does not match its sha256 in manifest.json (truncated or altered)",
                path=str(file),
                fix="copy the model directory again or re-train",
            )


def file_in(directory: Path, name, listed_in: str) -> Path:
    """`directory / name` for a name a metadata file lists: a plain file name, a regular file inside the
    folder (a link may point only within it). Nothing outside the folder is ever opened, nor a device or pipe."""
    fix = "copy the whole model directory again, or re-save the model"
    if not _plain_name(name):
        raise NertuneError(
            f"{listed_in} names {name!r}, which is not a plain file name in the folder", path=str(directory / listed_in), fix=fix
        )
    file = directory / name
    try:
        real, inside = file.resolve(strict=True), directory.resolve(strict=True)
        mode = real.stat().st_mode
    except (OSError, RuntimeError):
        raise NertuneError(f"file {name} ({listed_in}) is missing", path=str(directory), fix=fix) from None
    if real.parent != inside:
        raise NertuneError(f"file {name} ({listed_in}) links outside the folder", path=str(file), fix=fix)
    if not stat.S_ISREG(mode):
        raise NertuneError(f"file {name} ({listed_in}) is not a regular file", path=str(file), fix=fix)
    return file


def _plain_name(name) -> bool:
    return isinstance(name, str) and name not in ("", ".", "..") and not any(c in name for c in "/\\\0")


def check_safetensors(path: Path) -> None:
    """A safetensors file whose header and tensor offsets fit in it: a truncated or fake file is one line
    here, not a traceback from deep inside the loader."""
    fix = "copy the model directory again (the file is truncated or not safetensors)"
    size = path.stat().st_size
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > size - 8 or length > 100_000_000:
                raise ValueError("header longer than the file")
            header = json.loads(handle.read(length))
        end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    except (struct.error, ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError):
        raise NertuneError("is not a readable safetensors file", path=str(path), fix=fix) from None
    if 8 + length + end > size:
        raise NertuneError(f"is truncated: its tensors need {8 + length + end} bytes, the file has {size}", path=str(path), fix=fix)
