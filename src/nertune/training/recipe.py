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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from nertune.errors import NertuneError
from nertune.model.load import model_labels

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"
MAX_RECIPE_BYTES = 1 << 20  # read whole and parsed: a bound keeps a hostile file from taking the memory


class Recipe(BaseModel):
    # Unknown fields, inf/nan and true/false where a number belongs are errors, not guesses.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    # Each field once: its type, default, range and help. `nertune train` makes one option of each
    # (cli/train.py); `flag` renames an option, `off` gives a boolean its negative form.
    # what to train
    model: str = Field(
        "embedded-minilm",
        description=(
            "Encoder: a local folder or a Hugging Face id, or a finished run's folder to train it further (default: the embedded MiniLM)."
        ),
    )
    data: str = Field(
        "conll2003",
        description="'conll2003' (embedded, the default), a saved Hugging Face DatasetDict folder, or files: --train/--validation/--test.",
    )
    train: Optional[str] = Field(
        None, description="Training data: a CoNLL, JSON / JSONL, .spacy, .parquet / .arrow file, or a saved dataset or brat folder."
    )
    validation: Optional[str] = Field(None, description="Validation data (any format --train reads).")
    test: Optional[str] = Field(None, description="Test data (any format --train reads).")
    max_train_sentences: Optional[int] = Field(None, ge=1, description="Use the first N training sentences.")
    max_eval_sentences: Optional[int] = Field(None, ge=1, description="Use the first N validation / test sentences.")
    ragged_columns: bool = Field(
        False, description="Data lines may differ in column count: the tag is the last column (default: refused, as conlleval.pl does)."
    )
    # how to read the data files (data/formats.py: CoNLL, JSON / JSONL, Hugging Face datasets, spaCy DocBin, brat)
    tag_column: Optional[int] = Field(None, ge=2, description="CoNLL: the tag's column, 1-based (default: the last).")
    tokens_field: Optional[str] = Field(None, description="JSON / datasets: the words' field (default: tokens or words).")
    tags_field: Optional[str] = Field(None, description="JSON / datasets: the tags' field (default: ner_tags, tags or labels).")
    text_field: Optional[str] = Field(None, description="JSON: the raw text's field, for span records (default: text).")
    spans_field: Optional[str] = Field(None, description="JSON: the character spans' field (default: entities, spans, label or labels).")
    label_names: Optional[str] = Field(
        None,
        description="Names of integer tags in id order, comma-separated (default: the dataset's ClassLabel or labels.json).",
    )
    strict_spans: bool = Field(
        False, description="Refuse a span whose edge falls inside a word (default: split the word there, with a notice)."
    )
    overlaps: Literal["longest", "outer", "refuse"] = Field(
        "longest", description="Overlapping or nested spans: keep the longest, the outer one, or refuse."
    )
    label_map: Optional[str] = Field(
        None, description='Rename, merge or drop entity types: JSON (\'{"PERSON": "PER", "MISC": null}\') or a JSON / YAML file.'
    )
    # the optimisation, as the seed's Trainer ran it
    learning_rate: float = Field(2e-5, gt=0, description="Peak learning rate.")
    batch_size: int = Field(1, ge=1, description="Sentences per micro-batch in the recipe; batch_size x grad_accum sentences make a step.")
    grad_accum: int = Field(16, ge=1, description="Gradient accumulation steps.")
    adam_beta1: float = Field(0.9, ge=0, lt=1, description="Adam's beta1.")
    adam_beta2: float = Field(0.999, ge=0, lt=1, description="Adam's beta2.")
    adam_epsilon: float = Field(1e-8, gt=0, description="Adam's epsilon.")
    weight_decay: float = Field(0.0, ge=0, description="Decoupled weight decay (AdamW); 0 is the Trainer's Adam.")
    max_grad_norm: Optional[float] = Field(1.0, gt=0, description="Clip the gradient's norm to this.")
    lr_scheduler: Literal["linear", "constant"] = Field("linear", description="After warm-up: linear decay to 0, or constant.")
    warmup_ratio: float = Field(0.0, ge=0, le=1, description="Fraction of steps for linear warm-up.")
    epochs: int = Field(3, ge=1, description="Epochs.")
    mixed_precision: Literal["auto", "bf16", "fp16", "no"] = Field(
        "auto", description="auto (bf16 where the GPU or CPU has it) | bf16 | fp16 | no."
    )
    seed: int = Field(42, description="Random seed.")
    accumulation: Literal["sentence", "token"] = Field(
        "sentence", description="'sentence' (each sentence's mean loss weighs the same; the seed recipe's) or 'token'."
    )
    # what the model sees besides the wordpieces (stored in the model's config.json)
    casing: bool = Field(
        False,
        description="Words' casing classes as token types, for uncased encoders (docs/features.md).",
        json_schema_extra={"off": "--no-casing"},
    )
    context_pieces: int = Field(0, ge=0, description="Wordpieces of neighbouring sentences of the same document on each side (0: none).")
    shared_window_pieces: int = Field(
        0,
        ge=0,
        description="Train on windows of consecutive sentences of a document, up to N wordpieces together, each sentence "
        "its own loss (and CRF) row, with context_pieces around the group: fewer pieces than a window per sentence "
        "(0: a window per sentence; evaluation and tagging always use one). Steps then take whole groups, not length-grouped.",
    )
    crf: bool = Field(
        False,
        description="A CRF head over the word scores instead of a plain softmax (docs/features.md).",
        json_schema_extra={"off": "--no-crf"},
    )
    crf_learning_rate: float = Field(5e-3, gt=0, description="The CRF transition scores' own peak rate (same warm-up and decay).")
    # what else the model learns from, and which weights it ends with
    teacher: Optional[str] = Field(
        None,
        description="Folders of trained models (comma-separated) whose averaged word-label probabilities the model also learns: "
        "knowledge distillation (a CRF teacher gives its marginals; training/distill.py).",
    )
    distill_weight: float = Field(0.5, ge=0, le=1, description="The teacher's share of the loss; the gold tags get the rest.")
    hold_out: Optional[str] = Field(
        None,
        pattern=r"^[1-9][0-9]*/[1-9][0-9]*$",
        description="'K/N': train without fold K of N of the training documents (dealt round-robin), so the model can teach "
        "the sentences it never saw (cross-fitted distillation, training/distill.py).",
    )
    train_on_validation: bool = Field(
        False,
        description="Train on train + validation, for a final model: no validation scores, the last epoch is kept "
        "(its test score is reported apart, never next to validation-chosen runs).",
    )
    average_epochs: int = Field(
        0, ge=0, description="End with the average of the last N epochs' weights instead of the best epoch's (0: the best epoch's)."
    )
    # speed knobs that do not change the gradient of a step
    dropout: Optional[float] = Field(
        None, ge=0, lt=1, description="Set every dropout probability of the encoder (default: the model's own)."
    )
    pack: bool = Field(
        True,
        description=(
            "Several windows per row of a forward pass, each masked to itself: the same gradient, less padding (default: on where exact)."
        ),
        json_schema_extra={"off": "--no-pack"},
    )
    group_by_length: Optional[bool] = Field(
        None,
        description=(
            "Steps of similar-length sentences, or random ones as the Trainer draws them "
            "(default: grouped only where windows are not packed)."
        ),
        json_schema_extra={"off": "--ungrouped"},
    )
    max_tokens_per_forward: int = Field(
        8192, ge=64, description="Token budget of one training forward pass (a step takes as many passes as it needs)."
    )
    cuda_graphs: Optional[bool] = Field(
        None,
        description="On a GPU, replay each packed step shape from a CUDA graph (default: on where it applies: one GPU, packed rows).",
        json_schema_extra={"off": "--eager"},
    )
    # the CPU speed tricks (training/speed/), each on by default and each with its equivalence test
    cheap_dropout: bool = Field(
        True,
        description="On a CPU, draw dropout masks from 16 random bits an element: the same dropout probability, a cheaper mask.",
        json_schema_extra={"off": "--torch-dropout"},
    )
    kept_embedding_grad: bool = Field(
        True,
        description="On a CPU with one process, keep the word-embedding gradient in one buffer (a sparse backward): the same gradient.",
        json_schema_extra={"off": "--dense-grad"},
    )
    used_rows_only: bool = Field(
        True,
        description="Leave the word-embedding rows no training window uses out of the optimizer: they would never move.",
        json_schema_extra={"off": "--all-rows"},
    )
    eval_max_tokens: int = Field(16384, ge=64, description="Token budget of one evaluation forward pass.")
    # stopping early, and never losing a run (training/checkpoint.py)
    patience: Optional[int] = Field(None, ge=1, description="Stop early when validation F1 has not improved for N epochs.")
    save_every_steps: Optional[int] = Field(
        None, ge=1, description="Also save a resumable checkpoint every N steps (one is saved at each epoch end)."
    )
    keep_checkpoints: int = Field(2, ge=1, description="Keep the newest K checkpoints in the run's checkpoints/ folder.")
    # experiment tracking, through Accelerate's trackers (training/tracking.py)
    report_to: Literal["none", "tensorboard", "mlflow", "wandb"] = Field(
        "none",
        description="Log the recipe, step metrics, each epoch's validation scores and the test scores to a tracker "
        "(files under the run's tracking/ folder; wandb as its own settings say).",
    )
    # where
    output_dir: Optional[str] = Field(None, description="Run directory (default runs/<timestamp>).")

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value, info: ValidationInfo):
        # pydantic's lax mode reads `epochs: yes` as 1; a YAML slip should fail instead.
        if isinstance(value, bool) and cls.model_fields[info.field_name].annotation not in (bool, Optional[bool]):
            raise ValueError("expected a number or text, not true/false (YAML reads yes/no/on/off as booleans: quote them)")
        return value

    @model_validator(mode="after")
    def _averaged_epochs_exist(self):
        if self.average_epochs > self.epochs:
            raise ValueError(f"average_epochs ({self.average_epochs}) is more than the epochs the run has ({self.epochs})")
        return self

    @field_validator("hold_out")
    @classmethod
    def _fold_exists(cls, value):
        if value:
            fold, folds = map(int, value.split("/"))
            if folds < 2 or fold > folds:
                raise ValueError(f"{value!r} is not a fold K of N folds with 1 <= K <= N and N >= 2 (e.g. '1/2')")
        return value

    @model_validator(mode="after")
    def _held_out_sentences_stay_out(self):
        if self.hold_out and self.train_on_validation:
            raise ValueError("hold_out with train_on_validation: the teacher would learn validation sentences it is later asked to teach")
        return self

    @property
    def held_out(self) -> tuple[int, int] | None:
        """(K, N) of `hold_out`, or None."""
        return tuple(map(int, self.hold_out.split("/"))) if self.hold_out else None

    @property
    def sentences_per_step(self) -> int:
        return self.batch_size * self.grad_accum

    @property
    def teachers(self) -> list[str]:
        """The `teacher` folders, in order."""
        return [folder.strip() for folder in (self.teacher or "").split(",") if folder.strip()]


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
            raise NertuneError(
                f"recipe is {path.stat().st_size:,} bytes: not a recipe (at most {MAX_RECIPE_BYTES:,})",
                path=source,
                fix="a recipe is a few lines of 'field: value'",
            )
        try:
            text = path.read_text(encoding="utf-8")
            fields = yaml.safe_load(text)
        except OSError as error:
            raise NertuneError(f"cannot read recipe ({error.strerror})", path=source, fix="check the path and permissions") from None
        except (yaml.YAMLError, UnicodeDecodeError, ValueError, AttributeError, RecursionError) as error:
            # ValueError: YAML dates like 2024-13-45; AttributeError: PyYAML's own crash on an explicit
            # `!!timestamp` that is no date; RecursionError: absurdly deep nesting.
            line = getattr(getattr(error, "problem_mark", None), "line", None)
            raise NertuneError(
                "recipe is not valid YAML", path=source, line=None if line is None else line + 1, fix="check the YAML syntax"
            ) from None
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


def model_config(model: str) -> tuple[Path, dict] | None:
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
    found = model_config(recipe.model)
    if found is None:
        return recipe
    path, config = found
    if not (Path(recipe.model) / "manifest.json").is_file() and not any(key in config for key, _ in _RUN_SETTINGS.values()):
        return recipe  # a plain encoder folder: the recipe decides everything
    for field, (key, kind) in _RUN_SETTINGS.items():
        has = kind(config.get(key) or 0)
        if field in recipe.model_fields_set and getattr(recipe, field) != has:
            flag = (
                f"--{field.replace('_', '-')}" if kind is int else f"--{'' if getattr(recipe, field) else 'no-'}{field.replace('_', '-')}"
            )
            raise NertuneError(
                f"{flag} contradicts the model being continued, which has {field} {has!r}",
                path=str(path),
                fix=f"drop {flag} (or that field of the recipe) to keep the run's setting, or start from the base encoder",
            )
        setattr(recipe, field, has)
    return recipe


def labels_for(model: str, data_labels: list[str]) -> list[str]:
    """The label order of the run: the model's own when it already knows every label of the data (its
    classification head is kept, row for row), else the data's (a new head)."""
    own = model_labels(model)
    return own if own and set(data_labels) <= set(own) else data_labels
