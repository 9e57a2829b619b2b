"""Ctrl-C and SIGTERM stop a command at any moment, and say what was kept.

    start-up (imports, data, model)   exit_at_once: one line, exit now; nothing to save
    training                          StopRequests: finish the step, checkpoint, TrainingInterrupted
    final evaluation                  exit_at_once again, its line saying where the best model is

During training the handlers only set a flag; the loop looks at it after each optimizer step, saves
a checkpoint and raises TrainingInterrupted. A second signal stops at once, without saving. A signal
that arrives after the loop's last look is not lost: leaving StopRequests delivers it again to the
handler before it. Outside training the command exits from the handler itself (os._exit), so no
library's `except BaseException` around an import can swallow it. Exit codes follow the shell's
128 + signal number: 130 for Ctrl-C (SIGINT), 143 for SIGTERM.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_said = {"what": "interrupted"}


def exit_at_once() -> None:
    """The command's handlers until training starts and after it ends (cli.main installs them first)."""
    for signum in SIGNALS:
        signal.signal(signum, _exit)


def say_on_interrupt(text: str) -> None:
    """What exit_at_once says from now on (e.g. where the best model is, during the final evaluation)."""
    _said["what"] = text


def _exit(signum: int, frame) -> None:
    os.write(2, f"{_said['what']} ({signal.Signals(signum).name})\n".encode())
    os._exit(128 + signum)


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
        installed, self._previous = bool(self._previous), {}
        if installed and self.signum is not None and exc[0] is None:  # asked after the loop's last look: not lost
            signal.raise_signal(self.signum)

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
