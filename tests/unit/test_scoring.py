"""Scoring agrees with seqeval (both modes) and with conlleval's published rules.

Three independent witnesses: seqeval's own metrics, a from-the-rules reading
of conlleval.pl's streaming state machine (below), and hand-computed
fixtures. Plus the error breakdown, the bootstrap and the conlleval file I/O.
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities
from seqeval.scheme import IOB2, Entities

from nertune.errors import NertuneError
from nertune.evaluate.bootstrap import f1_interval, paired_bootstrap, sentence_totals, verdict
from nertune.evaluate.conlleval_io import format_predictions, parse_predictions, read_predictions, write_predictions
from nertune.evaluate.error_analysis import KINDS, error_breakdown
from nertune.evaluate.scoring import conlleval_chunks, score, strict_chunks

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-A-B", "I-A-B"]  # A-B: a type with a hyphen
sentence = st.lists(st.sampled_from(TAGS), min_size=1, max_size=12)


@st.composite
def gold_and_pred(draw):
    n = draw(st.integers(1, 6))
    gold, pred = [], []
    for _ in range(n):
        g = draw(sentence)
        gold.append(g)
        # Half the time a prediction near the gold (a few tags changed), else independent.
        if draw(st.booleans()):
            p = [draw(st.sampled_from(TAGS)) if draw(st.integers(0, 3)) == 0 else t for t in g]
        else:
            p = draw(st.lists(st.sampled_from(TAGS), min_size=len(g), max_size=len(g)))
        pred.append(p)
    return gold, pred


# ---- agreement with seqeval ------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(sentence)
def test_chunks_agree_with_seqeval_on_any_sequence(tags):
    assert sorted(conlleval_chunks(tags)) == sorted(get_entities(tags))
    assert sorted(strict_chunks(tags)) == sorted((e.tag, e.start, e.end - 1) for e in Entities([tags], IOB2).entities[0])


@pytest.mark.parametrize("strict", [False, True], ids=["conlleval", "strict"])
@settings(max_examples=200, deadline=None)
@given(data=gold_and_pred())
def test_scores_agree_with_seqeval_metrics(strict, data):
    gold, pred = data
    options = {"mode": "strict", "scheme": IOB2} if strict else {}
    ours = score(gold, pred, strict=strict)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seqeval warns on 0/0; both sides then give 0
        assert ours["precision"] == pytest.approx(precision_score(gold, pred, **options))
        assert ours["recall"] == pytest.approx(recall_score(gold, pred, **options))
        assert ours["f1"] == pytest.approx(f1_score(gold, pred, **options))
        report = classification_report(gold, pred, output_dict=True, zero_division=0, **options)
    assert ours["accuracy"] == pytest.approx(accuracy_score(gold, pred))
    theirs = {t: v for t, v in report.items() if not t.endswith(" avg")}
    assert set(ours["per_type"]) == set(theirs)
    for entity_type, v in ours["per_type"].items():
        assert v["precision"] == pytest.approx(theirs[entity_type]["precision"])
        assert v["recall"] == pytest.approx(theirs[entity_type]["recall"])
        assert v["f1"] == pytest.approx(theirs[entity_type]["f1-score"])
        assert v["support"] == theirs[entity_type]["support"]


# ---- agreement with conlleval.pl's algorithm ---------------------------------------------
# conlleval.pl reads the file line by line and keeps one flag, "inside a chunk that
# is correct so far". Its published startOfChunk / endOfChunk rules for B / I / O:


def _split(tag):
    return ("O", "") if tag == "O" else tuple(tag.split("-", 1))


def _ends(prev, tag, prev_type, entity_type):
    return (prev in "BI" and tag in "BO") or (prev != "O" and prev_type != entity_type)


def _starts(prev, tag, prev_type, entity_type):
    return tag == "B" or (prev == "O" and tag == "I") or (tag != "O" and prev_type != entity_type)


def conlleval_pl(sentences):
    """(correct, found gold, found guessed, correct tags, tokens, per-type Counters) the way conlleval.pl counts."""
    lines = []
    for gold, pred in sentences:
        lines += list(zip(gold, pred)) + [None]  # a blank line is the boundary (-X- O O)
    correct = gold_found = guessed_found = correct_tags = tokens = 0
    by_type = {"correct": Counter(), "gold": Counter(), "guessed": Counter()}
    inside = False
    last_c, last_ct, last_g, last_gt = "O", "", "O", ""
    for item in lines:
        c_tag, g_tag = item or ("O", "O")
        c, ct = _split(c_tag)
        g, gt = _split(g_tag)
        if inside:
            end_c, end_g = _ends(last_c, c, last_ct, ct), _ends(last_g, g, last_gt, gt)
            if end_c and end_g and last_gt == last_ct:
                inside = False
                correct += 1
                by_type["correct"][last_ct] += 1
            elif end_c != end_g or gt != ct:
                inside = False
        start_c, start_g = _starts(last_c, c, last_ct, ct), _starts(last_g, g, last_gt, gt)
        if start_c and start_g and gt == ct:
            inside = True
        if start_c:
            gold_found += 1
            by_type["gold"][ct] += 1
        if start_g:
            guessed_found += 1
            by_type["guessed"][gt] += 1
        if item is not None:
            tokens += 1
            correct_tags += c_tag == g_tag
        last_c, last_ct, last_g, last_gt = c, ct, g, gt
    if inside:
        correct += 1
        by_type["correct"][last_ct] += 1
    return correct, gold_found, guessed_found, correct_tags, tokens, by_type


@settings(max_examples=300, deadline=None)
@given(data=gold_and_pred())
def test_counts_agree_with_conlleval_pl_state_machine(data):
    gold, pred = data
    correct, gold_found, guessed_found, correct_tags, tokens, by_type = conlleval_pl(list(zip(gold, pred)))
    ours = score(gold, pred)
    assert (ours["correct_entities"], ours["gold_entities"], ours["pred_entities"], ours["words"]) == (
        correct,
        gold_found,
        guessed_found,
        tokens,
    )
    assert ours["accuracy"] == correct_tags / tokens
    for entity_type, v in ours["per_type"].items():
        assert v["support"] == by_type["gold"][entity_type]
        expected_p = by_type["correct"][entity_type] / by_type["guessed"][entity_type] if by_type["guessed"][entity_type] else 0.0
        assert v["precision"] == pytest.approx(expected_p)


# ---- hand-computed fixtures: conlleval's documented behaviour ---------------------------


def test_i_after_o_starts_a_chunk_in_conlleval_mode_only():
    gold, pred = [["B-PER", "I-PER", "O"]], [["I-PER", "I-PER", "O"]]
    loose = score(gold, pred)
    assert (loose["precision"], loose["recall"], loose["f1"]) == (1.0, 1.0, 1.0)
    assert loose["accuracy"] == pytest.approx(2 / 3)  # accuracy compares whole tags, O words included
    strict = score(gold, pred, strict=True)
    assert (strict["pred_entities"], strict["precision"], strict["f1"]) == (0, 0.0, 0.0)


def test_type_switch_inside_an_entity_makes_two_chunks():
    gold, pred = [["B-PER", "I-PER"]], [["B-PER", "I-LOC"]]
    loose = score(gold, pred)
    assert (loose["gold_entities"], loose["pred_entities"], loose["correct_entities"]) == (1, 2, 0)
    assert set(conlleval_chunks(pred[0])) == {("PER", 0, 0), ("LOC", 1, 1)}
    assert strict_chunks(pred[0]) == [("PER", 0, 0)]  # strict: the stray I-LOC is no entity


def test_all_o_sentence_scores_accuracy_only():
    result = score([["O", "O", "O"]], [["O", "O", "O"]])
    assert result["accuracy"] == 1.0 and result["f1"] == 0.0 and result["per_type"] == {}


def test_worked_example_file_conlleval_mode():
    # conlleval.pl on this file: "processed 18 tokens with 6 phrases; found: 7 phrases; correct: 3."
    # "accuracy:  66.67%; precision:  42.86%; recall:  50.00%; FB1:  46.15"
    f = read_predictions(FIXTURES / "conlleval_example.txt")
    result = score(f.gold, f.pred)
    assert (result["words"], result["gold_entities"], result["pred_entities"], result["correct_entities"]) == (18, 6, 7, 3)
    assert result["accuracy"] == pytest.approx(12 / 18)
    assert result["precision"] == pytest.approx(3 / 7)
    assert result["recall"] == pytest.approx(3 / 6)
    assert result["f1"] == pytest.approx(6 / 13)
    expected = {"LOC": (1 / 2, 1 / 3, 2 / 5, 3), "MISC": (0.0, 0.0, 0.0, 0), "ORG": (1 / 2, 1.0, 2 / 3, 1), "PER": (1 / 2, 1 / 2, 1 / 2, 2)}
    assert set(result["per_type"]) == set(expected)
    for entity_type, (p, r, f1, support) in expected.items():
        v = result["per_type"][entity_type]
        assert (v["precision"], v["recall"], v["f1"], v["support"]) == pytest.approx((p, r, f1, support))


def test_worked_example_file_strict_mode():
    f = read_predictions(FIXTURES / "conlleval_example.txt")
    result = score(f.gold, f.pred, strict=True)
    assert (result["gold_entities"], result["pred_entities"], result["correct_entities"]) == (6, 5, 2)
    assert result["f1"] == pytest.approx(4 / 11)
    assert result["per_type"]["LOC"]["f1"] == pytest.approx(0.5)
    assert result["accuracy"] == pytest.approx(12 / 18)  # accuracy does not depend on the mode


# ---- error breakdown ----------------------------------------------------------------


def test_error_breakdown_of_the_worked_example():
    f = read_predictions(FIXTURES / "conlleval_example.txt")
    errors = error_breakdown(f.gold, f.pred)
    assert errors["correct"] == 3
    assert {k: errors[k] for k in KINDS} == {"wrong_type": 1, "wrong_boundary": 1, "wrong_type_and_boundary": 0, "missed": 1, "spurious": 1}
    assert errors["per_type"]["LOC"]["wrong_type"] == 1 and errors["per_type"]["LOC"]["missed"] == 1
    assert errors["per_type"]["PER"]["wrong_boundary"] == 1 and errors["per_type"]["MISC"]["spurious"] == 1
    assert errors["confusion"] == {"LOC": {"LOC": 1, "O": 1, "ORG": 1}, "O": {"MISC": 1}, "ORG": {"ORG": 1}, "PER": {"PER": 2}}


def test_wrong_type_and_boundary():
    errors = error_breakdown([["B-ORG", "I-ORG", "O"]], [["O", "B-LOC", "I-LOC"]])
    assert errors["wrong_type_and_boundary"] == 1 and errors["spurious"] == 0 and errors["confusion"] == {"ORG": {"LOC": 1}}


@settings(max_examples=200, deadline=None)
@given(data=gold_and_pred(), strict=st.booleans())
def test_error_kinds_account_for_every_gold_entity(data, strict):
    gold, pred = data
    errors = error_breakdown(gold, pred, strict)
    result = score(gold, pred, strict)
    assert errors["correct"] == result["correct_entities"]
    gold_errors = sum(errors[k] for k in KINDS if k != "spurious")
    assert gold_errors == result["gold_entities"] - result["correct_entities"]
    assert errors["spurious"] <= result["pred_entities"] - result["correct_entities"]
    rows = {g: sum(row.values()) for g, row in errors["confusion"].items()}
    assert sum(n for g, n in rows.items() if g != "O") == result["gold_entities"]
    assert rows.get("O", 0) == errors["spurious"]


# ---- bootstrap ------------------------------------------------------------------------


def _systems(n=300, seed=1):
    """Gold, a weaker and a stronger system, on n real-looking sentences."""
    rng = np.random.default_rng(seed)
    gold, weak, strong = [], [], []
    for _ in range(n):
        tags = ["B-PER", "I-PER", "O", "B-LOC", "O"]
        gold.append(tags)
        weak.append(["O"] * 5 if rng.random() < 0.4 else tags)
        strong.append(["O"] * 5 if rng.random() < 0.1 else tags)
    return gold, weak, strong


def test_sentence_totals_sum_to_the_scores():
    f = read_predictions(FIXTURES / "conlleval_example.txt")
    totals = sentence_totals(f.gold, f.pred)
    assert totals.sum(axis=0).tolist() == [3, 7, 6]


def test_f1_interval_brackets_f1_and_is_reproducible():
    gold, weak, _ = _systems()
    totals = sentence_totals(gold, weak)
    interval = f1_interval(totals, seed=3)
    assert interval["f1"] == pytest.approx(score(gold, weak)["f1"])
    assert interval["low"] < interval["f1"] < interval["high"]
    assert interval["high"] - interval["low"] < 0.2
    assert f1_interval(totals, seed=3) == interval


def test_paired_bootstrap_finds_a_real_difference_and_no_difference_between_equals():
    gold, weak, strong = _systems()
    a, b = sentence_totals(gold, weak), sentence_totals(gold, strong)
    result = paired_bootstrap(a, b)
    assert result["difference"] == pytest.approx(score(gold, strong)["f1"] - score(gold, weak)["f1"])
    assert 0 < result["low"] < result["difference"] < result["high"]
    assert result["b_better_share"] > 0.95 and verdict(result).startswith("B is better")
    reverse = paired_bootstrap(b, a)
    assert reverse["high"] < 0 and verdict(reverse).startswith("A is better")
    same = paired_bootstrap(a, a)
    assert (same["difference"], same["low"], same["high"], same["b_better_share"]) == (0.0, 0.0, 0.0, 0.0)
    assert verdict(same).startswith("no clear difference")


# ---- conlleval files ------------------------------------------------------------------


def test_prediction_file_round_trip(tmp_path):
    words, gold, pred = (
        [["EU", "rejects", "German"], ["Peter", "Blackburn"]],
        [["B-ORG", "O", "B-MISC"], ["B-PER", "I-PER"]],
        [["B-ORG", "O", "O"], ["B-PER", "I-LOC"]],
    )
    path = tmp_path / "out.txt"
    write_predictions(path, words, gold, pred)
    assert path.read_text() == "EU B-ORG B-ORG\nrejects O O\nGerman B-MISC O\n\nPeter B-PER B-PER\nBlackburn I-PER I-LOC\n"
    back = read_predictions(path)
    assert (back.words, back.gold, back.pred, back.lines) == (words, gold, pred, [1, 5])


def test_words_with_whitespace_stay_one_column():
    text = format_predictions([["New\u00a0York", "a\x0bb"]], [["B-LOC", "O"]], [["B-LOC", "O"]])
    assert text == "New_York B-LOC B-LOC\na_b O O\n"
    assert all(len(line.split()) == 3 for line in text.splitlines())


def test_reader_accepts_crlf_tabs_extra_columns_and_docstart():
    text = "-DOCSTART- -X- O O\r\n\r\nEU\tNNP\tB-ORG\tB-ORG\r\nrejects VBZ O B-MISC\r\n\r\n-DOCSTART- -X- O O\r\nPeter NNP B-PER B-PER\r\n"
    f = parse_predictions(text, "x.txt")
    assert f.words == [["EU", "rejects"], ["Peter"]] and f.pred == [["B-ORG", "B-MISC"], ["B-PER"]]
    assert score(f.gold, f.pred)["words"] == 3  # -DOCSTART- lines are not words


def test_iob1_is_converted_only_when_asked():
    as_written = read_predictions(FIXTURES / "iob1_example.txt")
    assert as_written.gold_looks_like == "iob1" and as_written.gold[0][0] == "I-ORG"
    converted = read_predictions(FIXTURES / "iob1_example.txt", scheme="iob1")
    assert converted.gold == [["B-ORG", "O", "B-PER", "O", "O", "B-LOC", "O"], ["B-PER", "B-PER"]]
    assert converted.pred[1] == ["B-PER", "I-PER"]
    # conlleval-mode entities do not depend on the reading; strict ones do.
    assert score(as_written.gold, as_written.pred)["f1"] == score(converted.gold, converted.pred)["f1"] == pytest.approx(2 * 3 / 9)
    assert score(as_written.gold, as_written.pred, strict=True)["gold_entities"] == 1
    assert score(converted.gold, converted.pred, strict=True)["f1"] == pytest.approx(2 * 3 / 9)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("EU B-ORG B-ORG\nrejects O\n", 2, "expected a word, the gold tag and the predicted tag"),
        ("EU NNP B-ORG S-ORG\n", 1, "convert BIOES"),
        ("EU NNP ORG B-ORG\n", 1, "tags O, B-TYPE or I-TYPE"),
        ("\n\n", None, "no sentences"),
    ],
)
def test_bad_prediction_files_name_the_line_and_the_fix(text, line, words):
    with pytest.raises(NertuneError) as error:
        parse_predictions(text, "bad.txt")
    assert error.value.path == "bad.txt" and error.value.line == line
    assert words in str(error.value)
