"""A tiny real run end to end: CLI, output directory, transformers pipeline."""

from __future__ import annotations

import json
import re
import shutil

from transformers import pipeline

import nertune
from tests.conftest import run_cli


def test_cli_help_lists_the_train_flags():
    result = run_cli("train", "--help")
    assert result.returncode == 0
    for flag in (
        "--epochs",
        "--learning-rate",
        "--batch-size",
        "--grad-accum",
        "--seed",
        "--max-train-sentences",
        "--max-eval-sentences",
        "--recipe",
        "--no-pack",
        "--group-by-length",
        "--ungrouped",
        "--cuda-graphs",
        "--eager",
    ):
        assert flag in result.stdout


def test_run_directory_is_complete(tiny_model):
    names = {p.name for p in tiny_model.iterdir()}
    assert {
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "metrics.json",
        "README.md",
        "train_log.csv",
        "recipe.yaml",
        "manifest.json",
    } <= names
    assert not any(n.endswith((".bin", ".pt", ".pth", ".tmp")) for n in names)
    metrics = json.loads((tiny_model / "metrics.json").read_text())
    assert metrics["epochs"][0]["epoch"] == 1
    for split in ("validation", "test"):
        assert set(metrics[split]) >= {"loss", "precision", "recall", "f1", "accuracy", "per_type"}
        assert 0 <= metrics[split]["f1"] <= 1
    assert metrics["world_size"] == 1 and metrics["train_seconds"] > 0
    assert set(metrics["data_md5"]) == {"train", "validation", "test"}
    assert metrics["recipe"]["learning_rate"] == 3e-4 and metrics["recipe"]["grad_accum"] == 16
    config = json.loads((tiny_model / "config.json").read_text())
    assert config["id2label"]["0"] == "O" and "B-PER" in config["label2id"]
    card = (tiny_model / "README.md").read_text()
    assert "learning_rate: 0.0003" in card and "| Training Loss | Epoch |" in card


def test_output_loads_in_transformers_pipeline_with_real_labels(tiny_model):
    ner = pipeline("token-classification", model=str(tiny_model), device="cpu")
    out = ner("EU rejects German call to boycott British lamb .")
    assert out, "the tiny model should tag something"
    assert all(not e["entity"].startswith("LABEL_") for e in out)
    assert {e["entity"] for e in out} <= {"B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"}


def test_python_api_trains_and_returns_metrics(tmp_path, capsys):
    metrics = nertune.train(max_train_sentences=16, max_eval_sentences=8, epochs=1, output_dir=str(tmp_path / "api"), progress=False)
    assert metrics["test"]["accuracy"] > 0
    assert (tmp_path / "api" / "model.safetensors").exists()
    assert re.search(r"16 sentences per optimizer step,\s+1 epoch\s+\(1\s+step\),", capsys.readouterr().err)  # not "1 epochs (1 steps)"


def test_python_dash_m_works():
    result = run_cli("--help")
    assert result.returncode == 0 and "train" in result.stdout


def test_a_model_folder_with_only_pickled_weights_is_refused(tmp_path, minilm):
    folder = tmp_path / "pickled"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        shutil.copy(minilm / name, folder / name)
    (folder / "pytorch_model.bin").write_bytes(b"not loaded: nertune never unpickles weights")
    result = run_cli("train", "--model", str(folder), "--max-train-sentences", "8", "--epochs", "1", "--no-progress")
    assert result.returncode == 2
    assert "safetensors" in result.stderr and "Traceback" not in result.stderr
