"""benchmarks/gpu_speed.py --smoke: the GPU benchmark's code path, run on the CPU with a tiny BERT.

The real run needs a GPU (bash benchmarks/gpu.sh); this keeps the script from rotting where none is lent.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_smoke(script: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess, dict]:
    """benchmarks/SCRIPT --smoke in a child process (as on the GPU machine: no $OUT here); its exit and JSON."""
    out = tmp_path / "result.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("OUT", None)
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--smoke", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]
    return done, json.loads(out.read_text())


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_gpu_speed_smoke_measures_both_systems(tmp_path):
    done, results = run_smoke("gpu_speed.py", tmp_path)
    assert json.loads(done.stdout) == results  # the JSON alone on stdout, notices on stderr
    assert results["smoke"] is True and results["train_sentences"] == 64
    for system in ("trainer", "nertune", "trainer_literal"):
        assert results[system]["sentences_per_second"] > 0, system
        assert math.isfinite(results[system]["train_loss"]), system
    assert (results["trainer"]["batch_size"], results["trainer"]["grad_accum"]) == (16, 1)
    assert (results["trainer_literal"]["batch_size"], results["trainer_literal"]["grad_accum"]) == (1, 16)
    # Same saved random weights and the same 64 sentences: one epoch of 4 steps at lr 2e-5 barely moves
    # either, so their mean losses agree closely (a different model or label order would not).
    assert abs(results["nertune"]["train_loss"] - results["trainer"]["train_loss"]) < 0.05
    assert results["speedup_vs_trainer"] == pytest.approx(
        results["nertune"]["sentences_per_second"] / results["trainer"]["sentences_per_second"])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_gpu_step_smoke_times_both_modes(tmp_path):
    """benchmarks/gpu_step.py --smoke: eager and graphed steps (capture left out on a CPU) from the same start."""
    _, results = run_smoke("gpu_step.py", tmp_path)
    assert "error" not in results["graphed"] and "error" not in results["whole_step"], (results["graphed"], results["whole_step"])
    assert results["graphed"]["shapes_captured"] >= 1
    assert results["whole_step"]["shapes"] >= 1 and results["whole_step"]["replays"] >= 1 and results["whole_step"]["failed"] is None
    for mode in ("eager", "graphed", "whole_step"):
        assert results[mode]["ms_per_step"] > 0 and math.isfinite(results[mode]["mean_loss_last_100"]), mode
    # The same random steps from the same saved start, with bucketed (wider) rows: the same losses up to dropout.
    for mode in ("graphed", "whole_step"):
        assert abs(results["eager"]["mean_loss_last_100"] - results[mode]["mean_loss_last_100"]) < 0.05, mode


@pytest.mark.timeout(300)
def test_a_failing_phase_is_recorded_and_the_others_still_run(tmp_path, monkeypatch):
    """One GPU session is all a gpu.sh run gets: an exception in a phase must not cost the phases after it."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import gpu_speed

    def failing_train_run(*args, **kwargs):
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing")

    monkeypatch.setattr(gpu_speed, "train_run", failing_train_run)
    monkeypatch.setattr(sys, "argv", ["gpu_speed.py", "--smoke", "--out", str(tmp_path / "result.json"), "--literal-sentences", "16"])
    gpu_speed.main()
    results = json.loads((tmp_path / "result.json").read_text())
    for phase in ("nertune", "nertune_3_epochs"):
        assert results[phase]["error"] == "RuntimeError: CUDA error: operation not permitted when stream is capturing"
        assert "failing_train_run" in results[phase]["traceback"]
    assert results["trainer"]["sentences_per_second"] > 0 and results["trainer_literal"]["sentences_per_second"] > 0
    assert "speedup_vs_trainer" not in results  # no ratio from a phase that did not run
