"""Knowledge distillation: what a run learns from teachers besides the gold tags.

    teacher folders (recipe `teacher`) -> each scores every training word in its own windows, with its own
    tokenizer, casing and context -> label probabilities per word (a CRF teacher: its marginals, model/crf.py)
    -> averaged over the teachers -> each training window carries its words' rows (`Window.soft_labels`)
    -> the step's loss: (1 - w) x gold + w x cross-entropy from those probabilities (model/loss.py)

A teacher must have the run's labels in the run's order; it is any trained token-classification folder
(a nertune run, an export's source). The probabilities are computed once, when the run is set up (also on a
resume: eval mode and the same inputs give the same numbers), for the training sentences only: validation
sentences only where `train_on_validation` made them training sentences; test never.

Cross-fitted teachers: a nertune run trained with `hold_out: K/N` (its config.json says so) never saw the training
documents of fold K (data/splits.py `document_folds`), and it teaches those sentences only; N such runs, one a
fold, teach every sentence something its teacher did not learn by heart. A sentence no teacher may teach is refused.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import torch
from pydantic import ValidationError

from nertune.data.conll import Sentence
from nertune.data.features import Window
from nertune.data.splits import document_folds
from nertune.errors import NertuneError
from nertune.model.crf import log_marginals
from nertune.model.load import load_tokenizer, load_trained, model_labels
from nertune.model.word_scores import sentence_word_logits
from nertune.training.recipe import Recipe, model_config

# What a cross-fitted run's config.json says (training/setup.py writes it): the fold it held out, of which training file.
HOLD_OUT, HOLD_OUT_MD5 = "nertune_hold_out", "nertune_hold_out_train_md5"


def word_probabilities(logits: torch.Tensor, crf=None) -> torch.Tensor:
    """[words, labels] probabilities of one sentence: the softmax, or under a CRF head its marginals."""
    if crf is None:
        return torch.softmax(logits.float(), dim=-1)
    with torch.no_grad():
        mask = torch.ones((1, logits.shape[0]), dtype=torch.bool)
        marginals = log_marginals(crf, logits.float()[None], mask)[0].exp()
        return marginals / marginals.sum(dim=-1, keepdim=True)  # float32 rounding over a long sentence: ~1e-5 off


def teacher_fold(folder: str, train_md5: str | None) -> tuple[int, int] | None:
    """The fold (K, N) a teacher held out of its training documents (config.json `nertune_hold_out`, which its
    exports keep), or None for a teacher that held nothing out."""
    if not (Path(folder) / "metrics.json").is_file() and (Path(folder) / "train_log.csv").is_file():
        # a run still training (or stopped): its weights may be an early epoch's
        raise NertuneError(
            "the teacher run has not finished (no metrics.json)", path=folder, fix="finish it (nertune train --resume) first"
        )
    found = model_config(folder)
    spec, taught_on = (found[1].get(HOLD_OUT), found[1].get(HOLD_OUT_MD5)) if found else (None, None)
    if spec is None:
        return None  # (a folder without a readable config.json: the loader says what is wrong with it)
    try:
        fold = Recipe(hold_out=spec).held_out
    except ValidationError:
        raise NertuneError(f"malformed {HOLD_OUT} {spec!r}", path=f"{folder}/config.json", fix="retrain the teacher") from None
    if train_md5 and taught_on != train_md5:
        raise NertuneError(
            f"the teacher held out fold {spec} of another training file (md5 {taught_on}, this run's {train_md5})",
            path=folder,
            fix="distill from teachers that held out folds of this run's training data",
        )
    return fold


def teacher_probabilities(
    folders: Sequence[str],
    sentences: Sequence[Sentence],
    labels: list[str],
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    max_tokens: int,
    train_md5: str | None = None,
) -> list[torch.Tensor]:
    """Each sentence's [words, labels] probabilities, averaged over the teachers in `folders` that may teach it:
    every one, except that a cross-fitted teacher teaches only the fold it held out."""
    total: list[torch.Tensor | None] = [None] * len(sentences)
    taught_by = [0] * len(sentences)
    for folder in folders:
        found = model_labels(folder)
        if found and found != list(labels):
            raise NertuneError(
                f"the teacher's labels {found} are not this run's {labels} (same labels, same order)",
                path=folder,
                fix="distill from a model trained on the same data set, or map its labels first (label_map)",
            )
        fold = teacher_fold(folder, train_md5)
        taught = [i for i, f in enumerate(document_folds(sentences, fold[1])) if f == fold[0]] if fold else range(len(sentences))
        model = load_trained(folder).to(device)
        tokenizer = load_tokenizer(folder)
        scores, _ = sentence_word_logits(model, tokenizer, [sentences[i] for i in taught], device, autocast_dtype, max_tokens)
        crf = getattr(model, "crf", None)
        crf = crf.to("cpu") if crf is not None else None
        for i, logits in zip(taught, scores.logits):
            probabilities = word_probabilities(logits, crf)
            total[i] = probabilities if total[i] is None else total[i] + probabilities
            taught_by[i] += 1
        del model
    untaught = [s for s, n in zip(sentences, taught_by) if n == 0]
    if folders and untaught:
        raise NertuneError(
            f"{len(untaught)} training sentences have no teacher that held them out (the first at line {untaught[0].line})",
            fix="add a teacher for each fold (hold_out 1/N ... N/N), or one that trained on all the training data",
        )
    return [p / n for p, n in zip(total, taught_by)] if folders else []


def attach_teacher(
    windows: list[Window],
    recipe,
    sentences: Sequence[Sentence],
    labels: list[str],
    device,
    autocast_dtype,
    say,
    train_md5: str | None = None,
) -> None:
    """Give each training window its words' teacher probabilities (nothing without a teacher), and say what it took."""
    folders = recipe.teachers
    if not folders:
        return
    start = time.perf_counter()
    # Loading a CRF teacher draws its (then overwritten) init from the generator: the run's random numbers stay its own.
    with torch.random.fork_rng(devices=[device] if torch.device(device).type == "cuda" else []):
        probabilities = teacher_probabilities(folders, sentences, labels, device, autocast_dtype, recipe.eval_max_tokens, train_md5)
    for window in windows:
        window.soft_labels = probabilities[window.sequence][window.words] if window.labels else None
    seconds = time.perf_counter() - start
    say(
        f"distilling from {len(folders)} teacher{'s' if len(folders) > 1 else ''} "
        f"(their share of the loss {recipe.distill_weight:g}; their probabilities took {seconds:.0f} s)"
    )
