"""spaCy DocBin reader: a `.spacy` file (`DocBin.to_disk`, as `spacy convert` and `spacy train` use).

Read with `DocBin().from_disk(path)` and `get_docs(spacy.blank("xx").vocab)` (the strings travel in the file,
so no language or pipeline is needed). For each Doc:
- the words are the token texts; whitespace-only tokens (spaCy keeps extra spaces and newlines as tokens)
  are left out, and the tags of the other words stay theirs;
- the tags come from `doc.ents` (IOB2: B- then I- and the entity's label); other span groups (`doc.spans`)
  and the tokens' own annotations are not read. An entity made only of whitespace tokens is dropped and
  counted in a notice; a label with whitespace in it is an error (a tag is one word);
- the sentences are `doc.sents` when the Doc has sentence boundaries (`doc.has_annotation("SENT_START")`),
  else the whole Doc is one sentence. An entity that runs across a sentence boundary joins those sentences
  (an entity is never cut in two), counted in a notice;
- each Doc is one document; documents are numbered 0, 1, 2, ... in file order (a Doc with no words is skipped).

`ConllFile.scheme` is "spans": the file holds entity spans, not tags. A file that is not a DocBin is a
one-line error. spaCy is optional (`pip install 'nertune[spacy]'`), imported only when such a file is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from nertune.data.conll import ConllFile, Sentence
from nertune.data.jsonl import ReadOptions
from nertune.data.schemes import split_tag
from nertune.errors import NertuneError


def _spacy():
    try:
        import spacy  # noqa: PLC0415  (optional dependency: only a .spacy file needs it)
    except ImportError:
        raise NertuneError("spacy is not installed", fix="pip install 'nertune[spacy]'") from None
    return spacy


def _not_docbin(path: str, error: BaseException) -> NertuneError:
    text = " ".join(str(error).split())
    text = text[:120] + ("…" if len(text) > 120 else "")
    return NertuneError(
        f"not a spaCy DocBin (.spacy) file ({type(error).__name__}: {text})",
        path=path,
        fix="pass a file written by DocBin.to_disk (`python -m spacy convert` makes one from other formats)",
    )


def _docs(path: str, spacy) -> Iterator:
    """The Docs of the file, each read as it is needed; anything the file makes spaCy raise is a one-line error."""
    target = Path(path)
    if not target.exists():
        raise NertuneError("file not found", path=path, fix="check the path")
    if target.is_dir():
        raise NertuneError("is a directory, expected a .spacy file", path=path, fix="name the .spacy file inside it")
    try:
        from spacy.tokens import DocBin  # noqa: PLC0415  (optional dependency, as above)

        docs = iter(DocBin().from_disk(target).get_docs(spacy.blank("xx").vocab))
    except OSError as error:
        raise NertuneError(f"cannot read file ({error.strerror or error})", path=path, fix="check permissions") from None
    except Exception as error:  # spaCy, msgpack and zlib raise many kinds for a file that is something else
        raise _not_docbin(path, error) from None
    while True:
        try:
            doc = next(docs)
        except StopIteration:
            return
        except Exception as error:  # the same, for a damaged Doc inside a DocBin
            raise _not_docbin(path, error) from None
        yield doc


def read_docbin(path: str, options: ReadOptions | None = None) -> ConllFile:
    """The sentences of a spaCy `.spacy` file (see the module's docstring for how Docs become sentences).
    `options` is taken for the readers' common signature; no field of it applies to a DocBin."""
    path = str(path)
    spacy = _spacy()
    sentences: list[Sentence] = []
    joined: list[str] = []
    blank: list[str] = []
    document = 0
    for number, doc in enumerate(_docs(path, spacy)):
        found = _doc_sentences(doc, f"doc {number}", document, path, joined, blank)
        if found:
            sentences.extend(found)
            document += 1
    if not sentences:
        raise NertuneError("no Docs with words", path=path, fix="check the file (DocBin.to_disk of Docs with tokens)")
    notices = []
    for places, text in (
        (joined, "entities crossed a sentence boundary: those sentences were joined"),
        (blank, "entities held only whitespace tokens: dropped"),
    ):
        if places:
            shown = "; ".join(places[:3]) + (f"; and {len(places) - 3} more" if len(places) > 3 else "")
            notices.append(f"{path}: {len(places)} {text} ({shown})")
    return ConllFile(path=path, sentences=sentences, scheme="spans", notices=notices)


def _doc_sentences(doc, where: str, document: int, path: str, joined: list[str], blank: list[str]) -> list[Sentence]:
    tags = ["O"] * len(doc)
    for ent in doc.ents:
        label = ent.label_
        try:
            split_tag(f"B-{label}")
        except ValueError:
            raise NertuneError(
                f"{where}: entity label {label[:40]!r} is not one word (tokens {ent.start}-{ent.end})",
                path=path,
                fix="rename the label without spaces (e.g. WORK_OF_ART)",
            ) from None
        inside = [i for i in range(ent.start, ent.end) if not doc[i].is_space]
        if not inside:
            blank.append(f"{where} tokens [{ent.start}, {ent.end}) {label}")
            continue
        for n, i in enumerate(inside):
            tags[i] = ("B-" if n == 0 else "I-") + label
    starts = [s.start for s in doc.sents] if doc.has_annotation("SENT_START") else [0]
    starts = sorted({s for s in starts if 0 < s < len(doc)} | {0})
    for ent in doc.ents:  # an entity across a boundary: drop the boundaries inside it
        inside = [s for s in starts if ent.start < s < ent.end]
        if inside:
            joined.append(f"{where} tokens [{ent.start}, {ent.end}) {ent.label_}")
            starts = [s for s in starts if s not in inside]
    out = []
    for start, end in zip(starts, [*starts[1:], len(doc)]):
        kept = [i for i in range(start, end) if not doc[i].is_space]
        if kept:
            out.append(Sentence([doc[i].text for i in kept], [tags[i] for i in kept], document))
    return out
