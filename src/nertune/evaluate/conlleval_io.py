"""Read and write conlleval-format files: `word ... gold pred`, blank lines between sentences.

This is the file conlleval.pl reads on stdin and `nertune score` reads by name.
Tags are taken as written (IOB2 reading); with scheme="iob1" both columns are
converted from IOB1 to IOB2 first. `-DOCSTART-` lines separate documents and
are not words (conlleval.pl would count a `-DOCSTART- -X- O O` line as one
more correctly tagged word in its accuracy; entity scores are the same).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from nertune.atomic import write_text
from nertune.data.conll import column_lines, docstart, file_lines, string_lines
from nertune.data.schemes import detect_scheme, iob1_to_iob2
from nertune.errors import NertuneError

_TAG = re.compile(r"^(O|[BI]-\S+)$")
SCHEMES = ("iob2", "iob1")


@dataclass
class PredictionFile:
    path: str
    words: list[list[str]]
    gold: list[list[str]]
    pred: list[list[str]]
    lines: list[int]  # 1-based line of each sentence's first word
    scheme: str  # how the tags were read: "iob2" (as written) or "iob1" (converted)
    gold_looks_like: str  # detect_scheme's guess for the gold column, for a notice


def _check_tag(tag: str, path: str, number: int, column: str) -> None:
    if _TAG.match(tag):
        return
    if re.match(r"^[ESLU]-\S+$", tag):
        fix = "nertune score reads IOB2 (default) or IOB1 (--scheme iob1) tags; convert BIOES tags first"
    else:
        fix = "each line is 'WORD GOLD PRED' with tags O, B-TYPE or I-TYPE in the last two columns"
    raise NertuneError(f"{column} tag {tag[:40]!r} is not O, B-TYPE or I-TYPE", path=path, line=number, fix=fix)


def parse_predictions(text: str, path: str = "<text>", scheme: str = "iob2", ragged: bool = False) -> PredictionFile:
    return parse_prediction_lines(string_lines(text, path), path, scheme, ragged)


def parse_prediction_lines(text_lines, path: str, scheme: str = "iob2", ragged: bool = False) -> PredictionFile:
    if scheme not in SCHEMES:
        raise NertuneError(f"unknown scheme {scheme!r}", fix="use --scheme iob2 or --scheme iob1")
    words: list[list[str]] = []
    gold: list[list[str]] = []
    pred: list[list[str]] = []
    lines: list[int] = []
    current: list[tuple[str, str, str]] = []

    def end_sentence() -> None:
        if current:
            words.append([w for w, _, _ in current])
            gold.append([g for _, g, _ in current])
            pred.append([p for _, _, p in current])
            current.clear()

    for number, columns in column_lines(text_lines, path, ragged, least=3):
        if columns is None or docstart(columns):
            end_sentence()
            continue
        if len(columns) < 3:
            raise NertuneError(
                f"{len(columns)} column(s); expected a word, the gold tag and the predicted tag",
                path=path,
                line=number,
                fix="write 'WORD GOLD PRED' per line (to score a model on a plain CoNLL file use `nertune evaluate MODEL --file FILE`)",
            )
        _check_tag(columns[-2], path, number, "gold")
        _check_tag(columns[-1], path, number, "predicted")
        if not current:
            lines.append(number)
        current.append((columns[0], columns[-2], columns[-1]))
    end_sentence()
    if not words:
        raise NertuneError("no sentences found (empty file)", path=path, fix="pass a file with 'WORD GOLD PRED' lines")
    looks_like = detect_scheme(gold)
    if scheme == "iob1":
        gold = [iob1_to_iob2(tags) for tags in gold]
        pred = [iob1_to_iob2(tags) for tags in pred]
    return PredictionFile(path, words, gold, pred, lines, scheme, looks_like)


def read_predictions(path: str | Path, scheme: str = "iob2", ragged: bool = False) -> PredictionFile:
    return parse_prediction_lines(file_lines(path), str(path), scheme, ragged)


def safe_word(word: str) -> str:
    # A word with whitespace inside would split into extra columns for conlleval.pl.
    return "".join("_" if c.isspace() else c for c in word) or "_"


def format_predictions(words: Sequence[Sequence[str]], gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> str:
    blocks = []
    for sentence_words, sentence_gold, sentence_pred in zip(words, gold, pred, strict=True):
        blocks.append("".join(f"{safe_word(w)} {g} {p}\n" for w, g, p in zip(sentence_words, sentence_gold, sentence_pred, strict=True)))
    return "\n".join(blocks)


def write_predictions(path: str | Path, words, gold, pred) -> None:
    """One `word gold pred` line per word, a blank line after each sentence, written atomically."""
    write_text(path, format_predictions(words, gold, pred))
