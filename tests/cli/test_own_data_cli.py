"""`nertune convert` and `nertune data` as a user runs them, and one tiny training run from a spans file.

The data are the first 30 sentences of the embedded CoNLL-2003 training file (3 documents, 668 words;
LOC 20, MISC 17, ORG 12, PER 16).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from nertune.data.conll import read_conll
from nertune.data.embedded import conll2003_files
from nertune.data.formats import read_data
from nertune.data.writers import write_sentences
from tests.conftest import run_cli

SUMMARY = "30 sentences, 668 words, 65 entities (LOC 20, MISC 17, ORG 12, PER 16)"


def entity_counts(sentences) -> Counter:
    return Counter(tag[2:] for s in sentences for tag in s.tags if tag.startswith("B-"))


@pytest.fixture(scope="module")
def conll():
    return read_conll(conll2003_files()["train"]).sentences[:30]


@pytest.fixture(scope="module")
def source(tmp_path_factory, conll) -> Path:
    path = tmp_path_factory.mktemp("own") / "a.conll"
    write_sentences(conll, path, "conll")
    return path


def ok(*args: str):
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


def test_convert_conll_to_spans_and_back_keeps_every_entity(tmp_path, source, conll):
    spans, back = tmp_path / "b.jsonl", tmp_path / "c.conll"
    result = ok("convert", str(source), str(spans), "--to", "spans")
    assert f"{source} -> {spans} (spans): {SUMMARY}" in result.stderr
    assert result.stdout == ""  # the summary is for people: stderr
    rows = [json.loads(line) for line in spans.read_text().splitlines()]
    assert len(rows) == 3 and sum(len(r["entities"]) for r in rows) == 65  # a record per document
    assert all(r["text"][a:b] for r in rows for a, b, _ in r["entities"])

    result = ok("convert", str(spans), str(back))
    # the splitter cuts sentence 10 (`... generalisation . "`) before its closing quote: one sentence more
    assert f"{spans} -> {back} (conll, IOB2): 31 sentences, 668 words, 65 entities (LOC 20, MISC 17, ORG 12, PER 16)" in result.stderr
    read = read_conll(back)
    assert entity_counts(read.sentences) == entity_counts(conll)
    assert [w for s in read.sentences for w in s.words] == [w for s in conll for w in s.words]
    assert [t for s in read.sentences for t in s.tags] == [t for s in conll for t in s.tags]
    assert sorted({s.document for s in read.sentences}) == [0, 1, 2]


def test_convert_writes_bioes(tmp_path, source, conll):
    out = tmp_path / "bioes.conll"
    result = ok("convert", str(source), str(out), "--scheme", "bioes")
    assert f"{source} -> {out} (conll, BIOES): {SUMMARY}" in result.stderr
    text = out.read_text()
    assert "EU S-ORG\n" in text and "Peter B-PER\nBlackburn E-PER\n" in text and "B-" in text
    read = read_data(out)
    assert read.scheme == "bioes"
    assert [s.tags for s in read.sentences] == [s.tags for s in conll]


def test_convert_with_a_label_map_drops_misc_and_says_how_many(tmp_path, source, conll):
    out = tmp_path / "no_misc.jsonl"
    result = ok("convert", str(source), str(out), "--label-map", '{"MISC": null}')
    assert f"{source} -> {out} (tokens, IOB2): 30 sentences, 668 words, 48 entities (LOC 20, ORG 12, PER 16)" in result.stderr
    assert "dropped by --label-map: MISC 17" in result.stderr
    read = read_data(out)
    assert entity_counts(read.sentences) == Counter({"LOC": 20, "ORG": 12, "PER": 16})
    assert [s.words for s in read.sentences] == [s.words for s in conll]


def test_bad_input_is_exit_2_and_one_line_naming_the_file_and_line(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"text": "EU rejects", "entities": [[0, 2, "ORG"]]}\n\n{"text": "x", "entities": [[0, 1]]}\n')
    (tmp_path / "bad.conll").write_text("EU B-ORG\nrejects O\n\nGerman\n")
    cases = {
        "bad.jsonl": ":3: span [0, 1] is not [start, end, TYPE] or {start, end, label} — fix: ",
        "bad.conll": ":4: one column ('German'); expected a word and a tag — fix: ",
    }
    for name, message in cases.items():
        out = tmp_path / f"{name}.out"
        result = run_cli("convert", str(tmp_path / name), str(out))
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(f"error: {tmp_path / name}{message}")
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert not out.exists()


def test_data_json_reports_each_file_and_the_types_one_lacks(tmp_path, source, conll):
    no_misc = [s for s in conll if not any(t.endswith("-MISC") for t in s.tags)]
    write_sentences(no_misc, tmp_path / "b.jsonl", "spans")
    result = ok("data", str(source), str(tmp_path / "b.jsonl"), "--json")
    report = json.loads(result.stdout)
    first, second = report["files"]
    assert {k: first[k] for k in ("path", "scheme", "sentences", "words", "documents", "entities", "entities_per_type")} == {
        "path": str(source),
        "scheme": "iob2",
        "sentences": 30,
        "words": 668,
        "documents": 3,
        "entities": 65,
        "entities_per_type": {"LOC": 20, "MISC": 17, "ORG": 12, "PER": 16},
    }
    assert first["sentences_over_window"] == 0 and first["longest_sentence_words"] == max(len(s.words) for s in conll)
    expected = entity_counts(no_misc)
    assert second["path"] == str(tmp_path / "b.jsonl") and second["scheme"] == "spans"
    assert second["entities_per_type"] == dict(sorted(expected.items())) and second["entities"] == sum(expected.values())
    assert second["words"] == sum(len(s.words) for s in no_misc)
    assert report["types_missing"] == {str(tmp_path / "b.jsonl"): ["MISC"]}


@pytest.mark.slow
def test_training_from_a_spans_file_sees_what_the_conll_file_holds(tmp_path, conll):
    # 16 sentences the splitter cuts as CoNLL does (not sentence 10), so both runs train on the same words;
    # validation: document 1 (8 sentences; LOC 5, MISC 3, PER 6)
    train, validation = conll[:10] + conll[11:17], conll[20:28]
    metrics = {}
    for fmt, ext in (("spans", "jsonl"), ("conll", "conll")):
        write_sentences(train, tmp_path / f"train.{ext}", fmt)
        write_sentences(validation, tmp_path / f"validation.{ext}", fmt)
        out = tmp_path / f"run-{fmt}"
        result = ok(
            "train",
            "--train",
            str(tmp_path / f"train.{ext}"),
            "--validation",
            str(tmp_path / f"validation.{ext}"),
            "--max-train-sentences",
            "16",
            "--max-eval-sentences",
            "8",
            "--epochs",
            "1",
            "--output-dir",
            str(out),
            "--no-progress",
            "--json",
            "--sample",
            "",
        )
        metrics[fmt] = json.loads((out / "metrics.json").read_text())
        assert json.loads(result.stdout)["labels"] == metrics[fmt]["labels"]
        assert metrics[fmt]["train_sentences"] == 16
    assert (
        metrics["spans"]["labels"]
        == metrics["conll"]["labels"]
        == ["O"] + [f"{p}-{t}" for t in ("LOC", "MISC", "ORG", "PER") for p in "BI"]
    )
    support = {fmt: {t: v["support"] for t, v in m["validation"]["per_type"].items() if v["support"]} for fmt, m in metrics.items()}
    assert support["spans"] == support["conll"] == dict(entity_counts(validation)) == {"LOC": 5, "MISC": 3, "PER": 6}
    assert metrics["spans"]["validation"]["gold_entities"] == metrics["conll"]["validation"]["gold_entities"] == 14
