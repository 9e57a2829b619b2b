"""Shared training windows (`shared_window_pieces`): consecutive sentences of a document in one input with the
context around the group, each sentence still its own words, labels, loss and CRF row; the gradient is the one
each sentence would give with that input of its own; steps never split a group."""

from __future__ import annotations

import dataclasses
import random
from types import SimpleNamespace

import pytest
import torch

from nertune.data.conll import read_conll
from nertune.data.context import CONFIG_FIELD
from nertune.data.features import (
    collate,
    distinct_inputs,
    encode_words,
    length_grouped_steps,
    shared_steps,
    shared_steps_per_epoch,
)
from nertune.data.packing import pack_layout
from nertune.data.splits import build_labels
from nertune.model.load import load_for_training, load_tokenizer
from nertune.model.loss import window_weights
from nertune.model.word_scores import build_windows
from nertune.training.loop import _share
from nertune.training.setup import shared_groups
from nertune.training.step import _windows_of_passes, forward_backward


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("embedded-minilm")


def _windows(tokenizer, sentences, context, max_pieces, shared, labels=None):
    config = SimpleNamespace(**{CONFIG_FIELD: context})
    labels = labels or [[1 + (i % 5) for i in range(len(s.words))] for s in sentences]
    documents = [s.document for s in sentences]
    return build_windows(tokenizer, [s.words for s in sentences], max_pieces, labels, config, documents, shared_pieces=shared)


@pytest.mark.parametrize("context, max_pieces", [(0, 510), (16, 510), (64, 510), (64, 48)])
def test_a_budget_too_small_to_pair_two_sentences_gives_todays_windows(tokenizer, documents_slice, context, max_pieces):
    alone = _windows(tokenizer, documents_slice, context, max_pieces, shared=0)
    shared = _windows(tokenizer, documents_slice, context, max_pieces, shared=1)
    assert shared == alone  # field for field; every input_key -1


@pytest.mark.parametrize("context, budget", [(0, 128), (64, 128), (64, 256), (16, 64)])
def test_shared_windows_on_a_real_document_slice(tokenizer, documents_slice, context, budget):
    sentences = documents_slice
    plain = encode_words(tokenizer, [s.words for s in sentences])
    windows = _windows(tokenizer, sentences, context, 510, budget)
    assert [w.sequence for w in windows] == list(range(len(sentences))), "each sentence owned once, in order"
    groups = shared_groups(windows)
    assert sum(groups, []) == list(range(len(sentences)))
    assert sum(len(g) > 1 for g in groups) >= 5, "the slice's short sentences share inputs"
    for group in groups:
        members = [windows[s] for s in group]
        assert len({sentences[s].document for s in group}) == 1, "never across a -DOCSTART- boundary"
        centre = [p for s in group for p in plain[s].piece_ids]
        assert len(group) == 1 or len(centre) <= min(budget, 510 - 2 * context)
        first = members[0]
        assert all(w.input_ids is first.input_ids for w in members), "one input for the group"
        assert len({w.input_key for w in members}) == 1 and (first.input_key >= 0) == (len(group) > 1)
        left = first.first_pieces[0] - 1
        assert first.input_ids[1 + left : 1 + left + len(centre)] == centre, "the group's sentences, whole and in order"
        right = len(first.input_ids) - 2 - left - len(centre)
        assert 0 <= left <= context and 0 <= right <= context and len(first.input_ids) <= 512
        document = sentences[group[0]].document
        before = [p for s in range(group[0]) if sentences[s].document == document for p in plain[s].piece_ids]
        after = [p for s in range(group[-1] + 1, len(sentences)) if sentences[s].document == document for p in plain[s].piece_ids]
        assert first.input_ids[1 : 1 + left] == before[len(before) - left :]
        assert first.input_ids[len(first.input_ids) - 1 - right : -1] == after[:right]
        if before and context:
            assert left > 0, "a group inside a document gets its left context"
        offset = 1 + left
        for s, window in zip(group, members):
            assert window.words == list(range(len(sentences[s].words)))
            assert window.first_pieces == [offset + start for start in plain[s].word_starts], "its own words' first pieces"
            # Labels at its own words only: one loss (and CRF) row per sentence, nothing across a boundary.
            labels = collate([window], tokenizer.pad_token_id)["labels"][0]
            assert (labels != -100).nonzero().flatten().tolist() == window.first_pieces
            offset += len(plain[s].piece_ids)
    if context == 64:
        today = _windows(tokenizer, sentences, context, 510, 0)
        inputs, _ = distinct_inputs(windows)
        assert sum(len(w.input_ids) for w in inputs) < 0.6 * sum(len(w.input_ids) for w in today)


def test_pack_layout_lays_a_shared_input_out_once(tokenizer, documents_slice):
    windows = _windows(tokenizer, documents_slice, 64, 510, 128)
    inputs, row_of = distinct_inputs(windows)
    assert len(inputs) < len(windows)
    packed = pack_layout(windows, tokenizer.pad_token_id, 2, width=512)
    assert int((packed.window_of_token >= 0).sum()) == sum(len(w.input_ids) for w in inputs)
    assert packed.unpack.shape[0] == len(windows)
    flat = packed.input_ids.flatten()
    used = set()
    for index, window in enumerate(windows):
        places = packed.unpack[index, : len(window.input_ids)]
        assert flat[places].tolist() == window.input_ids
        used.update(places.tolist())
    assert len(used) == sum(len(w.input_ids) for w in inputs), "each shared input's tokens in one place"


def test_a_pass_holds_every_window_of_its_inputs():
    row_of = [0, 0, 1, 2, 2, 2, 3]
    passes = [[2, 0], [3, 1]]  # passes of distinct inputs
    assert _windows_of_passes(passes, row_of) == [[0, 1, 3, 4, 5], [2, 6]]
    assert _windows_of_passes(passes, [0, 1, 2, 3]) is passes  # nothing shared: the passes as they were


@pytest.fixture(scope="module")
def gradient_setup(conll_files):
    train = read_conll(conll_files["train"])
    labels = build_labels([train])
    label2id = {label: i for i, label in enumerate(labels)}
    sentences = train.sentences[1:17]  # the first document's opening: short sentences that share inputs
    tokenizer = load_tokenizer("embedded-minilm")
    gold = [[label2id[t] for t in s.tags] for s in sentences]
    torch.manual_seed(0)
    models = {crf: load_for_training("embedded-minilm", labels, context_pieces=16, crf=crf).eval() for crf in (False, True)}
    windows = _windows(tokenizer, sentences, 16, 510, 96, labels=gold)
    assert len(distinct_inputs(windows)[0]) <= 6
    return models, tokenizer, sentences, windows


def _gradient(model, tokenizer, sentences, windows, max_tokens, pack):
    model.zero_grad(set_to_none=True)
    words = [len(s.words) for s in sentences]
    weights = window_weights(windows, words, "sentence", 16, sum(words))
    forward_backward(model, windows, weights, tokenizer.pad_token_id, torch.device("cpu"), max_tokens, position_offset=2 if pack else None)
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("crf", [False, True])
@pytest.mark.parametrize("max_tokens, pack", [(8192, False), (160, False), (160, True)])  # one pass; passes cut apart
def test_a_shared_input_gives_each_sentence_its_own_gradient(gradient_setup, crf, max_tokens, pack):
    """Against the same inputs given to each sentence apart (today's path, one input a window), whose gradient
    tests/model/test_gradient.py and test_crf.py hold to the literal recipe's."""
    models, tokenizer, sentences, windows = gradient_setup
    model = models[crf]
    apart = [dataclasses.replace(w, input_ids=list(w.input_ids), input_key=-1) for w in windows]
    expected = _gradient(model, tokenizer, sentences, apart, max_tokens, pack)
    got = _gradient(model, tokenizer, sentences, windows, max_tokens, pack)
    assert expected.keys() == got.keys()
    assert torch.sqrt(sum((g**2).sum() for g in expected.values())) > 0.1
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6)


def test_shared_steps_keep_groups_whole_and_their_count_is_known():
    rng = random.Random(0)
    sizes = [rng.choice([1, 1, 2, 3, 5, 7, 16]) for _ in range(300)]
    groups, start = [], 0
    for size in sizes:
        groups.append(list(range(start, start + size)))
        start += size
    group_of = {s: g for g, members in enumerate(groups) for s in members}
    counts = set()
    for seed in range(5):
        steps = shared_steps(groups, 16, random.Random(seed))
        counts.add(len(steps))
        assert sorted(s for step in steps for s in step) == list(range(start)), "every sentence once an epoch"
        for step in steps:
            assert len(step) <= 16
            seen = [group_of[s] for s in step]
            for g in set(seen):  # whole, and contiguous in the step
                assert step[seen.index(g) : seen.index(g) + len(groups[g])] == groups[g]
        assert sum(len(step) < 12 for step in steps) <= 2, "first-fit leaves steps nearly full"
    assert counts == {shared_steps_per_epoch(sizes, 16)}
    assert shared_steps(groups, 16, random.Random(1)) != shared_steps(groups, 16, random.Random(2))


def test_shared_steps_of_single_sentences_are_todays_random_steps():
    groups = [[i] for i in range(50)]
    assert shared_steps(groups, 16, random.Random(3)) == length_grouped_steps([0] * 50, 16, random.Random(3), group_by_length=False)
    odd = [[3 * i + 1] for i in range(50)]  # groups name sentences, not their own indices
    assert sorted(s for step in shared_steps(odd, 16, random.Random(3)) for s in step) == sum(odd, [])
    assert shared_steps_per_epoch([1] * 50, 16) == 4


def test_processes_share_a_step_by_whole_groups():
    groups = [[0, 1, 2], [3], [4, 5], [6, 7, 8, 9], [10]]
    group_of = [g for g, members in enumerate(groups) for _ in members]
    step = [4, 5, 0, 1, 2, 10, 6, 7, 8, 9, 3]
    shares = [
        _share(SimpleNamespace(world=3, groups=groups, group_of=group_of, accelerator=SimpleNamespace(process_index=p)), step)
        for p in range(3)
    ]
    assert shares == [[4, 5, 3], [0, 1, 2], [10, 6, 7, 8, 9]]  # whole groups, each to the least loaded so far
    alone = SimpleNamespace(world=2, groups=None, accelerator=SimpleNamespace(process_index=1))
    assert _share(alone, step) == step[1::2]
