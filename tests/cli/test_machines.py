"""Every machine, every run (issue 21): precision chosen by what the CPU has and recorded, the Python API
re-entrant, no finished run overwritten, progress visible without a terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml
from accelerate.state import AcceleratorState, PartialState

import nertune
from nertune.console import _Lines
from nertune.errors import NertuneError
from nertune.machine import ENV, cpu_description
from nertune.training.precision import choose_precision, flush_denormals, flushing_denormals
from tests.conftest import run_cli

TINY = dict(max_train_sentences=16, max_eval_sentences=8, epochs=1, progress=False)


def _cpu_flags() -> set[str]:
    text = Path("/proc/cpuinfo").read_text()
    return set(next(line for line in text.splitlines() if line.startswith("flags")).split(":", 1)[1].split())


def test_auto_precision_is_what_this_cpu_has(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    native = bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())
    chosen = choose_precision("auto", on_gpu=False)
    assert chosen.mixed == ("bf16" if native else "no")
    assert (chosen.notice is None) == native
    assert cpu_description()["flags"]["avx512_bf16"] == ("avx512_bf16" in _cpu_flags())


@pytest.mark.parametrize("setting,mixed", [("on", "bf16"), ("off", "no"), ("auto", None)])
def test_the_switch_forces_either_path(monkeypatch, setting, mixed):
    monkeypatch.setenv(ENV, setting)
    monkeypatch.setattr("nertune.machine._cpuinfo", lambda: "model name\t: test\nflags\t\t: fpu avx2\n")  # an AVX2-only CPU
    assert choose_precision("bf16", on_gpu=False).mixed == (mixed or "no")
    assert choose_precision("no", on_gpu=False).mixed == "no"  # a pinned precision is never switched


def test_a_bad_switch_value_is_one_clear_error(monkeypatch):
    monkeypatch.setenv(ENV, "maybe")
    with pytest.raises(NertuneError, match="NERTUNE_CPU_BF16='maybe' is not a setting"):
        choose_precision("auto", on_gpu=False)


def test_python_api_is_reentrant_across_precisions(tmp_path, monkeypatch, tiny_model):
    """fp32, bf16 (forced where the CPU has none), fp32 again, with a Tagger loaded in between."""
    monkeypatch.setenv(ENV, "on")
    runs = []
    for i, precision in enumerate(["no", "bf16", "no"]):
        runs.append(nertune.train(**TINY, mixed_precision=precision, output_dir=str(tmp_path / f"run{i}")))
        assert AcceleratorState._shared_state == {} and PartialState._shared_state == {}  # none left behind
        assert not flushing_denormals()  # the run flushed subnormals; the caller's setting came back
        assert nertune.Tagger.load(tiny_model)("Angela Merkel visited Paris .")  # loads and tags in between
    assert [m["precision"] for m in runs] == ["no", "bf16", "no"]
    assert runs[1]["precision_why"].startswith(f"{ENV}=on")
    # the same fp32 run twice in one process gives the same numbers: nothing of the bf16 run leaked
    assert runs[0]["validation"] == runs[2]["validation"] and runs[0]["epochs"][0]["train_loss"] == runs[2]["epochs"][0]["train_loss"]
    assert runs[1]["epochs"][0]["train_loss"] != runs[0]["epochs"][0]["train_loss"]


def test_subnormals_flush_inside_and_the_callers_setting_returns():
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush subnormal floats (not x86 with SSE3)")
    with flush_denormals():
        assert flushing_denormals()
        assert torch.tensor([1e-39]).mul(0.9).item() == 0.0
    assert not flushing_denormals() and torch.tensor([1e-39]).mul(0.9).item() > 0.0
    torch.set_flush_denormal(True)  # a caller who flushes already keeps flushing
    try:
        with flush_denormals():
            pass
        assert flushing_denormals()
    finally:
        torch.set_flush_denormal(False)


@pytest.mark.parametrize("preset,expected", [(None, "16384"), ("64", "64")])
def test_onednn_keeps_enough_kernels_unless_the_user_says(preset, expected):
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
    if preset:
        env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = preset
    code = "import os, nertune; print(os.environ['ONEDNN_PRIMITIVE_CACHE_CAPACITY'])"
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip() == expected


def test_metrics_record_the_cpu_and_why_this_precision(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, "off")
    metrics = nertune.train(**TINY, output_dir=str(tmp_path / "run"))
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["precision"] == "no" and saved["precision_why"] == f"{ENV}=off: this CPU is treated as having no bf16"
    cpu = saved["machine"]["cpu"]
    assert cpu["model"] and set(cpu["flags"]) >= {"avx512_bf16", "amx_bf16", "avx512_vnni"}
    assert cpu["flags"]["avx2"] == ("avx2" in _cpu_flags())
    assert metrics["machine"] == saved["machine"]


# ---- progress without a terminal ---------------------------------------------


def test_without_a_terminal_progress_is_plain_lines(tmp_path):
    result = run_cli(
        "train",
        "--max-train-sentences",
        "64",
        "--max-eval-sentences",
        "8",
        "--epochs",
        "1",
        "--grad-accum",
        "2",
        "--output-dir",
        str(tmp_path / "run"),
        "--sample",
        "",
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("epoch 1/1 step ")]
    assert [line.split()[3] for line in lines] == [f"{n}/32" for n in (4, 8, 12, 16, 20, 24, 28, 32)]  # each tenth, rounded up
    assert lines[0].split(" | ")[1].startswith("ETA ")  # the loss is first read back at step 10
    middle = lines[5].split(" | ")
    assert middle[1].startswith("loss ") and " lr " in middle[1] and middle[1].endswith(" sent/s") and middle[2].startswith("ETA ")
    assert " | ETA " not in lines[-1]
    assert "\r" not in result.stderr and not any("━" in line for line in lines)  # no live bar redrawn in a log


def test_a_slow_step_still_shows_life(capsys):
    lines = _Lines("epoch 1/3", 100, interval=0.2)
    try:
        lines.advance()
        time.sleep(0.7)  # a step that does not end
    finally:
        lines.close()
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("epoch 1/3 step 1/100")]
    assert len(said) >= 2, said


# ---- no run is overwritten ---------------------------------------------------


def test_a_finished_run_is_not_overwritten_unless_asked(tmp_path):
    out = tmp_path / "run"
    nertune.train(**TINY, output_dir=str(out))
    (out / "eval-test").mkdir()  # what a later `nertune evaluate --report-dir` or a user's predict left beside it
    (out / "test.pred.txt").write_text("old predictions\n")
    before = (out / "model.safetensors").read_bytes()
    with pytest.raises(NertuneError, match=r"holds a finished run — fix: add --overwrite"):
        nertune.train(**TINY, output_dir=str(out))
    assert (out / "model.safetensors").read_bytes() == before and (out / "test.pred.txt").exists()

    nertune.train(**TINY, learning_rate=1e-4, output_dir=str(out), overwrite=True)
    assert not (out / "eval-test").exists() and not (out / "test.pred.txt").exists()
    assert (out / "model.safetensors").read_bytes() != before
    assert yaml.safe_load((out / "recipe.yaml").read_text())["learning_rate"] == 1e-4


def test_a_folder_of_other_files_is_never_cleared(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine\n")
    result = run_cli("train", "--max-train-sentences", "8", "--epochs", "1", "--no-progress", "--output-dir", str(folder), "--overwrite")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {folder}: the output directory holds files nertune did not write, "
        "and nertune will not delete them — fix: choose a new or empty --output-dir"
    ]
    assert (folder / "notes.txt").read_text() == "mine\n"


def test_a_finished_run_trains_further_with_its_own_settings(tmp_path, featured_model):
    """--model RUN_DIR: the run's casing, context and CRF come with its weights and label order."""
    with pytest.raises(NertuneError, match=r"--no-casing contradicts the model being continued, which has casing True"):
        nertune.train(**TINY, model=str(featured_model), casing=False, output_dir=str(tmp_path / "refused"))
    assert not (tmp_path / "refused").exists()
    nertune.train(**TINY, model=str(featured_model), output_dir=str(tmp_path / "more"))
    recipe = yaml.safe_load((tmp_path / "more" / "recipe.yaml").read_text())
    source = yaml.safe_load((featured_model / "recipe.yaml").read_text())
    assert (
        (recipe["casing"], recipe["context_pieces"], recipe["crf"])
        == (source["casing"], source["context_pieces"], source["crf"])
        == (True, 16, True)
    )
    config = lambda d: json.loads((d / "config.json").read_text())  # noqa: E731
    assert config(tmp_path / "more")["id2label"] == config(featured_model)["id2label"]
    assert config(tmp_path / "more")["nertune_casing"] == config(featured_model)["nertune_casing"]


def test_a_run_that_fails_leaves_no_progress_thread_behind(tmp_path):
    with pytest.raises(NertuneError, match="training diverged"):
        nertune.train(
            max_train_sentences=32,
            max_eval_sentences=8,
            epochs=1,
            grad_accum=2,
            learning_rate=1e5,
            mixed_precision="no",
            output_dir=str(tmp_path / "run"),
            progress=True,
        )  # no terminal here: the plain lines and their watcher
    assert not [t for t in threading.enumerate() if t.name == "nertune-progress" and t.is_alive()]
