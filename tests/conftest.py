"""Shared fixtures: real CoNLL-2003 slices and the real embedded MiniLM.

`make test` runs the suite in two pytest-xdist workers (one per core of the CI machine): most of a test's
time is single-threaded Python (interpreter starts, imports, tokenizing), so a second process keeps the
second core busy. Each worker then runs torch on one thread, and the models several test files share are
trained once per session, not once per worker (`shared_dir`). `run_cli` forks each CLI run from a warm
interpreter that imported torch and transformers once (tests/forked_cli.py), not in each of a hundred runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from filelock import FileLock

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
WORKER = os.environ.get("PYTEST_XDIST_WORKER")  # "gw0", "gw1"; None when pytest runs alone
if WORKER:
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # read when torch loads (here and in the CLI runs): two workers, two cores

from nertune.data.conll import read_conll  # noqa: E402
from nertune.data.embedded import conll2003_files, minilm_dir  # noqa: E402
from nertune.data.splits import build_labels  # noqa: E402
from nertune.model.load import load_for_training, load_tokenizer  # noqa: E402
from tests import forked_cli  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FREE_AT_START = pytest.StashKey[str]()


@pytest.fixture(scope="session")
def conll_files() -> dict[str, Path]:
    return conll2003_files()


@pytest.fixture(scope="session")
def minilm() -> Path:
    return minilm_dir()


@pytest.fixture(scope="session")
def documents_slice(conll_files):
    """The first 40 CoNLL validation sentences: three documents (0, 1, 2), for the document-context tests."""
    sentences = read_conll(conll_files["validation"]).sentences[:40]
    assert len({s.document for s in sentences}) == 3
    return sentences


def training_windows(conll_files: dict[str, Path], sentences: slice, max_pieces: int = 510, **model_options):
    """The embedded MiniLM built for CoNLL's labels, in eval mode (no dropout, so gradients compare), and the
    labelled windows of a slice of CoNLL train: (model, tokenizer, sentences, windows)."""
    from nertune.model.word_scores import build_windows  # noqa: PLC0415  (unit tier: no torch)

    train = read_conll(conll_files["train"])
    labels = build_labels([train])
    tokenizer = load_tokenizer("embedded-minilm")
    model = load_for_training("embedded-minilm", labels, **model_options).eval()
    chosen = train.sentences[sentences]
    label2id = {label: i for i, label in enumerate(labels)}
    windows = build_windows(tokenizer, [s.words for s in chosen], max_pieces, [[label2id[t] for t in s.tags] for s in chosen], model.config)
    return model, tokenizer, chosen, windows


def run_cli(
    *args: str, input: str | None = None, timeout: int = 600, env: dict | None = None, fresh: bool = False
) -> subprocess.CompletedProcess:
    """Run `python -m nertune ARGS` as a user would, forked from a warm interpreter where that is the same
    (tests/forked_cli.py says when); `fresh=True`: in a new interpreter, for a test that times start-up."""
    return forked_cli.run(args, input, timeout, {**os.environ, **(env or {})}, fresh)


def shared_dir(tmp_path_factory, name: str, build) -> Path:
    """`build(path)` once per test session, even across xdist workers: the first worker to ask builds it
    under a file lock; the others wait for it, then reuse it."""
    if not WORKER:
        path = tmp_path_factory.mktemp(name) / "out"
        build(path)
        return path
    root = tmp_path_factory.getbasetemp().parent / "shared"  # the session's folder, above each worker's own
    root.mkdir(exist_ok=True)
    path, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            build(path)  # a failed build leaves no .done: the next worker to ask tries again and fails alike
            done.touch()
    return path


def _cli_ok(*args: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A model trained for one epoch on 256 real sentences: shared by every test that needs one.

    (16 steps at 3e-4: enough that it tags the names in the tests' sentences, as a few random
    steps at 1e-4 are not.)"""
    return shared_dir(
        tmp_path_factory,
        "tiny",
        lambda out: _cli_ok(
            "train",
            "--max-train-sentences",
            "256",
            "--max-eval-sentences",
            "48",
            "--epochs",
            "1",
            "--learning-rate",
            "3e-4",
            "--output-dir",
            str(out),
            "--no-progress",
            "--sample",
            "",
        ),
    )


@pytest.fixture(scope="session")
def featured_model(tmp_path_factory) -> Path:
    """`make train`'s recipe family, minilm-context-crf-5ep (casing classes, 16 pieces of document context, a CRF head;
    make train's own, minilm-context64-crf-5ep, differs only in its 64 pieces of context), cut by flags to one epoch
    on 64 real sentences: shared by the casing, context and CRF tests."""
    return shared_dir(
        tmp_path_factory,
        "featured",
        lambda out: _cli_ok(
            "train",
            "--recipe",
            "minilm-context-crf-5ep",
            "--epochs",
            "1",
            "--max-train-sentences",
            "64",
            "--max-eval-sentences",
            "16",
            "--output-dir",
            str(out),
            "--no-progress",
            "--sample",
            "",
        ),
    )


@pytest.fixture(scope="session")
def featured_onnx(featured_model, tmp_path_factory) -> Path:
    """featured_model exported by `nertune export --onnx` (fp32)."""
    return shared_dir(tmp_path_factory, "featured-onnx", lambda out: _cli_ok("export", str(featured_model), "--onnx", str(out)))


def pytest_configure(config):
    # CI once ran out of disk (13 GB of kept test folders): the summary says what the temp folder had free at the start.
    folder = Path(tempfile.gettempdir())
    free = shutil.disk_usage(folder).free / 2**30
    config.stash[FREE_AT_START] = f"temp folder {folder}: {free:.1f} GiB free at the start (the suite peaks at about 3 GiB)"


def pytest_terminal_summary(terminalreporter, config):
    if not WORKER:
        terminalreporter.write_line(config.stash[FREE_AT_START])


def pytest_collection_modifyitems(config, items):
    """Each test carries its tier's marker (unit: no model; model: the embedded model in-process; cli:
    subprocesses and trained fixtures), so `-m unit` or `-m "not cli"` pick a tier. The cli tier is also
    `slow`: `pytest -m "not slow"` is the quick pass (unit and model tiers, under 3 minutes on 2 cores)."""
    for item in items:
        tier = Path(str(item.fspath)).parent.name
        if tier in ("unit", "model", "cli"):
            item.add_marker(tier)
        if tier == "cli":
            item.add_marker("slow")
