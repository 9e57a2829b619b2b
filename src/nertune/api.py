"""The Python entry points: the same runs as the CLI, returning data."""

from __future__ import annotations

from nertune.train.recipe import load_recipe


def train(recipe: str | None = None, progress: bool = True, resume: bool = False, **fields) -> dict:
    """Fine-tune as `nertune train` does and return its metrics dict.

    >>> metrics = nertune.train(max_train_sentences=64, epochs=1, output_dir="runs/tiny")
    """
    checked = load_recipe(recipe, fields)  # a bad field fails before torch (let alone a model) loads
    from nertune.train.loop import train_run

    return train_run(checked, progress=progress, resume=resume)
