"""A recipe set up as `nertune train` sets it up, on the first training sentences, with its first steps cut and
weighted as the loop cuts them: the shared start of the step benchmarks (profile_step, compile_layers, process_age);
`step_inputs` cuts any stretch of a set-up run's epoch (subnormals.py: the steps after a checkpoint).

    with first_steps("minilm-context-crf", 50, sentences=2000) as (run, inputs):
        for windows, weights in inputs:
            run.steps(windows, weights)
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator

from nertune.data.features import length_grouped_steps
from nertune.model.loss import window_weights
from nertune.training.precision import fresh_accelerator
from nertune.training.recipe import load_recipe
from nertune.training.setup import setup


@contextlib.contextmanager
def first_steps(recipe_name: str, count: int, sentences: int = 2000, **overrides) -> Iterator[tuple]:
    """(run, [(windows, weights), ...]) for the first `count` steps of epoch 1, drawn from the recipe's seed."""
    with tempfile.TemporaryDirectory() as tmp, fresh_accelerator():
        limits = {"max_train_sentences": sentences, "max_eval_sentences": 16, "output_dir": f"{tmp}/run"}
        run = setup(load_recipe(recipe_name, {**limits, **overrides}), progress=False)
        run.model.train()
        yield run, step_inputs(run, 0, count)


def step_inputs(run, start: int, count: int) -> list[tuple]:
    """[(windows, weights), ...] of steps start .. start + count of the run's current epoch, cut as the loop cuts them."""
    steps = length_grouped_steps(run.piece_lengths, run.sentences_per_step, run.order, run.group_by_length)[start : start + count]
    inputs = []
    for step_sentences in steps:
        windows = [run.windows[i] for s in step_sentences for i in run.windows_of[s]]
        words = sum(run.words_in_sentence[s] for s in step_sentences)
        weights = window_weights(windows, run.words_in_sentence, run.recipe.accumulation, run.sentences_per_step, words, 1)
        inputs.append((windows, weights))
    return inputs
