"""A recipe is every setting of a training run, validated before anything loads.

Recipes are YAML files (`recipes/seed.yaml` is the seed exactly); command-line
flags override single fields; the run directory records the resolved recipe.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from nertune.errors import NertuneError

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"
MAX_RECIPE_BYTES = 1 << 20  # read whole and parsed: a bound keeps a hostile file from taking the memory


class Recipe(BaseModel):
    # Unknown fields, inf/nan and true/false where a number belongs are errors, not guesses.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    # what to train
    model: str = "embedded-minilm"
    data: str = "conll2003"
    train: Optional[str] = None
    validation: Optional[str] = None
    test: Optional[str] = None
    max_train_sentences: Optional[int] = Field(None, ge=1)
    max_eval_sentences: Optional[int] = Field(None, ge=1)
    ragged_columns: bool = False  # data lines may differ in column count: the tag is the last column (data/conll.py)
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
    # what the model sees besides the wordpieces (stored in the model's config.json)
    casing: bool = False  # words' casing classes as token types (data/casing.py), for uncased encoders
    context_pieces: int = Field(0, ge=0)  # wordpieces of neighbouring sentences on each side (data/context.py); 0: none
    crf: bool = False  # a CRF head over the word logits (model/crf.py): trained on whole tag sequences, decoded with its transitions
    crf_learning_rate: float = Field(5e-3, gt=0)  # the CRF's transition scores' peak rate (same warm-up and decay)
    # speed knobs that do not change the gradient of a step
    dropout: Optional[float] = Field(None, ge=0, lt=1)  # None: the model's own (0.1 for BERT)
    # Random steps (the Trainer's composition) packed into shared rows: nearly as fast as length-grouped ones,
    # and they learn like the Trainer's (BENCHMARKS.md); grouping is the fallback for encoders packing does not know.
    pack: bool = True  # several windows per row of a forward pass, each masked to itself (data/packing.py)
    group_by_length: Optional[bool] = None  # steps of similar-length sentences; None: only where windows are not packed
    max_tokens_per_forward: int = Field(8192, ge=64)
    # Replay the packed forward and backward from CUDA graphs (train/graphs.py); None: wherever they apply (one GPU).
    cuda_graphs: Optional[bool] = None
    eval_max_tokens: int = Field(16384, ge=64)
    # stopping early, and never losing a run (train/checkpoint.py)
    patience: Optional[int] = Field(None, ge=1)  # stop when validation F1 has not improved for this many evaluations
    save_every_steps: Optional[int] = Field(None, ge=1)  # a checkpoint every N steps (and one at each epoch end)
    keep_checkpoints: int = Field(2, ge=1)
    # where
    output_dir: Optional[str] = None

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value, info: ValidationInfo):
        # pydantic's lax mode reads `epochs: yes` as 1; a YAML slip should fail instead.
        if isinstance(value, bool) and cls.model_fields[info.field_name].annotation not in (bool, Optional[bool]):
            raise ValueError("expected a number or text, not true/false (YAML reads yes/no/on/off as booleans: quote them)")
        return value

    @property
    def sentences_per_step(self) -> int:
        return self.batch_size * self.grad_accum


def _line_of(text: str, field: str) -> int | None:
    """1-based line of `field:` in the recipe's YAML, to point the user at it."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, ValueError, RecursionError):
        return None
    for key, _ in getattr(node, "value", None) or []:
        if getattr(key, "value", None) == field:
            return key.start_mark.line + 1
    return None


def _fail(error: ValidationError, source: str | None, overrides: dict, text: str = "") -> NertuneError:
    first = error.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "(recipe)"
    message = first["msg"].removeprefix("Value error, ")
    fix = "see `nertune train --help` and recipes/seed.yaml for the fields and their ranges"
    if first["type"] == "extra_forbidden":
        message = "unknown recipe field"
        close = difflib.get_close_matches(field, Recipe.model_fields, n=1)
        fix = (f"did you mean {close[0]!r}? " if close else "") + "known fields: " + ", ".join(Recipe.model_fields)
    got = repr(first.get("input"))
    got = got if len(got) <= 60 else got[:57] + "..."
    where = f"recipe field {field!r}"
    if field in overrides:  # from a flag or keyword argument, not the file
        where, source = f"{where} (--{field.replace('_', '-')})", None
    line = _line_of(text, field) if source else None
    return NertuneError(f"{where}: {message} (got {got})", path=source, line=line, fix=fix)


def load_recipe(name_or_path: str | None = None, overrides: dict | None = None) -> Recipe:
    """'seed' or another name in recipes/, or a YAML file; then the overrides."""
    fields: dict = {}
    source, text = None, ""
    if name_or_path:
        path = Path(name_or_path)
        if not path.suffix and (RECIPES_DIR / f"{name_or_path}.yaml").is_file():
            path = RECIPES_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")))
            raise NertuneError(f"recipe {name_or_path!r} not found", fix=f"use one of: {known}, or a YAML file path")
        source = str(path)
        if path.stat().st_size > MAX_RECIPE_BYTES:
            raise NertuneError(f"recipe is {path.stat().st_size:,} bytes: not a recipe (at most {MAX_RECIPE_BYTES:,})", path=source,
                               fix="a recipe is a few lines of 'field: value'")
        try:
            text = path.read_text(encoding="utf-8")
            fields = yaml.safe_load(text)
        except OSError as error:
            raise NertuneError(f"cannot read recipe ({error.strerror})", path=source, fix="check the path and permissions") from None
        except (yaml.YAMLError, UnicodeDecodeError, ValueError, RecursionError) as error:
            # ValueError: YAML dates like 2024-13-45; RecursionError: absurdly deep nesting.
            line = getattr(getattr(error, "problem_mark", None), "line", None)
            raise NertuneError("recipe is not valid YAML", path=source, line=None if line is None else line + 1, fix="check the YAML syntax") from None
        fields = {} if fields is None else fields  # an empty file is the defaults
        if not isinstance(fields, dict):
            raise NertuneError("recipe must be a mapping of field: value", path=source, fix="write one 'field: value' per line")
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    fields.update(overrides)
    try:
        return Recipe(**fields)
    except ValidationError as error:
        raise _fail(error, source, overrides, text) from None
    except TypeError as error:  # non-string keys
        raise NertuneError(f"recipe has an invalid field name ({error})", path=source, fix="field names are plain words") from None


# What a nertune run's config.json says about its inputs and head, as recipe fields (data/casing.py,
# data/context.py, model/crf.py write them).
_RUN_SETTINGS = {"casing": ("nertune_casing", bool), "context_pieces": ("nertune_context_pieces", int), "crf": ("nertune_crf", bool)}


def _model_config(model: str) -> tuple[Path, dict] | None:
    """The config.json of a local model folder (a nertune run, a downloaded model), or None."""
    path = Path(model) / "config.json"
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # the loader says what is wrong with it
    return (path, config) if isinstance(config, dict) else None


def continue_from_run(recipe: Recipe) -> Recipe:
    """`--model RUN_DIR` trains a finished nertune run further: its casing, context and CRF come with its
    weights. A field the user set (flag or recipe file) that contradicts the run is refused, not ignored."""
    found = _model_config(recipe.model)
    if found is None:
        return recipe
    path, config = found
    if not (Path(recipe.model) / "manifest.json").is_file() and not any(key in config for key, _ in _RUN_SETTINGS.values()):
        return recipe  # a plain encoder folder: the recipe decides everything
    for field, (key, kind) in _RUN_SETTINGS.items():
        has = kind(config.get(key) or 0)
        if field in recipe.model_fields_set and getattr(recipe, field) != has:
            flag = f"--{field.replace('_', '-')}" if kind is int else f"--{'' if getattr(recipe, field) else 'no-'}{field.replace('_', '-')}"
            raise NertuneError(f"{flag} contradicts the model being continued, which has {field} {has!r}", path=str(path),
                               fix=f"drop {flag} (or that field of the recipe) to keep the run's setting, or start from the base encoder")
        setattr(recipe, field, has)
    return recipe


def labels_for(model: str, data_labels: list[str]) -> list[str]:
    """The label order of the run: the model's own when it already knows every label of the data (its
    classification head is kept, row for row), else the data's (a new head)."""
    from nertune.model.load import model_labels

    own = model_labels(model)
    return own if own and set(data_labels) <= set(own) else data_labels
