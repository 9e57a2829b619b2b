"""Words to wordpieces: first-subword labels, dropped words, windows that cover everything."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def width(row: int) -> int:
    return row  # rows given as their widths


def cost(rows: list[int]) -> int:
    return len(rows) * max(rows)  # rows times padded width


def ends(passes: list[list[int]], sessions: int) -> int:
    """When the last pass ends, each pass in order on the first free session (the oracle's own simulation)."""
    free = [0] * sessions
    for rows in passes:
        free[free.index(min(free))] += cost(rows)
    return max(free)


def test_share_out_cuts_the_pass_that_ends_last_while_everything_ends_sooner():
    # 8 x 45 on one session; short rows in one pass and long in the other: 5 x 20 and 3 x 45; then the long pass
    # cut again: 100 on one session, 2 x 30 + 45 = 105 on the other (rows dealt in turn: 4 x 30 and 4 x 45 = 180)
    assert share_out([[10, 12, 15, 18, 20, 25, 30, 45]], 2, width) == [[10, 12, 15, 18, 20], [25, 30], [45]]
    assert share_out([[45, 10, 30, 12, 25, 15, 20, 18]], 2, width) == [[10, 12, 15, 18, 20], [25, 30], [45]]  # any order
    assert share_out([[5, 5, 5, 5]], 2, width) == [[5, 5], [5, 5]]
    assert share_out([[9, 9], [9, 9], [9, 9]], 2, width) == [[9, 9], [9, 9], [9], [9]]  # an odd pass out: cut it
    assert share_out([[9, 9, 9, 9], [1]], 2, width) == [[1], [9, 9], [9, 9]]
    assert share_out([[1], [2]], 2, width) == [[1], [2]]  # one row a pass: nothing to cut
    assert share_out([[1]], 2, width) == [[1]] and share_out([], 2, width) == []
    assert share_out([[1, 2, 3]], 1, width) == [[1, 2, 3]]  # one session: the passes as they are


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(1, 64), min_size=1, max_size=8), min_size=1, max_size=5), st.integers(2, 3))
def test_share_out_keeps_every_row_and_never_ends_later(passes, sessions):
    shared = share_out(passes, sessions, width)
    assert sorted(w for rows in shared for w in rows) == sorted(w for rows in passes for w in rows)
    assert all(shared) and ends(shared, sessions) <= ends(passes, sessions)
    if len(passes) == 1 and len(passes[0]) >= 2:  # one pass: at least as good as its best split in two, by brute force
        widths = passes[0]
        best = min(
            max(cost([w for w, side in zip(widths, sides) if side]), cost([w for w, side in zip(widths, sides) if not side]))
            for sides in itertools.product([True, False], repeat=len(widths))
            if 0 < sum(sides) < len(widths)
        )
        assert ends(shared, sessions) <= best
