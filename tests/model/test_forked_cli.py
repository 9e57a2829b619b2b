"""The suite's CLI runs stay forked from the warm interpreter (tests/forked_cli.py) once torch has run here.

A variable that torch or nertune sets in this process made every later CLI run take a new interpreter
(the suite ran 12.7 min instead of 9.6 on a 2-core AVX2 CPU, all tests passing): this test fails instead.
"""

from __future__ import annotations

import os
import subprocess

import pytest
import torch

from tests import forked_cli
from tests.conftest import run_cli, training_windows


def test_after_a_model_ran_in_process_a_cli_run_still_forks(conll_files, monkeypatch):
    model, _, _, windows = training_windows(conll_files, slice(0, 2))
    with torch.no_grad():
        model(input_ids=torch.tensor([windows[0].input_ids]))
    assert forked_cli._may_fork(dict(os.environ)), "a variable changed in this process would send every CLI run to a new interpreter"

    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("run_cli started a new interpreter"))
    result = run_cli("score", "--help")
    assert result.returncode == 0 and "conlleval" in result.stdout.lower()
