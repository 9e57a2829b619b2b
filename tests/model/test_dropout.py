"""The cheap-mask dropout for CPU training (training/speed/dropout.py): the same dropout, drawn from fewer random bits."""

from __future__ import annotations

import json

import torch
from torch import nn
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from nertune.data.conll import read_conll
from nertune.data.features import collate
from nertune.data.packing import pack, packed_logits
from nertune.model.load import load_for_training, load_tokenizer
from nertune.model.positions import packing_offset
from nertune.model.word_scores import build_windows
from nertune.training.speed.dropout import ATTENTION, CheapDropout, cheap_dropout, cheap_dropout_attention, use_cheap_dropout


def test_cheap_dropout_keeps_the_right_share_and_scales_exactly():
    torch.manual_seed(0)
    x = torch.ones(4, 12, 128, 128)
    y = cheap_dropout(x, 0.1)
    kept = y != 0
    share = kept.float().mean().item()
    assert abs(share - (1 - 6554 / 65536)) < 0.002  # 786k draws: the standard error is 0.0003
    assert torch.all(y[kept] == 65536 / (65536 - 6554))  # the exact 1 / (1 - p') of p' = 6554 / 65536
    assert abs(y.mean().item() - 1.0) < 0.005  # the expectation is kept
    # Every 16-bit lane is used, and none is stuck: the kept share of each lane position is the same.
    by_lane = kept.flatten()[: 4 * 100_000].view(-1, 4).float().mean(0)
    assert torch.all((by_lane - share).abs() < 0.01), by_lane


def test_cheap_dropout_is_seeded_and_leaves_eval_and_p0_alone():
    x = torch.randn(64, 384)
    torch.manual_seed(3)
    a = cheap_dropout(x, 0.1)
    torch.manual_seed(3)
    assert torch.equal(cheap_dropout(x, 0.1), a)
    assert torch.equal(cheap_dropout(x, 0.1, training=False), x)
    assert torch.equal(cheap_dropout(x, 0.0), x)
    assert torch.equal(cheap_dropout(x, 1.0), torch.zeros_like(x))


def test_cheap_dropout_gradient_is_the_mask():
    torch.manual_seed(1)
    x = torch.randn(32, 16, requires_grad=True)
    y = cheap_dropout(x, 0.25)
    y.sum().backward()
    scale = 65536 / (65536 - 16384)
    torch.testing.assert_close(x.grad, (y.detach() != 0).float() * scale)


def test_spelled_out_attention_equals_sdpa_with_no_dropout_drawn():
    """p = 1e-6 rounds to no dropped 16-bit value: the math path must then give SDPA's output exactly."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 4, 20, 8) for _ in range(3))
    module = nn.Module()
    module.is_causal = False
    float_mask = torch.zeros(3, 1, 20, 20).masked_fill_(torch.rand(3, 1, 20, 20) < 0.3, torch.finfo(torch.float32).min)
    float_mask[..., torch.arange(20), torch.arange(20)] = 0  # every row may attend to itself
    for mask in (float_mask, float_mask == 0):  # the packed rows' float mask, and SDPA's boolean one
        ours, _ = cheap_dropout_attention(module, q, k, v, mask, dropout=1e-6)
        theirs, _ = sdpa_attention_forward(module, q, k, v, mask, dropout=0.0)
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_the_model_takes_the_cheap_dropouts_and_saves_as_before(tmp_path):
    model = load_for_training("embedded-minilm", ["O", "B-PER", "I-PER"])
    plain = sum(type(m) is nn.Dropout for m in model.modules())
    assert plain > 0 and use_cheap_dropout(model)
    assert sum(type(m) is nn.Dropout for m in model.modules()) == 0
    assert sum(isinstance(m, CheapDropout) for m in model.modules()) == plain
    assert all(m.training == model.training for m in model.modules())  # swapped in the mode they replace
    assert model.config._attn_implementation == ATTENTION and packing_offset(model) == 0
    model.save_pretrained(tmp_path)
    assert "nertune" not in json.dumps(json.loads((tmp_path / "config.json").read_text()))  # loads anywhere as before


def test_eval_logits_are_unchanged_and_training_ones_are_dropped_out(conll_files):
    tokenizer = load_tokenizer("embedded-minilm")
    sentences = read_conll(conll_files["train"]).sentences[:12]
    windows = build_windows(tokenizer, [s.words for s in sentences], 510)
    model = load_for_training("embedded-minilm", ["O", "B-PER", "I-PER"]).eval()
    inputs, unpack = pack(windows, tokenizer.pad_token_id, 0)
    real = collate(windows, tokenizer.pad_token_id, multiple=1)["attention_mask"].bool()
    with torch.no_grad():
        before = packed_logits(model, inputs, unpack, "cpu")
        use_cheap_dropout(model)
        after = packed_logits(model, inputs, unpack, "cpu")
        model.train()
        torch.manual_seed(0)
        trained = packed_logits(model, inputs, unpack, "cpu")
    torch.testing.assert_close(after[real], before[real], rtol=1e-4, atol=1e-5)
    assert (trained[real] - before[real]).abs().max() > 1e-3  # dropout is on in training
