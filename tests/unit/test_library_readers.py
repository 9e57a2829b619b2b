"""The Hugging Face, spaCy DocBin and brat readers, on real files the real libraries write.

The source data are the first 20 sentences of the embedded CoNLL-2003 training file: each test writes them
in one format and checks that the words, the tags and the entities of each type read back are CoNLL's.
"""

from __future__ import annotations

import os
import sys

import pytest

from nertune.data.conll import Sentence, read_conll
from nertune.data.embedded import conll2003_files
from nertune.data.jsonl import ReadOptions
from nertune.errors import NertuneError
from tests.own_data import assert_same, entity_counts, labels_of, spacy_doc, write_brat

datasets = pytest.importorskip("datasets", reason="the Hugging Face reader's tests need `pip install 'nertune[datasets]'`")
spacy = pytest.importorskip("spacy", reason="the DocBin reader's tests need `pip install 'nertune[spacy]'`")

from spacy.tokens import Doc, DocBin, Span  # noqa: E402

from nertune.data.brat import read_brat  # noqa: E402
from nertune.data.docbin import read_docbin  # noqa: E402
from nertune.data.hf_datasets import hf_splits, read_hf  # noqa: E402


@pytest.fixture(scope="module")
def conll() -> list[Sentence]:
    return read_conll(conll2003_files()["train"]).sentences[:20]


def to_bioes(tags: list[str]) -> list[str]:
    out = []
    for i, tag in enumerate(tags):
        continues = i + 1 < len(tags) and tags[i + 1] == f"I-{tag[2:]}"
        if tag == "O":
            out.append(tag)
        elif tag.startswith("B-"):
            out.append(("B-" if continues else "S-") + tag[2:])
        else:
            out.append(("I-" if continues else "E-") + tag[2:])
    return out


# Hugging Face datasets


def class_label_features(labels: list[str], **extra):
    return datasets.Features(
        {"tokens": datasets.Sequence(datasets.Value("string")), "ner_tags": datasets.Sequence(datasets.ClassLabel(names=labels)), **extra}
    )


def hf_rows(sentences, labels: list[str]) -> dict:
    return {"tokens": [s.words for s in sentences], "ner_tags": [[labels.index(t) for t in s.tags] for s in sentences]}


def test_hf_dataset_dict_reads_each_split_with_class_label_names_and_documents(tmp_path, conll):
    labels = labels_of(conll)
    features = class_label_features(labels, doc_id=datasets.Value("int64"))
    train = datasets.Dataset.from_dict({**hf_rows(conll[:12], labels), "doc_id": [i // 5 for i in range(12)]}, features=features)
    validation = datasets.Dataset.from_dict({**hf_rows(conll[12:], labels), "doc_id": [7] * 3 + [3] * 5}, features=features)
    folder = tmp_path / "conll_dict"
    datasets.DatasetDict(train=train, validation=validation).save_to_disk(str(folder))

    assert hf_splits(str(folder)) == ["train", "validation"]
    read = read_hf(str(folder), ReadOptions())  # the "train" split when none is named
    assert_same(read.sentences, conll[:12])
    assert [s.document for s in read.sentences] == [0] * 5 + [1] * 5 + [2] * 2  # consecutive equal doc_id: one document
    assert read.scheme == "iob2" and read.notices == []

    held_out = read_hf(str(folder), ReadOptions(split="validation"))
    assert_same(held_out.sentences, conll[12:])
    assert [s.document for s in held_out.sentences] == [0] * 3 + [1] * 5
    assert entity_counts(read.sentences) + entity_counts(held_out.sentences) == entity_counts(conll)


def test_hf_parquet_and_arrow_files_and_a_single_dataset_folder(tmp_path, conll):
    labels = labels_of(conll)
    dataset = datasets.Dataset.from_dict(hf_rows(conll, labels), features=class_label_features(labels))
    dataset.to_parquet(str(tmp_path / "train.parquet"))
    dataset.save_to_disk(str(tmp_path / "single"))
    (shard,) = sorted((tmp_path / "single").glob("*.arrow"))
    for path in (tmp_path / "train.parquet", tmp_path / "single", shard):
        read = read_hf(str(path), ReadOptions())
        assert_same(read.sentences, conll)
        assert [s.document for s in read.sentences] == list(range(20))  # no document column: a row is a document
        assert hf_splits(str(path)) is None


def test_hf_string_tags_in_bioes_are_converted_with_a_notice(tmp_path, conll):
    rows = {"words": [s.words for s in conll], "labels": [to_bioes(s.tags) for s in conll]}
    assert any(t.startswith("S-") for tags in rows["labels"] for t in tags)
    datasets.Dataset.from_dict(rows).to_parquet(str(tmp_path / "bioes.parquet"))
    read = read_hf(str(tmp_path / "bioes.parquet"), ReadOptions())
    assert_same(read.sentences, conll)
    assert read.scheme == "bioes"
    assert read.notices == [f"{tmp_path / 'bioes.parquet'}: tags are BIOES; converted to IOB2"]


def test_hf_unknown_split_names_the_splits_there_are(tmp_path, conll):
    labels = labels_of(conll)
    part = datasets.Dataset.from_dict(hf_rows(conll[:2], labels), features=class_label_features(labels))
    datasets.DatasetDict(train=part, validation=part).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(NertuneError) as error:
        read_hf(str(tmp_path / "dd"), ReadOptions(split="test"))
    assert "no split 'test'; the dataset has: train, validation" in str(error.value)
    assert "\n" not in str(error.value)


def test_hf_integer_tags_need_label_names(tmp_path, conll):
    labels = labels_of(conll)
    rows = hf_rows(conll[:3], labels)  # plain integers: no ClassLabel feature to name them
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "ints"))
    with pytest.raises(NertuneError) as error:
        read_hf(str(tmp_path / "ints"), ReadOptions())
    assert "row 0: integer tags and no label names" in str(error.value)
    assert "--label-names" in str(error.value)
    named = read_hf(str(tmp_path / "ints"), ReadOptions(label_names=labels))
    assert_same(named.sentences, conll[:3])


def test_hf_rows_with_bad_lengths_tags_or_words_are_named(tmp_path):
    cases = {
        "lengths": (
            {"tokens": [["a"], ["b", "c"]], "ner_tags": [["O"], ["O"]]},
            "row 1: 'tokens' and 'ner_tags' must be lists of the same length",
        ),
        "shape": ({"tokens": [["a"], ["b"], ["c"]], "ner_tags": [["O"], ["O"], ["PER"]]}, "row 2: unknown tag shape 'PER'"),
        "word": ({"tokens": [["a", ""]], "ner_tags": [["O", "O"]]}, "row 0: word 1 is ''"),
        "column": ({"text": [["a"]], "ner_tags": [["O"]]}, "no words column (tokens / words); columns: text, ner_tags"),
    }
    for name, (rows, message) in cases.items():
        datasets.Dataset.from_dict(rows).to_parquet(str(tmp_path / f"{name}.parquet"))
        with pytest.raises(NertuneError) as error:
            read_hf(str(tmp_path / f"{name}.parquet"), ReadOptions())
        assert message in str(error.value), name
        assert f"{name}.parquet" in str(error.value)


def test_hf_a_folder_that_is_no_dataset_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(NertuneError, match="not a folder written by Dataset.save_to_disk"):
        read_hf(str(tmp_path / "empty"), ReadOptions())
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(NertuneError, match="cannot read it as a parquet file") as error:
        read_hf(str(tmp_path / "junk.parquet"), ReadOptions())
    assert "\n" not in str(error.value)


# spaCy DocBin


def test_docbin_docs_sentences_and_entities(tmp_path, conll):
    nlp = spacy.blank("en")
    whole = spacy_doc(nlp.vocab, conll[:1], sentence_starts=False)  # no sentence boundaries: one sentence
    split = spacy_doc(nlp.vocab, conll[1:], sentence_starts=True)  # 19 sentences in one Doc
    assert not whole.has_annotation("SENT_START") and split.has_annotation("SENT_START")
    DocBin(docs=[whole, split]).to_disk(tmp_path / "train.spacy")

    read = read_docbin(str(tmp_path / "train.spacy"), ReadOptions())
    assert_same(read.sentences, conll)
    assert [s.document for s in read.sentences] == [0] + [1] * 19  # each Doc is a document
    assert read.scheme == "spans" and read.notices == []


def test_docbin_whitespace_tokens_are_left_out_and_crossing_entities_join_sentences(tmp_path):
    nlp = spacy.blank("en")
    words = ["Peter", "Blackburn", "\n", "met", "John", "Smith", "."]
    doc = Doc(nlp.vocab, words=words, spaces=[True, False, False, True, True, False, False], sent_starts=[1, 0, 0, 0, 0, 1, 0])
    doc.ents = [Span(doc, 0, 2, label="PER"), Span(doc, 4, 6, label="PER")]  # the second runs over the sentence start at Smith
    DocBin(docs=[doc]).to_disk(tmp_path / "x.spacy")
    read = read_docbin(str(tmp_path / "x.spacy"), ReadOptions())
    assert [s.words for s in read.sentences] == [["Peter", "Blackburn", "met", "John", "Smith", "."]]
    assert [s.tags for s in read.sentences] == [["B-PER", "I-PER", "O", "B-PER", "I-PER", "O"]]
    assert len(read.notices) == 1 and "1 entities crossed a sentence boundary: those sentences were joined" in read.notices[0]


def test_a_file_that_is_no_docbin_is_one_line(tmp_path):
    (tmp_path / "bad.spacy").write_text("EU B-ORG\nrejects O\n")
    with pytest.raises(NertuneError) as error:
        read_docbin(str(tmp_path / "bad.spacy"), ReadOptions())
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'bad.spacy'}: not a spaCy DocBin (.spacy) file")
    assert "spacy convert" in message and "\n" not in message


# brat standoff


def test_brat_folder_documents_words_tags_and_ignored_annotations(tmp_path, conll):
    folder = tmp_path / "corpus"
    folder.mkdir()
    write_brat(folder, "b", conll[10:])  # read in name order: a before b
    write_brat(
        folder, "a", conll[:10], extra=["R1\tLocated Arg1:T1 Arg2:T2", "#1\tAnnotatorNotes T1\tcheck", "T90\tPER 0 2;3 10\tEU rejects"]
    )
    (folder / "annotation.conf").write_text("[entities]\nPER\n")
    (folder / "sub").mkdir()
    write_brat(folder / "sub", "c", conll[:1])  # sub-folders are not entered

    read = read_brat(str(folder), ReadOptions())
    for document, source in ((0, conll[:10]), (1, conll[10:])):
        mine = [s for s in read.sentences if s.document == document]
        assert [w for s in mine for w in s.words] == [w for s in source for w in s.words]
        assert [t for s in mine for t in s.tags] == [t for s in source for t in s.tags]
        # one CoNLL sentence a line, and a line is never cut across: the reader's sentences only split lines further
        assert set(boundaries(source)) <= set(boundaries(mine))
    assert entity_counts(read.sentences) == entity_counts(conll)
    assert read.scheme == "spans"
    assert read.notices == [
        f"{folder}: 1 discontinuous entities skipped: flat NER cannot hold them (a.txt T90 PER 0 2;3 10)",
        f"{folder}: annotation lines other than entities ignored (1 notes, 1 relations)",
    ]


def boundaries(sentences) -> list[int]:
    out, total = [], 0
    for sentence in sentences:
        total += len(sentence.words)
        out.append(total)
    return out


def test_brat_offsets_count_crlf_as_two_characters(tmp_path):
    text = "EU rejects German call .\r\nPeter Blackburn\r\n"
    (tmp_path / "d.txt").write_text(text, encoding="utf-8", newline="")
    start = text.index("Peter")
    assert start == 26
    (tmp_path / "d.ann").write_text(f"T1\tORG 0 2\tEU\nT2\tMISC 11 17\tGerman\nT3\tPER {start} {start + 15}\tPeter Blackburn\n")
    read = read_brat(str(tmp_path), ReadOptions())
    assert [s.tags for s in read.sentences] == [["B-ORG", "O", "B-MISC", "O", "O"], ["B-PER", "I-PER"]]


def test_brat_malformed_lines_and_text_mismatch_name_the_file_and_line(tmp_path):
    (tmp_path / "a.txt").write_text("EU rejects German call .\n")
    cases = [
        ("T1\tORG 0 2\tEU\nT2\tMISC 11\tGerman\n", "a.ann:2: 'T2\\tMISC 11\\tGerman' is not T<n><TAB>TYPE START END<TAB>text"),
        ("T1\tORG 0 2\tXX\n", "a.ann:1: T1: the annotation's text is 'XX' but a.txt[0:2] is 'EU'"),
        ("T1\tORG 0 99\tEU\n", "a.ann:1: T1: offsets 0 99 are not a span of a.txt (25 characters)"),
        ("\nX1\tsomething\n", "a.ann:2: 'X1\\tsomething' is not a brat annotation line"),
    ]
    for ann, message in cases:
        (tmp_path / "a.ann").write_text(ann)
        with pytest.raises(NertuneError) as error:
            read_brat(str(tmp_path), ReadOptions())
        assert message in str(error.value)
        assert "\n" not in str(error.value)


def test_brat_unpaired_files_are_errors_and_links_outside_are_not_read(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_text("EU rejects German call .\n")
    (folder / "a.ann").write_text("T1\tORG 0 2\tEU\n")
    (folder / "b.ann").write_text("")
    with pytest.raises(NertuneError, match=r"b\.ann: b\.ann has no b\.txt beside it"):
        read_brat(str(folder), ReadOptions())
    (folder / "b.ann").unlink()
    (tmp_path / "secret.txt").write_text("Peter Blackburn\n")
    (tmp_path / "secret.ann").write_text("T1\tPER 0 15\tPeter Blackburn\n")
    os.symlink(tmp_path / "secret.txt", folder / "c.txt")
    os.symlink(tmp_path / "secret.ann", folder / "c.ann")
    read = read_brat(str(folder), ReadOptions())
    assert [s.words for s in read.sentences] == [["EU", "rejects", "German", "call", "."]]
    assert read.notices == [f"{folder}: 2 links to files outside the folder ignored (c.ann, c.txt)"]


@pytest.mark.parametrize("library, extra", [("datasets", "datasets"), ("spacy", "spacy")])
def test_a_missing_extra_is_one_line_naming_the_install(tmp_path, monkeypatch, library, extra):
    monkeypatch.setitem(sys.modules, library, None)  # as if not installed: `import` raises ImportError
    path = tmp_path / ("rows.parquet" if library == "datasets" else "docs.spacy")
    path.write_bytes(b"PAR1" if library == "datasets" else b"x\x9c")
    with pytest.raises(NertuneError) as error:
        (read_hf if library == "datasets" else read_docbin)(str(path), ReadOptions())
    assert f"{library} is not installed" in str(error.value) and f"pip install 'nertune[{extra}]'" in str(error.value)


def test_a_dataset_dict_given_as_validation_reads_its_validation_split(tmp_path, conll):
    from nertune.data.splits import load_splits  # noqa: PLC0415  (beside the test it serves)

    labels = labels_of(conll)
    features = class_label_features(labels)
    splits = {"train": conll[:12], "validation": conll[12:16]}
    datasets.DatasetDict({k: datasets.Dataset.from_dict(hf_rows(v, labels), features=features) for k, v in splits.items()}).save_to_disk(
        str(tmp_path / "dd")
    )
    read = load_splits(None, train=str(tmp_path / "dd"), validation=str(tmp_path / "dd"))
    assert_same(read.train.sentences, conll[:12])
    assert_same(read.validation.sentences, conll[12:16])  # not the train split again
    with pytest.raises(NertuneError) as error:
        load_splits(None, train=str(tmp_path / "dd"), test=str(tmp_path / "dd"))
    assert "the dataset has no test split (it has: train, validation)" in str(error.value)
