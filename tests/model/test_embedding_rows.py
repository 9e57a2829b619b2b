"""Training only the used word-embedding rows gives the same weights as training the whole table."""

from __future__ import annotations

import pytest
import torch

from nertune.data.conll import read_conll
from nertune.data.splits import build_labels
from nertune.errors import NertuneError
from nertune.model.load import load_for_training, load_tokenizer, load_trained, save_model
from nertune.model.loss import window_weights
from nertune.model.word_scores import build_windows
from nertune.training.checkpoint import _check_moments_fit
from nertune.training.speed.embedding_grad import KeptEmbeddingGradient
from nertune.training.speed.embedding_rows import UsedRowsEmbedding, train_used_rows_only
from nertune.training.step import forward_backward


@pytest.fixture(scope="module")
def data(conll_files):
    train = read_conll(conll_files["train"])
    validation = read_conll(conll_files["validation"])
    labels = build_labels([train])
    label2id = {label: i for i, label in enumerate(labels)}
    tokenizer = load_tokenizer("embedded-minilm")
    sentences = train.sentences[100:116]
    windows = build_windows(tokenizer, [s.words for s in sentences], 510, [[label2id[t] for t in s.tags] for s in sentences])
    return labels, tokenizer, sentences, windows, validation.sentences[:32]


def fresh_model(labels):
    torch.manual_seed(0)  # the same classifier head each time
    return load_for_training("embedded-minilm", labels).eval()  # dropout off: both runs see the same forward


def train_two_steps(model, tokenizer, sentences, windows, kept: bool = False):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0, fused=True)
    gradient = KeptEmbeddingGradient(model) if kept else None
    for half in (slice(0, 8), slice(8, 16)):  # two steps of 8 sentences each
        step_windows = [w for w in windows if w.sequence in range(16)[half]]
        words = [len(s.words) for s in sentences]
        weights = window_weights(step_windows, words, "sentence", 8, sum(words[half]))
        forward_backward(model, step_windows, weights, tokenizer.pad_token_id, torch.device("cpu"), 8192)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if gradient:
            gradient.reset()
    if gradient:
        gradient.close()


def test_used_rows_train_to_the_same_weights(data):
    labels, tokenizer, sentences, windows, _ = data
    full = fresh_model(labels)
    train_two_steps(full, tokenizer, sentences, windows)

    compact = fresh_model(labels)
    loaded = compact.get_input_embeddings().weight.detach().clone()
    used = {i for w in windows for i in w.input_ids}
    assert train_used_rows_only(compact, used, weight_decay=0.0)
    embedding = compact.get_input_embeddings()
    assert isinstance(embedding, UsedRowsEmbedding) and embedding.weight.shape[0] == len(used | {tokenizer.pad_token_id})
    train_two_steps(compact, tokenizer, sentences, windows, kept=True)

    expected, got = full.state_dict(), compact.state_dict()
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)
    table = got["bert.embeddings.word_embeddings.weight"]
    moved = sorted(used - {tokenizer.cls_token_id, tokenizer.sep_token_id})[:50]
    assert not torch.equal(table[moved], loaded[moved])  # the used rows trained...
    unused = torch.ones(len(table), dtype=torch.bool)
    unused[sorted(used)] = False
    assert torch.equal(table[unused], loaded[unused])  # ...the others are exactly as loaded


def test_saved_model_is_the_ordinary_one_and_unseen_ids_read_the_loaded_table(data, tmp_path):
    labels, tokenizer, sentences, windows, validation = data
    model = fresh_model(labels)
    used = {i for w in windows for i in w.input_ids}
    train_used_rows_only(model, used, weight_decay=0.0)
    train_two_steps(model, tokenizer, sentences, windows)

    other = build_windows(tokenizer, [s.words for s in validation], 510, None)
    assert any(i not in used for w in other for i in w.input_ids)  # the check below covers unseen ids
    batch = torch.tensor([other[0].input_ids + other[1].input_ids])
    with torch.no_grad():
        before = model(input_ids=batch).logits
    save_model(model, tokenizer, tmp_path / "model")
    reloaded = load_trained(tmp_path / "model").eval()
    assert type(reloaded.get_input_embeddings()) is torch.nn.Embedding
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=batch).logits, before)

    # and back: a checkpoint's full table loads into the compact module
    again = fresh_model(labels)
    train_used_rows_only(again, used, weight_decay=0.0)
    again.load_state_dict(reloaded.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids=batch).logits, before)


def test_weight_decay_keeps_the_whole_table(data):
    labels = data[0]
    model = fresh_model(labels)
    assert not train_used_rows_only(model, {1, 2, 3}, weight_decay=0.01)  # decay moves every row
    assert type(model.get_input_embeddings()) is torch.nn.Embedding


def test_resume_refuses_moments_that_do_not_fit(tmp_path):
    """A checkpoint written with the whole table (an older nertune) cannot feed the used rows' moments."""
    rows = torch.nn.Parameter(torch.zeros(3, 4))
    optimizer = torch.optim.AdamW([rows])
    _check_moments_fit({"state": {0: {"exp_avg": torch.zeros(3, 4)}}}, optimizer, tmp_path / "optimizer.safetensors")
    with pytest.raises(NertuneError, match="do not fit") as error:
        _check_moments_fit({"state": {0: {"exp_avg": torch.zeros(5, 4)}}}, optimizer, tmp_path / "optimizer.safetensors")
    assert "optimizer.safetensors" in str(error.value.path)
