"""The suite's CLI runs stay forked from the warm interpreter (tests/forked_cli.py) once torch has run here.

A variable that torch or nertune sets in this process made every later CLI run take a new interpreter
(the suite ran a third longer, every test passing): this test fails instead.
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
    changed = forked_cli.changed(dict(os.environ))
    assert forked_cli._may_fork(dict(os.environ)), f"changed here, read at start-up: every CLI run would take a new interpreter ({changed})"
    assert not forked_cli._may_fork({**os.environ, "OMP_NUM_THREADS": "7"}) and not forked_cli._may_fork({**os.environ, "HF_HOME": "/x"})
    assert forked_cli._may_fork({**os.environ, "NERTUNE_CPU_BF16": "on", "MLFLOW_ALLOW_FILE_STORE": "true"})

    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("run_cli started a new interpreter"))
    result = run_cli("score", "--help")
    assert result.returncode == 0 and "conlleval" in result.stdout.lower()
