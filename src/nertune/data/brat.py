"""brat standoff reader: a folder of NAME.txt + NAME.ann pairs (what brat keeps on disk and exports).

The folder's own files only: sub-folders are not entered, and a link to a file outside the folder is ignored
(counted in a notice). Files other than .txt and .ann (annotation.conf, visual.conf, ...) are not read. The
pairs are read in name order; a .txt without its .ann, or an .ann without its .txt, is an error naming it.
Each pair is one document; documents are numbered 0, 1, 2, ... in that order (a text with no words is skipped).

In the .ann, only text-bound annotations are read: `T<n><TAB><TYPE> <start> <end><TAB><text>`, offsets in
characters of the .txt (read as UTF-8, with no newline translation: "\\r\\n" counts two characters, as brat
counts them), end exclusive. Checked, the error naming file:line: the line has that shape, the offsets lie in
the text, and the annotation's text equals the .txt's characters there (a whitespace character may stand for
another, e.g. a newline written as a space). Not guessed, counted in notices:
- discontinuous entities (`<start> <end>;<start> <end>`): skipped, since flat NER cannot hold them;
- relations, events, attributes, normalizations, notes and equivalences (R, E, A/M, N, #, * lines): ignored.
Any other line is an error.

The text is cut into sentences and words the way the Tagger cuts raw text (`text_to_sentences`), with
`ReadOptions.strict_spans` and `ReadOptions.overlaps` deciding span edges inside words and overlapping
entities; what needed a decision is counted in notices (`SpanReport`). `ConllFile.scheme` is "spans".
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

from nertune.data.conll import ConllFile, Sentence
from nertune.data.jsonl import ReadOptions
from nertune.data.spans import Span, SpanReport, text_to_sentences
from nertune.errors import NertuneError

_ENTITY = re.compile(r"^(\S+) +(\d+) +(\d+)((?:;\d+ +\d+)*)$")  # TYPE START END[;START END]...
IGNORED_KINDS = {
    "R": "relations",
    "E": "events",
    "A": "attributes",
    "M": "attributes",
    "N": "normalizations",
    "#": "notes",
    "*": "equivalences",
}


def read_brat(folder: str, options: ReadOptions | None = None) -> ConllFile:
    """The sentences of a brat standoff folder (see the module's docstring for what is read and checked)."""
    options = options or ReadOptions()
    folder = str(folder)
    names, outside = _pairs(folder)
    report = SpanReport()
    sentences: list[Sentence] = []
    discontinuous: list[str] = []
    ignored: Counter[str] = Counter()
    document = 0
    for name in names:
        text = _read(os.path.join(folder, f"{name}.txt"))
        spans = _entities(os.path.join(folder, f"{name}.ann"), text, f"{name}.txt", discontinuous, ignored)
        found = text_to_sentences(text, spans, f"{name}.txt", document, options.strict_spans, options.overlaps, report)
        if found:
            sentences.extend(found)
            document += 1
    if not sentences:
        raise NertuneError("no words in any .txt file", path=folder, fix="check the folder holds the brat documents")
    notices = []
    if outside:
        notices.append(f"{folder}: {len(outside)} links to files outside the folder ignored ({', '.join(outside[:3])})")
    if discontinuous:
        shown = "; ".join(discontinuous[:3]) + (f"; and {len(discontinuous) - 3} more" if len(discontinuous) > 3 else "")
        notices.append(f"{folder}: {len(discontinuous)} discontinuous entities skipped: flat NER cannot hold them ({shown})")
    if ignored:
        kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(ignored.items()))
        notices.append(f"{folder}: annotation lines other than entities ignored ({kinds})")
    notices.extend(report.notices(folder, options.overlaps))
    return ConllFile(path=folder, sentences=sentences, scheme="spans", notices=notices)


def _pairs(folder: str) -> tuple[list[str], list[str]]:
    """The NAMEs that have NAME.txt and NAME.ann in the folder, sorted, and the links leading outside it."""
    root = Path(folder)
    if not root.exists():
        raise NertuneError("folder not found", path=folder, fix="check the path")
    if not root.is_dir():
        raise NertuneError("a brat corpus is a folder of NAME.txt + NAME.ann files", path=folder, fix="pass the folder that holds them")
    inside = root.resolve()
    texts, annotations, outside = set(), set(), []
    try:
        entries = list(os.scandir(root))
    except OSError as error:
        raise NertuneError(f"cannot list the folder ({error.strerror})", path=folder, fix="check permissions") from None
    for entry in entries:
        stem, suffix = os.path.splitext(entry.name)
        if suffix not in (".txt", ".ann") or not stem:
            continue
        if entry.is_symlink():
            target = Path(entry.path).resolve()
            if not target.is_relative_to(inside):
                outside.append(entry.name)
                continue
        if not entry.is_file():  # a folder named x.txt, a broken link: not a document
            continue
        (texts if suffix == ".txt" else annotations).add(stem)
    orphans = sorted(annotations ^ texts)
    if orphans:
        stem = orphans[0]
        have, missing = (f"{stem}.ann", f"{stem}.txt") if stem in annotations else (f"{stem}.txt", f"{stem}.ann")
        raise NertuneError(
            f"{have} has no {missing} beside it",
            path=os.path.join(folder, have),
            fix=f"add {missing} (an empty .ann for a text with no entities), or move {have} out of the folder",
        )
    if not texts:
        raise NertuneError("no NAME.txt + NAME.ann pairs in the folder", path=folder, fix="pass the folder of a brat corpus")
    return sorted(texts), sorted(outside)


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", newline="") as handle:  # brat's offsets count "\r\n" as two characters
            return handle.read()
    except UnicodeDecodeError as error:
        raise NertuneError(f"byte {error.start} is not UTF-8", path=path, fix="re-save the file as UTF-8") from None
    except OSError as error:
        raise NertuneError(f"cannot read file ({error.strerror})", path=path, fix="check permissions") from None


def _same_text(written: str, sliced: str) -> bool:
    return len(written) == len(sliced) and all(a == b or (a.isspace() and b.isspace()) for a, b in zip(written, sliced))


def _entities(path: str, text: str, text_name: str, discontinuous: list[str], ignored: Counter) -> list[Span]:
    spans = []
    for number, line in enumerate(_read(path).split("\n"), 1):
        line = line.removesuffix("\r")
        if number == 1:
            line = line.removeprefix("\ufeff")
        if not line.strip():
            continue
        kind = line[0]
        if kind in IGNORED_KINDS:
            ignored[IGNORED_KINDS[kind]] += 1
            continue
        fields = line.split("\t", 2)
        match = _ENTITY.match(fields[1]) if kind == "T" and len(fields) == 3 else None
        if match is None:
            expected = "T<n><TAB>TYPE START END<TAB>text" if kind == "T" else "a brat annotation line (T, R, E, A, M, N, # or *)"
            raise NertuneError(f"{line[:60]!r} is not {expected}", path=path, line=number, fix="correct or remove the line")
        label, start, end = match.group(1), int(match.group(2)), int(match.group(3))
        fragments = [(start, end)] + [tuple(map(int, f.split())) for f in match.group(4).split(";")[1:]]
        bad = next(((s, e) for s, e in fragments if not s <= e <= len(text)), None)
        if bad is not None:
            raise NertuneError(
                f"{fields[0]}: offsets {bad[0]} {bad[1]} are not a span of {text_name} ({len(text)} characters)",
                path=path,
                line=number,
                fix="offsets are characters of the .txt, start <= end: re-export the pair from brat",
            )
        if len(fragments) > 1:
            discontinuous.append(f"{text_name} {fields[0]} {label} {';'.join(f'{s} {e}' for s, e in fragments)}")
            continue
        if not _same_text(fields[2], text[start:end]):
            raise NertuneError(
                f"{fields[0]}: the annotation's text is {fields[2][:40]!r} but {text_name}[{start}:{end}] is {text[start:end][:40]!r}",
                path=path,
                line=number,
                fix="the .ann does not belong to this .txt, or the .txt was edited after annotation: re-export the pair",
            )
        spans.append(Span(start, end, label))
    return spans
