"""Everything nertune prints for people: one stderr console, `notice` / `diagnosis` lines, progress.

stdout is for data (tags, JSON); all of this goes to stderr. Text that may hold file names or user input
is escaped here, once, so a path with [brackets] prints as written.
"""

from __future__ import annotations

import os
import threading
import time

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True, soft_wrap=True)  # progress and notices on stderr; stdout is for data
PROGRESS_SECONDS_ENV = "NERTUNE_PROGRESS_SECONDS"  # longest silence of a run without a terminal (default 30)


def notice(text: str, label: str = "notice") -> None:
    """A yellow `notice:` (or other `label:`) line on stderr; the text is printed as written."""
    console.print(f"[yellow]{label}:[/] {escape(text)}", highlight=False)


def progress(description: str, total: int):
    """A live bar on a terminal, plain lines everywhere else."""
    return _Bar(description, total) if console.is_terminal else _Lines(description, total)


class _Bar:
    """A live bar, for a terminal."""

    def __init__(self, description: str, total: int):
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[rate]} sent/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task(description, total=total, loss="-", rate="-")
        self.progress.start()

    def update(self, loss: float, rate: float, lr: float) -> None:
        self.progress.update(self.task, loss=f"{loss:.4f}", rate=f"{rate:.1f}")

    def advance(self) -> None:
        self.progress.advance(self.task)

    skip = advance  # a step a resumed run already did

    def close(self) -> None:
        self.progress.stop()


class _Lines:
    """Plain progress lines, for a log file (CI, nohup, a cluster job, a notebook's captured stderr).

    A line at each tenth of the epoch's steps, and whenever `interval` seconds pass without one, also
    from a watcher thread while a step or evaluation takes long: a slow or stuck run still shows life.
    """

    def __init__(self, description: str, total: int, interval: float | None = None):
        self.description, self.total = description, total
        self.interval = interval if interval is not None else float(os.environ.get(PROGRESS_SECONDS_ENV, "30"))
        self.every = max(1, -(-total // 10))
        self.done = self.counted_from = 0
        self.loss = self.rate = self.lr = None
        self.started = self.last = time.monotonic()
        self.lock = threading.Lock()
        self.closed = threading.Event()
        self.watcher = threading.Thread(target=self._watch, name="nertune-progress", daemon=True)
        _live.add(self)
        self.watcher.start()

    def update(self, loss: float, rate: float, lr: float) -> None:
        self.loss, self.rate, self.lr = loss, rate, lr

    def advance(self) -> None:
        self.done += 1
        if self.done % self.every == 0 or self.done == self.total:
            self._say()

    def skip(self) -> None:
        """A step a resumed run already did: counted, not timed."""
        self.done = self.counted_from = self.done + 1
        self.started = time.monotonic()

    def close(self) -> None:
        self.closed.set()
        _live.discard(self)
        if threading.current_thread() is not self.watcher:
            self.watcher.join(timeout=5)  # gone when close returns, not a moment later (a loaded machine is slow to switch)

    def line(self) -> str:
        parts = [f"{self.description} step {self.done}/{self.total}"]
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f} lr {self.lr:.3g} {self.rate:.1f} sent/s")
        timed = self.done - self.counted_from
        if 0 < timed and self.done < self.total:
            left = (time.monotonic() - self.started) / timed * (self.total - self.done)
            parts.append(f"ETA {_duration(left)}")
        return " | ".join(parts)

    def _say(self) -> None:
        with self.lock:
            self.last = time.monotonic()
            console.print(self.line(), markup=False, highlight=False)

    def _watch(self) -> None:
        while not self.closed.wait(min(self.interval, 1.0)):
            if time.monotonic() - self.last >= self.interval:
                self._say()


_live: set[_Lines] = set()


def stop_progress() -> None:
    """End every progress watcher still running: a run that raised must leave no thread printing behind it."""
    for lines in list(_live):
        lines.close()


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
