"""Document context (FLERT): neighbours of the same document around each sentence, never scored,
and the same windows built by training, evaluate, the Tagger and an ONNX export."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from nertune.data.context import CONFIG_FIELD
from nertune.data.features import collate, encode_words
from nertune.evaluate.model_scores import evaluate_sentences
from nertune.model.load import load_tokenizer, load_trained
from nertune.model.word_scores import build_windows
from nertune.tag.tagger import Tagger


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("embedded-minilm")


def _context_windows(tokenizer, sentences, context, max_pieces, casing=False):
    config = SimpleNamespace(**{CONFIG_FIELD: context}, **({"nertune_casing": "shape6", "type_vocab_size": 6} if casing else {}))
    labels = [[1 + (i % 5) for i in range(len(s.words))] for s in sentences]  # never -100
    return build_windows(tokenizer, [s.words for s in sentences], max_pieces, labels, config, [s.document for s in sentences])


@pytest.mark.parametrize("context, max_pieces", [(16, 510), (64, 510), (64, 48)])
def test_context_windows_on_a_real_document_slice(tokenizer, documents_slice, context, max_pieces):
    sentences = documents_slice
    plain = encode_words(tokenizer, [s.words for s in sentences])
    windows = _context_windows(tokenizer, sentences, context, max_pieces)
    assert [w.sequence for w in windows] == list(range(len(sentences)))  # no sentence here is longer than 48 pieces
    for index, (window, sentence, enc) in enumerate(zip(windows, sentences, plain)):
        left = window.first_pieces[0] - 1
        centre = window.input_ids[1 + left : 1 + left + len(enc.piece_ids)]
        right = len(window.input_ids) - 2 - left - len(enc.piece_ids)
        assert centre == enc.piece_ids, "the sentence itself, whole, after its left context"
        assert window.first_pieces == [1 + left + start for start in enc.word_starts], "centre words' first pieces"
        assert window.words == list(range(len(sentence.words)))
        assert 0 <= left <= context and 0 <= right <= context and len(window.input_ids) <= max_pieces + 2
        # Never across a -DOCSTART- boundary.
        first_of_document = index == 0 or sentences[index - 1].document != sentence.document
        last_of_document = index == len(sentences) - 1 or sentences[index + 1].document != sentence.document
        if first_of_document:
            assert left == 0
        if last_of_document:
            assert right == 0
        before, before_starts = _pieces(plain[:index], sentences[:index], sentence.document)
        after, after_starts = _pieces(plain[index + 1 :], sentences[index + 1 :], sentence.document)
        # The end of the previous sentences of the document and the start of the next ones, in whole words.
        assert window.input_ids[1 : 1 + left] == before[len(before) - left :]
        assert left == 0 or len(before) - left in before_starts
        assert window.input_ids[len(window.input_ids) - 1 - right : -1] == after[:right]
        assert right in after_starts or right == len(after)
        # Labels on the centre words only: context pieces carry -100.
        labels = collate([window], tokenizer.pad_token_id)["labels"][0]
        assert (labels != -100).nonzero().flatten().tolist() == window.first_pieces
    assert sum(w.first_pieces[0] > 1 for w in windows) >= 30, "most sentences get left context"
    if max_pieces < 510:  # context shrank to fit the window
        roomy = _context_windows(tokenizer, sentences, context, 510)
        assert sum(len(a.input_ids) < len(b.input_ids) for a, b in zip(windows, roomy)) >= 10


def _pieces(encoded, sentences, document):
    """The pieces of the sentences of `document` in order, and the offsets where words start."""
    pieces, starts = [], set()
    for enc, sentence in zip(encoded, sentences):
        if sentence.document == document:
            starts.update(len(pieces) + start for start in enc.word_starts)
            pieces += enc.piece_ids
    return pieces, starts


def test_casing_classes_cover_context_words(tokenizer, documents_slice):
    [_, london] = _context_windows(tokenizer, documents_slice[:2], 64, 510, casing=True)
    assert len(london.token_type_ids) == len(london.input_ids)
    # "LONDON 1996-08-30" with the headline before it: UPPER-case context words are type 3.
    left = london.first_pieces[0] - 1
    assert left > 0 and set(london.token_type_ids[1 : 1 + left]) <= {0, 3}
    assert london.token_type_ids[london.first_pieces[0]] == 3 and london.token_type_ids[london.first_pieces[1]] == 5


def test_a_sentence_too_long_for_one_window_gets_no_context(tokenizer, documents_slice):
    sentences = documents_slice[:6]
    lengths = [len(e.piece_ids) for e in encode_words(tokenizer, [s.words for s in sentences])]
    longest = max(range(len(sentences)), key=lambda i: lengths[i])
    windows = _context_windows(tokenizer, sentences, 64, lengths[longest] - 1)
    of_longest = [w for w in windows if w.sequence == longest]
    assert len(of_longest) == 2 and of_longest[0].first_pieces[0] == 1  # overlapping windows, no context


def test_evaluate_tagger_and_onnx_use_the_same_context(featured_model, featured_onnx, documents_slice, tokenizer):
    context_model = featured_model  # make train's recipe: context with casing classes and a CRF
    assert json.loads((context_model / "config.json").read_text())[CONFIG_FIELD] == 16
    sentences, words = documents_slice, [s.words for s in documents_slice]
    documents = [s.document for s in sentences]
    evaluated = evaluate_sentences(load_trained(context_model), tokenizer, sentences, constrain=True)["predictions"]
    tagger = Tagger.load(context_model, device="cpu", precision="fp32")  # as evaluate_sentences and the fp32 export run
    assert tagger.tag_words_batch(words, constrain=True, documents=documents) == evaluated
    with_context = tagger.word_logits(words, documents)
    alone = tagger.word_logits(words)  # each sentence its own document: no context
    assert any(not torch.allclose(a, b, atol=1e-4) for a, b in zip(with_context, alone))

    # Raw text: the sentences of one text are one document.
    text = " ".join(" ".join(s.words) for s in sentences[16:20])
    [tagged] = tagger.tag_sentences([text])
    split_words = [[w.text for w in sentence] for sentence in tagged]
    assert [[w.tag for w in sentence] for sentence in tagged] == tagger.tag_words_batch(split_words, documents=[0] * len(split_words))

    onnx_tagger = Tagger.load(featured_onnx)
    assert json.loads((featured_onnx / "config.json").read_text())[CONFIG_FIELD] == 16
    ours = onnx_tagger.word_logits(words, documents)
    assert max(float((a - b).abs().max()) for a, b in zip(ours, with_context)) < 1e-3
    assert onnx_tagger.tag_words_batch(words, constrain=True, documents=documents) == evaluated
