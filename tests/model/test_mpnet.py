"""The embedded base-size MPNet: five packages join into one model folder, once; packing is exact for its
relative position bias; casing classes are refused in one line; a short run trains, saves and reloads it."""

from __future__ import annotations

import json

import pytest
import torch

from nertune.data.conll import read_conll
from nertune.data.embedded import MPNET_FILES, mpnet_dir, resolve_model
from nertune.data.features import collate, model_inputs
from nertune.data.packing import pack, packed_logits
from nertune.data.splits import build_labels
from nertune.errors import NertuneError
from nertune.model.load import check_safetensors, load_for_training, load_tokenizer, load_trained
from nertune.model.positions import max_pieces_for, packing_offset
from nertune.model.word_scores import build_windows
from nertune.training.api import train


def test_the_parts_unpack_once_into_the_cache_and_an_incomplete_folder_again(tmp_path, monkeypatch):
    monkeypatch.setenv("NERTUNE_CACHE", str(tmp_path))
    folder = mpnet_dir()
    assert folder.parent == tmp_path and sorted(p.name for p in folder.iterdir()) == sorted(MPNET_FILES)
    check_safetensors(folder / "model.safetensors")
    assert json.loads((folder / "config.json").read_text())["model_type"] == "mpnet"
    unpacked = (folder / "model.safetensors").stat().st_mtime_ns
    assert resolve_model("embedded-mpnet") == str(folder)
    assert (folder / "model.safetensors").stat().st_mtime_ns == unpacked  # the second call found it whole
    (folder / "vocab.txt").unlink()  # e.g. a cache cleaner took a file
    assert mpnet_dir() == folder and sorted(p.name for p in folder.iterdir()) == sorted(MPNET_FILES)
    # no staging folder or joined zip left behind (the lock file stays: removing it could let two processes in)
    assert sorted(p.name for p in tmp_path.iterdir() if p != folder) == [".embedded-mpnet-0.0.1.lock"]


@pytest.fixture(scope="module")
def mpnet(conll_files):
    train_file = read_conll(conll_files["train"])
    labels = build_labels([train_file])
    return load_for_training("embedded-mpnet", labels).eval(), load_tokenizer("embedded-mpnet"), train_file


def test_packed_logits_equal_one_window_a_row_under_the_relative_position_bias(mpnet):
    model, tokenizer, train_file = mpnet
    assert packing_offset(model) == tokenizer.pad_token_id + 1 == 2  # RoBERTa-style positions
    assert max_pieces_for(model, tokenizer) == 510
    sentences = train_file.sentences[100:130]
    windows = build_windows(tokenizer, [s.words for s in sentences], 24, None, model.config)
    assert len(windows) > len(sentences)  # one sentence is cut into several windows
    batch = collate(windows, tokenizer.pad_token_id, multiple=1)
    inputs, unpack = pack(windows, tokenizer.pad_token_id, packing_offset(model))
    assert inputs["input_ids"].numel() < 0.8 * batch["input_ids"].numel()
    with torch.no_grad():
        padded = model(**model_inputs(batch, "cpu")).logits
        packed = packed_logits(model, inputs, unpack, "cpu")
        shifted = inputs | {"position_ids": inputs["position_ids"] + 1}
        off_by_one = packed_logits(model, shifted, unpack, "cpu")
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(packed[real], padded[real], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(off_by_one[real], padded[real], rtol=1e-4, atol=1e-5)  # the check sees positions


def test_casing_classes_are_refused_in_one_line(tmp_path):
    with pytest.raises(NertuneError, match="'mpnet' has no token type embeddings") as error:
        train("minilm-context-crf", model="embedded-mpnet", max_train_sentences=16, output_dir=str(tmp_path / "run"), progress=False)
    assert "--no-casing" in str(error.value) and not (tmp_path / "run" / "model.safetensors").exists()


def test_a_short_run_with_context_and_crf_trains_saves_and_reloads(tmp_path):
    out = tmp_path / "run"
    metrics = train("mpnet-context-crf", max_train_sentences=16, max_eval_sentences=8, epochs=1, output_dir=str(out), progress=False)
    assert metrics["model"] == "embedded-mpnet" and metrics["recipe"]["context_pieces"] == 16
    assert metrics["peak_memory"]["host_rss_mib"] > 440  # the fp32 weights alone are 438 MB
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "mpnet" and config["nertune_crf"] is True and config["nertune_context_pieces"] == 16
    assert load_trained(out).config.model_type == "mpnet"
