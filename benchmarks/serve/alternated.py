"""A Tagger's `tag_batch` timed with variants of nertune's code alternated in one process (time it on a quiet machine).

Each variant is a context manager that puts it in place for one timing and takes it away after (`patched`).
Every round times every batch size under every variant; the variants' order reverses each round, so a slow
minute from elsewhere falls on both. `torch_threads.py` and `share_out.py` are built on it.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from typing import Callable, ContextManager, Iterator

from nertune.tag.tagger import Tagger

Variant = Callable[[], ContextManager]


def arguments(doc: str) -> argparse.Namespace:
    """EXPORT_DIR [--rounds 4] [--name NAME], the command line both scripts take."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("export_dir")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--name", default="int8")
    return parser.parse_args()


@contextlib.contextmanager
def patched(module, name: str, value) -> Iterator[None]:
    """`module.name` is `value` inside the block, what it was after."""
    shipped = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, shipped)


def per_batch(tagger: Tagger, batches: list[list[str]]) -> float:
    started = time.perf_counter()
    for batch in batches:
        tagger.tag_batch(batch)
    return (time.perf_counter() - started) / len(batches)


def alternated(tagger: Tagger, sizes: dict[int, list[list[str]]], variants: dict[str, Variant], rounds: int) -> dict:
    """{(batch size, variant): [seconds per batch, one a round]}, after a warm-up of five batches of each size."""
    for batches in sizes.values():
        per_batch(tagger, batches[:5])
    seconds: dict[tuple[int, str], list[float]] = {(size, name): [] for size in sizes for name in variants}
    for round_ in range(rounds):
        for size, batches in sizes.items():
            for name in list(variants) if round_ % 2 == 0 else list(variants)[::-1]:
                with variants[name]():
                    seconds[(size, name)].append(per_batch(tagger, batches))
    return seconds


def summary(size: int, batches: list, seconds: dict, first: str, second: str, extra: str = "") -> str:
    """One report line: the two variants' medians per batch, second / first, then every round's time."""
    a, b = (statistics.median(seconds[(size, name)]) for name in (first, second))
    rounds = [[round(1000 * s, 1) for s in seconds[(size, name)]] for name in (first, second)]
    return (
        f"batches of {size:>3} ({len(batches)} a round): {first} {1000 * a:7.1f} ms, {second} {1000 * b:7.1f} ms a batch "
        f"-> {b / a:.2f}x{extra}  (rounds: {rounds[0]} vs {rounds[1]})"
    )
