"""Packed rows (several windows a row, each masked to itself) compute what one window a row computes."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import AutoModelForTokenClassification, BertConfig, DistilBertConfig, RobertaConfig

from nertune.data.conll import read_conll
from nertune.data.features import Window, collate, model_inputs
from nertune.data.packing import pack, pack_rows, packed_logits, row_width
from nertune.data.splits import build_labels
from nertune.model.load import load_for_training, load_tokenizer
from nertune.model.positions import packing_offset
from nertune.model.word_scores import build_windows


@pytest.mark.parametrize("seed", range(20))
def test_pack_rows_places_every_window_once_and_never_overflows(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(3, 60) for _ in range(rng.randint(1, 40))]
    width = max(lengths)
    rows = pack_rows(lengths, width)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= width for row in rows)
    # first-fit decreasing: no two rows could have been one
    totals = sorted(sum(lengths[i] for i in row) for row in rows)
    assert len(rows) == 1 or totals[0] + totals[1] > width


@pytest.mark.parametrize("seed", range(20))
def test_row_width_never_carries_more_tokens_than_the_longest_window_width(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(3, 60) for _ in range(rng.randint(1, 40))]
    multiple = rng.choice([1, 8])
    width = row_width(lengths, multiple)
    longest = -(-max(lengths) // multiple) * multiple
    assert width >= longest and width % multiple == 0
    rows = pack_rows(lengths, width)
    assert all(sum(lengths[i] for i in row) <= width for row in rows)
    assert len(rows) * width <= len(pack_rows(lengths, longest)) * longest


def test_row_width_takes_a_wider_row_when_it_saves_one():
    # At width 50 these need 3 rows (150 tokens); at 51, two rows hold them all (102 tokens).
    assert len(pack_rows([50, 26, 25, 1], 50)) == 3
    assert row_width([50, 26, 25, 1]) == 51


@pytest.fixture(scope="module")
def casing_windows(conll_files):
    """Real sentences with casing token types, one of them long enough to be cut into several windows."""
    train = read_conll(conll_files["train"])
    labels = build_labels([train])
    tokenizer = load_tokenizer("embedded-minilm")
    model = load_for_training("embedded-minilm", labels, casing=True).eval()
    sentences = train.sentences[100:130]
    windows = build_windows(tokenizer, [s.words for s in sentences], 24, None, model.config)
    assert len(windows) > len(sentences) and any(w.token_type_ids for w in windows)
    return model, tokenizer, windows


def test_packed_logits_equal_one_window_a_row(casing_windows):
    model, tokenizer, windows = casing_windows
    assert packing_offset(model) == 0
    batch = collate(windows, tokenizer.pad_token_id, multiple=1)
    inputs, unpack = pack(windows, tokenizer.pad_token_id, 0)
    assert inputs["input_ids"].numel() < 0.8 * batch["input_ids"].numel()  # fewer tokens is the point
    assert int((inputs["input_ids"] != tokenizer.pad_token_id).sum()) == int(batch["attention_mask"].sum())
    with torch.no_grad():
        padded = model(**model_inputs(batch, "cpu")).logits
        packed = packed_logits(model, inputs, unpack, "cpu")
    assert packed.shape == padded.shape
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(packed[real], padded[real], rtol=1e-4, atol=1e-5)


def test_packed_logits_are_the_same_at_any_row_width(casing_windows):
    model, tokenizer, windows = casing_windows
    batch = collate(windows, tokenizer.pad_token_id, multiple=1)
    real = batch["attention_mask"].bool()
    total = sum(len(w.input_ids) for w in windows)
    with torch.no_grad():
        one_row = packed_logits(model, *pack(windows, tokenizer.pad_token_id, 0, width=total), "cpu")
        longest = packed_logits(model, *pack(windows, tokenizer.pad_token_id, 0, width=int(batch["input_ids"].shape[1])), "cpu")
    torch.testing.assert_close(one_row[real], longest[real], rtol=1e-4, atol=1e-5)


def test_packing_without_the_block_mask_would_differ(casing_windows):
    """The mask is what keeps windows apart: dropping it changes the logits (so the test above can fail)."""
    model, tokenizer, windows = casing_windows
    inputs, unpack = pack(windows, tokenizer.pad_token_id, 0)
    batch = collate(windows, tokenizer.pad_token_id, multiple=1)
    leaky = {**inputs, "attention_mask": torch.zeros_like(inputs["attention_mask"])}
    with torch.no_grad():
        good = packed_logits(model, inputs, unpack, "cpu")
        bad = packed_logits(model, leaky, unpack, "cpu")
    real = batch["attention_mask"].bool()
    assert (good[real] - bad[real]).abs().max() > 1e-2


def test_packing_is_only_used_where_positions_are_known():
    small = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, vocab_size=100)
    roberta = AutoModelForTokenClassification.from_config(RobertaConfig(**small, pad_token_id=1))
    assert packing_offset(roberta) == 2  # RoBERTa counts positions from padding_idx + 1
    relative = AutoModelForTokenClassification.from_config(BertConfig(**small, position_embedding_type="relative_key"))
    assert packing_offset(relative) is None
    distil = AutoModelForTokenClassification.from_config(DistilBertConfig(dim=32, n_layers=1, n_heads=2, hidden_dim=64, vocab_size=100))
    assert packing_offset(distil) is None  # takes no position ids


def test_packing_is_exact_for_roberta_positions():
    """RoBERTa's family numbers positions from padding_idx + 1: packed rows must too."""
    torch.manual_seed(0)
    config = RobertaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=100, pad_token_id=1)
    model = AutoModelForTokenClassification.from_config(config).eval()
    rng = random.Random(0)
    windows = [Window(i, [0, *(rng.randint(3, 99) for _ in range(rng.randint(1, 20))), 2], [], [], []) for i in range(12)]
    batch = collate(windows, 1, multiple=1)
    inputs, unpack = pack(windows, 1, packing_offset(model))
    with torch.no_grad():
        padded = model(**model_inputs(batch, "cpu")).logits
        packed = packed_logits(model, inputs, unpack, "cpu")
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(packed[real], padded[real], rtol=1e-4, atol=1e-5)
