"""Casing classes as token types: the class of a word, the model unchanged at step 0, casing learned,
and the same classes fed by evaluate, the Tagger and an ONNX export (one code path)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from transformers import AutoConfig, DistilBertConfig, DistilBertForTokenClassification

from nertune.data.casing import CONFIG_FIELD, add_casing, word_class
from nertune.data.conll import read_conll
from nertune.data.features import collate, model_inputs
from nertune.errors import NertuneError
from nertune.evaluate.model_scores import evaluate_sentences
from nertune.model.load import load_for_training, load_tokenizer, load_trained
from nertune.model.word_scores import build_windows
from nertune.tag.tagger import Tagger

LABELS = ["O", "B-ORG", "I-ORG", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("embedded-minilm")


@pytest.mark.parametrize(
    "word, expected",
    [
        (",", 0),
        ("--", 0),
        ("(", 0),
        ("apple", 1),
        ("the", 1),
        ("中国", 1),
        ("Apple", 2),
        ("A", 2),
        ("Mr.", 2),
        ("Zürich", 2),
        ("EU", 3),
        ("U.S.", 3),
        ("BRUSSELS", 3),
        ("McDonald", 4),
        ("iPhone", 4),
        ("O'Neil", 4),
        ("1996-08-22", 5),
        ("F1", 5),
        ("3rd", 5),
    ],
)
def test_word_class(word, expected):
    assert word_class(word) == expected


def test_no_casing_field_means_all_zero_token_types(tokenizer, minilm):
    config = AutoConfig.from_pretrained(minilm)
    assert getattr(config, CONFIG_FIELD, None) is None and config.type_vocab_size == 2
    windows = build_windows(tokenizer, [["Apple", "sold", "iPhones", "in", "1996"]], 510, config=config)
    assert windows[0].token_type_ids == []
    assert "token_type_ids" not in collate(windows, tokenizer.pad_token_id)  # the model uses its all-zero default


def test_each_piece_carries_its_words_class(tokenizer):
    model = load_for_training("embedded-minilm", LABELS, casing=True)
    words = [["Apple", "sold", "iPhones", "in", "the", "U.S.", "in", "1996", "."], ["apple"]]
    windows = build_windows(tokenizer, words, 510, config=model.config)
    pieces = tokenizer.convert_ids_to_tokens(windows[0].input_ids)
    assert pieces == ["[CLS]", "apple", "sold", "iphone", "##s", "in", "the", "u", ".", "s", ".", "in", "1996", ".", "[SEP]"]
    assert windows[0].token_type_ids == [0, 2, 1, 4, 4, 1, 1, 3, 3, 3, 3, 1, 5, 0, 0]
    batch = collate(windows, tokenizer.pad_token_id)
    assert batch["token_type_ids"][1].tolist()[:3] == [0, 1, 0]  # padding is type 0
    assert batch["token_type_ids"].shape == batch["input_ids"].shape


def test_casing_rows_leave_the_model_unchanged_at_step_0(tokenizer):
    torch.manual_seed(0)
    plain = load_for_training("embedded-minilm", LABELS).eval()
    torch.manual_seed(0)  # the same fresh head
    cased = load_for_training("embedded-minilm", LABELS, casing=True).eval()
    assert cased.config.type_vocab_size == 6 and getattr(cased.config, CONFIG_FIELD) == "shape6"
    rows = cased.bert.embeddings.token_type_embeddings.weight
    assert torch.equal(rows, plain.bert.embeddings.token_type_embeddings.weight[0].expand_as(rows))
    words = [["Apple", "met", "McDonald", "in", "BRUSSELS", "on", "1996-08-22", "."], ["apple", "met", "mcdonald"]]
    with torch.no_grad():
        a = plain(**model_inputs(collate(build_windows(tokenizer, words, 510, config=plain.config), 0), "cpu")).logits
        cased_batch = collate(build_windows(tokenizer, words, 510, config=cased.config), 0)
        assert cased_batch["token_type_ids"].any()
        b = cased(**model_inputs(cased_batch, "cpu")).logits
    assert torch.equal(a, b)


def test_casing_needs_token_type_embeddings():
    tiny = DistilBertForTokenClassification(DistilBertConfig(vocab_size=100, dim=32, hidden_dim=64, n_layers=1, n_heads=2))
    with pytest.raises(NertuneError, match="no token type embeddings") as error:
        add_casing(tiny)
    assert "casing: false" in error.value.fix


def test_trained_casing_model_tells_apple_from_apple(featured_model):
    casing_model = featured_model  # make train's recipe: casing classes with context and a CRF
    recorded = yaml.safe_load((casing_model / "recipe.yaml").read_text())
    assert (recorded["casing"], recorded["learning_rate"], recorded["epochs"]) == (True, 1e-4, 1)
    config = json.loads((casing_model / "config.json").read_text())
    assert config[CONFIG_FIELD] == "shape6" and config["type_vocab_size"] == 6
    tagger = Tagger.load(casing_model, device="cpu")
    lower, title = tagger.word_logits([["apple", "said", "so"], ["Apple", "said", "so"]])
    assert not torch.allclose(lower[0], title[0], atol=1e-4)
    rows = tagger.model.bert.embeddings.token_type_embeddings.weight
    assert not torch.allclose(rows[1], rows[2])  # the rows moved apart in training


def test_evaluate_tagger_and_onnx_give_the_same_tags(featured_model, featured_onnx, conll_files, tokenizer):
    sentences = read_conll(conll_files["validation"]).sentences[:60]
    words, documents = [s.words for s in sentences], [s.document for s in sentences]
    model = load_trained(featured_model)
    evaluated = evaluate_sentences(model, tokenizer, sentences, constrain=True)["predictions"]
    tagger = Tagger.load(featured_model, device="cpu", precision="fp32")  # as evaluate_sentences and the fp32 export run
    assert tagger.tag_words_batch(words, constrain=True, documents=documents) == evaluated

    onnx_tagger = Tagger.load(featured_onnx)
    assert "token_type_ids" in onnx_tagger.model.inputs
    assert json.loads((featured_onnx / "config.json").read_text())[CONFIG_FIELD] == "shape6"
    ours, theirs = onnx_tagger.word_logits(words, documents), tagger.word_logits(words, documents)
    assert max(float((a - b).abs().max()) for a, b in zip(ours, theirs)) < 1e-3
    assert onnx_tagger.tag_words_batch(words, constrain=True, documents=documents) == evaluated
    assert onnx_tagger.tag_words_batch(words, constrain=False, documents=documents) == tagger.tag_words_batch(
        words, constrain=False, documents=documents
    )
