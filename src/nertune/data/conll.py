"""Read CoNLL column files: one word a line, the tag in the last column.

Blank lines end sentences; `-DOCSTART-` lines end documents (kept, because
document context is worth about a point of F1). Columns are separated by
spaces or tabs; CRLF line ends are accepted. Tags end up in IOB2 whatever the
file used (IOB1 and BIOES are converted, with a notice).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from nertune.data.schemes import detect_scheme, split_tag, to_iob2
from nertune.errors import NertuneError

_COLUMN_SEPARATOR = re.compile(r"[ \t]+")


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
        return {tag[2:] for s in self.sentences for tag in s.tags if tag != "O"}


def decode_file(path: str | Path) -> str:
    """Bytes to text, failing with the line of the first bad byte."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise NertuneError("file not found", path=str(path), fix="check the path") from None
    except IsADirectoryError:
        raise NertuneError("is a directory, expected a CoNLL file", path=str(path), fix="name the file inside it") from None
    except OSError as error:
        raise NertuneError(f"cannot read file ({error.strerror})", path=str(path), fix="check permissions") from None
    if b"\x00" in raw:
        line = raw[: raw.index(b"\x00")].count(b"\n") + 1
        raise NertuneError(
            "binary data (NUL byte), not a CoNLL text file",
            path=str(path), line=line, fix="pass a text file with one 'WORD ... TAG' per line",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise NertuneError(
            f"byte 0x{raw[error.start]:02x} is not UTF-8",
            path=str(path), line=line, fix="re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
        ) from None
    return text.removeprefix("\ufeff")


def parse_conll(text: str, path: str = "<text>") -> ConllFile:
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    document = 0
    first_line = 0

    def end_sentence() -> None:
        nonlocal words, tags
        if words:
            sentences.append(Sentence(words, tags, document, first_line))
            words, tags = [], []

    # split("\n"), not splitlines(): words may legitimately contain \x0b, \x1c, \u2028…
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r").strip(" \t")
        if not line:
            end_sentence()
            continue
        if line.startswith("-DOCSTART-"):
            end_sentence()
            if sentences:
                document += 1
            continue
        columns = _COLUMN_SEPARATOR.split(line)
        if len(columns) < 2:
            raise NertuneError(
                f"one column ({columns[0][:40]!r}); expected a word and a tag",
                path=path, line=number, fix="write 'WORD TAG' (tag in the last column, space or tab between)",
            )
        tag = columns[-1]
        try:
            split_tag(tag)
        except ValueError:
            raise NertuneError(
                f"unknown tag shape {tag[:40]!r}",
                path=path, line=number, fix="tags must be O or B-/I-/E-/S-TYPE in the last column",
            ) from None
        if not words:
            first_line = number
        words.append(columns[0])
        tags.append(tag)
    end_sentence()
    if not sentences:
        raise NertuneError("no sentences found (empty file)", path=path, fix="pass a CoNLL file with 'WORD TAG' lines")

    scheme = detect_scheme([s.tags for s in sentences])
    notices = []
    if scheme != "iob2":
        for sentence in sentences:
            sentence.tags = to_iob2(sentence.tags, scheme)
        notices.append(f"{path}: tags are {scheme.upper()}; converted to IOB2")
    return ConllFile(path=path, sentences=sentences, scheme=scheme, notices=notices)


def read_conll(path: str | Path) -> ConllFile:
    return parse_conll(decode_file(path), str(path))
