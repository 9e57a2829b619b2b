"""The CPU speed tricks are switches (training/speed/): each can be turned off, and with dropout off (the
one trick that draws its randomness differently) a run with all of them off trains as the default does."""

from __future__ import annotations

import pytest

import nertune

TINY = dict(max_train_sentences=48, max_eval_sentences=16, epochs=1, grad_accum=4, dropout=0.0, mixed_precision="no", progress=False)
OFF = dict(cheap_dropout=False, kept_embedding_grad=False, used_rows_only=False)


def test_the_speed_tricks_off_train_as_on(tmp_path):
    on = nertune.train(**TINY, output_dir=str(tmp_path / "on"))
    off = nertune.train(**TINY, **OFF, output_dir=str(tmp_path / "off"))
    assert off["recipe"] | OFF == off["recipe"] and on["recipe"]["cheap_dropout"] is True
    assert off["epochs"][0]["train_loss"] == pytest.approx(on["epochs"][0]["train_loss"], rel=1e-4)
    assert off["validation"]["loss"] == pytest.approx(on["validation"]["loss"], rel=1e-3)
