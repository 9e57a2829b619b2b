"""The Python entry points: the same runs as the CLI, returning data."""

from __future__ import annotations

from nertune.train.recipe import load_recipe


def train(recipe: str | None = None, progress: bool = True, **fields) -> dict:
    """Fine-tune as `nertune train` does and return its metrics dict.

    >>> metrics = nertune.train(max_train_sentences=64, epochs=1, output_dir="runs/tiny")
    """
    from nertune.train.loop import train_run

    return train_run(load_recipe(recipe, fields), progress=progress)
