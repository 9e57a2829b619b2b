"""Raw text to sentences and words: exact offsets, CoNLL-2003 (Penn Treebank) words."""

from __future__ import annotations

import subprocess
import sys
import time

from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers.pre_tokenizers import BertPreTokenizer

import nertune.data.words as words
from nertune.data.conll import read_conll
from nertune.data.words import sentence_words, split_sentences, split_words


def texts(text: str) -> list[str]:
    return [w.text for w in split_words(text)]


def sentences(text: str) -> list[str]:
    return [text[a:b] for a, b in split_sentences(text)]


# Unicode that stresses offsets: accents (composed and combining), CJK, emoji with
# modifiers and joiners, zero-width and odd spaces, every kind of line break.
_ALPHABET = st.sampled_from(
    list("aZ09 .,;:!?'\"()-$%&/U.S.")
    + [
        "\n",
        "\r\n",
        "\t",
        "\u00a0",
        "\u2028",
        "\x0b",
        "\u200b",
        "\u200d",
        "\ufeff",
        "é",
        "e\u0301",
        "ß",
        "İ",
        "東",
        "京",
        "は",
        "한",
        "😀",
        "👍🏽",
        "👨‍👩‍👧",
        "©",
        "``",
        "''",
        "n't",
        "'s",
        "Mr.",
        "...",
    ]
)
_TEXT = st.lists(_ALPHABET, max_size=40).map("".join) | st.text(max_size=60)


@settings(max_examples=300, deadline=None)
@given(_TEXT)
def test_words_slice_the_input_and_cover_every_visible_character(text):
    words = split_words(text)
    covered = set()
    previous_end = 0
    for word in words:
        assert text[word.start : word.end] == word.text and word.text
        assert word.start >= previous_end, "words are in order and never overlap"
        assert not any(ch.isspace() for ch in word.text)
        covered.update(range(word.start, word.end))
        previous_end = word.end
    assert covered == {i for i, ch in enumerate(text) if not ch.isspace()}
    assert [w for s in sentence_words(text) for w in s] == words


@settings(max_examples=300, deadline=None)
@given(_TEXT)
def test_sentences_are_ordered_trimmed_spans(text):
    previous_end = 0
    for start, end in split_sentences(text):
        assert previous_end <= start < end <= len(text)
        assert not text[start].isspace() and not text[end - 1].isspace()
        assert "\n" not in text[start:end]
        previous_end = end


def test_conll_quirks_are_single_words():
    text = "The U.S. and U.N. said Bre-X (Canada) won't pay $5.2 million on 1996-08-22, St. Louis's \"Mr. J. Smith\" said."
    assert texts(text) == [
        "The",
        "U.S.",
        "and",
        "U.N.",
        "said",
        "Bre-X",
        "(",
        "Canada",
        ")",
        "wo",
        "n't",
        "pay",
        "$",
        "5.2",
        "million",
        "on",
        "1996-08-22",
        ",",
        "St.",
        "Louis",
        "'s",
        '"',
        "Mr.",
        "J.",
        "Smith",
        '"',
        "said",
        ".",
    ]


def test_sentence_final_period_is_its_own_word_but_abbreviations_keep_theirs():
    assert texts("He met Mr. Smith. smith was late.") == ["He", "met", "Mr.", "Smith", ".", "smith", "was", "late", "."]
    assert texts("Shares of Exxon Corp. rose.") == ["Shares", "of", "Exxon", "Corp.", "rose", "."]
    # CoNLL-2003 itself writes a sentence-final U.S. as "U.S" "." (the Reuters tokenizer did).
    assert texts("He lives in the U.S.") == ["He", "lives", "in", "the", "U.S", "."]


def test_sentence_boundaries():
    text = (
        "Mr. Smith went to St. Louis. He met J. R. Ewing of Exxon Corp. in the U.S. Army base. "
        '"Great!" he said. Really? Yes... 1. Jesper Ronnback (Sweden) 25.7 2. Andrei Ivanov'
    )
    assert sentences(text) == [
        "Mr. Smith went to St. Louis.",
        "He met J. R. Ewing of Exxon Corp. in the U.S. Army base.",
        '"Great!" he said.',
        "Really?",
        "Yes...",
        "1. Jesper Ronnback (Sweden) 25.7 2. Andrei Ivanov",
    ]
    assert sentences("Headline without a stop\nLONDON 1996-08-30\r\n\r\nBody text .") == [
        "Headline without a stop",
        "LONDON 1996-08-30",
        "Body text .",
    ]


def test_unicode_whitespace_and_empty_input():
    text = "  Café  in Zürich\n\n東京は日本 😀 Paris👍🏽\tnaïve  "
    words = split_words(text)
    assert [w.text for w in words] == ["Café", "in", "Zürich", "東", "京", "は", "日", "本", "😀", "Paris", "👍", "🏽", "naïve"]
    assert all(text[w.start : w.end] == w.text for w in words)
    assert split_words("") == [] and split_words(" \n\t\u00a0 ") == [] and sentence_words("") == []


def test_offsets_stay_exact_if_the_treebank_tokenizer_cannot_align(monkeypatch):
    class Unaligned:
        def span_tokenize(self, text):
            raise ValueError("substring not found")  # what nltk.tokenize.util.align_tokens raises

    monkeypatch.setattr(words, "_treebank", lambda: Unaligned())
    text = "Bre-X hit U.S. markets."
    assert [(w.text, text[w.start : w.end]) for w in words.split_words(text)] == [
        ("Bre-X", "Bre-X"),
        ("hit", "hit"),
        ("U.S.", "U.S."),
        ("markets", "markets"),
        (".", "."),
    ]


def test_reproduces_conll_test_words_where_the_model_pre_tokenizer_does_not(conll_files, minilm):
    """The split-entity bug: BERT's pre-tokenizer cuts U.S., Bre-X, 1996-08-22 (6% of CoNLL test words)."""
    sentences_ = read_conll(conll_files["test"]).sentences[:400]
    pre = BertPreTokenizer()
    total = ours = theirs = entity_words_cut = 0
    for sentence in sentences_:
        text = " ".join(sentence.words)
        gold = []
        position = 0
        for word in sentence.words:
            gold.append((position, position + len(word)))
            position += len(word) + 1
        mine = {(w.start, w.end) for w in split_words(text)}
        bert = {span for _, span in pre.pre_tokenize_str(text)}
        total += len(gold)
        ours += sum(span in mine for span in gold)
        theirs += sum(span in bert for span in gold)
        entity_words_cut += sum(span not in mine for span, tag in zip(gold, sentence.tags) if tag != "O")
    assert ours / total > 0.995
    assert theirs / total < 0.96
    assert entity_words_cut <= 2


_NLTK_AS_SHIPPED = words._import_privately("nltk.tokenize.destructive").NLTKWordTokenizer()  # its timed patterns


@settings(max_examples=400, deadline=None)
@given(_TEXT | st.sampled_from(["can't 'tis gonna", "O'Neil's ``x'' \"y\" 2.", "a. ) ] '' -- ... ;@#", "“Hi” «» –"]))
def test_words_are_nltks_own_without_its_time_limit(text):
    """The patterns lose NLTK's per-call timeout wrapper (data/words.py `_untimed`), not a single split."""
    assert words._treebank().tokenize(text) == _NLTK_AS_SHIPPED.tokenize(text)


def test_the_conll_test_words_are_nltks_own(conll_files):
    for sentence in read_conll(conll_files["test"]).sentences[:1000]:
        text = " ".join(sentence.words)
        assert list(words._treebank().span_tokenize(text)) == list(_NLTK_AS_SHIPPED.span_tokenize(text))


def test_word_splitting_stays_linear_on_inputs_made_to_backtrack():
    """What NLTK's time limit guarded against: each text of `nertune serve`'s longest (100,000 characters) splits
    in well under a second. The sentence splitter's own pattern once took 116 s on the periods of "a....b"."""
    n = 100_000
    for text in (
        "a." + " " * n + "b",
        "x." + ")" * n + " y",
        "'" * n,
        '"' * n,
        "a" + "." * n + "b",
        "a" + "!?" * (n // 2) + "b",
        ":" * n + "a",
        "x.) " * (n // 4),
        "a. " * (n // 3),
        "a," * (n // 2),
    ):
        began = time.perf_counter()
        split_words(text)
        assert time.perf_counter() - began < 2.0, text[:12]


def test_the_treebank_tokenizer_loads_without_the_rest_of_nltk():
    """nltk's package __init__ imports all of nltk and scipy.stats (3.5 s of every `nertune predict`): the words
    come from the tokenizer's own modules, and a later `import nltk` still gets the whole, real package."""
    code = (
        "import sys\n"
        "from nertune.data.words import split_words\n"
        "assert [w.text for w in split_words(\"U.S. isn't here.\")] == ['U.S.', 'is', \"n't\", 'here', '.']\n"
        "print(sorted(m for m in sys.modules if m == 'nltk' or m.startswith(('nltk.', 'scipy'))))\n"
        "import nltk\n"
        "print(nltk.word_tokenize(\"I can't.\", preserve_line=True), nltk.tokenize.destructive.__name__, hasattr(nltk, 'corpus'))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    after_tagging, after_import = result.stdout.splitlines()
    assert after_tagging == "[]"  # nothing of nltk left behind, and scipy never loaded
    assert after_import == "['I', 'ca', \"n't\", '.'] nltk.tokenize.destructive True"
