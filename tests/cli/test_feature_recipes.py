"""The feature recipes and flags: each recipe is the seed plus exactly its change, flags override them,
no recipe is still the seed, and an encoder without token types is refused casing with one line."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from transformers import DistilBertConfig, DistilBertForTokenClassification

from nertune.errors import NertuneError
from nertune.training.api import train
from nertune.training.checkpoint import FORMAT, STATE, find_checkpoint
from nertune.training.recipe import Recipe, load_recipe
from tests.conftest import run_cli

GROUPED = {"group_by_length": True, "pack": False}  # measured before packing: the files pin the steps they were run with
MPNET_CONTEXT_CRF = {"model": "embedded-mpnet", "learning_rate": 5e-5, "warmup_ratio": 0.1, "context_pieces": 16, "crf": True}
CONTEXT_CRF = {"learning_rate": 1e-4, "warmup_ratio": 0.1, "casing": True, "context_pieces": 16, "crf": True, **GROUPED}


@pytest.mark.parametrize(
    "name, changes",
    [
        ("seed", {}),
        ("minilm-lr1e-4", {"learning_rate": 1e-4, "warmup_ratio": 0.1, **GROUPED}),
        ("minilm-casing", {"learning_rate": 1e-4, "warmup_ratio": 0.1, "casing": True, **GROUPED}),
        ("minilm-context", {"learning_rate": 1e-4, "warmup_ratio": 0.1, "casing": True, "context_pieces": 16, **GROUPED}),
        ("minilm-casing-crf", {"learning_rate": 1e-4, "warmup_ratio": 0.1, "casing": True, "crf": True, **GROUPED}),
        ("minilm-context-crf", {"learning_rate": 1e-4, "warmup_ratio": 0.1, "casing": True, "context_pieces": 16, "crf": True, **GROUPED}),
        ("minilm-context-crf-5ep", {**CONTEXT_CRF, "epochs": 5}),
        ("minilm-context-crf-5ep-avg2", {**CONTEXT_CRF, "epochs": 5, "average_epochs": 2}),
        ("minilm-context-crf-8ep", {**CONTEXT_CRF, "epochs": 8}),
        ("minilm-context-crf-distill", {**CONTEXT_CRF, "teacher": "runs/mpnet-context-crf-seed42-bf16cpu"}),
        (
            "minilm-context-crf-5ep-distill3",
            {**CONTEXT_CRF, "epochs": 5, "teacher": ",".join(f"runs/minilm-context-crf-5ep-seed{s}-bf16cpu" for s in (42, 43, 44))},
        ),
        ("minilm-context-crf-trainval", {**CONTEXT_CRF, "epochs": 5, "train_on_validation": True}),
        ("minilm-context-crf-8ep-trainval", {**CONTEXT_CRF, "epochs": 8, "train_on_validation": True}),
        ("minilm-context64-crf", {**CONTEXT_CRF, "context_pieces": 64}),
        ("minilm-context64-crf-5ep-shared128", {**CONTEXT_CRF, "context_pieces": 64, "epochs": 5, "shared_window_pieces": 128}),
        ("mpnet-seed", {"model": "embedded-mpnet"}),
        ("mpnet-context-crf", MPNET_CONTEXT_CRF),
        ("mpnet-context-crf-fold1of2", {**MPNET_CONTEXT_CRF, "hold_out": "1/2"}),
        ("mpnet-context-crf-fold2of2", {**MPNET_CONTEXT_CRF, "hold_out": "2/2"}),
        (
            "minilm-context-crf-5ep-crossfit-mpnet",
            {**CONTEXT_CRF, "epochs": 5, "teacher": ",".join(f"runs/mpnet-context-crf-fold{k}of2-seed42-bf16cpu" for k in (1, 2))},
        ),
    ],
)
def test_each_recipe_is_the_seed_plus_its_change(name, changes):
    seed = load_recipe("seed").model_dump()
    recipe = load_recipe(name).model_dump()
    assert {k: v for k, v in recipe.items() if v != seed[k]} == changes
    assert load_recipe(None).model_dump() == seed == Recipe().model_dump()  # `nertune train` with no recipe


def test_flags_override_the_feature_fields():
    assert load_recipe("minilm-context", {"casing": False, "context_pieces": 0}).model_dump() == load_recipe("minilm-lr1e-4").model_dump()
    assert load_recipe("minilm-casing-crf", {"crf": False}).model_dump() == load_recipe("minilm-casing").model_dump()
    result = run_cli("train", "--recipe", "minilm-context", "--context-pieces", "-1")
    assert result.returncode == 2 and "(--context-pieces)" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def tiny_distilbert(tmp_path_factory, minilm):
    """A small DistilBERT (no token type embeddings) with MiniLM's tokenizer, saved as safetensors."""
    out = tmp_path_factory.mktemp("distilbert")
    model = DistilBertForTokenClassification(DistilBertConfig(vocab_size=30522, dim=32, hidden_dim=64, n_layers=1, n_heads=2))
    model.save_pretrained(out, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (minilm / name).exists():
            shutil.copyfile(minilm / name, out / name)
    return out


def test_casing_on_an_encoder_without_token_types_is_refused(tiny_distilbert, tmp_path):
    with pytest.raises(NertuneError, match="has no token type embeddings") as error:
        train(model=str(tiny_distilbert), casing=True, max_train_sentences=16, epochs=1, output_dir=str(tmp_path / "run"), progress=False)
    assert "--no-casing" in str(error.value) and not (tmp_path / "run" / "model.safetensors").exists()


def test_no_casing_flag_turns_a_recipes_casing_off(tiny_distilbert, tmp_path):
    recipe = tmp_path / "casing.yaml"
    recipe.write_text(
        f"model: {tiny_distilbert}\ncasing: true\ncontext_pieces: 8\nepochs: 1\nmax_train_sentences: 16\nmax_eval_sentences: 8\n"
    )
    out = tmp_path / "run"
    result = run_cli(
        "train",
        "--recipe",
        str(recipe),
        "--no-casing",
        "--no-pack",
        "--group-by-length",
        "--output-dir",
        str(out),
        "--no-progress",
        "--sample",
        "",
    )
    assert result.returncode == 0, result.stderr
    recorded = yaml.safe_load((out / "recipe.yaml").read_text())
    assert recorded["casing"] is False and recorded["context_pieces"] == 8
    assert recorded["pack"] is False and recorded["group_by_length"] is True  # the step flags reach the recipe too
    config = yaml.safe_load((out / "config.json").read_text())  # JSON is YAML
    assert "nertune_casing" not in config and config["nertune_context_pieces"] == 8


def test_a_checkpoint_from_before_the_feature_fields_still_resumes(tmp_path):
    """A run interrupted before `casing` / `context_pieces` existed used their defaults: --resume accepts it."""
    fields = load_recipe("seed", {"output_dir": str(tmp_path)}).model_dump()
    old = {k: v for k, v in fields.items() if k not in ("casing", "context_pieces")}
    step = tmp_path / "checkpoints" / "step-10"
    step.mkdir(parents=True)
    (step / STATE).write_text(json.dumps({"format": FORMAT, "recipe": old, "data_md5": {"train": "x"}}))
    assert find_checkpoint(str(tmp_path), fields, {"train": "x"})[0] == step
    with pytest.raises(NertuneError, match="recipe field 'casing' is True but the interrupted run used False"):
        find_checkpoint(str(tmp_path), {**fields, "casing": True}, {"train": "x"})
