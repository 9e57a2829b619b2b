"""The recipe is validated up front: a bad field fails before any model loads, naming the field."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nertune.errors import NertuneError
from nertune.training.recipe import RECIPES_DIR, load_recipe
from tests.conftest import run_cli


def test_seed_recipe_is_the_seed():
    recipe = load_recipe("seed")
    assert (recipe.learning_rate, recipe.batch_size, recipe.grad_accum, recipe.epochs, recipe.accumulation) == (2e-5, 1, 16, 3, "sentence")
    assert (recipe.patience, recipe.save_every_steps, recipe.keep_checkpoints) == (None, None, 2)


@pytest.mark.parametrize(
    "text, line, words",
    [
        (
            "learning_rate: 2.0e-5\nlerning_rate: 1.0e-4\n",
            2,
            "recipe field 'lerning_rate': unknown recipe field (got 0.0001) — fix: did you mean 'learning_rate'?",
        ),
        ("epochs: three\n", 1, "recipe field 'epochs': Input should be a valid integer"),
        ("seed: 1\nlearning_rate: -0.1\n", 2, "recipe field 'learning_rate': Input should be greater than 0 (got -0.1)"),
        ("epochs: yes\n", 1, "recipe field 'epochs': expected a number or text, not true/false"),  # YAML 1.1 reads yes as True
        ("mixed_precision: no\n", 1, "recipe field 'mixed_precision': expected a number or text, not true/false"),
        ("learning_rate: .inf\n", 1, "recipe field 'learning_rate': Input should be a finite number"),
        ("keep_checkpoints: 0\n", 1, "recipe field 'keep_checkpoints': Input should be greater than or equal to 1"),
        ("patience: -2\n", 1, "recipe field 'patience'"),
        ("save_every_steps: 0\n", 1, "recipe field 'save_every_steps'"),
        ("accumulation: tokens\n", 1, "recipe field 'accumulation': Input should be 'sentence' or 'token'"),
        ("model: [a, b]\n", 1, "recipe field 'model': Input should be a valid string"),
        ("5\n", None, "recipe must be a mapping of field: value"),
        ("- epochs: 3\n", None, "recipe must be a mapping of field: value"),
        ("epochs: [3\n", 2, "recipe is not valid YAML"),
        ("seed: 2024-13-45\n", None, "recipe is not valid YAML"),
        ("model: !!timestamp 2020-99-992024-13-45\n", None, "recipe is not valid YAML"),  # PyYAML's AttributeError
    ],
)
def test_bad_recipe_files_name_the_field_and_line(tmp_path, text, line, words):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    with pytest.raises(NertuneError) as error:
        load_recipe(str(path))
    message = str(error.value)
    assert words in message and "fix:" in message
    assert message.startswith(f"{path}:{line}: " if line else f"{path}: ")


def test_an_empty_recipe_file_is_the_defaults(tmp_path):
    (tmp_path / "empty.yaml").write_text("# nothing set\n")
    assert load_recipe(str(tmp_path / "empty.yaml")) == load_recipe(None)


def test_flags_override_the_file_and_are_named_as_flags():
    assert load_recipe("seed", {"learning_rate": 1e-4, "epochs": None}).learning_rate == 1e-4
    with pytest.raises(
        NertuneError,
        match=r"^recipe field 'max_train_sentences' \(--max-train-sentences\): Input should be greater than or equal to 1 \(got 0\)",
    ):
        load_recipe("seed", {"max_train_sentences": 0})


def test_unknown_recipe_name_lists_the_known_ones():
    with pytest.raises(NertuneError, match=r"recipe 'sed' not found — fix: use one of: minilm-casing, .*\bseed\b, or a YAML file path"):
        load_recipe("sed")
    assert (RECIPES_DIR / "seed.yaml").is_file()


def test_the_api_fails_before_torch_is_even_imported():
    code = (
        "import sys\nfrom nertune.training.api import train\nfrom nertune.errors import NertuneError\n"
        "try:\n    train(learning_rate=-1.0)\nexcept NertuneError as e:\n    print(e)\nprint('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "False"  # no model, not even torch, was loaded
    assert "recipe field 'learning_rate' (--learning-rate): Input should be greater than 0" in result.stdout


def test_the_cli_gives_one_line_and_exit_2_before_training(tmp_path):
    result = run_cli("train", "--learning-rate", "-1", "--no-progress")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: recipe field 'learning_rate' (--learning-rate): Input should be greater than 0 (got -1.0) "
        "— fix: see `nertune train --help` "
        "and recipes/seed.yaml for the fields and their ranges"
    ]
    recipe = tmp_path / "r.yaml"
    recipe.write_text("epochs: 2\nwarmup: 0.1\n")
    result = run_cli("train", "--recipe", str(recipe), "--no-progress")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()  # no 'training ...' line: nothing started
    assert line.startswith(f"error: {recipe}:2: recipe field 'warmup': unknown recipe field") and "did you mean 'warmup_ratio'?" in line
