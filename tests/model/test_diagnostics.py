"""Diagnostics: each says its numbers and a fix; NaN stops the run and keeps the last good checkpoint.

The rules are checked on histories and real CoNLL slices; three tiny real
runs check that the loop prints them, stops on NaN and stops early.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from nertune.data.conll import read_conll
from nertune.errors import NertuneError
from nertune.training import diagnostics
from nertune.training.api import train
from nertune.training.checkpoint import checkpoint_dirs


def epoch(n, train_loss, loss, f1):
    return {"epoch": n, "train_loss": train_loss, "validation": {"loss": loss, "f1": f1, "precision": f1, "recall": f1, "accuracy": 0.9}}


# ---- the rules --------------------------------------------------------------


def test_overfitting_needs_train_falling_while_validation_worsens():
    rising = [epoch(1, 0.30, 0.10, 0.80), epoch(2, 0.15, 0.12, 0.85), epoch(3, 0.08, 0.15, 0.86)]
    message = diagnostics.overfitting(rising, 2)
    assert "train loss fell 0.3000 -> 0.1500 -> 0.0800" in message
    assert "validation loss rose 0.1000 -> 0.1200 -> 0.1500" in message
    assert "epoch 3, F1 0.8600" in message and "--patience 2" in message
    stalled = [epoch(1, 0.30, 0.10, 0.85), epoch(2, 0.15, 0.09, 0.84), epoch(3, 0.08, 0.09, 0.85)]
    assert "F1 stalled 0.8500 -> 0.8400 -> 0.8500" in diagnostics.overfitting(stalled, 2)
    improving = [epoch(1, 0.30, 0.10, 0.80), epoch(2, 0.15, 0.09, 0.85), epoch(3, 0.08, 0.085, 0.88)]
    assert diagnostics.overfitting(improving, 2) is None
    assert diagnostics.overfitting(rising[:2], 2) is None  # not enough evaluations yet
    underfit = [epoch(1, 0.9, 0.8, 0.0), epoch(2, 0.8, 0.7, 0.0), epoch(3, 0.7, 0.65, 0.0)]
    assert diagnostics.overfitting(underfit, 2) is None  # F1 stuck at 0 is not overfitting


def test_patience_counts_evaluations_since_the_best_f1():
    history = [epoch(1, 0.3, 0.1, 0.80), epoch(2, 0.2, 0.1, 0.85), epoch(3, 0.1, 0.1, 0.84), epoch(4, 0.1, 0.1, 0.85)]
    assert diagnostics.patience_exhausted(history[:3], 2) is None
    message = diagnostics.patience_exhausted(history, 2)
    assert "has not improved for 2 evaluations (best 0.8500 at epoch 2; --patience 2)" in message  # a tie is no improvement
    assert diagnostics.patience_exhausted(history, None) is None


def test_loss_watch_flags_worse_than_guessing_and_rising():
    watch = diagnostics.LossWatch(n_labels=9, learning_rate=1e-3)
    assert watch.observe(10, 2.1) is None  # a fresh head starts near ln(9)
    assert watch.observe(20, 0.4) is None
    rising = watch.observe(30, 1.3)
    assert "rose from 0.4000 (step 20) to 1.3000 (step 30)" in rising and "try --learning-rate 0.0001" in rising
    assert watch.observe(40, 1.9) is None  # said once
    high = diagnostics.LossWatch(9, 0.5).observe(10, 50.0)
    assert "above ln(9 labels) = 2.20" in high and "learning rate (0.5) is likely too high" in high
    # During a warm-up the learning rate starts near 0: near-uniform loss at step 20 of 263 is expected, not past it.
    warming = diagnostics.LossWatch(9, 1e-4, warmup_steps=263)
    assert warming.observe(20, 2.2021) is None
    assert "above ln(9 labels)" in warming.observe(270, 2.21)
    assert diagnostics.epoch_loss_rose([{"epoch": 1, "train_loss": 0.2}, {"epoch": 2, "train_loss": 0.3}], 1e-3).startswith(
        "train loss rose from 0.2000 (epoch 1)"
    )
    assert diagnostics.epoch_loss_rose([{"epoch": 1, "train_loss": 0.2}, {"epoch": 2, "train_loss": 0.21}], 1e-3) is None


def test_long_sentences_are_counted_with_their_share():
    assert diagnostics.long_sentences(0, 100, 510) is None
    assert diagnostics.long_sentences(1, 100, 510).startswith("1 of 100 training sentences (1.0%) exceed the model's 510 wordpieces")
    assert "split them at sentence ends" in diagnostics.long_sentences(30, 100, 510)


def _write(path, sentences):
    path.write_text("\n\n".join("\n".join(f"{w} {t}" for w, t in zip(s.words, s.tags)) for s in sentences) + "\n", encoding="utf-8")
    return read_conll(path)


def test_weak_f1_names_label_mismatch_iob_mix_and_few_entities(conll_files, tmp_path):
    real = read_conll(conll_files["train"]).sentences[:200]
    validation = _write(tmp_path / "validation.txt", real[100:200])
    # Training data with every MISC entity blanked out: validation's MISC is never seen.
    for s in real[:100]:
        s.tags = ["O" if t.endswith("MISC") else t for t in s.tags]
    no_misc = _write(tmp_path / "no_misc.txt", real[:100])
    message = diagnostics.weak_f1(0.01, 30, 1e-4, 0.5, 9, no_misc, validation)
    misc = sum(t == "B-MISC" for s in validation.sentences for t in s.tags)
    assert f"label mismatch: validation has MISC ({misc}), which training never shows (training has LOC, ORG, PER)" in message
    assert message.startswith("validation F1 is 0.0100 after 30 steps")

    # Some entities written IOB1-style (I- first) among IOB2 ones: the file reads as IOB2, the I- starts stay.
    mixed = [s for s in real[:100] if "B-PER" in s.tags][:20]
    for s in mixed[:5]:
        s.tags = ["I-PER" if t == "B-PER" else t for t in s.tags]
    mixed_file = _write(tmp_path / "mixed.txt", mixed)
    assert mixed_file.scheme == "iob2"
    message = diagnostics.weak_f1(0.0, 30, 1e-4, 0.5, 9, mixed_file, None)
    assert "IOB1/IOB2 mix" not in message  # only reported against a validation split
    message = diagnostics.weak_f1(0.0, 30, 1e-4, 0.5, 9, mixed_file, validation)
    starts = diagnostics._entity_starts(mixed)[1]
    assert starts >= 5 and f"IOB1/IOB2 mix: {starts} of" in message and "mixed.txt" in message

    few = _write(tmp_path / "few.txt", mixed[:3])
    mentions = sum(diagnostics._entity_starts(few.sentences)[0].values())
    assert f"few entities: {mentions} entity mentions in 3 training sentences" in diagnostics.weak_f1(
        0.0, 30, 1e-4, 0.5, 9, few, validation
    )

    healthy = _write(tmp_path / "train.txt", read_conll(conll_files["train"]).sentences[:100])
    assert diagnostics.weak_f1(0.5, 30, 1e-4, 0.5, 9, healthy, validation) is None
    message = diagnostics.weak_f1(0.0, 12, 2e-5, 0.5, 9, healthy, validation)
    assert message == (
        "validation F1 is 0.0000 after 12 steps: only 12 optimizer steps so far — train longer "
        "(more epochs or sentences); 2e-05 is a slow learning rate for small encoders (MiniLM likes 1e-4)"
    )
    assert "worse than guessing" in diagnostics.weak_f1(0.0, 12, 10.0, 40.0, 9, healthy, validation)


# ---- in real runs -------------------------------------------------------------


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    out = tmp_path / "run"
    # 1e5 is absurd: the weights overflow within a few steps. A checkpoint each step shows which ones stay.
    with pytest.raises(NertuneError) as error:
        train(
            max_train_sentences=32,
            max_eval_sentences=8,
            epochs=1,
            grad_accum=2,
            learning_rate=1e5,
            save_every_steps=1,
            output_dir=str(out),
            progress=False,
        )
    message = str(error.value)
    assert "training diverged: the loss or gradient became NaN/inf" in message
    assert "fix: lower the learning rate (now 100000; try --learning-rate 10000" in message
    kept = checkpoint_dirs(out)
    assert kept and f"the last good checkpoint is kept: {kept[-1]}" in message
    weights = load_file(str(kept[-1] / "model.safetensors"))
    assert all(torch.isfinite(t).all() for t in weights.values())
    assert not (out / "metrics.json").exists()


def test_too_high_learning_rate_is_diagnosed_in_a_run(tmp_path, capsys):
    # fp32 pinned: in bf16 the loss turns NaN within 10 steps and the divergence stop comes first
    train(
        max_train_sentences=20,
        max_eval_sentences=8,
        epochs=1,
        grad_accum=2,
        learning_rate=1e3,
        mixed_precision="no",
        output_dir=str(tmp_path / "run"),
        progress=False,
    )
    err = capsys.readouterr().err
    assert "diagnosis: train loss" in err and "at step 10 is above ln(9 labels) = 2.20" in err
    assert "the learning rate (1000) is likely too high — try --learning-rate 100" in err


def test_patience_stops_early_and_a_zero_f1_is_explained(tmp_path, capsys):
    # 8 steps an epoch first teach the head to say O everywhere: F1 0, twice, so patience 1 stops after epoch 2.
    metrics = train(
        max_train_sentences=16,
        max_eval_sentences=8,
        epochs=4,
        grad_accum=2,
        learning_rate=1e-4,
        patience=1,
        output_dir=str(tmp_path / "run"),
        progress=False,
    )
    err = capsys.readouterr().err
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    assert metrics["stopped_early_after_epoch"] == 2 and metrics["best_epoch"] == 1
    assert "early stopping: validation F1 has not improved for 1 evaluation (best 0.0000 at epoch 1; --patience 1)" in err
    assert "diagnosis: validation F1 is 0.0000 after 16 steps: few entities: 38 entity mentions in 16 training sentences (365 words)" in err
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["stopped_early_after_epoch"] == 2
