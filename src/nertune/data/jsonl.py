"""JSON Lines / JSON readers: pre-split words with tags, or raw text with character spans.

One record per line (.jsonl) or a list of records (.json; also {"data": [...]}) in any of these shapes:

    {"tokens": ["EU", "rejects", ...], "ner_tags": ["B-ORG", "O", ...]}        words and tags (Hugging Face)
    {"tokens": [...], "ner_tags": [3, 0, ...]}      integer tags: names from --label-names or labels.json
    {"text": "EU rejects ...", "entities": [[0, 2, "ORG"], ...]}                text and spans
    {"text": ..., "spans": [{"start": 0, "end": 2, "label": "ORG"}, ...]}       (Prodigy, spaCy-style)
    {"text": ..., "label": [[0, 2, "ORG"], ...]}                                (doccano's export)
    {"data": {"text": ...}, "annotations": [{"result": [{"value": {"start": 0, "end": 2, "labels": ["ORG"]}}]}]}
                                                                                 (Label Studio's JSON export)

Each record is a document (document context stays within it). Field names can be set
(`ReadOptions.tokens_field` and friends) where a file uses others.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from nertune.data.conll import MAX_LINE_CHARS, ConllFile, Sentence, file_lines
from nertune.data.records import NAMES_FIX, words_and_tags
from nertune.data.schemes import detect_scheme, to_iob2
from nertune.data.spans import Span, SpanReport, text_to_sentences
from nertune.errors import NertuneError

TOKEN_FIELDS = ("tokens", "words")
TAG_FIELDS = ("ner_tags", "tags", "labels", "ner")
TEXT_FIELDS = ("text",)
SPAN_FIELDS = ("entities", "spans", "label", "labels")
MAX_JSON_BYTES = 1 << 30  # a .json file is parsed whole: past this, write JSON Lines


@dataclass
class ReadOptions:
    """How to read a data file; every field has a CLI flag (`nertune train/convert/data`)."""

    tag_column: int | None = None  # CoNLL: the tag's column (1-based; default: the last)
    ragged: bool = False
    tokens_field: str | None = None
    tags_field: str | None = None
    text_field: str | None = None
    spans_field: str | None = None
    label_names: list[str] | None = None  # integer tags' names, in order
    strict_spans: bool = False
    overlaps: str = "longest"
    split: str | None = None  # a Hugging Face DatasetDict's split to read


def records(path: str) -> Iterator[tuple[str, int | None, object]]:
    """(where, line, record) for each record: `where` names it in messages ("line 3" or "record 3")."""
    if path.lower().endswith((".jsonl", ".ndjson")) or _json_lines(path):
        for number, line in file_lines(path):
            if not line.strip():
                continue
            try:
                yield f"line {number}", number, json.loads(line)
            except json.JSONDecodeError as error:
                raise NertuneError(
                    f"not JSON ({error.msg}, column {error.colno})", path=path, line=number, fix="write one JSON object per line"
                ) from None
        return
    size = Path(path).stat().st_size
    if size > MAX_JSON_BYTES:
        raise NertuneError(f"{size:,} bytes of JSON read whole", path=path, fix="write it as JSON Lines (.jsonl): one record per line")
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise NertuneError(f"not JSON ({error.msg})", path=path, line=error.lineno, fix="check the JSON syntax") from None
    except UnicodeDecodeError:
        raise NertuneError("not UTF-8 text", path=path, fix="save the file as UTF-8") from None
    if isinstance(data, dict):
        data = next((data[k] for k in ("data", "examples", "records") if isinstance(data.get(k), list)), [data])
    if not isinstance(data, list):
        raise NertuneError("a JSON data file holds a list of records", path=path, fix="write [{...}, {...}] or JSON Lines")
    for number, record in enumerate(data, 1):
        yield f"record {number}", None, record


def _json_lines(path: str) -> bool:
    """A file not named .jsonl that still holds one object per line (its first line parses alone)."""
    try:
        with open(path, encoding="utf-8-sig") as handle:
            first = handle.readline(MAX_LINE_CHARS).strip()
            rest = handle.read(1).strip() or handle.readline(MAX_LINE_CHARS).strip()  # bounded: a huge line is not read whole
    except (OSError, UnicodeDecodeError):
        return False
    if not first.startswith("{") or not rest:
        return False
    try:
        return isinstance(json.loads(first), dict)
    except json.JSONDecodeError:
        return False


def _field(record: dict, given: str | None, defaults: tuple[str, ...]) -> str | None:
    if given:
        return given if given in record else None
    return next((name for name in defaults if name in record), None)


def read_json(path: str | Path, options: ReadOptions | None = None) -> ConllFile:
    options = options or ReadOptions()
    path = str(path)
    sentences: list[Sentence] = []
    report = SpanReport()
    shapes: set[str] = set()
    label_names = options.label_names or _sidecar_labels(path)
    document, previous = -1, object()
    for where, line, record in records(path):
        # each record is a document, unless records carry a "document" field (tokens JSONL as convert writes it)
        key = record.get("document", object()) if isinstance(record, dict) else object()
        if not (isinstance(key, (int, str)) and key == previous):
            document += 1
        previous = key
        if not isinstance(record, dict):
            raise NertuneError(
                f"{_at(where, line)}the record is {type(record).__name__}, not a JSON object",
                path=path,
                line=line,
                fix="one object per record",
            )
        shape, found = _record_sentences(record, where, line, path, document, options, label_names, report)
        shapes.add(shape)
        sentences.extend(found)
    if not sentences:
        raise NertuneError("no records with words found", path=path, fix="see README, Your own data, for the JSON shapes read")
    notices = report.notices(path, options.overlaps)
    scheme = "spans" if shapes == {"spans"} else detect_scheme([s.tags for s in sentences])
    if scheme not in ("iob2", "spans"):
        for sentence in sentences:
            sentence.tags = to_iob2(sentence.tags, scheme)
        notices.append(f"{path}: tags are {scheme.upper()}; converted to IOB2")
    return ConllFile(path=path, sentences=sentences, scheme=scheme, notices=notices)


def _record_sentences(record, where, line, path, document, options, label_names, report) -> tuple[str, list[Sentence]]:
    tokens_key = _field(record, options.tokens_field, TOKEN_FIELDS)
    if tokens_key is not None:
        return "tokens", [_token_sentence(record, tokens_key, where, line, path, document, options, label_names)]
    if isinstance(record.get("data"), dict) and "annotations" in record:  # Label Studio
        text, spans = _label_studio(record, where, line, path, options)
    else:
        text_key = _field(record, options.text_field, TEXT_FIELDS)
        spans_key = _field(record, options.spans_field, SPAN_FIELDS)
        if text_key is None:
            expected = options.tokens_field or options.text_field or "tokens or text"
            raise NertuneError(
                f"{_at(where, line)}the record has no {expected!r} field (it has: {', '.join(list(record)[:8])})",
                path=path,
                line=line,
                fix="name the fields with --tokens-field/--tags-field or --text-field/--spans-field",
            )
        text = record[text_key]
        spans = [_span(item, where, line, path) for item in (record.get(spans_key) or [] if spans_key else [])]
    if not isinstance(text, str):
        raise NertuneError(
            f"{_at(where, line)}the text is {type(text).__name__}, not a string", path=path, line=line, fix="text must be a string"
        )
    found = text_to_sentences(text, spans, f"{Path(path).name} {where}", document, options.strict_spans, options.overlaps, report)
    return "spans", found


def _token_sentence(record, tokens_key, where, line, path, document, options, label_names) -> Sentence:
    words = record[tokens_key]
    tags_key = _field(record, options.tags_field, TAG_FIELDS)
    if tags_key is None:
        looked = " / ".join([options.tags_field] if options.tags_field else TAG_FIELDS)
        raise NertuneError(
            f"{_at(where, line)}the record has {tokens_key!r} but no tags field ({looked})",
            path=path,
            line=line,
            fix="name the tags field with --tags-field",
        )
    words, tags = words_and_tags(
        words, record[tags_key], tokens_key, tags_key, label_names, _at(where, line), path, line,
        names_fix=NAMES_FIX + " or a labels.json list beside the file",
    )  # fmt: skip
    return Sentence(words, tags, document, line or 0)


def _span(item, where, line, path) -> Span:
    if isinstance(item, (list, tuple)) and len(item) == 3:
        start, end, label = item
    elif isinstance(item, dict):
        start = item.get("start", item.get("start_offset"))
        end = item.get("end", item.get("end_offset"))
        label = item.get("label", item.get("type"))
    else:
        start = end = label = None
    if not (isinstance(start, int) and isinstance(end, int) and isinstance(label, str) and label and 0 <= start <= end):
        raise NertuneError(
            f"{_at(where, line)}span {str(item)[:60]} is not [start, end, TYPE] or {{start, end, label}}",
            path=path,
            line=line,
            fix="character offsets (end exclusive) and a type name",
        )
    return Span(start, end, label)


def _label_studio(record, where, line, path, options) -> tuple[str, list[Span]]:
    data = record["data"]
    text_key = options.text_field or next((k for k in ("text", *data) if isinstance(data.get(k), str)), None)
    if text_key is None or text_key not in data:
        raise NertuneError(
            f"{_at(where, line)}Label Studio task with no text in 'data'", path=path, line=line, fix="name it with --text-field"
        )
    annotations = [a for a in record.get("annotations") or [] if not a.get("was_cancelled")]
    spans = []
    for result in annotations[0].get("result", []) if annotations else []:  # the first annotator's, as exported
        value = result.get("value") or {}
        for label in value.get("labels") or []:
            spans.append(_span({"start": value.get("start"), "end": value.get("end"), "label": label}, where, line, path))
    return data[text_key], spans


def _sidecar_labels(path: str) -> list[str] | None:
    """label names from labels.json (a list) beside the data file, if there."""
    sidecar = Path(path).with_name("labels.json")
    if not sidecar.is_file():
        return None
    try:
        names = json.loads(sidecar.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise NertuneError("labels.json is not a JSON list of label names", path=str(sidecar), fix='write ["O", "B-PER", ...]') from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise NertuneError("labels.json is not a JSON list of label names", path=str(sidecar), fix='write ["O", "B-PER", ...]')
    return names


def _at(where: str, line: int | None) -> str:
    """The record's name before a message, unless the message's path:line already says where."""
    return "" if line else f"{where}: "
