"""One schema: every recipe field is an option of `nertune train`, with the recipe's own help and range."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from nertune.cli import app
from nertune.errors import NertuneError
from nertune.training.recipe import Recipe


def _train_command():
    return typer.main.get_command(app).commands["train"]


def test_every_recipe_field_is_an_option_with_the_schemas_help():
    options = {p.name: p for p in _train_command().params}
    missing = [name for name in Recipe.model_fields if name not in options]
    assert not missing, f"recipe fields with no option: {missing}"
    for name, info in Recipe.model_fields.items():
        assert info.description, f"recipe field {name!r} has no help"
        assert options[name].help.startswith(info.description)
        assert options[name].default is None  # a flag overrides the recipe file only when given


def test_old_flag_names_still_work():
    opts = {p.name: (p.opts, getattr(p, "secondary_opts", [])) for p in _train_command().params}
    assert opts["train"][0] == ["--train"] and opts["casing"] == (["--casing"], ["--no-casing"])
    assert opts["group_by_length"] == (["--group-by-length"], ["--ungrouped"])
    assert opts["cuda_graphs"] == (["--cuda-graphs"], ["--eager"])
    assert opts["json_out"][0] == ["--json"] and opts["resume"][0] == ["--resume"]


def test_a_flag_reaches_the_recipe_and_its_range():
    # adam_beta1 had no flag before the options were generated; its range comes from the schema
    result = CliRunner().invoke(app, ["train", "--adam-beta1", "1.5", "--max-train-sentences", "4"])
    assert isinstance(result.exception, NertuneError)
    assert "recipe field 'adam_beta1' (--adam-beta1)" in str(result.exception) and "less than 1" in str(result.exception)
    result = CliRunner().invoke(app, ["train", "--lr-scheduler", "cosine"])
    assert "'linear' or 'constant'" in str(result.exception)
