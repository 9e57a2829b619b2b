"""The fast path's gradient equals the literal batch-1 x accumulation-16 recipe's.

Dropout off, gradients compared before clipping (not weights after Adam, which
hide scale errors), for both accumulation semantics and for any cut of the
16 sentences into forward passes.
"""

from __future__ import annotations

import pytest
import torch

from nertune.data.conll import read_conll
from nertune.data.splits import build_labels
from nertune.model.load import load_for_training, load_tokenizer
from nertune.model.loss import window_weights
from nertune.model.word_scores import build_windows
from nertune.training.speed.embedding_grad import KeptEmbeddingGradient
from nertune.training.step import forward_backward


@pytest.fixture(scope="module")
def setup(conll_files):
    train = read_conll(conll_files["train"])
    labels = build_labels([train])
    label2id = {label: i for i, label in enumerate(labels)}
    sentences = train.sentences[100:116]  # 16 sentences of mixed lengths
    tokenizer = load_tokenizer("embedded-minilm")
    torch.manual_seed(0)
    model = load_for_training("embedded-minilm", labels).eval()  # dropout off
    windows = build_windows(tokenizer, [s.words for s in sentences], 510, [[label2id[t] for t in s.tags] for s in sentences])
    return model, tokenizer, sentences, windows


def literal_gradient(model, tokenizer, sentences, windows, semantics):
    """One sentence at a time, unpadded, as the Trainer ran batch 1 x accumulation 16."""
    model.zero_grad(set_to_none=True)
    total_words = sum(len(s.words) for s in sentences)
    for window in windows:
        input_ids = torch.tensor([window.input_ids])
        labels = torch.full_like(input_ids, -100)
        labels[0, window.first_pieces] = torch.tensor(window.labels)
        logits = model(input_ids=input_ids).logits
        if semantics == "sentence":
            loss = model(input_ids=input_ids, labels=labels).loss / 16  # HF's mean over the sentence
        else:
            loss = torch.nn.functional.cross_entropy(logits[0], labels[0], ignore_index=-100, reduction="sum") / total_words
        loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def fast_gradient(model, tokenizer, sentences, windows, semantics, max_tokens, pack=False):
    model.zero_grad(set_to_none=True)
    words = [len(s.words) for s in sentences]
    weights = window_weights(windows, words, semantics, 16, sum(words))
    forward_backward(model, windows, weights, tokenizer.pad_token_id, torch.device("cpu"), max_tokens, position_offset=0 if pack else None)
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("semantics", ["sentence", "token"])
@pytest.mark.parametrize(
    "max_tokens,pack", [(8192, False), (256, False), (8192, True), (256, True)]
)  # one pass or several; padded or packed rows
def test_fast_path_gradient_equals_literal(setup, semantics, max_tokens, pack):
    model, tokenizer, sentences, windows = setup
    literal = literal_gradient(model, tokenizer, sentences, windows, semantics)
    fast = fast_gradient(model, tokenizer, sentences, windows, semantics, max_tokens, pack)
    assert literal.keys() == fast.keys()
    literal_norm = torch.sqrt(sum((g**2).sum() for g in literal.values()))
    diff_norm = torch.sqrt(sum(((literal[n] - fast[n]) ** 2).sum() for n in literal))
    assert literal_norm > 0.1
    assert diff_norm / literal_norm < 1e-5, (semantics, float(diff_norm / literal_norm))
    for name in literal:
        torch.testing.assert_close(fast[name], literal[name], rtol=1e-4, atol=1e-6)


def test_the_two_semantics_differ(setup):
    model, tokenizer, sentences, windows = setup
    a = fast_gradient(model, tokenizer, sentences, windows, "sentence", 8192)
    b = fast_gradient(model, tokenizer, sentences, windows, "token", 8192)
    name = "classifier.weight"
    assert not torch.allclose(a[name], b[name], rtol=1e-3)


@pytest.mark.parametrize("max_tokens", [8192, 256])
def test_kept_embedding_gradient_is_the_dense_gradient(setup, max_tokens):
    """The CPU path (sparse embedding backward into a kept buffer) gives the literal recipe's gradient,
    over two steps, in the same buffer each step."""
    model, tokenizer, sentences, windows = setup
    literal = literal_gradient(model, tokenizer, sentences, windows, "sentence")
    model.zero_grad(set_to_none=True)
    kept = KeptEmbeddingGradient(model)
    try:
        words = [len(s.words) for s in sentences]
        weights = window_weights(windows, words, "sentence", 16, sum(words))
        addresses = []
        for _ in range(2):  # a second step must not carry the first's gradient
            model.zero_grad(set_to_none=True)
            kept.reset()
            forward_backward(model, windows, weights, tokenizer.pad_token_id, torch.device("cpu"), max_tokens)
            grad = model.get_input_embeddings().weight.grad
            assert grad.layout == torch.strided  # dense, as clipping and the fused AdamW need
            addresses.append(grad.data_ptr())
            fast = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
            assert fast.keys() == literal.keys()
            for name in literal:
                torch.testing.assert_close(fast[name], literal[name], rtol=1e-4, atol=1e-6)
        assert addresses[0] == addresses[1]
    finally:
        kept.close()
        model.zero_grad(set_to_none=True)
