"""The Python entry points: the same runs as the CLI, returning data."""

from __future__ import annotations

from nertune.data.embedded import resolve_model
from nertune.model.load import require_model_dir
from nertune.training.recipe import continue_from_run, load_recipe


def train(recipe: str | None = None, progress: bool = True, resume: bool = False, overwrite: bool = False, **fields) -> dict:
    """Fine-tune as `nertune train` does and return its metrics dict. May be called again in the same process.

    `overwrite` replaces a finished run in `output_dir` (else refused); `model` may be a finished run's folder
    to train it further (its casing, context and CRF settings come with it).

    >>> metrics = nertune.train(max_train_sentences=64, epochs=1, output_dir="runs/tiny")
    """
    checked = load_recipe(recipe, fields)  # a bad field fails before torch (let alone a model) loads
    resolve_model(checked.model)  # so does a model folder that is not there, or a hub id with no hub to reach
    for folder in checked.teachers:
        require_model_dir(folder)
    checked = continue_from_run(checked)
    from nertune.training.loop import train_run  # noqa: PLC0415  (CLI start-up: no torch)

    return train_run(checked, progress=progress, resume=resume, overwrite=overwrite)
