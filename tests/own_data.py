"""Helpers for the own-data tests, independent of the code under test: entities read straight off IOB2
tags, and each data format written by hand or by its own library (datasets, spaCy) from CoNLL sentences."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from nertune.data.conll import Sentence


def entity_spans(tags: list[str]) -> list[tuple[int, int, str]]:
    """(first word, end word, type) of each entity of IOB2 tags."""
    spans = []
    for i, tag in enumerate(tags):
        if tag.startswith("B-"):
            end = i + 1
            while end < len(tags) and tags[end] == f"I-{tag[2:]}":
                end += 1
            spans.append((i, end, tag[2:]))
    return spans


def entity_counts(sentences) -> Counter:
    return Counter(label for s in sentences for _, _, label in entity_spans(s.tags))


def assert_same(read, source) -> None:
    assert [s.words for s in read] == [s.words for s in source]
    assert [s.tags for s in read] == [s.tags for s in source]
    assert entity_counts(read) == entity_counts(source)


def documents(sentences) -> list[list[Sentence]]:
    groups: dict[int, list[Sentence]] = {}
    for sentence in sentences:
        groups.setdefault(sentence.document, []).append(sentence)
    return [groups[k] for k in sorted(groups)]


def document_text(sentences) -> tuple[str, list[tuple[int, int, str]]]:
    """Words joined by spaces, a line per sentence, and each entity's character span: built by hand."""
    lines, spans, offset = [], [], 0
    for sentence in sentences:
        starts, position = [], offset
        for word in sentence.words:
            starts.append(position)
            position += len(word) + 1
        for a, b, label in entity_spans(sentence.tags):
            spans.append((starts[a], starts[b - 1] + len(sentence.words[b - 1]), label))
        line = " ".join(sentence.words)
        lines.append(line)
        offset += len(line) + 1
    return "\n".join(lines), spans


def write_brat(folder: Path, name: str, sentences, extra: list[str] = ()) -> None:
    """NAME.txt (words joined by spaces, one sentence a line) and NAME.ann (one T line per entity)."""
    text, spans = document_text(sentences)
    text += "\n"
    (folder / f"{name}.txt").write_text(text, encoding="utf-8", newline="")
    rows = [f"T{n}\t{label} {start} {end}\t{text[start:end]}" for n, (start, end, label) in enumerate(spans, 1)]
    (folder / f"{name}.ann").write_text("\n".join([*rows, *extra]) + "\n", encoding="utf-8")


def spacy_doc(vocab, sentences, sentence_starts: bool):
    from spacy.tokens import Doc, Span  # noqa: PLC0415  (optional: spacy extra)

    words = [w for s in sentences for w in s.words]
    spaces = [True] * len(words)
    spaces[-1] = False
    starts = [j == 0 for s in sentences for j in range(len(s.words))] if sentence_starts else None
    doc = Doc(vocab, words=words, spaces=spaces, sent_starts=starts)
    ents, offset = [], 0
    for sentence in sentences:
        ents += [Span(doc, offset + a, offset + b, label=label) for a, b, label in entity_spans(sentence.tags)]
        offset += len(sentence.words)
    doc.ents = ents
    return doc


def labels_of(sentences) -> list[str]:
    return ["O", *sorted({t for s in sentences for t in s.tags} - {"O"})]


def write_format(fmt: str, sentences, folder: Path) -> Path:
    """`sentences` written in `fmt`, the way that format's own tool or library writes it; returns the path."""
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "conll":
        path = folder / "data.conll"
        path.write_text("\n\n".join("\n".join(f"{w} {t}" for w, t in zip(s.words, s.tags)) for s in sentences) + "\n")
    elif fmt == "tokens":
        path = folder / "data.jsonl"
        path.write_text("".join(json.dumps({"tokens": s.words, "ner_tags": s.tags}) + "\n" for s in sentences))
    elif fmt in ("spans", "doccano", "label_studio"):
        records = []
        for document in documents(sentences):
            text, spans = document_text(document)
            if fmt == "spans":
                records.append({"text": text, "entities": [list(s) for s in spans]})
            elif fmt == "doccano":
                records.append({"id": len(records) + 1, "text": text, "label": [list(s) for s in spans]})
            else:
                result = [{"value": {"start": a, "end": b, "text": text[a:b], "labels": [k]}, "from_name": "label", "to_name": "text",
                           "type": "labels"} for a, b, k in spans]  # fmt: skip
                records.append({"id": len(records) + 1, "data": {"text": text}, "annotations": [{"id": 1, "result": result}]})
        path = folder / ("data.json" if fmt == "label_studio" else "data.jsonl")
        path.write_text(json.dumps(records) if fmt == "label_studio" else "".join(json.dumps(r) + "\n" for r in records))
    elif fmt == "hf":
        import datasets  # noqa: PLC0415  (optional: datasets extra)

        labels = labels_of(sentences)
        features = datasets.Features(
            {"tokens": datasets.Sequence(datasets.Value("string")), "ner_tags": datasets.Sequence(datasets.ClassLabel(names=labels))}
        )
        rows = {"tokens": [s.words for s in sentences], "ner_tags": [[labels.index(t) for t in s.tags] for s in sentences]}
        path = folder / "hf"
        datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(path))
    elif fmt == "spacy":
        import spacy  # noqa: PLC0415  (optional: spacy extra)
        from spacy.tokens import DocBin  # noqa: PLC0415  (optional: spacy extra)

        nlp = spacy.blank("en")
        path = folder / "data.spacy"
        DocBin(docs=[spacy_doc(nlp.vocab, document, True) for document in documents(sentences)]).to_disk(path)
    elif fmt == "brat":
        path = folder / "brat"
        path.mkdir()
        for n, document in enumerate(documents(sentences)):
            write_brat(path, f"doc{n}", document)
    else:
        raise ValueError(fmt)
    return path
