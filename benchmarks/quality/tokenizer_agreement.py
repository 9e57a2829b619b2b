"""How well raw-text word splitters reproduce the CoNLL-2003 test words.

Each test sentence is turned back into text two ways:
- "spaces": the words joined with single spaces (easy: every boundary is a space);
- "detokenized": the way the text was printed before tokenization — no space
  before , . ; : ! ? ) ] % 's n't 're …, none after ( [ $, straight quotes
  alternating open/close. Harder and more honest.
and each splitter cuts that text into words with character spans. A gold word
counts as reproduced when some predicted word has exactly its span; "split"
gold words have a predicted boundary inside them (the split-entity bug),
"merged" ones are glued to a neighbour. An entity is "intact" when all its
words are reproduced.

Sentence boundaries: each test document is rebuilt as detokenized sentences
joined by a space, and nertune's sentence splitter's boundaries are compared
with the gold ones (headlines and datelines end without punctuation, so recall
is also given over the gold boundaries after . ! or ?).

    .venv/bin/python -m benchmarks.quality.tokenizer_agreement [--split test] [--out benchmarks/quality/results/tokenizer_agreement.json]
"""

from __future__ import annotations

import argparse
import platform
import re
import sys
import time

from benchmarks.common import results_dir, write_result
from nertune.data.conll import read_conll
from nertune.data.embedded import conll2003_files
from nertune.data.words import split_sentences, split_words
from nertune.evaluate.scoring import sentence_chunks
from nertune.model.load import load_tokenizer

NO_SPACE_BEFORE = {",", ".", ";", ":", "!", "?", ")", "]", "}", "%", "...", "n't", "N'T"}
NO_SPACE_AFTER = {"(", "[", "{", "$", "``"}
CLITIC = re.compile(r"^'(s|S|re|RE|ve|VE|m|M|ll|LL|d|D)$")
PLACEHOLDER = re.compile(r"\w+(?:[.\-'&]\w+)*\.?|[^\w\s]")  # the rule set data/words.py had before NLTK


def detokenize(words: list[str], mode: str) -> tuple[str, list[tuple[int, int]]]:
    """Text for `words` and each word's (start, end) in it."""
    if mode == "spaces":
        spans, position = [], 0
        for word in words:
            spans.append((position, position + len(word)))
            position += len(word) + 1
        return " ".join(words), spans
    text, spans = "", []
    open_quote = {'"': False, "'": False}
    glue_next = False
    for i, word in enumerate(words):
        space = bool(text) and not glue_next
        if word in NO_SPACE_BEFORE or CLITIC.match(word):
            space = False
        glue_next = word in NO_SPACE_AFTER
        if word in open_quote:
            if open_quote[word]:  # closing quote: hugs the word before
                space = False
            else:
                glue_next = True
            open_quote[word] = not open_quote[word]
        if space:
            text += " "
        spans.append((len(text), len(text) + len(word)))
        text += word
    return text, spans


def splitters(tokenizer) -> dict:
    pre = tokenizer.backend_tokenizer.pre_tokenizer
    return {
        "nertune (NLTK Treebank + rules)": lambda text: [(w.start, w.end) for w in split_words(text)],
        f"model pre-tokenizer ({type(pre).__name__})": lambda text: [span for _, span in pre.pre_tokenize_str(text)],
        "whitespace": lambda text: [m.span() for m in re.finditer(r"\S+", text)],
        "previous placeholder regex": lambda text: [m.span() for m in PLACEHOLDER.finditer(text)],
    }


def agreement(sentences, mode: str, split) -> dict:
    counts = dict.fromkeys(
        [
            "words",
            "reproduced",
            "split",
            "merged",
            "entity_words",
            "entity_words_split",
            "entity_words_not_reproduced",
            "entities",
            "entities_intact",
            "sentences",
            "sentences_exact",
        ],
        0,
    )
    for sentence in sentences:
        text, gold = detokenize(sentence.words, mode)
        predicted = split(text)
        predicted_set = set(predicted)
        inner_boundaries = {b for span in predicted for b in span}
        in_entity = [tag != "O" for tag in sentence.tags]
        ok = []
        for (start, end), entity_word in zip(gold, in_entity):
            reproduced = (start, end) in predicted_set
            cut = any(start < b < end for b in inner_boundaries)
            ok.append(reproduced)
            counts["words"] += 1
            counts["reproduced"] += reproduced
            counts["split"] += cut
            counts["merged"] += not reproduced and not cut
            if entity_word:
                counts["entity_words"] += 1
                counts["entity_words_split"] += cut
                counts["entity_words_not_reproduced"] += not reproduced
        for _, first, last in sentence_chunks(sentence.tags):
            counts["entities"] += 1
            counts["entities_intact"] += all(ok[first : last + 1])
        counts["sentences"] += 1
        counts["sentences_exact"] += all(ok) and len(predicted) == len(gold)
    counts["word_agreement"] = counts["reproduced"] / counts["words"]
    counts["split_rate"] = counts["split"] / counts["words"]
    counts["entity_intact_rate"] = counts["entities_intact"] / counts["entities"]
    return counts


def sentence_boundaries(sentences) -> dict:
    documents: dict[int, list] = {}
    for sentence in sentences:
        documents.setdefault(sentence.document, []).append(sentence)
    gold_total = gold_punctuated = found = found_punctuated = predicted_total = correct = 0
    for document in documents.values():
        text, gold_starts, punctuated, previous = "", set(), set(), ""  # previous: the sentence before, as text
        for sentence in document:
            piece, _ = detokenize(sentence.words, "detokenized")
            if text:
                text += " "
                gold_starts.add(len(text))
                if re.search(r"[.!?][\"']?$", previous):
                    punctuated.add(len(text))
            text += piece
            previous = piece
        predicted = {start for start, _ in split_sentences(text)[1:]}
        gold_total += len(gold_starts)
        gold_punctuated += len(punctuated)
        found += len(gold_starts & predicted)
        found_punctuated += len(punctuated & predicted)
        predicted_total += len(predicted)
        correct += len(predicted & gold_starts)
    return {
        "documents": len(documents),
        "gold_boundaries": gold_total,
        "predicted_boundaries": predicted_total,
        "precision": correct / predicted_total if predicted_total else 0.0,
        "recall": found / gold_total if gold_total else 0.0,
        "gold_boundaries_after_punctuation": gold_punctuated,
        "recall_after_punctuation": found_punctuated / gold_punctuated if gold_punctuated else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="test", choices=["train", "validation", "test"])
    parser.add_argument("--out", default=str(results_dir(__file__) / "tokenizer_agreement.json"))
    args = parser.parse_args()

    path = conll2003_files()[args.split]
    sentences = read_conll(path).sentences
    tokenizer = load_tokenizer("embedded-minilm")
    started = time.perf_counter()
    results: dict = {
        "data": f"CoNLL-2003 {args.split} ({len(sentences)} sentences)",
        "spacing": {
            "spaces": "words joined by one space",
            "detokenized": (
                "no space before , . ; : ! ? ) ] } % ... n't 's 're 've 'm 'll 'd, none after ( [ { $, quotes alternate open/close"
            ),
        },
        "splitters": {},
    }
    for name, split in splitters(tokenizer).items():
        results["splitters"][name] = {mode: agreement(sentences, mode, split) for mode in ("spaces", "detokenized")}
        row = results["splitters"][name]
        print(
            f"{name:38s} words reproduced: spaces {row['spaces']['word_agreement']:.4f}, detokenized "
            f"{row['detokenized']['word_agreement']:.4f}; split {row['spaces']['split']} / {row['detokenized']['split']} "
            f"(in entities {row['spaces']['entity_words_split']} / {row['detokenized']['entity_words_split']})",
            file=sys.stderr,
        )
    results["sentence_splitter"] = sentence_boundaries(sentences)
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["machine"] = platform.platform()
    write_result(args.out, results)
    print(f"sentence boundaries: {results['sentence_splitter']}", file=sys.stderr)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
