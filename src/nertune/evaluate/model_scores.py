"""Evaluate a model on labelled sentences: loss, entity P/R/F1, word accuracy."""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import torch

from nertune.data.conll import Sentence
from nertune.errors import NertuneError
from nertune.evaluate.bootstrap import f1_interval, sentence_totals
from nertune.evaluate.error_analysis import error_breakdown
from nertune.evaluate.scoring import score
from nertune.model.crf import crf_scores
from nertune.model.decode import decode
from nertune.model.loss import weighted_crf_loss
from nertune.model.onnx_runtime import torch_on_one_thread
from nertune.model.word_scores import sentence_word_logits


def check_labels(id2label: dict[int, str]) -> None:
    """Predictions are scored as IOB2 tags: a model whose labels are not O / B-X / I-X cannot be."""
    bad = [label for label in id2label.values() if label != "O" and not (label[:2] in ("B-", "I-") and len(label) > 2)]
    if bad:
        raise NertuneError(
            f"the model's labels are not IOB2 tags ({', '.join(sorted(bad)[:4])})",
            fix="evaluate a model whose config.json id2label holds O, B-TYPE and I-TYPE labels",
        )


def evaluate_sentences(
    model,
    tokenizer,
    sentences: Sequence[Sentence],
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
    strict: bool = False,
    constrain: bool = False,
    details: bool = False,
    max_tokens: int = 16384,
) -> dict:
    """Scores of `model` on `sentences`, every word of every sentence counted.

    Long sentences are split into overlapping windows (never truncated), so
    there is one prediction per word. `constrain=False` is the plain
    first-subword argmax the Hugging Face Trainer's run_ner reports; True
    decodes valid IOB2 only (model/decode.py); a model with a CRF head always
    decodes with its transitions, and its loss is the CRF's negative
    log-likelihood of each whole sentence, per word. `details=True` adds the error
    breakdown, the type confusion and the bootstrap interval of F1. `max_tokens`: one forward pass's budget.
    """
    label2id = model.config.label2id
    id2label = {int(i): label for i, label in model.config.id2label.items()}
    check_labels(id2label)
    # A gold tag the model has no label for can never be predicted: it still counts as gold.
    label_ids = [[label2id.get(tag, -100) for tag in s.tags] for s in sentences]
    with torch_on_one_thread(model):
        scores, windows = sentence_word_logits(model, tokenizer, sentences, device, autocast_dtype, max_tokens, label_ids)
        crf = crf_scores(model)
        predictions = decode(scores.logits, id2label, constrain, crf)
    gold = [s.tags for s in sentences]
    result = score(gold, predictions, strict=strict)
    loss_sum = scores.loss_sum if crf is None else _crf_loss_sum(model.crf, scores.logits, label_ids)
    result = {"loss": loss_sum / max(1, scores.labelled), **result}
    result["sentences"] = len(sentences)
    if details:
        breakdown = error_breakdown(gold, predictions, strict)
        result["confusion"] = breakdown.pop("confusion")
        result["errors"] = breakdown
        result["f1_interval"] = f1_interval(sentence_totals(gold, predictions, strict))
        # Sentences longer than one window: covered by overlapping windows, still every word scored.
        windows_per_sentence = Counter(w.sequence for w in windows)
        result["long_sentences"] = sum(n > 1 for n in windows_per_sentence.values())
    return {"metrics": result, "predictions": predictions}


@torch.no_grad()
def _crf_loss_sum(crf, logits: Sequence[torch.Tensor], label_ids: Sequence[Sequence[int]]) -> float:
    """The CRF's negative log-likelihood of every sentence's gold tags, summed (the training loss, whole sentences)."""
    if not logits:
        return 0.0
    device = crf.transitions.device
    emissions = torch.nn.utils.rnn.pad_sequence(list(logits), batch_first=True).to(device)
    labels = torch.nn.utils.rnn.pad_sequence(
        [torch.tensor(ids, dtype=torch.long) for ids in label_ids], batch_first=True, padding_value=-100
    )
    return float(weighted_crf_loss(crf, emissions, labels, torch.ones(len(logits), device=device)))
