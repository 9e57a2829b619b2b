"""Hardening (issue 22): line ends, ragged columns, Ctrl-C at any moment, model folders that point outside
themselves, truncated weights, damaged or malformed checkpoints, file modes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nertune.data.conll import parse_conll, read_conll
from nertune.errors import NertuneError
from nertune.model.load import load_trained, sha256
from nertune.tag.tagger import Tagger
from nertune.training.checkpoint import checkpoint_dirs
from nertune.training.recipe import load_recipe
from nertune.training.signals import StopRequests
from tests.conftest import run_cli

WORDS = "EU B-ORG\nrejects O\nGerman B-MISC\ncall O\n\nPeter B-PER\nBlackburn I-PER\n"


# ---- line ends and columns ---------------------------------------------------------


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
def test_every_kind_of_line_end_reads_the_same(tmp_path, end):
    path = tmp_path / "f.txt"
    path.write_bytes(WORDS.replace("\n", end).encode())
    conll = read_conll(path)
    assert [s.words for s in conll.sentences] == [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]]
    assert [s.tags for s in conll.sentences] == [["B-ORG", "O", "B-MISC", "O"], ["B-PER", "I-PER"]]


def test_crlf_and_lf_mixed_is_read_as_is(tmp_path):
    path = tmp_path / "f.txt"
    path.write_bytes(b"EU B-ORG\r\nrejects O\ncall O\r\n\r\nPeter B-PER\n")
    assert [s.words for s in read_conll(path).sentences] == [["EU", "rejects", "call"], ["Peter"]]


def test_cr_mixed_with_lf_is_refused_at_the_line(tmp_path):
    path = tmp_path / "f.txt"
    path.write_bytes(b"EU B-ORG\nrejects O\ncall O\rPeter B-PER\rBlackburn I-PER\n")
    with pytest.raises(NertuneError) as error:
        read_conll(path)
    assert str(error.value).startswith(f"{path}:3: mixed line ends: lines end in LF or CRLF up to here, then in CR — fix: convert")
    scored = tmp_path / "pred.txt"
    scored.write_bytes(b"EU B-ORG B-ORG\nrejects O O\ncall O O\rPeter B-PER B-PER\r")
    for command in (["train", "--train", str(path), "--no-progress"], ["score", str(scored)]):
        result = run_cli(*command)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "mixed line ends" in result.stderr


def test_a_changing_column_count_is_refused_unless_asked(tmp_path):
    text = "EU NNP B-ORG\nrejects VBZ O\nGerman B-MISC\n"
    with pytest.raises(NertuneError, match=r"f:3: 2 columns, but line 1 has 3 — fix: .*--ragged-columns"):
        parse_conll(text, "f")
    assert parse_conll(text, "f", ragged=True).sentences[0].tags == ["B-ORG", "O", "B-MISC"]
    scored = tmp_path / "pred.txt"
    scored.write_text("EU NNP B-ORG B-ORG\nrejects O O\n")
    assert run_cli("score", str(scored)).returncode == 2
    ok = run_cli("score", str(scored), "--ragged-columns", "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["f1"] == 1.0


# ---- Ctrl-C and SIGTERM at any moment ------------------------------------------------


@pytest.mark.parametrize("delay", [0.2, 0.5, 1.0, 2.0, 3.5])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
def test_a_signal_during_start_up_stops_the_command(tmp_path, delay, signum):
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nertune",
            "train",
            "--max-train-sentences",
            "64",
            "--epochs",
            "1",
            "--output-dir",
            str(tmp_path / "run"),
            "--no-progress",
            "--sample",
            "",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(delay)
    process.send_signal(signum)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, err  # never finishes as if nothing happened
    assert "Traceback" not in err and "RecursionError" not in err
    last = err.strip().splitlines()[-1]
    # before the train command has begun (imports), before training, or during it: one line each
    assert last.startswith(("interrupted (SIG", "interrupted before training started: nothing was saved (SIG", "interrupted at step")), err
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_a_signal_after_the_last_look_is_delivered_not_lost():
    got = []
    outer = signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
    try:
        with StopRequests() as stop:
            os.kill(os.getpid(), signal.SIGINT)  # after the loop's last `stop.requested`
            assert stop.requested and got == []
        assert got == [signal.SIGINT]  # handed on to the handler that was there before
    finally:
        signal.signal(signal.SIGINT, outer)


# ---- model folders that point outside themselves, truncated weights ------------------


@pytest.fixture
def model_copy(tiny_model, tmp_path):
    return shutil.copytree(tiny_model, tmp_path / "model", ignore=shutil.ignore_patterns("*.png", "checkpoints"))


@pytest.mark.parametrize("name", ["/dev/zero", "../../../../etc/hostname", "sub/model.safetensors", "", "..", "model.safetensors\x00x"])
def test_a_manifest_names_only_files_in_its_folder(model_copy, name):
    (model_copy / "manifest.json").write_text(json.dumps({"format": 1, "sha256": {name: "0" * 64}}))
    started = time.monotonic()
    with pytest.raises(NertuneError, match="manifest.json") as error:
        load_trained(model_copy)
    assert time.monotonic() - started < 5 and "\n" not in str(error.value)


def test_links_out_of_the_folder_and_special_files_are_refused(model_copy, tmp_path):
    outside = tmp_path / "elsewhere.safetensors"
    shutil.move(model_copy / "model.safetensors", outside)
    (model_copy / "model.safetensors").symlink_to(outside)
    with pytest.raises(NertuneError, match="links outside the folder"):
        load_trained(model_copy)
    (model_copy / "model.safetensors").unlink()
    os.mkfifo(model_copy / "model.safetensors")  # would block a reader forever
    with pytest.raises(NertuneError, match="is not a regular file"):
        load_trained(model_copy)


@pytest.mark.parametrize("content", [b"", b"\x10\x00\x00\x00\x00\x00\x00\x00{}", b"not safetensors at all, just text", "truncate"])
def test_broken_weights_without_a_manifest_are_one_line(model_copy, content):
    (model_copy / "manifest.json").unlink()
    weights = model_copy / "model.safetensors"
    if content == "truncate":
        with open(weights, "r+b") as handle:
            handle.truncate(weights.stat().st_size // 2)
    else:
        weights.write_bytes(content)
    result = run_cli("predict", str(model_copy), "--text", "EU rejects German call .")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and str(weights) in result.stderr


def test_an_export_without_a_digest_or_pointing_outside_is_refused(featured_onnx, tmp_path):
    export = shutil.copytree(featured_onnx, tmp_path / "export")
    info_path = export / "nertune_export.json"
    info = json.loads(info_path.read_text())
    for broken, message in (
        ({**info, "sha256": {}}, "records no sha256 for model.onnx"),
        ({**info, "model": "../../model.onnx"}, "not a plain file name"),
        ({**info, "model": ["x"]}, "not a plain file name"),
        ({**info, "sha256": "abc"}, "records no sha256"),
    ):
        info_path.write_text(json.dumps(broken))
        with pytest.raises(NertuneError, match=message):
            Tagger.load(export)
    info_path.write_text("[1, 2")
    result = run_cli("predict", str(export), "--text", "EU rejects German call .")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


def test_saved_files_follow_the_users_umask(tiny_model):
    umask = os.umask(0)
    os.umask(umask)
    for name in ("model.safetensors", "config.json", "manifest.json", "metrics.json"):
        assert (tiny_model / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


# ---- checkpoints ----------------------------------------------------------------------

RUN = [
    "train",
    "--max-train-sentences",
    "16",
    "--max-eval-sentences",
    "8",
    "--epochs",
    "2",
    "--grad-accum",
    "4",
    "--no-progress",
    "--sample",
    "",
]


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> Iterator[Path]:
    """A run with checkpoints at steps 2 and 4 (every 2 steps, 4 a epoch), stopped by SIGTERM in epoch 2."""
    out = tmp_path_factory.mktemp("ckpt") / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "nertune", *RUN, "--save-every-steps", "2", "--keep-checkpoints", "3", "--output-dir", str(out)],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while len(checkpoint_dirs(out)) < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=300)
    assert len(checkpoint_dirs(out)) >= 2
    yield out
    shutil.rmtree(out)  # 0.6 GB of checkpoints: gone with the module, not at the session's end


@pytest.fixture
def run_copy(interrupted, tmp_path) -> Path:
    return shutil.copytree(interrupted, tmp_path / "run")


def test_a_checkpoint_records_its_checksums(interrupted):
    latest = checkpoint_dirs(interrupted)[-1]
    state = json.loads((latest / "state.json").read_text())
    assert state["sha256"] == {name: sha256(latest / name) for name in ("model.safetensors", "optimizer.safetensors", "rng.safetensors")}


@pytest.mark.parametrize("file", ["model.safetensors", "optimizer.safetensors"])
def test_flipped_bytes_in_a_checkpoint_are_found_and_the_one_before_offered(run_copy, file):
    *_, before, latest = checkpoint_dirs(run_copy)
    damaged = latest / file
    with open(damaged, "r+b") as handle:
        handle.seek(damaged.stat().st_size // 2)
        byte = handle.read(1)[0]
        handle.seek(damaged.stat().st_size // 2)
        handle.write(bytes([byte ^ 1]))
    result = run_cli(*RUN, "--save-every-steps", "2", "--keep-checkpoints", "3", "--output-dir", str(run_copy), "--resume")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {damaged}: checkpoint file {file} is damaged (missing, or its sha256 differs from state.json's)"
        f" — fix: delete {latest} to resume from {before}"
    )


@pytest.mark.parametrize("state", ['{"format": 1', "[]", '{"format": 1, "step": 4}', '{"format": 1, "step": "x", "run": {}}', "null"])
def test_malformed_checkpoint_state_is_one_line(run_copy, state):
    latest = checkpoint_dirs(run_copy)[-1]
    (latest / "state.json").write_text(state)
    result = run_cli(*RUN, "--save-every-steps", "2", "--keep-checkpoints", "3", "--output-dir", str(run_copy), "--resume")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "state.json" in result.stderr


def test_a_stale_model_staging_folder_is_cleaned_when_the_run_resumes(run_copy):
    stale = run_copy / ".model.abc123.tmp"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    result = run_cli(*RUN, "--save-every-steps", "2", "--keep-checkpoints", "3", "--output-dir", str(run_copy), "--resume")
    assert result.returncode == 0, result.stderr
    assert not stale.exists() and not list(run_copy.glob(".model.*.tmp"))


# ---- memory on hostile input ------------------------------------------------------------


def _peak_rss_mb(*command: str) -> tuple[int, str]:
    """Run `command` as the only child of a fresh interpreter; its exit code and stderr, and its peak RSS."""
    probe = (
        "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "sys.stderr.write(r.stderr); print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)"
    )
    result = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True, text=True, timeout=300)
    code, peak = result.stdout.split()
    return int(code), int(peak), result.stderr


@pytest.mark.parametrize("command", ["score", "read"])
def test_a_50_mb_file_with_no_line_break_is_refused_in_little_memory(tmp_path, command):
    big = tmp_path / "one-line.txt"
    with open(big, "wb") as handle:
        for _ in range(50):
            handle.write(b"x" * (1 << 20))
    if command == "score":
        args = [sys.executable, "-m", "nertune", "score", str(big)]
    else:  # the reader train, evaluate and compare share
        args = [sys.executable, "-c", "import sys; from nertune.data.conll import read_conll; read_conll(sys.argv[1])", str(big)]
    code, peak, err = _peak_rss_mb(*args)
    assert code in (1, 2) and "line longer than 1,048,576 characters" in err
    assert peak < 300, peak


def test_a_huge_recipe_file_is_refused_before_it_is_read(tmp_path):
    recipe = tmp_path / "big.yaml"
    recipe.write_bytes(b"epochs: 3\n" + b"#" * (2 << 20))
    with pytest.raises(NertuneError, match=r"big.yaml: recipe is 2,097,162 bytes: not a recipe"):
        load_recipe(str(recipe))
