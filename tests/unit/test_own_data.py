"""Your own data: every format nertune reads and writes, the span policies, CoNLL's IO tags / comments / tag
column, label maps and the notices of `load_splits`.

The source data are the first 30 sentences of the embedded CoNLL-2003 training file (3 documents; LOC 20,
MISC 17, ORG 12, PER 16). Word-and-tag formats must read back exactly; span formats are re-cut by the
Penn-Treebank splitter, so they are compared per document (flattened words and tags) and by entity counts.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nertune.data.conll import Sentence, parse_conll, read_conll
from nertune.data.embedded import conll2003_files
from nertune.data.formats import detect_format, read_data
from nertune.data.jsonl import ReadOptions, read_json
from nertune.data.labels import apply_label_map, parse_label_map
from nertune.data.schemes import bioes_to_iob2, detect_scheme, iob2_to_bioes
from nertune.data.spans import Span, SpanReport, resolve_overlaps, sentences_to_text, text_to_sentences
from nertune.data.splits import load_splits
from nertune.data.writers import conll_text, json_text, output_format, span_records, token_records, write_sentences
from nertune.errors import NertuneError
from tests.own_data import assert_same, document_text, documents, entity_counts, entity_spans

COUNTS = Counter({"LOC": 20, "MISC": 17, "ORG": 12, "PER": 16})
LABELS = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]


def tokens_jsonl(sentences, scheme: str = "iob2") -> str:
    return json_text(token_records(sentences, scheme), "x.jsonl")


def spans_jsonl(sentences) -> str:
    return json_text(span_records(sentences), "x.jsonl")


@pytest.fixture(scope="module")
def conll() -> list[Sentence]:
    sentences = read_conll(conll2003_files()["train"]).sentences[:30]
    assert entity_counts(sentences) == COUNTS and [s.document for s in sentences] == [0] * 20 + [1] * 8 + [2] * 2
    return sentences


# helpers, independent of the code under test


def assert_same_per_document(read, source) -> None:
    """Span formats: the words are re-cut, so compare each document's words and tags end to end."""
    mine, theirs = documents(read), documents(source)
    assert len(mine) == len(theirs)
    for a, b in zip(mine, theirs):
        assert [w for s in a for w in s.words] == [w for s in b for w in s.words]
        assert [t for s in a for t in s.tags] == [t for s in b for t in s.tags]
    assert entity_counts(read) == entity_counts(source)
    # Each CoNLL sentence is one line and a line always ends a sentence; the splitter cuts one sentence
    # more: sentence 10 (`... "dangerous generalisation . "`) ends in `. "`, cut before the closing quote.
    assert len(read) == len(source) + 1


def write_lines(path: Path, rows) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


# word-and-tag formats


def test_conll_iob2_and_bioes_files_read_back_the_same(tmp_path, conll):
    write_sentences(conll, tmp_path / "iob2.conll", "conll")
    write_sentences(conll, tmp_path / "bioes.conll", "conll", "bioes")
    iob2 = read_data(tmp_path / "iob2.conll")
    assert_same(iob2.sentences, conll)
    assert [s.document for s in iob2.sentences] == [s.document for s in conll]
    assert iob2.scheme == "iob2" and iob2.notices == []

    text = (tmp_path / "bioes.conll").read_text()
    assert text.startswith("-DOCSTART- O\n\nEU S-ORG\nrejects O\nGerman S-MISC\n")
    assert "Peter B-PER\nBlackburn E-PER\n" in text
    bioes = read_data(tmp_path / "bioes.conll")
    assert_same(bioes.sentences, conll)
    assert [s.document for s in bioes.sentences] == [s.document for s in conll]
    assert bioes.scheme == "bioes"
    assert bioes.notices == [f"{tmp_path / 'bioes.conll'}: tags are BIOES; converted to IOB2"]


def test_iob2_to_bioes_and_back():
    tags = ["B-PER", "I-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "O", "B-ORG"]
    assert iob2_to_bioes(tags) == ["B-PER", "I-PER", "E-PER", "O", "S-LOC", "B-LOC", "E-LOC", "O", "S-ORG"]
    assert bioes_to_iob2(iob2_to_bioes(tags)) == tags
    assert iob2_to_bioes([]) == [] and iob2_to_bioes(["O"]) == ["O"]


def test_tokens_jsonl_with_string_tags(tmp_path, conll):
    (tmp_path / "t.jsonl").write_text(tokens_jsonl(conll))
    read = read_data(tmp_path / "t.jsonl")
    assert_same(read.sentences, conll)
    assert read.scheme == "iob2" and read.notices == []
    (tmp_path / "b.jsonl").write_text(tokens_jsonl(conll, "bioes"))
    read = read_data(tmp_path / "b.jsonl")
    assert_same(read.sentences, conll)
    assert read.notices == [f"{tmp_path / 'b.jsonl'}: tags are BIOES; converted to IOB2"]


def test_tokens_jsonl_keeps_the_documents(tmp_path, conll):
    (tmp_path / "t.jsonl").write_text(tokens_jsonl(conll))
    read = read_data(tmp_path / "t.jsonl")
    assert [s.document for s in read.sentences] == [s.document for s in conll]


def test_tokens_jsonl_with_integer_tags_label_names_and_a_labels_json_sidecar(tmp_path, conll):
    path = write_lines(tmp_path / "ints.jsonl", [{"words": s.words, "tags": [LABELS.index(t) for t in s.tags]} for s in conll])
    with pytest.raises(NertuneError) as error:
        read_data(path)
    assert str(error.value).startswith(f"{path}:1: integer tags and no label names — fix: give --label-names")
    assert "labels.json" in str(error.value)

    assert_same(read_data(path, ReadOptions(label_names=LABELS)).sentences, conll)
    (tmp_path / "labels.json").write_text(json.dumps(LABELS))
    assert_same(read_data(path).sentences, conll)
    # --label-names wins over the sidecar
    shuffled = ["O", "B-PER", "I-PER", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
    swapped = read_data(path, ReadOptions(label_names=shuffled))
    assert entity_counts(swapped.sentences) == Counter({"PER": 20, "MISC": 17, "ORG": 12, "LOC": 16})

    (tmp_path / "labels.json").write_text(json.dumps(LABELS[:3]))
    with pytest.raises(NertuneError) as error:
        read_data(path)
    assert str(error.value) == f"{path}:1: tag id 5 but 3 label names — fix: check --label-names"
    (tmp_path / "labels.json").write_text('{"O": 0}')
    with pytest.raises(NertuneError) as error:
        read_data(path)
    assert str(error.value).startswith(f"{tmp_path / 'labels.json'}: labels.json is not a JSON list of label names")


# text-and-span formats


def span_shapes(conll) -> dict[str, list[dict]]:
    """The same documents as each tool writes them: one record per document."""
    docs = [document_text(d) for d in documents(conll)]
    return {
        "entities": [{"text": t, "entities": [list(s) for s in spans]} for t, spans in docs],
        "doccano": [{"id": i, "text": t, "label": [list(s) for s in spans], "Comments": []} for i, (t, spans) in enumerate(docs)],
        "doccano_offsets": [
            {"text": t, "label": [{"start_offset": a, "end_offset": b, "label": k} for a, b, k in spans]} for t, spans in docs
        ],
        "prodigy": [
            {"text": t, "spans": [{"start": a, "end": b, "label": k, "token_start": 0} for a, b, k in spans], "answer": "accept"}
            for t, spans in docs
        ],
    }


@pytest.mark.parametrize("shape", ["entities", "doccano", "doccano_offsets", "prodigy"])
def test_span_records_read_back_to_the_same_words_tags_and_entities(tmp_path, conll, shape):
    path = write_lines(tmp_path / f"{shape}.jsonl", span_shapes(conll)[shape])
    read = read_data(path)
    assert_same_per_document(read.sentences, conll)
    assert read.scheme == "spans" and read.notices == []


def label_studio_export(conll) -> list[dict]:
    tasks = []
    for n, doc in enumerate(documents(conll)):
        text, spans = document_text(doc)
        result = [
            {
                "id": f"r{n}-{i}",
                "from_name": "label",
                "to_name": "text",
                "type": "labels",
                "origin": "manual",
                "value": {"start": a, "end": b, "text": text[a:b], "labels": [k]},
            }
            for i, (a, b, k) in enumerate(spans)
        ]
        tasks.append(
            {
                "id": 100 + n,
                "data": {"text": text},
                "annotations": [{"id": n, "completed_by": 1, "was_cancelled": False, "result": result}],
                "predictions": [],
            }
        )
    return tasks


def test_label_studio_json_export(tmp_path, conll):
    tasks = label_studio_export(conll)
    (tmp_path / "export.json").write_text(json.dumps(tasks, indent=2))
    read = read_data(tmp_path / "export.json")
    assert_same_per_document(read.sentences, conll)
    assert read.scheme == "spans" and read.notices == []
    # a cancelled annotation is skipped: the next annotator's is read
    empty = {"id": 9, "was_cancelled": True, "result": []}
    tasks[1]["annotations"].insert(0, empty)
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    assert entity_counts(read_data(tmp_path / "export.json").sentences) == COUNTS
    tasks[1]["annotations"] = []  # an unannotated task: its words, all O
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    read = read_data(tmp_path / "export.json")
    assert entity_counts(read.sentences) == COUNTS - entity_counts([s for s in conll if s.document == 1])
    assert [w for s in read.sentences for w in s.words] == [w for s in conll for w in s.words]


def test_the_spans_writer_is_the_hand_built_text(tmp_path, conll):
    for doc in documents(conll):
        text, spans = sentences_to_text(doc)
        assert (text, [(s.start, s.end, s.label) for s in spans]) == document_text(doc)
        assert all(text[s.start : s.end] == text[s.start : s.end].strip() for s in spans)
    rows = [json.loads(line) for line in spans_jsonl(conll).splitlines()]
    assert rows == [{"text": t, "entities": [list(s) for s in spans]} for t, spans in map(document_text, documents(conll))]
    write_sentences(conll, tmp_path / "s.jsonl", "spans")
    assert_same_per_document(read_data(tmp_path / "s.jsonl").sentences, conll)


def test_output_format_by_extension():
    assert output_format("x.conll") == output_format("x.txt") == output_format("x.iob") == "conll"
    assert output_format("x.jsonl") == output_format("x.JSONL") == "tokens"
    assert output_format("x.jsonl", "spans") == "spans"


def test_a_json_file_nertune_writes_reads_back(tmp_path, conll):
    write_sentences(conll, tmp_path / "out.json", output_format(tmp_path / "out.json"))
    assert_same(read_data(tmp_path / "out.json").sentences, conll)


# detect_format + read_data


def test_detect_format_by_extension_and_by_content(tmp_path, conll):
    (tmp_path / "train.conll").write_text(conll_text(conll[:3]))
    (tmp_path / "train.iob").write_text(conll_text(conll[:3]))
    (tmp_path / "train").write_text(conll_text(conll[:3]))  # no extension
    for name in ("train.conll", "train.iob", "train"):
        assert detect_format(tmp_path / name) == "conll"
        assert_same(read_data(tmp_path / name).sentences, conll[:3])
    for name in ("a.jsonl", "a.ndjson", "a.json", "A.JSON"):
        assert detect_format(tmp_path / name) == "json"  # by the name alone: the file need not exist
    assert detect_format(tmp_path / "a.spacy") == "spacy"
    assert detect_format(tmp_path / "a.parquet") == detect_format(tmp_path / "a.arrow") == "hf"

    # content: a .txt holding a JSON list, or one JSON object (after a BOM and blank lines), is JSON
    (tmp_path / "export.txt").write_text(json.dumps(label_studio_export(conll)))
    assert detect_format(tmp_path / "export.txt") == "json"
    assert_same_per_document(read_data(tmp_path / "export.txt").sentences, conll)
    record = json.dumps({"text": "EU rejects German call .", "entities": [[0, 2, "ORG"], [11, 17, "MISC"]]})
    (tmp_path / "one.txt").write_text("\n  \n" + record)
    assert detect_format(tmp_path / "one.txt") == "json"
    assert [(s.words, s.tags) for s in read_data(tmp_path / "one.txt").sentences] == [
        (["EU", "rejects", "German", "call", "."], ["B-ORG", "O", "B-MISC", "O", "O"])
    ]
    # a missing file goes to the CoNLL reader, which names it
    assert detect_format(tmp_path / "missing.txt") == "conll"
    with pytest.raises(NertuneError) as error:
        read_data(tmp_path / "missing.txt")
    assert str(error.value) == f"{tmp_path / 'missing.txt'}: file not found — fix: check the path"


def test_detect_format_of_folders(tmp_path):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "dataset_dict.json").write_text('{"splits": ["train"]}')
    (tmp_path / "brat").mkdir()
    (tmp_path / "brat" / "a.ann").write_text("T1\tORG 0 2\tEU\n")
    (tmp_path / "brat" / "a.txt").write_text("EU rejects German call .\n")
    assert detect_format(tmp_path / "hf") == "hf"
    assert detect_format(tmp_path / "brat") == "brat"
    assert [s.tags for s in read_data(tmp_path / "brat").sentences] == [["B-ORG", "O", "O", "O", "O"]]
    (tmp_path / "empty").mkdir()
    with pytest.raises(NertuneError) as error:
        detect_format(tmp_path / "empty")
    assert str(error.value).startswith(f"{tmp_path / 'empty'}: is a folder, but neither a Hugging Face dataset")


def test_detect_format_sniffs_docbin_and_parquet_files_by_their_bytes(tmp_path, conll):
    spacy = pytest.importorskip("spacy")
    datasets = pytest.importorskip("datasets")
    from spacy.tokens import Doc, DocBin  # noqa: PLC0415
    from spacy.tokens import Span as SpacySpan  # noqa: PLC0415

    nlp = spacy.blank("en")
    sentence = conll[0]
    doc = Doc(nlp.vocab, words=sentence.words)
    doc.ents = [SpacySpan(doc, a, b, label=k) for a, b, k in entity_spans(sentence.tags)]
    DocBin(docs=[doc]).to_disk(tmp_path / "docs.bin")  # a name that says nothing
    datasets.Dataset.from_dict({"tokens": [sentence.words], "ner_tags": [sentence.tags]}).to_parquet(str(tmp_path / "rows.data"))
    assert detect_format(tmp_path / "docs.bin") == "spacy"
    assert_same(read_data(tmp_path / "docs.bin").sentences, [sentence])
    assert detect_format(tmp_path / "rows.data") == "hf"  # read: test_a_parquet_file_with_another_name_reads_as_sniffed


def test_a_parquet_file_with_another_name_reads_as_sniffed(tmp_path, conll):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"tokens": [conll[0].words], "ner_tags": [conll[0].tags]}).to_parquet(str(tmp_path / "rows.data"))
    assert detect_format(tmp_path / "rows.data") == "hf"
    assert_same(read_data(tmp_path / "rows.data").sentences, conll[:1])


def test_a_json_file_with_a_bom_reads(tmp_path):
    record = {"text": "EU rejects German call .", "entities": [[0, 2, "ORG"]]}
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + json.dumps(record).encode() + b"\n")
    assert [s.tags for s in read_data(tmp_path / "bom.jsonl").sentences] == [["B-ORG", "O", "O", "O", "O"]]
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + json.dumps([record]).encode())
    assert detect_format(tmp_path / "bom.json") == "json"
    assert [s.tags for s in read_data(tmp_path / "bom.json").sentences] == [["B-ORG", "O", "O", "O", "O"]]


def test_a_txt_file_of_json_lines_reads_as_promised(tmp_path, conll):
    (tmp_path / "lines.txt").write_text(tokens_jsonl(conll))
    assert detect_format(tmp_path / "lines.txt") == "json"
    assert_same(read_data(tmp_path / "lines.txt").sentences, conll)


def test_an_upper_case_jsonl_name_reads_line_by_line(tmp_path, conll):
    (tmp_path / "DATA.JSONL").write_text(tokens_jsonl(conll))
    assert_same(read_data(tmp_path / "DATA.JSONL").sentences, conll)


def test_json_records_bad_shapes_name_the_file_and_line(tmp_path):
    good = '{"text": "EU rejects German call .", "entities": [[0, 2, "ORG"]]}\n\n'  # blank lines are skipped
    cases = [
        ('{"text": "EU", "entities": [[0, 2]]}', "span [0, 2] is not [start, end, TYPE] or {start, end, label}"),
        ('{"text": "EU", "entities": [[2, 0, "ORG"]]}', "span [2, 0, 'ORG'] is not [start, end, TYPE]"),
        ('{"words": ["a"]}', "the record has 'words' but no tags field (ner_tags / tags / labels / ner)"),
        ('{"foo": 1}', "the record has no 'tokens or text' field (it has: foo)"),
        ('{"text": 5}', "the text is int, not a string"),
        ("[1]", "the record is list, not a JSON object"),
        ('{"tokens": ["a", "b"], "ner_tags": ["O"]}', "'tokens' and 'ner_tags' must be lists of the same length (got 2 and 1)"),
        ('{"tokens": ["a"], "ner_tags": ["PER-X"]}', "unknown tag shape 'PER-X'"),
        ('{"tokens": [""], "ner_tags": ["O"]}', "word 0 is ''; every word must be a non-empty string"),
        ("{bad", "not JSON (Expecting property name enclosed in double quotes, column 2)"),
    ]
    for record, message in cases:
        path = tmp_path / "bad.jsonl"
        path.write_text(good + record + "\n")
        with pytest.raises(NertuneError) as error:
            read_data(path)
        assert str(error.value).startswith(f"{path}:3: {message}"), (record, str(error.value))
        assert "\n" not in str(error.value)
    (tmp_path / "bad.json").write_text('[\n{"text": "ok"},\n{bad}\n]')
    with pytest.raises(NertuneError) as error:
        read_data(tmp_path / "bad.json")
    assert str(error.value).startswith(f"{tmp_path / 'bad.json'}:3: not JSON (")
    (tmp_path / "records.json").write_text('{"data": [{"text": "ok"}, {"tokens": ["a"], "ner_tags": ["X-Y"]}]}')
    with pytest.raises(NertuneError) as error:
        read_data(tmp_path / "records.json")
    assert str(error.value).startswith(f"{tmp_path / 'records.json'}: record 2: unknown tag shape 'X-Y' — fix:")
    (tmp_path / "empty.json").write_text('{"data": []}')
    with pytest.raises(NertuneError) as error:
        read_data(tmp_path / "empty.json")
    assert str(error.value).startswith(f"{tmp_path / 'empty.json'}: no records with words found")


def test_json_field_names_can_be_given(tmp_path):
    path = write_lines(tmp_path / "own.jsonl", [{"content": "Peter Blackburn spoke .", "ents": [[0, 15, "PER"]]}])
    with pytest.raises(NertuneError, match="own.jsonl:1: the record has no 'tokens or text' field"):
        read_data(path)
    read = read_data(path, ReadOptions(text_field="content", spans_field="ents"))
    assert [(s.words, s.tags) for s in read.sentences] == [(["Peter", "Blackburn", "spoke", "."], ["B-PER", "I-PER", "O", "O"])]
    path = write_lines(tmp_path / "words.jsonl", [{"w": ["Peter", "Blackburn"], "t": ["B-PER", "L-PER"]}])
    read = read_data(path, ReadOptions(tokens_field="w", tags_field="t"))
    assert [s.tags for s in read.sentences] == [["B-PER", "I-PER"]] and read.scheme == "bioes"


# span policies


def spans_file(tmp_path, text: str, spans, name: str = "spans.jsonl") -> Path:
    """Two records: a plain one, then `text` with `spans` (so messages name line 2)."""
    return write_lines(tmp_path / name, [{"text": "Nothing here .", "entities": []}, {"text": text, "entities": [list(s) for s in spans]}])


def read_spans(text: str, spans, **options) -> tuple[list[tuple[list[str], list[str]]], SpanReport]:
    report = SpanReport()
    out = text_to_sentences(text, [Span(*s) for s in spans], "rec", report=report, **options)
    return [(s.words, s.tags) for s in out], report


def test_a_span_edge_inside_a_word_splits_it_with_a_notice_or_is_refused(tmp_path):
    text = "EU rejects Germans call ."
    path = spans_file(tmp_path, text, [(0, 2, "ORG"), (11, 17, "MISC")])
    read = read_json(path)
    assert [(s.words, s.tags) for s in read.sentences][1] == (
        ["EU", "rejects", "German", "s", "call", "."],
        ["B-ORG", "O", "B-MISC", "O", "O", "O"],
    )
    assert read.notices == [
        f"{path}: 1 span edges fell inside a word: the word was split at the edge (--strict-spans refuses instead) "
        "(spans.jsonl line 2 [11, 17) MISC in 'Germans')"
    ]
    with pytest.raises(NertuneError) as error:
        read_json(path, ReadOptions(strict_spans=True))
    assert str(error.value) == (
        "span edge inside a word: spans.jsonl line 2 [11, 17) MISC in 'Germans' "
        "— fix: move the span to word boundaries, or leave out --strict-spans to split the word there"
    )


def test_more_than_three_places_are_counted_not_listed():
    _, report = read_spans(
        "Germans and Britons and Danes and Swedes .", [(0, 6, "MISC"), (12, 18, "MISC"), (24, 28, "MISC"), (34, 39, "MISC")]
    )
    (notice,) = report.notices("f.jsonl", "longest")
    assert notice.startswith("f.jsonl: 4 span edges fell inside a word")
    assert notice.endswith("rec [24, 28) MISC in 'Danes'; and 1 more)")
    assert report.spans == report.entities == 4


NESTED = "New York City Council met ."  # LOC [0, 13) inside ORG [0, 21)
# crossing: LOC "New York" [0, 8) and ORG "York City Council" [4, 21): the later one is longer
OVERLAPS = {
    ("nested", "longest"): ["B-ORG", "I-ORG", "I-ORG", "I-ORG", "O", "O"],
    ("nested", "outer"): ["B-ORG", "I-ORG", "I-ORG", "I-ORG", "O", "O"],
    ("crossing", "longest"): ["O", "B-ORG", "I-ORG", "I-ORG", "O", "O"],
    ("crossing", "outer"): ["B-LOC", "I-LOC", "O", "O", "O", "O"],
}
SPANS = {"nested": [(0, 13, "LOC"), (0, 21, "ORG")], "crossing": [(0, 8, "LOC"), (4, 21, "ORG")]}


@pytest.mark.parametrize("kind,policy", list(OVERLAPS))
def test_overlapping_spans_keep_the_longest_or_the_outer(tmp_path, kind, policy):
    path = spans_file(tmp_path, NESTED, SPANS[kind])
    read = read_json(path, ReadOptions(overlaps=policy))
    assert [s.tags for s in read.sentences][1] == OVERLAPS[kind, policy]
    (kept,) = {t[2:] for t in OVERLAPS[kind, policy] if t != "O"}
    (lost,) = {"LOC", "ORG"} - {kept}
    (notice,) = read.notices
    assert notice.startswith(
        f"{path}: 1 spans overlapped another: kept the {policy} (--overlaps longest|outer|refuse) (spans.jsonl line 2 "
    )
    assert f") {lost} vs [" in notice and notice.endswith(f") {kept})")


@pytest.mark.parametrize("kind", ["nested", "crossing"])
def test_overlapping_spans_refused(tmp_path, kind):
    path = spans_file(tmp_path, NESTED, SPANS[kind])
    with pytest.raises(NertuneError) as error:
        read_json(path, ReadOptions(overlaps="refuse"))
    second = "[0, 13) LOC vs [0, 21) ORG" if kind == "nested" else "[4, 21) ORG vs [0, 8) LOC"
    assert str(error.value) == (
        f"overlapping spans: spans.jsonl line 2 {second} — fix: nertune trains flat NER: choose --overlaps longest or outer, "
        "or remove one of the spans"
    )


def test_same_spans_twice_are_one_and_an_unknown_policy_is_refused():
    assert read_spans("EU rejects", [(0, 2, "ORG"), (0, 2, "ORG")])[0] == [(["EU", "rejects"], ["B-ORG", "O"])]
    with pytest.raises(NertuneError, match="unknown overlap policy 'inner' — fix: use --overlaps longest, outer or refuse"):
        read_spans("EU rejects", [(0, 2, "ORG")], overlaps="inner")


def test_a_span_across_a_sentence_boundary_joins_the_sentences(tmp_path):
    text = "I met Peter\nBlackburn in Brussels .\nHe left ."  # a line break always ends a sentence
    start, end, city = text.index("Peter"), text.index("Blackburn") + len("Blackburn"), text.index("Brussels")
    path = spans_file(tmp_path, text, [(start, end, "PER"), (city, city + 8, "LOC")])
    read = read_json(path)
    assert [(s.words, s.tags) for s in read.sentences][1:] == [
        (["I", "met", "Peter", "Blackburn", "in", "Brussels", "."], ["O", "O", "B-PER", "I-PER", "O", "B-LOC", "O"]),
        (["He", "left", "."], ["O", "O", "O"]),
    ]
    assert [s.document for s in read.sentences] == [0, 1, 1]
    assert read.notices == [f"{path}: 1 spans crossed a sentence boundary: those sentences were joined (spans.jsonl line 2 [6, 21) PER)"]
    # a span across three sentences joins all three
    rows, report = read_spans("A\nB\nC\nD", [(0, 5, "ORG")])
    assert rows == [(["A", "B", "C"], ["B-ORG", "I-ORG", "I-ORG"]), (["D"], ["O"])]
    assert len(report.joined_sentences) == 2


def test_blank_and_outside_spans_are_dropped_and_counted(tmp_path):
    text = "EU rejects  German call ."
    path = spans_file(tmp_path, text, [(10, 12, "ORG"), (100, 105, "PER"), (12, 18, "MISC")])
    read = read_json(path)
    assert [(s.words, s.tags) for s in read.sentences][1] == (["EU", "rejects", "German", "call", "."], ["O", "O", "B-MISC", "O", "O"])
    assert read.notices == [
        f"{path}: 2 spans covered no word (blank or outside the text): dropped "
        "(spans.jsonl line 2 [10, 12) ORG; spans.jsonl line 2 [100, 105) PER)"
    ]
    _, report = read_spans(text, [(10, 12, "ORG"), (100, 105, "PER"), (12, 18, "MISC")])
    assert (report.spans, report.entities, len(report.empty)) == (3, 1, 2)


def test_an_empty_span_inside_a_word_leaves_the_word_whole():
    rows, report = read_spans("EU rejects German", [(6, 6, "ORG")])
    assert rows == [(["EU", "rejects", "German"], ["O", "O", "O"])]
    assert report.split_words == []


# CoNLL: IO tags, comments, tag column, BILOU


def test_io_tags_are_converted_with_a_notice_naming_the_types():
    read = parse_conll("EU ORG\nrejects O\nGerman MISC\nBritish MISC\n\nPeter PER\nBlackburn PER\n", "io.conll")
    assert read.scheme == "io"
    assert [s.tags for s in read.sentences] == [["B-ORG", "O", "B-MISC", "I-MISC"], ["B-PER", "I-PER"]]
    assert read.notices == ["io.conll: tags are IO (bare types: MISC, ORG, PER); converted to IOB2"]
    assert detect_scheme([["PER", "O"]]) == "io"


@pytest.mark.parametrize(
    "text,line,bare",
    [("EU ORG\nrejects O\n\nGerman B-MISC\n", 1, "ORG"), ("EU B-ORG\nrejects O\n\n# sent_id = 2\nGerman MISC\n", 5, "MISC")],
)
def test_a_file_mixing_io_and_prefixed_tags_is_refused_at_the_bare_tag(text, line, bare):
    with pytest.raises(NertuneError) as error:
        parse_conll(text, "mixed.conll")
    assert str(error.value) == f"mixed.conll:{line}: bare type {bare!r} (IO) in a file with B-/I- tags — fix: use one tag scheme in a file"


def test_comment_lines_at_sentence_starts_are_skipped_but_the_word_hash_is_kept(tmp_path):
    text = (
        "# newdoc id = a\n# text = EU rejects #\n# sent_id = 1\nEU B-ORG\nrejects O\n# O\n\n"
        "# O\nhashtag O\n\n#note\n# sent_id=3\n#EU B-ORG\n"
    )
    (tmp_path / "c.conllu").write_text(text)
    read = read_data(tmp_path / "c.conllu")
    assert [(s.words, s.tags, s.line) for s in read.sentences] == [
        (["EU", "rejects", "#"], ["B-ORG", "O", "O"], 4),
        (["#", "hashtag"], ["O", "O"], 8),  # `# O` where a sentence starts is the word # with its tag
        (["#EU"], ["B-ORG"], 13),
    ]
    assert read.notices == [] and read.scheme == "iob2"


def test_a_comment_right_after_docstart_is_skipped():
    read = parse_conll("-DOCSTART- O\n# sent_id = 1\nEU B-ORG\n", "d.conll")
    assert [s.words for s in read.sentences] == [["EU"]]


def test_tag_column_reads_another_column(tmp_path):
    text = "EU B-ORG I-NP\nrejects O I-VP\nGerman B-MISC I-NP\n"
    (tmp_path / "chunks.conll").write_text(text)
    read = read_data(tmp_path / "chunks.conll", ReadOptions(tag_column=2))
    assert [s.tags for s in read.sentences] == [["B-ORG", "O", "B-MISC"]] and read.notices == []
    last = read_data(tmp_path / "chunks.conll")  # the last column: the chunk tags, read as IOB1
    assert [s.tags for s in last.sentences] == [["B-NP", "B-VP", "B-NP"]] and last.scheme == "iob1"
    with pytest.raises(NertuneError) as error:
        read_data(tmp_path / "chunks.conll", ReadOptions(tag_column=4))
    assert str(error.value) == f"{tmp_path / 'chunks.conll'}:1: 3 columns, no column 4 — fix: check --tag-column (1 is the word)"
    # the wrong column of POS tags reads as IO entity types: only the notice tells
    (tmp_path / "pos.conll").write_text("EU NNP B-ORG\nrejects VBZ O\n")
    pos = read_data(tmp_path / "pos.conll", ReadOptions(tag_column=2))
    assert pos.scheme == "io" and [s.tags for s in pos.sentences] == [["B-NNP", "B-VBZ"]]
    assert pos.notices == [f"{tmp_path / 'pos.conll'}: tags are IO (bare types: NNP, VBZ); converted to IOB2"]


def test_bilou_tags_are_converted():
    read = parse_conll("EU U-ORG\nrejects O\nPeter B-PER\nJohn I-PER\nBlackburn L-PER\n", "bilou.conll")
    assert read.scheme == "bioes"
    assert read.sentences[0].tags == ["B-ORG", "O", "B-PER", "I-PER", "I-PER"]
    assert read.notices == ["bilou.conll: tags are BIOES; converted to IOB2"]


@pytest.mark.parametrize("tag", ["X-ORG", "B-", "1", "I_PER-"])
def test_an_unknown_tag_names_every_scheme(tag):
    with pytest.raises(NertuneError) as error:
        parse_conll(f"EU B-ORG\nrejects {tag}\n", "bad.conll")
    message = str(error.value)
    assert message.startswith(f"bad.conll:2: unknown tag shape {tag!r} — fix: tags must be O, B-/I-/E-/S-/U-/L-TYPE")
    assert "(IOB1, IOB2, BIOES, BILOU) or bare types (IO: PER), in the last column (--tag-column N picks another)" in message


# label maps


def test_label_map_renames_merges_and_drops(tmp_path, conll):
    def mapped(mapping):
        data = read_conll(conll2003_files()["train"])
        data.sentences = data.sentences[:30]
        dropped = apply_label_map(data, parse_label_map(mapping))
        return data, dropped

    renamed, dropped = mapped('{"PER": "PERSON", "ORG": "COMPANY"}')
    assert entity_counts(renamed.sentences) == Counter({"LOC": 20, "MISC": 17, "COMPANY": 12, "PERSON": 16}) and not dropped
    assert renamed.sentences[1].tags == ["B-PERSON", "I-PERSON"]
    merged, _ = mapped({"LOC": "PLACE", "MISC": "PLACE"})  # a recipe's mapping: a dict
    assert entity_counts(merged.sentences) == Counter({"PLACE": 37, "ORG": 12, "PER": 16})  # neighbours stay two entities
    assert [t for s in merged.sentences for t in s.tags].count("B-PLACE") == 37
    kept, dropped = mapped('{"MISC": null}')
    assert dropped == Counter({"MISC": 17})
    assert entity_counts(kept.sentences) == Counter({"LOC": 20, "ORG": 12, "PER": 16})
    assert [w for s in kept.sentences for w in s.words] == [w for s in conll for w in s.words]
    assert parse_label_map(None) is None and parse_label_map({}) == {}


def test_label_map_files_json_and_yaml(tmp_path):
    (tmp_path / "map.yaml").write_text("# types for our schema\nPER: PERSON\nMISC: null\nLOC: ~\n")
    assert parse_label_map(str(tmp_path / "map.yaml")) == {"PER": "PERSON", "MISC": None, "LOC": None}
    (tmp_path / "map.json").write_text('{"PER": "PERSON"}')
    assert parse_label_map(str(tmp_path / "map.json")) == {"PER": "PERSON"}
    assert parse_label_map(' {"ORG": "COMPANY"}') == {"ORG": "COMPANY"}


def test_invalid_label_maps_are_refused(tmp_path):
    (tmp_path / "list.yaml").write_text("- PER\n- ORG\n")
    (tmp_path / "bad.json").write_text('{"PER": }')
    cases = [
        ('{"B-PER": "PER"}', "label map names tags, not types: 'B-PER' — fix: map entity types (PER), not tags (B-PER)"),
        ('{"PER": "I-PER"}', "label map names tags, not types: 'I-PER'"),
        ('["PER"]', "label map '[\"PER\"]' is neither JSON nor a file — fix: give"),
        ("no-such-map.json", "label map 'no-such-map.json' is neither JSON nor a file"),
        ('{"PER": }', "label map is not valid JSON/YAML (Expecting value: line 1 column 9 (char 8)) — fix:"),
        ('{"PER": "NEW TYPE"}', "label map must map type names to type names or null — fix:"),
        ('{"PER": 3}', "label map must map type names to type names or null"),
        ('{"PER": ""}', "label map must map type names to type names or null"),
        (str(tmp_path / "list.yaml"), f"{tmp_path / 'list.yaml'}: label map must map type names to type names or null"),
        (str(tmp_path / "bad.json"), f"{tmp_path / 'bad.json'}: label map is not valid JSON/YAML (Expecting value"),
    ]
    for value, message in cases:
        with pytest.raises(NertuneError) as error:
            parse_label_map(value)
        assert str(error.value).startswith(message), (value, str(error.value))


def test_a_label_map_file_of_bad_yaml_is_one_line(tmp_path):
    (tmp_path / "bad.yaml").write_text("PER: [PERSON\n")
    with pytest.raises(NertuneError, match="label map is not valid JSON/YAML"):
        parse_label_map(str(tmp_path / "bad.yaml"))


# load_splits


def test_load_splits_notices_unseen_types_and_builds_labels_after_the_map(tmp_path, conll):
    no_per = [s for s in conll if not any(t.endswith("-PER") for t in s.tags)]
    with_per = [s for s in conll if any(t.endswith("-PER") for t in s.tags)]
    write_sentences(no_per, tmp_path / "train.jsonl", "spans")
    write_sentences(with_per, tmp_path / "validation.conll", "conll")
    write_sentences(conll, tmp_path / "test.jsonl", "tokens")
    files = {name: str(tmp_path / f) for name, f in (("train", "train.jsonl"), ("validation", "validation.conll"), ("test", "test.jsonl"))}
    per = {name: entity_counts(s)["PER"] for name, s in (("validation", with_per), ("test", conll))}
    assert per == {"validation": 16, "test": 16} and entity_counts(no_per)["PER"] == 0

    splits = load_splits(None, **files, options=ReadOptions(overlaps="outer"))
    assert splits.labels == LABELS
    assert splits.notices() == [
        "validation has entity types training never saw: PER (16); the model cannot predict them",
        "test has entity types training never saw: PER (16); the model cannot predict them",
    ]
    assert entity_counts(splits.train.sentences) == entity_counts(no_per)
    assert set(splits.md5) == {"train", "validation", "test"}

    splits = load_splits(None, **files, label_map={"PER": None, "MISC": "ORG"})
    assert splits.labels == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
    misc = {name: entity_counts(s)["MISC"] for name, s in (("train", no_per), ("validation", with_per), ("test", conll))}
    assert splits.notices() == [
        "--label-map dropped 16 validation entities (PER 16)",
        "--label-map dropped 16 test entities (PER 16)",
    ]
    assert entity_counts(splits.test.sentences) == Counter({"LOC": 20, "ORG": 12 + misc["test"]})

    # a map that renames a type training lacks to one it has: no notice
    splits = load_splits(None, **files, label_map={"PER": "LOC"}, max_eval_sentences=2)
    assert splits.labels == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG"]
    assert splits.notices() == [] and len(splits.validation.sentences) == 2


def _overlaps_by_pairs(spans, policy):
    """The oracle: every candidate checked against every span kept so far."""
    ordered = sorted(set(spans), key=lambda s: (s.start, -(s.end - s.start), s.label))
    if policy == "longest":
        ordered = sorted(ordered, key=lambda s: (-(s.end - s.start), s.start))
    kept = []
    for span in ordered:
        if not any(span.start < k.end and k.start < span.end for k in kept):
            kept.append(span)
    return sorted(kept, key=lambda s: s.start)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 60), st.integers(1, 12), st.sampled_from("ABC")), max_size=25),
    st.sampled_from(["longest", "outer"]),
)
def test_overlap_resolution_keeps_what_checking_every_pair_keeps(raw, policy):
    spans = [Span(start, start + length, label) for start, length, label in raw]
    report = SpanReport()
    kept = resolve_overlaps(spans, policy, "rec", report)
    assert kept == _overlaps_by_pairs(spans, policy)
    assert len(report.overlapping) == len(set(spans)) - len(kept)


def test_a_long_document_with_many_spans_converts_in_linear_time():
    # 40,000 words and 8,000 spans: checking every span against every word, as this once did, is 320 million pairs.
    words = [f"w{i}" if i % 5 else f"Name{i}" for i in range(40_000)]
    text = " ".join(words) + " ."
    spans, at = [], 0
    for i, word in enumerate(words):
        if i % 5 == 0:
            spans.append(Span(at, at + len(word), "PER"))
        at += len(word) + 1
    start = time.perf_counter()
    sentences = text_to_sentences(text, spans, "rec")
    assert time.perf_counter() - start < 20
    tags = [t for s in sentences for t in s.tags]
    assert tags.count("B-PER") == 8_000 and tags.count("I-PER") == 0
