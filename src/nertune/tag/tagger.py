"""Tagger: a trained model for raw text, pre-split words, or many texts at once.

    text -> sentences -> Treebank words (data/words.py) -> wordpieces in overlapping
    windows, batched by length (model/word_scores.py) -> one score vector per word
    from its first subword -> IOB2 tags, constrained to valid sequences by default
    (model/decode.py) -> entities made of whole words, with character offsets.

Every word gets exactly one tag, whatever the length of the input: nothing is
truncated. An entity's score is the mean, over its words, of the probability
the model gave the tag chosen for that word. Python's cyclic garbage collector
waits while a batch is tagged (collector.py).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import NamedTuple, Sequence

import torch

from nertune.collector import pausing
from nertune.data.schemes import prefix_and_type
from nertune.data.words import sentence_words
from nertune.errors import NertuneError
from nertune.model.crf import crf_scores
from nertune.model.decode import decode, slices
from nertune.model.inference import load_for_tagging
from nertune.model.load import model_precision
from nertune.model.onnx_runtime import torch_on_one_thread
from nertune.model.positions import max_pieces_for
from nertune.model.word_scores import build_windows, predict_word_logits


class TaggedWord(NamedTuple):
    text: str
    start: int
    end: int
    tag: str
    probability: float  # of `tag`, under the model's softmax for this word


def _beside_sessions(method):
    """`method`'s torch work on the calling thread alone when the model is an export (model/onnx_runtime.py)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with torch_on_one_thread(self.model):
            return method(self, *args, **kwargs)

    return wrapper


class Tagger:
    def __init__(self, model, tokenizer, device: str | torch.device = "cpu", constrain: bool = True, max_tokens: int | None = None):
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.constrain = constrain
        self.backend = getattr(model, "backend", "pytorch")  # "onnxruntime" / "onnxruntime-int8" for an export
        self.precision = model_precision(model)
        # Padded wordpieces per forward pass (BENCHMARKS.md, tagging speed): on a CPU fp32 and ONNX Runtime are
        # fastest in passes that stay in cache, bf16 on AMX in somewhat larger ones.
        self.max_tokens = max_tokens or (16384 if self.device.type != "cpu" else 2048 if self.precision == "bf16" else 1024)
        self.id2label = {int(i): label for i, label in model.config.id2label.items()}
        self.label2id = {label: i for i, label in self.id2label.items()}
        self.max_pieces = max_pieces_for(model, tokenizer)
        self.crf = crf_scores(model)  # a CRF head's transition scores for decode (ONNX exports carry them too); None: softmax

    @classmethod
    def load(cls, directory: str | Path, device: str | None = None, constrain: bool = True, precision: str = "auto") -> "Tagger":
        """`precision` (auto, fp32, bf16; model/load.py `inference_dtype`): the weights' dtype; an export runs as exported."""
        model, tokenizer, default_device = load_for_tagging(directory, device, precision)
        return cls(model, tokenizer, device or default_device, constrain)  # an export refuses a device other than the CPU

    # ---- words in, tags out ------------------------------------------------

    @pausing
    @_beside_sessions
    def word_logits(self, sequences: Sequence[Sequence[str]], documents: Sequence | None = None) -> list[torch.Tensor]:
        """One [n_words, n_labels] logits tensor per word sequence (any length).

        `documents`: each sequence's document, for a model trained with document context
        (its neighbouring sequences of the same document are its context); None: each its own.
        """
        sequences = [_word_list(s) for s in sequences]
        filled = [i for i, s in enumerate(sequences) if s]
        out = [torch.empty((0, len(self.id2label))) for _ in sequences]
        if filled:
            windows = build_windows(
                self.tokenizer,
                [sequences[i] for i in filled],
                self.max_pieces,
                config=self.model.config,
                documents=None if documents is None else [documents[i] for i in filled],
            )
            scores = predict_word_logits(
                self.model,
                windows,
                len(filled),
                [len(sequences[i]) for i in filled],
                self.tokenizer.pad_token_id,
                self.device,
                max_tokens=self.max_tokens,
            )
            for i, logits in zip(filled, scores.logits):
                out[i] = logits
        return out

    @pausing
    @_beside_sessions
    def _decode(
        self, sequences: Sequence[Sequence[str]], constrain: bool | None, documents: Sequence | None = None
    ) -> list[tuple[list[str], list[float]]]:
        constrain = self.constrain if constrain is None else constrain
        logits = self.word_logits(sequences, documents)
        tags = decode(logits, self.id2label, constrain, self.crf)
        if not logits:
            return []
        # With a CRF head too, a word's probability is its own softmax's (not the CRF's marginal): the tag is the path's.
        # One softmax over every word of the batch: row by row the same numbers, without a call per sequence.
        ids = torch.tensor([self.label2id[t] for sequence in tags for t in sequence], dtype=torch.long)
        probs = torch.cat(logits).float().softmax(-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1).tolist()
        return list(zip(tags, slices(probs, [len(sequence) for sequence in tags])))

    def tag_words_batch(
        self, sequences: Sequence[Sequence[str]], constrain: bool | None = None, documents: Sequence | None = None
    ) -> list[list[str]]:
        """Tags of each word sequence; `documents` as in word_logits (e.g. the CoNLL sentences' .document)."""
        return [tags for tags, _ in self._decode(sequences, constrain, documents)]

    def tag_words(self, words: Sequence[str], constrain: bool | None = None) -> list[str]:
        """Exactly one tag per word; the words are one sequence (one sentence or document)."""
        return self.tag_words_batch([words], constrain)[0]

    # ---- raw text in, entities out ----------------------------------------

    @pausing
    def tag_sentences(self, texts: Sequence[str], constrain: bool | None = None) -> list[list[list[TaggedWord]]]:
        """For each text, its sentences as lists of tagged words (offsets into that text).

        Each text is one document: with a document-context model, a sentence sees its neighbours in the same text.
        """
        split = [sentence_words(_text(t)) for t in texts]
        flat = [[w.text for w in sentence] for sentences in split for sentence in sentences]
        documents = [index for index, sentences in enumerate(split) for _ in sentences]
        decoded = iter(self._decode(flat, constrain, documents))
        out = []
        for sentences in split:
            tagged = []
            for sentence in sentences:
                tags, probs = next(decoded)
                tagged.append([TaggedWord(w.text, w.start, w.end, t, p) for w, t, p in zip(sentence, tags, probs)])
            out.append(tagged)
        return out

    @pausing
    def tag_batch(self, texts: Sequence[str], constrain: bool | None = None) -> list[list[dict]]:
        """Entities of each text: {"text", "type", "start", "end", "score"}, text == input[start:end]."""
        return [
            [entity for sentence in sentences for entity in entities(text, sentence)]
            for text, sentences in zip(texts, self.tag_sentences(texts, constrain))
        ]

    def __call__(self, text: str, constrain: bool | None = None) -> list[dict]:
        return self.tag_batch([text], constrain)[0]


def entities(text: str, words: Sequence[TaggedWord]) -> list[dict]:
    """Whole-word entities from IOB2 tags; an I-X after O or another type starts one (as conlleval reads it)."""
    found: list[dict] = []
    current = None
    for word in words:
        prefix, entity_type = prefix_and_type(word.tag)
        if prefix == "I" and current is not None and current["type"] == entity_type:
            current["end"] = word.end
            current["scores"].append(word.probability)
            continue
        if current is not None:
            found.append(current)
            current = None
        if prefix in ("B", "I"):
            current = {"type": entity_type, "start": word.start, "end": word.end, "scores": [word.probability]}
    if current is not None:
        found.append(current)
    return [
        {
            "text": text[e["start"] : e["end"]],
            "type": e["type"],
            "start": e["start"],
            "end": e["end"],
            "score": round(sum(e["scores"]) / len(e["scores"]), 6),
        }
        for e in found
    ]


def _text(text) -> str:
    if not isinstance(text, str):
        raise NertuneError(
            f"expected text (a str), got {type(text).__name__}", fix="pass a string; for pre-split words use tagger.tag_words(words)"
        )
    return text


def _word_list(words) -> list[str]:
    if isinstance(words, str):
        raise NertuneError("tag_words takes a list of words, got one str", fix="pass text.split() or call tagger(text) for raw text")
    words = list(words)
    if not all(isinstance(w, str) for w in words):
        raise NertuneError("every word must be a str", fix="pass a list of strings")
    return words
