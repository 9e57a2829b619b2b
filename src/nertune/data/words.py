"""Split raw text into sentences and words with exact character spans.

CoNLL-2003 was tokenized Penn-Treebank style: `U.S.`, `Bre-X`, `1996-08-22`
and `St.` are one word; `'s`, `n't`, brackets, quotes and the sentence-final
period are words of their own. A model trained on it tags those words, so raw
text must be cut the same way, or an entity like `U.S.` becomes two words and
can be split across two entities. Words come from NLTK's Treebank tokenizer
(`NLTKWordTokenizer.span_tokenize`, run per sentence as it expects), with CJK
ideographs and symbols (emoji) made words of their own. Agreement
with the CoNLL test words: benchmarks/quality/tokenizer_agreement.py.

Sentences only decide which words share a model window, so the rules lean
towards not splitting: a line break always ends a sentence; otherwise `.`, `!`
or `?` (and any closing quotes or brackets) followed by a space and an
upper-case letter, a digit or an opening quote, unless the word before a `.`
is an abbreviation (`Mr.`, `Corp.`, `Jan.`), an initial (`J.`), a list
number (`2.`) or has inner periods (`U.S.`).

Spans are (start, end) character offsets into the original Python string:
`text[start:end]` is the word.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
import threading
import types
import unicodedata
from functools import lru_cache
from typing import NamedTuple


class Word(NamedTuple):
    text: str
    start: int
    end: int


ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof st jr sr messrs mme mlle rev gen gov sen rep lt col sgt capt cmdr adm maj pres
    co corp inc ltd plc bros dept univ assn est no nos vs etc al approx fig mt ft ave blvd rd
    jan feb mar apr jun jul aug sep sept oct nov dec mon tue tues wed thu thur thurs fri sat sun""".split()
)
# Only from a run's first mark: tried from each mark of a long run without a space after it ("a....b"), the
# match scanned the rest of the run every time (quadratic: 116 s for 100,000 periods in one text).
_TERMINATOR = re.compile(r"(?<![.!?])[.!?]+[\"'\u201d\u2019)\]}]*(?=\s)")
_OPENERS = "\"'\u201c\u2018([{"
_LINE = re.compile(r"[^\n\r\u2028\u2029\x0b\x0c\x1c\x1d\x1e\x85]+")
_FALLBACK = re.compile(r"\w+(?:[.\-'&]\w+)*\.?|[^\w\s]")
_IMPORTING = threading.Lock()


@lru_cache(maxsize=1)
def _treebank():
    with _IMPORTING:  # two server threads tagging their first text must not swap sys.modules under each other
        tokenizer = _import_privately("nltk.tokenize.destructive").NLTKWordTokenizer()
    for name in dir(tokenizer):
        if name.isupper():  # the pattern tables: STARTING_QUOTES, PUNCTUATION, ...
            setattr(tokenizer, name, _untimed(getattr(tokenizer, name)))
    return tokenizer


def _untimed(table):
    """NLTK's patterns with the same compiled `regex` engine but without NLTK's per-call time limit.

    Since 3.9.3 NLTK wraps each pattern in a Python object that hands every call a timeout, a third of the
    word splitting's time (BENCHMARKS.md, tagging). The limit guards patterns that backtrack without bound;
    these are NLTK's own fixed ones, linear on the inputs that would make them backtrack (tests/model/test_words.py).
    """
    if isinstance(table, (list, tuple)):
        return type(table)(_untimed(item) for item in table)
    return getattr(table, "_rx", table)  # nltk.redos.TimedPattern keeps the compiled pattern there


def _import_privately(name: str):
    """Import an nltk module without running `nltk/__init__.py`, which imports all of nltk and
    scipy.stats with it: 3.5 s of every `nertune predict`, against 0.1 s for the Treebank tokenizer's
    own modules. Stand-in packages carry the import; then they and the modules loaded under them leave
    sys.modules, so a later `import nltk` anywhere in the process loads the real nltk, untouched."""
    if "nltk" in sys.modules:  # already paid for
        return importlib.import_module(name)
    spec = importlib.util.find_spec("nltk")
    if spec is None or not spec.submodule_search_locations:
        return importlib.import_module(name)  # let the ImportError say what is missing
    before = set(sys.modules)
    parts = name.split(".")
    for depth in range(1, len(parts)):
        package = types.ModuleType(".".join(parts[:depth]))
        package.__path__ = [os.path.join(spec.submodule_search_locations[0], *parts[1:depth])]
        sys.modules[package.__name__] = package
    try:
        return importlib.import_module(name)
    finally:
        for loaded in set(sys.modules) - before:
            if loaded == "nltk" or loaded.startswith("nltk."):
                del sys.modules[loaded]


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences in `text`, whitespace trimmed, in order."""
    spans: list[tuple[int, int]] = []
    for line in _LINE.finditer(text):
        start = _skip_space(text, line.start(), line.end())
        for match in _TERMINATOR.finditer(text, start, line.end()):
            if match.start() >= start and _ends_sentence(text, match, start, line.end()):
                spans.append((start, match.end()))
                start = _skip_space(text, match.end(), line.end())
        end = line.end()
        while end > start and text[end - 1].isspace():
            end -= 1
        if end > start:
            spans.append((start, end))
    return spans


def _skip_space(text: str, position: int, end: int) -> int:
    while position < end and text[position].isspace():
        position += 1
    return position


def _ends_sentence(text: str, match: re.Match, sentence_start: int, line_end: int) -> bool:
    after = _skip_space(text, match.end(), line_end)
    if after >= line_end:
        return False  # the line ends the sentence anyway
    following = text[after]
    if following in _OPENERS and after + 1 < line_end:
        following = text[after + 1]
    if not (following.isupper() or following.isdigit() or following in _OPENERS):
        return False
    if match.group().rstrip("\"'\u201d\u2019)]}") != ".":
        return True  # ! ? or an ellipsis
    word_start = match.start()
    while word_start > sentence_start and not text[word_start - 1].isspace():
        word_start -= 1
    return not _keeps_period(text[word_start : match.start()].lstrip(_OPENERS))


def _keeps_period(word: str) -> bool:
    """Whether `word` + "." is one word: an abbreviation, initial, list number or `U.S.`-like."""
    if not word:
        return False
    return (
        "." in word
        or (len(word) == 1 and word.isalpha())
        or word.lower() in ABBREVIATIONS
        or (word.isdigit() and len(word) <= 2)  # a list number: "2. Katja Seizinger"
    )


def sentence_words(text: str) -> list[list[Word]]:
    """Words of each sentence of `text`; empty or blank text gives []."""
    return [words for start, end in split_sentences(text) if (words := _words(text, start, end))]


def split_words(text: str) -> list[Word]:
    """All words of `text`, in order."""
    return [word for sentence in sentence_words(text) for word in sentence]


def _words(text: str, start: int, end: int) -> list[Word]:
    sentence = text[start:end]
    try:
        spans = list(_treebank().span_tokenize(sentence))
    except ValueError:
        # The Treebank tokenizer rewrites some character runs it then cannot align back
        # (rare: odd quote sequences); a plain rule set keeps the offsets exact there.
        spans = [m.span() for m in _FALLBACK.finditer(sentence)]
    words: list[Word] = []
    for a, b in _split_periods(sentence, spans):
        for c, d in _split_isolated(sentence, a, b):
            words.append(Word(sentence[c:d], start + c, start + d))
    return words


def _split_periods(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Cut the period off `Smith.` inside a sentence (left there when a sentence split was not
    certain, e.g. before a lower-case word); keep it on abbreviations (the Treebank rule)."""
    out = []
    for a, b in spans:
        word = text[a:b]
        if len(word) > 1 and word[-1] == "." and word[-2].isalnum() and not _keeps_period(word[:-1]):
            out += [(a, b - 1), (b - 1, b)]
        else:
            out.append((a, b))
    return out


def _split_isolated(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Make each CJK ideograph and each symbol (emoji, ©, ™) a word of its own.

    BERT's basic tokenizer splits CJK ideographs the same way; a symbol glued to
    a word would otherwise turn the whole word into [UNK] (`Paris😀`).
    """
    if text[start:end].isascii():
        return [(start, end)]
    pieces: list[tuple[int, int]] = []
    run = start
    for i in range(start, end):
        if _isolated(text[i]):
            if run < i:
                pieces.append((run, i))
            pieces.append((i, i + 1))
            run = i + 1
    if run < end:
        pieces.append((run, end))
    return pieces


def _isolated(ch: str) -> bool:
    cp = ord(ch)
    # The CJK Unified Ideograph blocks BERT's tokenizer splits (kana and hangul stay whole).
    cjk = 0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0xF900 <= cp <= 0xFAFF or 0x20000 <= cp <= 0x2FA1F
    return cjk or unicodedata.category(ch) == "So"
