"""Raw text with character spans -> sentences of words and IOB2 tags, the way the Tagger cuts text.

Annotation tools (doccano, Label Studio, Prodigy, brat) and many JSON files hold NER data as a text and
`(start, end, TYPE)` character spans. Training needs words and tags, so the text is cut with the same
Penn-Treebank splitter the Tagger uses on raw text (data/words.py): a model sees the same words when it
learns and when it tags.

Nothing is dropped or stretched silently; `SpanReport` counts what needed a decision and where:
- a span edge inside a word: the word is split at the edge (or, with `strict`, refused);
- overlapping or nested spans: `overlaps` decides: "longest" keeps the longer span, "outer" the one that
  contains the other (the earlier one when they only cross), "refuse" stops at the first;
- a span that crosses a sentence boundary: the sentences are joined (an entity is never cut in two);
- a span that covers no word (blank, or out of the text): dropped and counted.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Sequence

from nertune.data.conll import Sentence
from nertune.data.words import Word, sentence_words
from nertune.errors import NertuneError

OVERLAP_POLICIES = ("longest", "outer", "refuse")


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    label: str


@dataclass
class SpanReport:
    """What needed a decision, counted, with the first few places (`where` strings) of each kind."""

    spans: int = 0
    entities: int = 0
    split_words: list[str] = field(default_factory=list)
    overlapping: list[str] = field(default_factory=list)
    joined_sentences: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)

    def add(self, other: SpanReport) -> None:
        self.spans += other.spans
        self.entities += other.entities
        for name in ("split_words", "overlapping", "joined_sentences", "empty"):
            getattr(self, name).extend(getattr(other, name))

    def notices(self, path: str, overlaps: str) -> list[str]:
        out = []
        kinds = [
            ("split_words", "span edges fell inside a word: the word was split at the edge (--strict-spans refuses instead)"),
            ("overlapping", f"spans overlapped another: kept the {overlaps} (--overlaps longest|outer|refuse)"),
            ("joined_sentences", "spans crossed a sentence boundary: those sentences were joined"),
            ("empty", "spans covered no word (blank or outside the text): dropped"),
        ]
        for name, text in kinds:
            places = getattr(self, name)
            if places:
                shown = "; ".join(places[:3]) + (f"; and {len(places) - 3} more" if len(places) > 3 else "")
                out.append(f"{path}: {len(places)} {text} ({shown})")
        return out


def resolve_overlaps(spans: Sequence[Span], policy: str, where: str, report: SpanReport) -> list[Span]:
    """The spans to keep, in text order, none overlapping another."""
    if policy not in OVERLAP_POLICIES:
        raise NertuneError(f"unknown overlap policy {policy!r}", fix="use --overlaps longest, outer or refuse")
    ordered = sorted(set(spans), key=lambda s: (s.start, -(s.end - s.start), s.label))
    if policy == "longest":
        ordered = sorted(ordered, key=lambda s: (-(s.end - s.start), s.start))
    kept: list[Span] = []  # in text order, none overlapping another: so their ends are in order too
    starts: list[int] = []
    ends: list[int] = []
    for span in ordered:
        before_end = bisect.bisect_left(starts, span.end)  # the kept spans that start before this one ends
        first = bisect.bisect_right(ends, span.start)  # the first kept span that ends after this one starts
        if first >= before_end:
            at = bisect.bisect_left(starts, span.start)
            kept.insert(at, span)
            starts.insert(at, span.start)
            ends.insert(at, span.end)
            continue
        clash = kept[first]
        place = f"{where} [{span.start}, {span.end}) {span.label} vs [{clash.start}, {clash.end}) {clash.label}"
        if policy == "refuse":
            raise NertuneError(
                f"overlapping spans: {place}",
                fix="nertune trains flat NER: choose --overlaps longest or outer, or remove one of the spans",
            )
        report.overlapping.append(place)
    return kept


def _word_around(words: Sequence[Word], starts: Sequence[int], position: int) -> Word | None:
    """The word `position` falls strictly inside (words in text order, `starts` theirs), or None."""
    k = bisect.bisect_right(starts, position) - 1
    return words[k] if k >= 0 and words[k].start < position < words[k].end else None


def _cut(word: Word, edges: Sequence[int]) -> list[Word]:
    """`word` split at the `edges` (sorted, no repeats) strictly inside it."""
    inside = edges[bisect.bisect_right(edges, word.start) : bisect.bisect_left(edges, word.end)]
    if not inside:
        return [word]
    bounds = [word.start, *inside, word.end]
    return [Word(word.text[a - word.start : b - word.start], a, b) for a, b in zip(bounds, bounds[1:])]


def text_to_sentences(
    text: str,
    spans: Sequence[Span],
    where: str,
    document: int = 0,
    strict: bool = False,
    overlaps: str = "longest",
    report: SpanReport | None = None,
) -> list[Sentence]:
    """The sentences of `text` as words with IOB2 tags from `spans`; `where` names the record for messages."""
    report = report if report is not None else SpanReport()
    report.spans += len(spans)
    empty = [s for s in spans if s.end <= s.start]
    report.empty.extend(f"{where} [{s.start}, {s.end}) {s.label}" for s in empty)
    kept = resolve_overlaps([s for s in spans if s.end > s.start], overlaps, where, report)
    sentences = [list(words) for words in sentence_words(text)]
    edges = sorted({e for s in kept for e in (s.start, s.end)})
    flat = [w for words in sentences for w in words]
    flat_starts = [w.start for w in flat]
    for span in kept:
        inner = [w for w in (_word_around(flat, flat_starts, span.start), _word_around(flat, flat_starts, span.end)) if w]
        if inner:
            place = f"{where} [{span.start}, {span.end}) {span.label} in {inner[0].text!r}"
            if strict:
                raise NertuneError(
                    f"span edge inside a word: {place}",
                    fix="move the span to word boundaries, or leave out --strict-spans to split the word there",
                )
            report.split_words.append(place)
    sentences = [[piece for w in words for piece in _cut(w, edges)] for words in sentences]
    sentences = _join_crossed(sentences, kept, where, report)
    out = []
    for words in sentences:
        tags = ["O"] * len(words)
        out.append((words, tags))
    places = [(i, j) for i, (words, _) in enumerate(out) for j in range(len(words))]
    flat = [out[i][0][j] for i, j in places]
    flat_starts = [w.start for w in flat]
    for span in kept:
        covered = []
        for k in range(bisect.bisect_left(flat_starts, span.start), len(flat)):
            if flat[k].start >= span.end:
                break
            if flat[k].end <= span.end:
                covered.append(places[k])
        if not covered:
            report.empty.append(f"{where} [{span.start}, {span.end}) {span.label}")
            continue
        report.entities += 1
        for n, (i, j) in enumerate(covered):
            out[i][1][j] = ("B-" if n == 0 else "I-") + span.label
    return [Sentence([w.text for w in words], tags, document) for words, tags in out if words]


def _join_crossed(sentences: list[list[Word]], spans: Sequence[Span], where: str, report: SpanReport) -> list[list[Word]]:
    """Join consecutive sentences that one span runs across."""
    if len(sentences) < 2:
        return sentences
    starts, ends = [s.start for s in spans], [s.end for s in spans]  # text order, none overlapping: ends in order too
    joined = [sentences[0]]
    for words in sentences[1:]:
        previous_end, start = joined[-1][-1].end if joined[-1] else -1, words[0].start if words else None
        crossing = None
        if start is not None:
            first = bisect.bisect_right(ends, start)  # the first span that ends after this sentence starts
            if first < bisect.bisect_left(starts, previous_end):  # ... and starts before the previous one ends
                crossing = spans[first]
        if crossing is not None:
            report.joined_sentences.append(f"{where} [{crossing.start}, {crossing.end}) {crossing.label}")
            joined[-1] = joined[-1] + words
        else:
            joined.append(words)
    return joined


def sentences_to_text(words_and_tags: Sequence[Sentence]) -> tuple[str, list[Span]]:
    """The inverse for writing span files: words joined by single spaces, one sentence per line, and the
    entities of the (IOB2) tags as character spans of that text."""
    lines, spans, offset = [], [], 0
    for sentence in words_and_tags:
        starts = []
        position = offset
        for word in sentence.words:
            starts.append(position)
            position += len(word) + 1
        entity = None
        for j, tag in enumerate([*sentence.tags, "O"]):
            if entity and (tag == "O" or tag.startswith("B-") or tag[2:] != entity[2]):
                end_word = j - 1
                spans.append(Span(entity[0], starts[end_word] + len(sentence.words[end_word]), entity[2]))
                entity = None
            if tag != "O" and entity is None:
                entity = (starts[j], j, tag[2:])
        line = " ".join(sentence.words)
        lines.append(line)
        offset += len(line) + 1
    return "\n".join(lines), spans
