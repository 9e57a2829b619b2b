"""Tagger: a trained model for raw text, pre-split words, or many texts at once."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from nertune.evaluate.predict import build_windows, max_pieces_for, predict_word_logits
from nertune.model.load import load_trained, load_tokenizer
from nertune.tag.words import split_words


class Tagger:
    def __init__(self, model, tokenizer, device: str | torch.device = "cpu"):
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.id2label = {int(i): label for i, label in model.config.id2label.items()}
        self.max_pieces = max_pieces_for(model, tokenizer)

    @classmethod
    def load(cls, directory: str | Path, device: str | None = None) -> "Tagger":
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(load_trained(directory), load_tokenizer(str(directory)), device)

    def _word_probs(self, sequences: Sequence[Sequence[str]]) -> list[torch.Tensor]:
        nonempty = [list(s) for s in sequences]
        windows = build_windows(self.tokenizer, nonempty, self.max_pieces) if any(nonempty) else []
        scores = predict_word_logits(self.model, windows, len(nonempty), [len(s) for s in nonempty], self.tokenizer.pad_token_id, self.device)
        return [logits.softmax(-1) for logits in scores.logits]

    def tag_words_batch(self, sequences: Sequence[Sequence[str]]) -> list[list[str]]:
        return [[self.id2label[int(i)] for i in probs.argmax(-1)] for probs in self._word_probs(sequences)]

    def tag_words(self, words: Sequence[str]) -> list[str]:
        """Exactly one tag per word."""
        return self.tag_words_batch([words])[0] if words else []

    def tag_batch(self, texts: Sequence[str]) -> list[list[dict]]:
        spans = [split_words(text) for text in texts]
        probs = self._word_probs([[w for w, _, _ in s] for s in spans])
        results = []
        for text, words, word_probs in zip(texts, spans, probs):
            tags = [self.id2label[int(i)] for i in word_probs.argmax(-1)]
            confidence = word_probs.max(-1).values.tolist()
            results.append(_entities(text, words, tags, confidence))
        return results

    def __call__(self, text: str) -> list[dict]:
        return self.tag_batch([text])[0]


def _entities(text: str, words, tags: list[str], confidence: list[float]) -> list[dict]:
    """Whole-word entities from IOB2 tags (an I- after O or another type starts one)."""
    entities: list[dict] = []
    current = None
    for (word, start, end), tag, score in zip(words, tags, confidence):
        prefix, _, entity_type = tag.partition("-")
        if prefix == "I" and current is not None and current["type"] == entity_type:
            current["end"] = end
            current["scores"].append(score)
            continue
        if current is not None:
            entities.append(current)
            current = None
        if prefix in ("B", "I"):
            current = {"type": entity_type, "start": start, "end": end, "scores": [score]}
    if current is not None:
        entities.append(current)
    return [
        {"text": text[e["start"] : e["end"]], "type": e["type"], "start": e["start"], "end": e["end"], "score": sum(e["scores"]) / len(e["scores"])}
        for e in entities
    ]
