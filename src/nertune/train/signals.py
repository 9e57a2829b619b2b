"""Ctrl-C and SIGTERM end training cleanly: finish the step, checkpoint, exit.

The handlers only set a flag; the loop looks at it after each optimizer step,
saves a checkpoint and raises TrainingInterrupted. A second signal stops at
once, without saving. Exit codes follow the shell's 128 + signal number:
130 for Ctrl-C (SIGINT), 143 for SIGTERM.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequests:
    """`with StopRequests() as stop:` ... `if stop.requested:` — a polite stop button."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> "StopRequests":
        # Python only lets the main thread install handlers; elsewhere (a server's worker thread) there is no button.
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None:  # asked twice: stop now
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)
        self.signum = signum

    @property
    def requested(self) -> bool:
        return self.signum is not None


class TrainingInterrupted(Exception):
    """Training stopped on a signal after saving `checkpoint`; `--resume` continues it."""

    def __init__(self, signum: int, step: int, checkpoint: Path, output_dir: Path):
        self.signum, self.step, self.checkpoint, self.output_dir = signum, step, checkpoint, output_dir
        self.exit_code = 128 + signum
        super().__init__(f"interrupted by {signal.Signals(signum).name} at step {step}; checkpoint saved to {checkpoint}")
