"""What a run's numbers say, in words: each diagnosis gives its numbers and a fix.

The classic troubleshooting tips, checked as the run goes:
  - loss NaN/inf        -> stop (the run is lost past this point); lower the learning rate
  - loss too high       -> worse than guessing uniformly: learning rate likely too high
  - loss rising         -> steps or epochs getting worse: learning rate likely too high
  - overfitting         -> train loss falls while validation loss rises or F1 stalls
  - validation F1 ~ 0   -> label mismatch, IOB1/IOB2 mix, few entities, or too little training
  - long sentences      -> split into windows (never truncated), but many suggests documents
Every function returns a message (or None); the loop prints it.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import torch

from nertune.data.conll import ConllFile
from nertune.data.schemes import split_tag
from nertune.errors import NertuneError

# An F1 below this after an epoch means the model finds (almost) no entities.
NEAR_ZERO_F1 = 0.05
# Fewer entity mentions than this in the training data is too few to learn types from.
FEW_ENTITIES = 50


def _lower(learning_rate: float) -> str:
    return f"--learning-rate {learning_rate / 10:g}"


class DivergenceWatch:
    """NaN/inf in step losses or gradient norms, found without a host sync each step.

    The flag is or-ed on the device every step and read only where the loop
    syncs anyway (every 10 steps) and before any checkpoint, so a checkpoint
    never holds weights from a step whose loss or gradient was not finite.
    """

    def __init__(self, device: torch.device, learning_rate: float):
        self.bad = torch.zeros((), dtype=torch.bool, device=device)
        self.learning_rate = learning_rate
        self.good_step, self.good_loss = 0, None

    def add(self, step_loss: torch.Tensor, grad_norm: torch.Tensor | None) -> None:
        self.bad |= ~torch.isfinite(step_loss)
        if grad_norm is not None:
            self.bad |= ~torch.isfinite(grad_norm)

    def check(self, step: int, accelerator, loss: float | None = None, checkpoint: Path | None = None) -> None:
        bad = accelerator.reduce(self.bad.float(), "sum").item() > 0 or (loss is not None and not math.isfinite(loss))
        if not bad:
            self.good_step, self.good_loss = step, loss if loss is not None else self.good_loss
            return
        when = f"between steps {self.good_step} and {step}" if self.good_step else f"within the first {step} steps"
        if self.good_loss is not None:
            when += f" (the loss was {self.good_loss:.4g} at step {self.good_step})"
        kept = f"; the last good checkpoint is kept: {checkpoint}" if checkpoint else ""
        raise NertuneError(
            f"training diverged: the loss or gradient became NaN/inf {when}; stopped{kept}",
            fix=f"lower the learning rate (now {self.learning_rate:g}; try {_lower(self.learning_rate)} or less — "
            "encoders fine-tune at 1e-5 to 1e-4), "
            "keep gradient clipping on (max_grad_norm), and with fp16 try --mixed-precision bf16 or no",
        )


class LossWatch:
    """Logged training losses that point at a too-high learning rate (each said once)."""

    def __init__(self, n_labels: int, learning_rate: float, warmup_steps: int = 0):
        self.uniform = math.log(max(2, n_labels))  # the loss of guessing every label equally
        self.warmup_steps = warmup_steps
        self.n_labels = n_labels
        self.learning_rate = learning_rate
        self.best, self.best_step = math.inf, 0
        self.said: set[str] = set()

    def observe(self, step: int, loss: float) -> str | None:
        message = None
        # Past the first log lines (and the warm-up, whose learning rate starts near 0) a fresh head has had
        # time to beat guessing; 3x above it is absurd at once.
        if (step >= max(20, self.warmup_steps) or loss > 3 * self.uniform) and loss > self.uniform and "high" not in self.said:
            self.said.add("high")
            message = (
                f"train loss {loss:.4f} at step {step} is above ln({self.n_labels} labels) = {self.uniform:.2f}, "
                f"the loss of guessing uniformly: the learning rate ({self.learning_rate:g}) is likely too high — "
                f"try {_lower(self.learning_rate)}"
            )
        elif loss > 2 * self.best and loss - self.best > 0.5 and "rising" not in self.said:
            self.said.add("rising")
            message = (
                f"train loss rose from {self.best:.4f} (step {self.best_step}) to {loss:.4f} (step {step}): "
                f"the learning rate ({self.learning_rate:g}) is likely too high — try {_lower(self.learning_rate)}"
            )
        if loss < self.best:
            self.best, self.best_step = loss, step
        return message


def epoch_loss_rose(history: list[dict], learning_rate: float) -> str | None:
    """Train loss over a whole epoch should fall epoch after epoch; 10% up is not noise."""
    if len(history) < 2:
        return None
    before, now = history[-2]["train_loss"], history[-1]["train_loss"]
    if now > 1.1 * before:
        return (
            f"train loss rose from {before:.4f} (epoch {history[-2]['epoch']}) to {now:.4f} (epoch {history[-1]['epoch']}): "
            f"the learning rate ({learning_rate:g}) is likely too high — try {_lower(learning_rate)}"
        )
    return None


def overfitting(history: list[dict], evaluations: int = 2) -> str | None:
    """Train loss falling for `evaluations` evaluations while validation loss rises or F1 stalls."""
    evaluated = [e for e in history if "validation" in e]
    if len(evaluated) < evaluations + 1:
        return None
    window = evaluated[-(evaluations + 1) :]
    train = [e["train_loss"] for e in window]
    loss = [e["validation"]["loss"] for e in window]
    f1 = [e["validation"]["f1"] for e in window]
    train_falling = all(b < a for a, b in zip(train, train[1:]))
    loss_rising = all(b > a for a, b in zip(loss, loss[1:]))
    best_before = max(e["validation"]["f1"] for e in evaluated[:-evaluations])
    # An F1 stuck near 0 is underfitting (see weak_f1), not overfitting.
    f1_stalled = best_before >= NEAR_ZERO_F1 and max(f1[1:]) <= best_before + 0.001
    if not (train_falling and (loss_rising or f1_stalled)):
        return None
    best = max(evaluated, key=lambda e: e["validation"]["f1"])
    arrow = lambda values: " -> ".join(f"{v:.4f}" for v in values)  # noqa: E731
    return (
        f"overfitting: over the last {evaluations} evaluations train loss fell {arrow(train)} while validation "
        + (f"loss rose {arrow(loss)}" if loss_rising else f"F1 stalled {arrow(f1)}")
        + f" — the best model so far (epoch {best['epoch']}, F1 {best['validation']['f1']:.4f}) is the one kept; "
        f"train fewer epochs, stop early with --patience {evaluations}, or add training data"
    )


def patience_exhausted(history: list[dict], patience: int | None) -> str | None:
    """Early stopping: validation F1 has not improved for `patience` evaluations."""
    evaluated = [e for e in history if "validation" in e]
    if not patience or len(evaluated) <= patience:
        return None
    best = max(evaluated, key=lambda e: e["validation"]["f1"])  # the first of equals
    since = len(evaluated) - 1 - evaluated.index(best)
    if since < patience:
        return None
    return (
        f"early stopping: validation F1 has not improved for {since} evaluation{'s' if since != 1 else ''} "
        f"(best {best['validation']['f1']:.4f} at epoch {best['epoch']}; --patience {patience})"
    )


def _entity_starts(sentences) -> tuple[Counter, int]:
    """Entity mentions per type, and how many start with I- (invalid in IOB2)."""
    types: Counter = Counter()
    stray = 0
    for sentence in sentences:
        previous = None
        for tag in sentence.tags:
            prefix, entity_type = split_tag(tag)
            if entity_type is not None and (prefix == "B" or previous != entity_type):
                types[entity_type] += 1
                stray += prefix == "I"
            previous = entity_type
    return types, stray


def weak_f1(
    f1: float, steps: int, learning_rate: float, train_loss: float, n_labels: int, train: ConllFile, validation: ConllFile | None
) -> str | None:
    """Validation F1 near 0: name the data problems that explain it, or the optimisation."""
    if f1 >= NEAR_ZERO_F1:
        return None
    train_types, train_stray = _entity_starts(train.sentences)
    causes = []
    if validation is not None:
        validation_types, validation_stray = _entity_starts(validation.sentences)
        unseen = sorted(set(validation_types) - set(train_types))
        if unseen:
            causes.append(
                f"label mismatch: validation has {', '.join(f'{t} ({validation_types[t]})' for t in unseen)}, which training never shows "
                f"(training has {', '.join(sorted(train_types)) or 'no entities'}) — use the same tag set in every split"
            )
        for name, data, stray, types in (
            ("training", train, train_stray, train_types),
            ("validation", validation, validation_stray, validation_types),
        ):
            if stray:
                causes.append(
                    f"IOB1/IOB2 mix: {stray} of {sum(types.values())} entities in the {name} file ({data.path}) start with I- "
                    "although others start with B- — write every entity's first word as B- (IOB2), or the whole file as IOB1"
                )
        if train.scheme != validation.scheme:
            causes.append(
                f"the training file is {train.scheme.upper()} and the validation file {validation.scheme.upper()} "
                "(both were converted to IOB2) — check the conversion notices"
            )
    mentions = sum(train_types.values())
    if mentions < FEW_ENTITIES:
        words = sum(len(s.words) for s in train.sentences)
        causes.append(
            f"few entities: {mentions} entity mentions in {len(train.sentences)} training sentences ({words} words) — add training data"
        )
    if train_loss > math.log(max(2, n_labels)):
        causes.append(
            f"train loss {train_loss:.4g} is above ln({n_labels} labels) = {math.log(max(2, n_labels)):.2f}, worse than guessing: "
            f"the learning rate ({learning_rate:g}) is likely too high — try {_lower(learning_rate)}"
        )
    if not causes:
        slow = f"; {learning_rate:g} is a slow learning rate for small encoders (MiniLM likes 1e-4)" if learning_rate <= 5e-5 else ""
        causes.append(f"only {steps} optimizer steps so far — train longer (more epochs or sentences){slow}")
    return f"validation F1 is {f1:.4f} after {steps} steps: " + "; ".join(causes)


def long_sentences(too_long: int, total: int, max_pieces: int) -> str | None:
    """Sentences past the model's maximum are windowed, not truncated; many of them suggests documents."""
    if not too_long:
        return None
    share = too_long / max(1, total)
    message = (
        f"{too_long} of {total:,} training sentences ({share:.1%}) exceed the model's {max_pieces} wordpieces; "
        "they are split into overlapping windows, not truncated"
    )
    if share >= 0.05:
        message += (
            " — that many suggests whole paragraphs or documents per 'sentence': "
            "split them at sentence ends (blank lines) for speed and context"
        )
    return message
