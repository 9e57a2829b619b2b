"""A model name that cannot load fails in seconds, in one line, before torch or transformers load.

Network traffic stays on the loopback interface: the hub endpoint is always a 127.0.0.1 address here.
"""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from nertune.data import embedded
from nertune.errors import NertuneError
from tests.conftest import run_cli

LIMIT_S = 5.0
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """The loopback endpoints must be reached directly, never through a proxy this machine names."""
    for variable in PROXY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    """A Hugging Face cache with nothing in it, for the CLI runs (whatever this machine has cached)."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    return tmp_path / "hf" / "hub"


def _train(model: str, tmp_path, env: dict | None = None):
    """`nertune train --model MODEL`, timed: (result, seconds)."""
    start = time.monotonic()
    result = run_cli(
        "train",
        "--model",
        model,
        "--max-train-sentences",
        "8",
        "--output-dir",
        str(tmp_path / "out"),
        "--no-progress",
        "--sample",
        "",
        env=env,
        timeout=120,
        fresh=True,  # the time limit is about start-up: no warm interpreter
    )
    return result, time.monotonic() - start


def _one_error_line(result) -> str:
    assert result.returncode == 2, result.stderr
    assert result.stdout == "" and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    return result.stderr


def _closed_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


def test_a_local_path_that_is_not_there_is_folder_not_found(tmp_path, empty_hf_cache):
    missing = tmp_path / "models" / "my-bert"
    result, seconds = _train(str(missing), tmp_path)
    line = _one_error_line(result)
    assert line.startswith(f"error: {missing}: model folder not found — fix: ")
    assert seconds < LIMIT_S, f"{seconds:.1f} s"
    assert not (tmp_path / "out").exists()


def test_a_hub_id_not_cached_with_hf_hub_offline_set(tmp_path, empty_hf_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result, seconds = _train("bert-base-cased", tmp_path)
    line = _one_error_line(result)
    assert "model 'bert-base-cased' is not in the local Hugging Face cache" in line and "HF_HUB_OFFLINE is set" in line
    assert str(empty_hf_cache) in line
    assert seconds < LIMIT_S, f"{seconds:.1f} s"


def test_a_hub_id_not_cached_with_the_hub_unreachable(tmp_path, empty_hf_cache, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    endpoint = f"http://127.0.0.1:{_closed_loopback_port()}"
    result, seconds = _train("bert-base-cased", tmp_path, env={"HF_ENDPOINT": endpoint})
    line = _one_error_line(result)
    assert "model 'bert-base-cased' is not in the local cache and the Hugging Face hub is unreachable" in line
    assert endpoint in line and "HF_HUB_OFFLINE=1" in line
    assert seconds < LIMIT_S, f"{seconds:.1f} s"


def test_a_hub_that_accepts_connections_but_never_answers_is_unreachable(tmp_path, empty_hf_cache, monkeypatch):
    """Some networks accept every connection and answer none: the probe's own time limit decides."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections complete in the backlog; nothing ever reads or answers
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        result, seconds = _train("org/some-model", tmp_path, env={"HF_ENDPOINT": endpoint})
    line = _one_error_line(result)
    assert "hub is unreachable" in line and f"no answer in {embedded.HUB_PROBE_SECONDS:g} s" in line
    assert seconds < LIMIT_S, f"{seconds:.1f} s"


def test_a_silent_hub_reads_the_same_whichever_time_limit_fires_first():
    """The socket's timeout and the thread's join share one limit; either may fire first (1 in 40 before)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(256)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        problems = {embedded._unreachable(endpoint, seconds=0.02) for _ in range(100)}
    assert problems == {"no answer in 0.02 s"}


def test_a_cached_hub_id_resolves_offline(tmp_path):
    """A config.json in the cache is enough for resolution; transformers then loads from the cache."""
    cache = tmp_path / "hub"
    snapshot = cache / "models--org--cached-model" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (cache / "models--org--cached-model" / "refs").mkdir()
    (cache / "models--org--cached-model" / "refs" / "main").write_text("0" * 40)
    code = (
        "from nertune.data.embedded import resolve_model as r; print(r('org/cached-model'))\n"
        "try:\n    r('org/other-model')\nexcept Exception as e:\n    print(type(e).__name__)"
    )
    child = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"},
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["org/cached-model", "NertuneError"]


@pytest.mark.parametrize(
    "name, path_like",
    [
        ("./bert", True),
        ("../bert", True),
        ("/models/bert", True),
        ("~/models/bert", True),
        ("a/b/c", True),
        ("tests/no-such-model", True),  # tests/ is a folder here: a path was meant
        ("bert-base-cased", False),
        ("google-bert/bert-base-cased", False),
        ("dslim/bert-base-NER", False),
    ],
)
def test_what_looks_like_a_path(name, path_like):
    assert embedded._looks_like_path(name) is path_like


def test_an_existing_folder_and_the_default_resolve_as_before(tmp_path):
    assert embedded.resolve_model(str(tmp_path)) == str(tmp_path)
    assert embedded.resolve_model("embedded-minilm") == str(embedded.minilm_dir())
    with pytest.raises(NertuneError, match="model folder not found"):
        embedded.resolve_model(str(tmp_path / "absent"))


class _Answer(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):
        self.send_response(self.server.status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("status, reachable", [(200, True), (404, True), (503, False)])
def test_the_probe_counts_an_http_answer_below_500_as_reachable(status, reachable):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Answer)
    server.status = status
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        problem = embedded._unreachable(f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()
    assert (problem is None) is reachable, problem
    if not reachable:
        assert problem == f"HTTP {status}"
