"""A saved model carries the sha256 of its weights; a truncated or altered file is a clear error on load."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from nertune.errors import NertuneError
from nertune.model.load import load_trained
from nertune.tag.tagger import Tagger
from tests.conftest import run_cli


@pytest.fixture
def model_copy(tiny_model, tmp_path):
    """A private copy of the shared tiny model, free to damage."""
    return shutil.copytree(tiny_model, tmp_path / "model", ignore=shutil.ignore_patterns("*.png", "checkpoints"))


def damage(path, how: str) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        if how == "truncate":
            handle.truncate(size - 4096)
        else:  # one bit, deep inside a tensor: transformers alone would load it without a word
            handle.seek(size // 2)
            byte = handle.read(1)[0]
            handle.seek(size // 2)
            handle.write(bytes([byte ^ 1]))


def test_manifest_holds_the_sha256_of_every_weight_file(tiny_model):
    manifest = json.loads((tiny_model / "manifest.json").read_text())
    assert manifest["sha256"] == {"model.safetensors": hashlib.sha256((tiny_model / "model.safetensors").read_bytes()).hexdigest()}


def test_an_intact_copy_loads(model_copy):
    assert load_trained(model_copy).config.id2label[0] == "O"


@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_damaged_weights_fail_naming_the_file(model_copy, how):
    weights = model_copy / "model.safetensors"
    damage(weights, how)
    for load in (load_trained, Tagger.load):
        with pytest.raises(NertuneError) as error:
            load(model_copy)
        assert str(error.value) == (
            f"{weights}: weight file model.safetensors does not match its sha256 in manifest.json "
            "(truncated or altered) — fix: copy the model directory again or re-train"
        )


def test_missing_weights_and_broken_manifest(model_copy):
    (model_copy / "manifest.json").write_text('{"sha256": ')
    with pytest.raises(NertuneError, match="manifest.json is unreadable"):
        load_trained(model_copy)
    (model_copy / "manifest.json").write_text(json.dumps({"format": 1, "sha256": {"model.safetensors": "0" * 64}}))
    (model_copy / "model.safetensors").unlink()
    with pytest.raises(NertuneError, match="weight file model.safetensors is missing"):
        load_trained(model_copy)


def test_the_cli_says_it_in_one_line_with_exit_2(model_copy, conll_files):
    weights = model_copy / "model.safetensors"
    damage(weights, "flip")
    expected = f"error: {weights}: weight file model.safetensors does not match its sha256 in manifest.json (truncated or altered)"
    result = run_cli("predict", str(model_copy), "--text", "EU rejects German call to boycott British lamb .")
    assert result.returncode == 2 and result.stdout == ""
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        expected + " — fix: copy the model directory again or re-train"
    ]
    # Fine-tuning further from a damaged model stops before any training.
    result = run_cli(
        "train",
        "--model",
        str(model_copy),
        "--max-train-sentences",
        "8",
        "--max-eval-sentences",
        "8",
        "--epochs",
        "1",
        "--output-dir",
        str(model_copy.parent / "run"),
        "--no-progress",
    )
    assert result.returncode == 2 and expected in result.stderr and f"training {model_copy}" not in result.stderr
