"""benchmarks/gpu/gpu_speed.py --smoke: the GPU benchmark's code path, run on the CPU with a tiny BERT.

The real run needs a GPU (bash benchmarks/gpu/gpu.sh); this keeps the script from rotting where none is lent.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nertune.data.embedded import minilm_dir

ROOT = Path(__file__).resolve().parents[2]


def run_smoke(script: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess, dict]:
    """`python -m benchmarks.gpu.SCRIPT --smoke` from the repository root in a child process (as on the GPU machine:
    no $OUT here); its exit and JSON."""
    out = tmp_path / "result.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("OUT", None)
    done = subprocess.run(
        [sys.executable, "-m", f"benchmarks.gpu.{script}", "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=280,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done, json.loads(out.read_text())


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_gpu_speed_smoke_measures_both_systems(tmp_path):
    done, results = run_smoke("gpu_speed", tmp_path)
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
        results["nertune"]["sentences_per_second"] / results["trainer"]["sentences_per_second"]
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_gpu_step_smoke_times_both_modes(tmp_path):
    """benchmarks/gpu/gpu_step.py --smoke: eager and graphed steps (capture left out on a CPU) from the same start."""
    _, results = run_smoke("gpu_step", tmp_path)
    assert "error" not in results["graphed"] and "error" not in results["whole_step"], (results["graphed"], results["whole_step"])
    assert results["graphed"]["shapes_captured"] >= 1
    assert results["whole_step"]["shapes"] >= 1 and results["whole_step"]["replays"] >= 1 and results["whole_step"]["failed"] is None
    for mode in ("eager", "graphed", "whole_step"):
        assert results[mode]["ms_per_step"] > 0 and math.isfinite(results[mode]["mean_loss_last_100"]), mode
    # The same random steps from the same saved start, with bucketed (wider) rows: the same losses up to dropout.
    for mode in ("graphed", "whole_step"):
        assert abs(results["eager"]["mean_loss_last_100"] - results[mode]["mean_loss_last_100"]) < 0.05, mode


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_gpu_minilm_smoke_trains_the_three_kinds_of_run(tmp_path, monkeypatch):
    """benchmarks/gpu/gpu_minilm.py --smoke: the pretrained MiniLM through its fp16 round trip, three runs scored (the
    GPU's other runs are these again on a CPU, where no graph applies)."""
    _, results = run_smoke("gpu_minilm", tmp_path)
    runs = (
        ("seed_graphed", "seed", True),
        ("context_crf_packed", "minilm-context-crf", True),
        ("context_crf", "minilm-context-crf", False),
    )
    monkeypatch.syspath_prepend(str(ROOT))  # the benchmarks package, as `python -m` from the root finds it
    from benchmarks.gpu.gpu_minilm import RUNS  # noqa: PLC0415  (after syspath_prepend)

    assert [name for name, *_ in RUNS if name in results] == [run for run, _, _ in runs]  # in the order they run
    for run, recipe, pack in runs:
        assert "error" not in results[run], results[run].get("traceback")
        assert results[run]["recipe"] == recipe and results[run]["pack"] is pack and results[run]["train_sentences"] == 16
        assert results[run]["validation"]["sentences"] == 8 and results[run]["test"]["sentences"] == 8
        assert 0 < results[run]["train_seconds"] < results[run]["wall_seconds"]
    assert results["seed_graphed"]["cuda_graphs"] is None  # no graph applies on a CPU


def test_the_fp16_copy_that_travels_moves_each_weight_by_at_most_one_part_in_2048(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))  # the benchmarks package, as `python -m` from the root finds it
    from benchmarks.gpu.gpu_minilm import copy_in_dtype  # noqa: PLC0415  (after syspath_prepend)

    copy_in_dtype(minilm_dir(), tmp_path / "fp16", torch.float16)
    copy_in_dtype(tmp_path / "fp16", tmp_path / "fp32", torch.float32)
    original, widened = load_file(minilm_dir() / "model.safetensors"), load_file(tmp_path / "fp32" / "model.safetensors")
    assert (
        original.keys() == widened.keys()
        and (tmp_path / "fp16" / "model.safetensors").stat().st_size < 0.51 * (minilm_dir() / "model.safetensors").stat().st_size
    )
    for name, weight in original.items():
        assert widened[name].dtype == weight.dtype and widened[name].shape == weight.shape, name
        if weight.is_floating_point():
            error = (widened[name] - weight).abs()
            normal = weight.abs() >= torch.finfo(torch.float16).tiny
            assert (error[normal] <= weight.abs()[normal] * 2**-11).all(), name
            assert (error[~normal] <= 2**-25).all(), name  # below fp16's normal range: half its subnormal spacing


@pytest.mark.timeout(300)
def test_a_failing_phase_is_recorded_and_the_others_still_run(tmp_path, monkeypatch):
    """One GPU session is all a gpu.sh run gets: an exception in a phase must not cost the phases after it."""
    monkeypatch.syspath_prepend(str(ROOT))  # the benchmarks package, as `python -m` from the root finds it
    from benchmarks.gpu import gpu_speed  # noqa: PLC0415  (after syspath_prepend)

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
