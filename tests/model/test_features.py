"""Words to wordpieces: first-subword labels, dropped words, windows that cover everything."""

from __future__ import annotations

import pytest

from nertune.data.features import collate, encode_words, make_windows, window_spans
from nertune.model.load import load_tokenizer
from nertune.model.word_scores import share_out


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("embedded-minilm")


def test_labels_sit_on_the_first_subword_only(tokenizer):
    words = ["EU", "rejects", "U.S.", "Blackburn"]
    [enc] = encode_words(tokenizer, [words])
    [window] = make_windows([enc], tokenizer.cls_token_id, tokenizer.sep_token_id, 510, label_ids=[[5, 0, 1, 7]])
    batch = collate([window], tokenizer.pad_token_id)
    labelled = (batch["labels"][0] != -100).nonzero().flatten().tolist()
    assert len(labelled) == 4
    assert batch["labels"][0, labelled].tolist() == [5, 0, 1, 7]
    # "rejects" is several pieces; only its first carries the label
    pieces = tokenizer.convert_ids_to_tokens(batch["input_ids"][0, labelled].tolist())
    assert pieces[0] == "eu" and pieces[2] == "u"
    assert batch["input_ids"].shape[1] % 8 == 0


def test_a_word_with_no_wordpieces_still_gets_one(tokenizer):
    [enc] = encode_words(tokenizer, [["a", "\u200b", "b"]])
    assert len(enc.word_starts) == 3
    assert enc.piece_ids[enc.word_starts[1]] == tokenizer.unk_token_id


def test_window_spans_cover_and_overlap():
    spans = window_spans(1000, 510, 255)
    assert spans[0] == (0, 510) and spans[-1][1] == 1000
    assert all(b[0] < a[1] for a, b in zip(spans, spans[1:]))


def test_long_sentence_every_word_owned_once_and_never_truncated(tokenizer):
    words = [f"word{i}" for i in range(700)]  # > 512 wordpieces
    [enc] = encode_words(tokenizer, [words])
    assert len(enc.piece_ids) > 1000
    windows = make_windows([enc], tokenizer.cls_token_id, tokenizer.sep_token_id, 510, label_ids=[list(range(700))])
    assert len(windows) > 1
    owned = sorted(w for window in windows for w in window.words)
    assert owned == list(range(700))
    for window in windows:
        assert len(window.input_ids) <= 512
        # each owned word's position points at its own first piece
        for position, word in zip(window.first_pieces, window.words):
            assert window.input_ids[position] == enc.piece_ids[enc.word_starts[word]]


def test_share_out_splits_the_widest_pass_until_every_session_has_one():
    assert share_out([[1, 2, 3, 4, 5]], 2) == [[1, 3, 5], [2, 4]]  # rows dealt in turn: both halves about as wide
    assert share_out([[1, 2, 3, 4]], 4) == [[1], [3], [2], [4]]
    assert share_out([[1, 2], [3, 4, 5]], 2) == [[1, 2], [3, 4, 5]]  # enough passes already
    assert share_out([[1]], 2) == [[1]] and share_out([], 2) == []  # nothing to split
    assert share_out([[1, 2, 3]], 1) == [[1, 2, 3]]
