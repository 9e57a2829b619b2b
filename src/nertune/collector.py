"""Python's cyclic garbage collector, paused while nertune turns a batch into many small objects.

Contract of `paused()`: inside it the cyclic collector does not run; reference counting still frees every
acyclic object at once, and cyclic garbage waits for the next collection after the last pause ends. Pauses
nest and may overlap across threads (the server's workers): the collector is switched off by the first to
enter and back on by the last to leave, and only if it was on before. A caller that disabled it keeps it
disabled.

Why: a full collection walks every tracked object in the process, and with torch, transformers and a model
loaded that is a few hundred thousand of them, in memory the batch never touches. Tagging a batch creates
enough surviving containers (windows, word lists, tagged words) to set off such collections; they took
about a tenth of int8 tagging (BENCHMARKS.md, tagging speed).
"""

from __future__ import annotations

import functools
import gc
import threading
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def paused():
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()


def pausing(function):
    """`function` run inside `paused()`."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with paused():
            return function(*args, **kwargs)

    return wrapper
