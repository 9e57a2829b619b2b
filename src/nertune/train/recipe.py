"""A recipe is every setting of a training run, validated before anything loads.

Recipes are YAML files (`recipes/seed.yaml` is the seed exactly); command-line
flags override single fields; the run directory records the resolved recipe.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nertune.errors import NertuneError

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # what to train
    model: str = "embedded-minilm"
    data: str = "conll2003"
    train: Optional[str] = None
    validation: Optional[str] = None
    test: Optional[str] = None
    max_train_sentences: Optional[int] = Field(None, ge=1)
    max_eval_sentences: Optional[int] = Field(None, ge=1)
    # the optimisation, as the seed's Trainer ran it
    learning_rate: float = Field(2e-5, gt=0)
    batch_size: int = Field(1, ge=1)
    grad_accum: int = Field(16, ge=1)
    adam_beta1: float = Field(0.9, ge=0, lt=1)
    adam_beta2: float = Field(0.999, ge=0, lt=1)
    adam_epsilon: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: Optional[float] = Field(1.0, gt=0)
    lr_scheduler: Literal["linear", "constant"] = "linear"
    warmup_ratio: float = Field(0.0, ge=0, le=1)
    epochs: int = Field(3, ge=1)
    mixed_precision: Literal["auto", "bf16", "fp16", "no"] = "auto"
    seed: int = 42
    accumulation: Literal["sentence", "token"] = "sentence"
    # speed knobs that do not change the gradient of a step
    group_by_length: bool = True
    max_tokens_per_forward: int = Field(8192, ge=64)
    eval_max_tokens: int = Field(16384, ge=64)
    # where
    output_dir: Optional[str] = None

    @property
    def sentences_per_step(self) -> int:
        return self.batch_size * self.grad_accum


def _fail(error: ValidationError, source: str) -> NertuneError:
    first = error.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "(recipe)"
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown recipe field"
    return NertuneError(f"recipe field {field!r}: {message} (got {first.get('input')!r})", path=source, fix=f"see `nertune train --help` for the fields and their ranges")


def load_recipe(name_or_path: str | None = None, overrides: dict | None = None) -> Recipe:
    """'seed' or another name in recipes/, or a YAML file; then the overrides."""
    fields: dict = {}
    source = "<defaults>"
    if name_or_path:
        path = Path(name_or_path)
        if not path.suffix and (RECIPES_DIR / f"{name_or_path}.yaml").is_file():
            path = RECIPES_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")))
            raise NertuneError(f"recipe {name_or_path!r} not found", fix=f"use one of: {known}, or a YAML file path")
        source = str(path)
        try:
            fields = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            line = getattr(getattr(error, "problem_mark", None), "line", None)
            raise NertuneError("recipe is not valid YAML", path=source, line=None if line is None else line + 1, fix="check the YAML syntax") from None
        if not isinstance(fields, dict):
            raise NertuneError("recipe must be a mapping of field: value", path=source, fix="write one 'field: value' per line")
    fields.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return Recipe(**fields)
    except ValidationError as error:
        raise _fail(error, source) from None
    except TypeError as error:  # non-string keys
        raise NertuneError(f"recipe has an invalid field name ({error})", path=source, fix="field names are plain words") from None
