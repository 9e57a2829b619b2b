"""Evaluate a model on labelled sentences: loss, entity P/R/F1, word accuracy."""

from __future__ import annotations

from typing import Sequence

import torch

from nertune.data.conll import Sentence
from nertune.evaluate.predict import build_windows, max_pieces_for, predict_word_logits
from nertune.evaluate.scoring import score
from nertune.tag.decode import decode


def evaluate_sentences(
    model,
    tokenizer,
    sentences: Sequence[Sentence],
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
    strict: bool = False,
    constrain: bool = False,
) -> dict:
    """Scores of `model` on `sentences`, every word of every sentence counted.

    `constrain=False` is the plain first-subword argmax the Hugging Face
    Trainer's run_ner reports; True decodes valid IOB2 only (tag/decode.py).
    """
    label2id = model.config.label2id
    id2label = {int(i): label for i, label in model.config.id2label.items()}
    # A gold tag the model has no label for can never be predicted: it still counts as gold.
    label_ids = [[label2id.get(tag, -100) for tag in s.tags] for s in sentences]
    windows = build_windows(tokenizer, [s.words for s in sentences], max_pieces_for(model, tokenizer), label_ids)
    scores = predict_word_logits(
        model, windows, len(sentences), [len(s.words) for s in sentences], tokenizer.pad_token_id, device,
        autocast_dtype=autocast_dtype,
    )
    predictions = decode(scores.logits, id2label, constrain)
    result = score([s.tags for s in sentences], predictions, strict=strict)
    result = {"loss": scores.loss_sum / max(1, scores.labelled), **result}
    result["sentences"] = len(sentences)
    return {"metrics": result, "predictions": predictions}
