"""Write sentences back out: CoNLL columns, JSON Lines of words and tags, or JSON Lines of text and spans.

All writes are all-or-nothing (nertune.atomic): an interrupted convert leaves no half-written file.
`--scheme bioes` writes BIOES tags (CoNLL and word-and-tag JSON); spans need no scheme.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from nertune.atomic import write_text
from nertune.data.conll import Sentence
from nertune.data.schemes import iob2_to_bioes
from nertune.data.spans import sentences_to_text

WRITE_FORMATS = ("conll", "tokens", "spans")


def output_format(path: str | Path, given: str | None = None) -> str:
    """conll for .conll/.txt/.iob/anything else, tokens for .jsonl (unless `given` says spans)."""
    if given:
        return given
    return "tokens" if Path(path).suffix.lower() in (".jsonl", ".ndjson", ".json") else "conll"


def _tags(tags: Sequence[str], scheme: str) -> list[str]:
    return iob2_to_bioes(tags) if scheme == "bioes" else list(tags)


def _documents(sentences: Sequence[Sentence]) -> list[list[Sentence]]:
    groups: list[list[Sentence]] = []
    for sentence in sentences:
        if not groups or sentence.document != groups[-1][0].document:
            groups.append([])
        groups[-1].append(sentence)
    return groups


def conll_text(sentences: Sequence[Sentence], scheme: str = "iob2") -> str:
    """WORD TAG lines, a blank line between sentences, -DOCSTART- between documents (when there are several)."""
    lines: list[str] = []
    documents = _documents(sentences)
    for document in documents:
        if len(documents) > 1:
            lines += ["-DOCSTART- O", ""]
        for sentence in document:
            lines += [f"{w} {t}" for w, t in zip(sentence.words, _tags(sentence.tags, scheme))] + [""]
    return "\n".join(lines)


def token_records(sentences: Sequence[Sentence], scheme: str = "iob2") -> list[dict]:
    """One record per sentence; `document` keeps the sentences of a document together when read back."""
    return [{"tokens": s.words, "ner_tags": _tags(s.tags, scheme), "document": s.document} for s in sentences]


def span_records(sentences: Sequence[Sentence]) -> list[dict]:
    """One record per document: its sentences' words joined by spaces (a line per sentence) and the entities."""
    records = []
    for document in _documents(sentences):
        text, spans = sentences_to_text(document)
        records.append({"text": text, "entities": [[s.start, s.end, s.label] for s in spans]})
    return records


def json_text(records: list[dict], path: str | Path) -> str:
    """JSON Lines, or one JSON array for a .json file (what the JSON reader takes whole)."""
    if Path(path).suffix.lower() == ".json":
        return "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n]\n"
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def write_sentences(sentences: Sequence[Sentence], path: str | Path, fmt: str, scheme: str = "iob2") -> None:
    if fmt == "conll":
        text = conll_text(sentences, scheme)
    else:
        text = json_text(token_records(sentences, scheme) if fmt == "tokens" else span_records(sentences), path)
    write_text(Path(path), text)
