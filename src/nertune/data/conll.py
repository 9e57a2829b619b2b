"""Read CoNLL column files: one word a line, the tag in the last column.

Blank lines end sentences; `-DOCSTART-` lines end documents (kept, because
document context is worth about a point of F1). Columns are separated by
spaces or tabs. Lines may end in LF, CRLF (any mix of the two) or CR alone
(old Mac files); a file mixing CR-only ends with the others is refused, since
no reading of it is safe. Every line has the same number of columns, as
conlleval.pl requires, unless `ragged` says the tag is the last column
whatever the count. Tags end up in IOB2 whatever the file used (IOB1 and
BIOES are converted, with a notice).
"""

from __future__ import annotations

import io
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from nertune.data.schemes import TAG_HELP, TAG_PATTERN, detect_scheme, entity_types, is_tag, to_iob2
from nertune.errors import NertuneError

_COLUMN_SEPARATOR = re.compile(r"[ \t]+")
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # surrogateescape keeps an undecodable byte as one such character


@dataclass
class Sentence:
    words: list[str]
    tags: list[str]
    document: int = 0  # index of the -DOCSTART- block this sentence is in
    line: int = 0  # 1-based line of the sentence's first word in its file


@dataclass
class ConllFile:
    path: str
    sentences: list[Sentence]
    scheme: str  # the scheme the file was written in; tags are IOB2 now
    notices: list[str] = field(default_factory=list)

    @property
    def entity_types(self) -> set[str]:
        return set(entity_types(tag for s in self.sentences for tag in s.tags))

    def entity_counts(self) -> Counter:
        """Entities per type (each B- tag starts one: the tags are IOB2 once read)."""
        return Counter(tag[2:] for s in self.sentences for tag in s.tags if tag.startswith("B-"))


MAX_LINE_CHARS = 1 << 20  # a CoNLL line is a word and its columns: a longer one is not a CoNLL file


def file_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, line without its end) of a UTF-8 text file, read a line at a time with a bound on its
    length: memory stays small whatever the file holds (a 50 MB file with no line break is refused at once)."""
    try:
        handle = open(path, encoding="utf-8", errors="surrogateescape", newline="")
    except FileNotFoundError:
        raise NertuneError("file not found", path=str(path), fix="check the path") from None
    except IsADirectoryError:
        raise NertuneError("is a directory, expected a CoNLL file", path=str(path), fix="name the file inside it") from None
    except OSError as error:
        raise NertuneError(f"cannot read file ({error.strerror})", path=str(path), fix="check permissions") from None
    with handle:
        yield from text_lines(handle, str(path), from_bytes=True)


def text_lines(handle, path: str, from_bytes: bool = False) -> Iterator[tuple[int, str]]:
    """The lines of a text stream opened with newline="" (ends kept, so each line's end can be checked).

    LF, CRLF (any mix of the two) and CR alone (old Mac files) are read alike; a file mixing CR-only ends
    with the others is refused at the first line whose end differs, since no reading of it is safe."""
    first_end = None  # (kind, line number)
    number = 0
    while True:
        line = handle.readline(MAX_LINE_CHARS + 2)
        if not line:
            return
        number += 1
        body = line.rstrip("\r\n")
        end = line[len(body) :]
        if number == 1:
            body = body.removeprefix("\ufeff")
        if not end and len(line) > MAX_LINE_CHARS:
            raise NertuneError(
                f"line longer than {MAX_LINE_CHARS:,} characters: not a CoNLL file",
                path=path,
                line=number,
                fix="pass a text file with one 'WORD ... TAG' per line",
            )
        if "\x00" in body:
            raise NertuneError(
                "binary data (NUL byte), not a CoNLL text file",
                path=path,
                line=number,
                fix="pass a text file with one 'WORD ... TAG' per line",
            )
        bad = _UNDECODABLE.search(body) if from_bytes else None
        if bad is not None:
            raise NertuneError(
                f"byte 0x{ord(bad.group()) - 0xDC00:02x} is not UTF-8",
                path=path,
                line=number,
                fix="re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
            )
        if end:
            kind = "CR" if end == "\r" else "LF or CRLF"
            if first_end is None:
                first_end = (kind, number)
            elif kind != first_end[0]:
                raise NertuneError(
                    f"mixed line ends: lines end in {first_end[0]} up to here, then in {kind}",
                    path=path,
                    line=number,
                    fix="convert the file to one kind of line end (e.g. `mac2unix` or `dos2unix`, or re-save it)",
                )
        yield number, body


def string_lines(text: str, path: str) -> Iterator[tuple[int, str]]:
    return text_lines(io.StringIO(text, newline=""), path)


def column_lines(
    lines: Iterable[tuple[int, str]], path: str, ragged: bool = False, least: int = 2, comments: bool = False
) -> Iterator[tuple[int, list[str] | None]]:
    """(line number, columns) for each non-blank line, (line number, None) for a blank one. Checks that
    every word line has as many columns as the first, unless `ragged` (`-DOCSTART-` lines are not words;
    a line with fewer than `least` columns is the caller's to name). With `comments`, `#` lines where a
    sentence may start are skipped (`_comment`)."""
    expected = None
    sentence_start = True
    for number, line in lines:
        line = line.strip(" \t")
        if not line:
            sentence_start = True
            yield number, None
            continue
        columns = _COLUMN_SEPARATOR.split(line)
        if comments and sentence_start and _comment(columns):
            continue
        sentence_start = columns[0] == "-DOCSTART-"  # a sentence may start after it too
        if columns[0] == "-DOCSTART-" or len(columns) < least:
            yield number, columns
            continue
        if expected is None:
            expected = (len(columns), number)
        elif len(columns) != expected[0] and not ragged:
            raise NertuneError(
                f"{len(columns)} columns, but line {expected[1]} has {expected[0]}",
                path=path,
                line=number,
                fix="give every line the same columns, or pass --ragged-columns (the tag is the last column whatever the count)",
            )
        yield number, columns


def docstart(columns: list[str] | None) -> bool:
    return columns is not None and columns[0] == "-DOCSTART-"


def parse_conll(text: str, path: str = "<text>", ragged: bool = False, tag_column: int | None = None) -> ConllFile:
    return parse_lines(string_lines(text, path), path, ragged, tag_column)


def _comment(columns: list[str]) -> bool:
    """A `#` line where a sentence may start (CoNLL-U's `# text = ...`, `# sent_id = 3`, a note) rather than
    the word `#` with its tag (`# O`)."""
    return columns[0].startswith("#") and ("=" in columns or len(columns) == 1 or not TAG_PATTERN.match(columns[-1]))


def parse_lines(lines: Iterable[tuple[int, str]], path: str, ragged: bool = False, tag_column: int | None = None) -> ConllFile:
    """Sentences of a CoNLL column file: the word in the first column, the tag in the last (or `tag_column`,
    1-based); blank lines end sentences, -DOCSTART- lines documents, `#` lines before a sentence are comments."""
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    document = 0
    first_line = 0
    first_bare = None  # the first IO tag's line: a file may not mix IO with prefixed tags
    shapes: dict[str, bool] = {}  # tag -> whether it is prefixed (or O); a bare IO type otherwise

    def end_sentence() -> None:
        nonlocal words, tags
        if words:
            sentences.append(Sentence(words, tags, document, first_line))
            words, tags = [], []

    for number, columns in column_lines(lines, path, ragged, comments=True):
        if columns is None:
            end_sentence()
            continue
        if docstart(columns):
            end_sentence()
            if sentences:
                document += 1
            continue
        if len(columns) < 2:
            raise NertuneError(
                f"one column ({columns[0][:40]!r}); expected a word and a tag",
                path=path,
                line=number,
                fix="write 'WORD TAG' (tag in the last column, space or tab between)",
            )
        if tag_column is not None and not 1 <= tag_column <= len(columns):
            raise NertuneError(
                f"{len(columns)} columns, no column {tag_column}", path=path, line=number, fix="check --tag-column (1 is the word)"
            )
        tag = columns[tag_column - 1] if tag_column else columns[-1]
        prefixed = shapes.get(tag)
        if prefixed is None and is_tag(tag):  # a file has a handful of tags: each is checked once
            prefixed = shapes[tag] = bool(TAG_PATTERN.match(tag))
        if prefixed is None:
            where = f"column {tag_column}" if tag_column else "the last column"
            raise NertuneError(
                f"unknown tag shape {tag[:40]!r}",
                path=path,
                line=number,
                fix=f"{TAG_HELP}, in {where} (--tag-column N picks another)",
            )
        if not prefixed and first_bare is None:
            first_bare = number
        if not words:
            first_line = number
        words.append(columns[0])
        tags.append(tag)
    end_sentence()
    if not sentences:
        raise NertuneError("no sentences found (empty file)", path=path, fix="pass a CoNLL file with 'WORD TAG' lines")

    try:
        scheme = detect_scheme([s.tags for s in sentences])
    except ValueError as error:
        raise NertuneError(
            f"bare type {str(error)!r} (IO) in a file with B-/I- tags", path=path, line=first_bare, fix="use one tag scheme in a file"
        ) from None
    notices = []
    if scheme != "iob2":
        bare = sorted({t for s in sentences for t in s.tags} - {"O"})[:8] if scheme == "io" else []
        kinds = f" (bare types: {', '.join(bare)})" if bare else ""
        for sentence in sentences:
            sentence.tags = to_iob2(sentence.tags, scheme)
        notices.append(f"{path}: tags are {scheme.upper()}{kinds}; converted to IOB2")
    return ConllFile(path=path, sentences=sentences, scheme=scheme, notices=notices)


def read_conll(path: str | Path, ragged: bool = False, tag_column: int | None = None) -> ConllFile:
    return parse_lines(file_lines(path), str(path), ragged, tag_column)
