"""Never lose a run: a killed run resumed from its checkpoint ends exactly where an uninterrupted one does.

Real runs in subprocesses (the way a user's run dies), tiny settings: 16
sentences, 2 per step, 2 epochs = 16 steps. Every run uses one CPU thread, so
float sums happen in the same order and the weights can be compared bitwise — in fp32 and in
bf16 alike (NERTUNE_CPU_BF16 forces either path on any CPU).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nertune.errors import NertuneError
from nertune.training.api import train
from nertune.training.checkpoint import checkpoint_dirs
from tests.conftest import run_cli

STEPS_PER_EPOCH = 8
RUN = [
    "train",
    "--max-train-sentences",
    "16",
    "--max-eval-sentences",
    "8",
    "--epochs",
    "2",
    "--grad-accum",
    "2",
    "--learning-rate",
    "3e-4",
    "--no-progress",
    "--sample",
    "",
]
FIELDS = dict(max_train_sentences=16, max_eval_sentences=8, epochs=2, grad_accum=2, learning_rate=3e-4)
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TIMINGS = ("train_seconds", "sentences_per_second")


def start(*args: str, stderr_path: Path, env: dict = ENV) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "nertune", *RUN, *args],
        stdout=subprocess.DEVNULL,
        stderr=open(stderr_path, "w"),
        env={**os.environ, **env},
    )


def wait_for(condition, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, "the run ended before the moment the test waits for"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def without_timings(epochs: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if k not in TIMINGS} for e in epochs]


@pytest.fixture(scope="module", params=["off", "on"], ids=["fp32", "bf16"])
def uninterrupted(tmp_path_factory, request) -> tuple[Path, dict, dict]:
    env = {**ENV, "NERTUNE_CPU_BF16": request.param}
    out = tmp_path_factory.mktemp("whole") / "run"
    result = run_cli(*RUN, "--output-dir", str(out), "--json", env=env)
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["best_epoch"] == 2, "the comparison needs the final weights to come from after the resume"
    assert metrics["precision"] == {"off": "no", "on": "bf16"}[request.param]
    return out, metrics, env


def test_sigkill_mid_epoch_then_resume_equals_the_uninterrupted_run(uninterrupted, tmp_path):
    whole, whole_metrics, env = uninterrupted
    out = tmp_path / "run"
    # A checkpoint every 3 steps: 3, 6, 8 (epoch end), 9, 12, 15, 16. Kill once step 9 (in epoch 2) is on disk
    # and step 6 pruned (the newest 2 are kept), which happens right after step 9 lands.
    process = start("--save-every-steps", "3", "--output-dir", str(out), stderr_path=tmp_path / "killed.err", env=env)
    try:
        wait_for(lambda: [p.name for p in checkpoint_dirs(out)] == ["step-8", "step-9"], process)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (out / "metrics.json").exists()

    result = run_cli(*RUN, "--save-every-steps", "3", "--output-dir", str(out), "--resume", "--json", env=env)
    assert result.returncode == 0, result.stderr
    resumed_at = int(result.stderr.split("resumed from step ")[1].split()[0])
    assert resumed_at > STEPS_PER_EPOCH and resumed_at % STEPS_PER_EPOCH != 0  # mid-epoch, after an evaluation
    metrics = json.loads(result.stdout)

    a, b = load_file(str(whole / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name  # bitwise
    assert without_timings(metrics["epochs"]) == without_timings(whole_metrics["epochs"])
    for split in ("validation", "test"):
        assert metrics[split] == whole_metrics[split]
    # The step log reads as one run: every logged step once, the same losses.
    log = lambda d: [line.split(",")[:5] for line in (d / "train_log.csv").read_text().splitlines()]  # noqa: E731
    assert log(out) == log(whole)
    assert not (out / "checkpoints").exists()  # a finished run keeps its model, not its checkpoints


def test_sigterm_saves_a_checkpoint_and_says_how_to_resume(tmp_path):
    out = tmp_path / "run"
    stderr = tmp_path / "stderr"
    process = start("--output-dir", str(out), stderr_path=stderr)
    try:
        wait_for(lambda: "training embedded-minilm" in stderr.read_text(), process)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=300)
    finally:
        process.kill()
    text = stderr.read_text()
    assert process.returncode == 143, text
    step = int(text.split("interrupted at step ")[1].split(";")[0])
    assert f"--output-dir {out} --resume" in text and "nertune train --max-train-sentences 16" in text
    assert "Traceback" not in text
    (checkpoint,) = checkpoint_dirs(out)
    assert checkpoint.name == f"step-{step}"
    state = json.loads((checkpoint / "state.json").read_text())
    assert state["run"]["global_step"] == step and state["recipe"]["learning_rate"] == 3e-4
    assert {p.name for p in checkpoint.iterdir()} == {"model.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json"}

    # Resuming with other flags is refused before anything loads, naming the field.
    with pytest.raises(NertuneError, match="recipe field 'learning_rate' is 0.001 but the interrupted run used 0.0003"):
        train(**{**FIELDS, "learning_rate": 1e-3}, output_dir=str(out), resume=True, progress=False)
    # A fresh run in the same directory would bury the checkpoint: refused too.
    with pytest.raises(NertuneError, match="checkpoints of an unfinished run .* add --resume"):
        train(**FIELDS, output_dir=str(out), progress=False)


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(NertuneError, match="no complete checkpoint to resume from"):
        train(**FIELDS, output_dir=str(tmp_path / "nothing"), resume=True, progress=False)
    with pytest.raises(NertuneError, match="--resume needs the run's directory"):
        train(**FIELDS, resume=True, progress=False)
