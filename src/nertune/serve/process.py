"""`nertune serve` as a child process on a free loopback port: for tests and the load test."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """Start `python -m nertune serve MODEL_DIR --port P ARGS...`, its output in `log`."""

    def __init__(self, model_dir: str | Path, log: str | Path, *args: str, max_descriptors: int | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(log)
        with open(self.log, "wb") as handle:  # a file, not a pipe: a full pipe would block the server
            self.process = subprocess.Popen(
                [sys.executable, "-m", "nertune", "serve", str(model_dir), "--port", str(self.port), *args],
                stdout=handle,
                stderr=subprocess.STDOUT,
                env={**os.environ, "HF_HUB_OFFLINE": "1"},
                preexec_fn=None if max_descriptors is None else (lambda: _limit_descriptors(max_descriptors)),
            )

    def wait_ready(self, timeout: float = 240) -> "ServerProcess":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"server not ready within {timeout:.0f} s:\n{self.log.read_text()}")

    def stop(self, timeout: float = 60) -> bool:
        """SIGTERM and wait; True when it shut down cleanly (uvicorn re-raises the signal once done)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                return False
        log = self.log.read_text()
        return self.process.returncode in (0, -signal.SIGTERM) and "Application shutdown complete" in log and "Traceback" not in log


def _limit_descriptors(count: int) -> None:
    """In the child: the open-file limit a systemd service often has (1,024), or lower, to test against."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (count, count))
