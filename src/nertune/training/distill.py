"""Knowledge distillation: what a run learns from teachers besides the gold tags.

    teacher folders (recipe `teacher`) -> each scores every training word in its own windows, with its own
    tokenizer, casing and context -> label probabilities per word (a CRF teacher: its marginals, model/crf.py)
    -> averaged over the teachers -> each training window carries its words' rows (`Window.soft_labels`)
    -> the step's loss: (1 - w) x gold + w x cross-entropy from those probabilities (model/loss.py)

A teacher must have the run's labels in the run's order; it is any trained token-classification folder
(a nertune run, an export's source). The probabilities are computed once, when the run is set up (also on a
resume: eval mode and the same inputs give the same numbers), for the training sentences only: validation
sentences only where `train_on_validation` made them training sentences; test never.
"""

from __future__ import annotations

import time
from typing import Sequence

import torch

from nertune.data.conll import Sentence
from nertune.data.features import Window
from nertune.errors import NertuneError
from nertune.model.crf import log_marginals
from nertune.model.load import load_tokenizer, load_trained, model_labels
from nertune.model.word_scores import sentence_word_logits


def word_probabilities(logits: torch.Tensor, crf=None) -> torch.Tensor:
    """[words, labels] probabilities of one sentence: the softmax, or under a CRF head its marginals."""
    if crf is None:
        return torch.softmax(logits.float(), dim=-1)
    with torch.no_grad():
        mask = torch.ones((1, logits.shape[0]), dtype=torch.bool)
        marginals = log_marginals(crf, logits.float()[None], mask)[0].exp()
        return marginals / marginals.sum(dim=-1, keepdim=True)  # float32 rounding over a long sentence: ~1e-5 off


def teacher_probabilities(
    folders: Sequence[str],
    sentences: Sequence[Sentence],
    labels: list[str],
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    max_tokens: int,
) -> list[torch.Tensor]:
    """Each sentence's [words, labels] probabilities, averaged over the teachers in `folders`."""
    total: list[torch.Tensor] | None = None
    for folder in folders:
        found = model_labels(folder)
        if found and found != list(labels):
            raise NertuneError(
                f"the teacher's labels {found} are not this run's {labels} (same labels, same order)",
                path=folder,
                fix="distill from a model trained on the same data set, or map its labels first (label_map)",
            )
        model = load_trained(folder).to(device)
        tokenizer = load_tokenizer(folder)
        scores, _ = sentence_word_logits(model, tokenizer, sentences, device, autocast_dtype, max_tokens)
        crf = getattr(model, "crf", None)
        crf = crf.to("cpu") if crf is not None else None
        probabilities = [word_probabilities(logits, crf) for logits in scores.logits]
        total = probabilities if total is None else [a + b for a, b in zip(total, probabilities)]
        del model
    return [p / len(folders) for p in total or []]


def attach_teacher(windows: list[Window], recipe, sentences: Sequence[Sentence], labels: list[str], device, autocast_dtype, say) -> None:
    """Give each training window its words' teacher probabilities (nothing without a teacher), and say what it took."""
    folders = recipe.teachers
    if not folders:
        return
    start = time.perf_counter()
    # Loading a CRF teacher draws its (then overwritten) init from the generator: the run's random numbers stay its own.
    with torch.random.fork_rng(devices=[device] if torch.device(device).type == "cuda" else []):
        probabilities = teacher_probabilities(folders, sentences, labels, device, autocast_dtype, recipe.eval_max_tokens)
    for window in windows:
        window.soft_labels = probabilities[window.sequence][window.words] if window.labels else None
    seconds = time.perf_counter() - start
    say(
        f"distilling from {len(folders)} teacher{'s' if len(folders) > 1 else ''} "
        f"(their share of the loss {recipe.distill_weight:g}; their probabilities took {seconds:.0f} s)"
    )
