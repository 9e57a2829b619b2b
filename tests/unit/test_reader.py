"""The CoNLL reader: schemes, separators, line ends, and every bad-file case."""

from __future__ import annotations

import pytest

from nertune.data.conll import parse_conll, read_conll
from nertune.data.schemes import detect_scheme
from nertune.data.splits import build_labels, load_splits
from nertune.errors import NertuneError
from tests.conftest import run_cli


def test_embedded_splits_have_the_published_sizes(conll_files):
    sizes = {name: len(read_conll(path).sentences) for name, path in conll_files.items()}
    assert sizes == {"train": 14041, "validation": 3250, "test": 3453}


def test_embedded_train_is_iob2_with_documents(conll_files):
    train = read_conll(conll_files["train"])
    assert train.scheme == "iob2"
    assert train.sentences[0].words[:3] == ["EU", "rejects", "German"]
    assert train.sentences[0].tags[:3] == ["B-ORG", "O", "B-MISC"]
    assert train.sentences[0].line == 3
    assert train.sentences[-1].document == 945  # 946 -DOCSTART- blocks


def test_labels_are_union_with_both_prefixes():
    a = parse_conll("x B-PER\n\ny O\n", "a")
    b = parse_conll("z I-LOC\n", "b")  # IOB1: converted, and LOC gets B- and I-
    assert build_labels([a, b]) == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def test_max_sentences_takes_first_in_file_order_but_labels_from_whole_file(conll_files):
    splits = load_splits(max_train_sentences=3, max_eval_sentences=2)
    assert [s.words[0] for s in splits.train.sentences] == ["EU", "Peter", "BRUSSELS"]
    assert len(splits.validation.sentences) == 2
    assert splits.labels == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]


def test_tabs_crlf_and_extra_columns():
    text = "-DOCSTART- -X- O\r\n\r\nJohn\tNNP\tB-PER\r\nSmith NNP  I-PER\r\n\r\n-DOCSTART- -X- O\r\n\r\nParis NNP B-LOC\r\n"
    conll = parse_conll(text, "f")
    assert [s.words for s in conll.sentences] == [["John", "Smith"], ["Paris"]]
    assert [s.tags for s in conll.sentences] == [["B-PER", "I-PER"], ["B-LOC"]]
    assert [s.document for s in conll.sentences] == [0, 1]


def test_iob1_is_detected_and_converted_with_notice():
    text = "John I-PER\nSmith I-PER\nmet O\nMary I-PER\nAnn B-PER\n"
    conll = parse_conll(text, "iob1.txt")
    assert conll.scheme == "iob1"
    assert conll.sentences[0].tags == ["B-PER", "I-PER", "O", "B-PER", "B-PER"]
    assert "IOB1" in conll.notices[0]


def test_iob2_with_an_invalid_i_is_not_iob1():
    # B- after O means it is not IOB1, so the stray I- stays as written.
    assert detect_scheme([["B-PER", "O", "I-LOC"]]) == "iob2"


def test_bioes_and_bilou_are_converted():
    conll = parse_conll("New B-LOC\nYork E-LOC\nis O\nUS S-LOC\n", "f")
    assert conll.scheme == "bioes"
    assert conll.sentences[0].tags == ["B-LOC", "I-LOC", "O", "B-LOC"]
    assert parse_conll("a U-PER\nb B-ORG\nc L-ORG\n", "g").sentences[0].tags == ["B-PER", "B-ORG", "I-ORG"]


@pytest.mark.parametrize(
    "content, line, words",
    [
        (b"EU B-ORG\nrejects\n", 2, "one column"),
        (b"EU B-ORG\nrejects X-FOO\n", 2, "unknown tag shape"),
        (b"", None, "empty"),
        (b"\n\n  \n", None, "empty"),
        (b"EU B-ORG\n\x00\x01\x02junk\n", 2, "binary"),
        (b"EU B-ORG\n\nM\xfcnchen B-LOC\n", 3, "not UTF-8"),
    ],
)
def test_bad_files_fail_clearly_in_python(tmp_path, content, line, words):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(NertuneError) as error:
        read_conll(path)
    message = str(error.value)
    assert words in message and str(path) in message and "fix:" in message
    if line is not None:
        assert f"{path}:{line}:" in message


def test_bad_file_on_the_cli_is_one_line_exit_2_no_traceback(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"EU B-ORG\n\nM\xfcnchen B-LOC\n")
    result = run_cli("train", "--train", str(path), "--no-progress")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"error: {path}:3: byte 0xfc is not UTF-8 — fix: re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"]
    assert "Traceback" not in result.stderr and result.stdout == ""
