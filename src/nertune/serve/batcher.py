"""Micro-batching: concurrent requests share forward passes, and a large one cannot hold the model.

Each request puts its texts on a queue and awaits a future. One worker task keeps the waiting requests
in a ring and builds each forward pass by taking the next text of each request in turn, until the pass
holds `max_batch_texts` texts or `max_batch_chars` characters (a longer text runs alone); a request
with texts left goes to the back of the ring. So a request of 64 long texts is cut into bounded slices
and small requests that arrive meanwhile ride in the next pass, not after the whole of it. Before a
pass the worker waits at most `max_wait_ms` for company — not when enough is already queued, and not for
a request that came alone (more than `max_wait_ms` after the one before it: one client at a time gets no
added latency) — and runs `tag_batch` in a single thread — the model runs one micro-batch at a time (an int8 export splits it over
its two sessions, model/word_scores.py `share_out`), the event loop stays free to accept and parse the next requests.
Results go back to each request's future in order, whole.

A failing pass never takes the worker down: its slices are retried one request at a time so only the
request that fails gets an error. `stop()` drains the queue before it returns, so a graceful shutdown
answers everything already accepted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence

log = logging.getLogger("nertune.serve")

TagBatch = Callable[[Sequence[str]], list[list[dict]]]


class Overloaded(Exception):
    """The queue is full: the client should retry later."""


class Stopped(Exception):
    """The batcher is shutting down and takes no new work."""


class TaggingFailed(Exception):
    """tag_batch raised for this request (logged on the server)."""


@dataclass
class _Request:
    texts: list[str]
    future: asyncio.Future
    results: list = field(default_factory=list)  # of texts[:len(results)], tagged so far


Slice = tuple[_Request, int, int]  # a request's texts[start:end] in one pass


@dataclass
class BatchStats:
    batches: int = 0
    requests: int = 0
    texts: int = 0
    failures: int = 0
    largest_batch: int = 0
    model_seconds: float = 0.0  # time inside tag_batch: against wall time, how busy the model is

    def public(self) -> dict:
        mean = self.requests / self.batches if self.batches else 0.0
        return {
            "batches": self.batches,
            "requests": self.requests,
            "texts": self.texts,
            "failures": self.failures,
            "largest_batch_requests": self.largest_batch,
            "mean_requests_per_batch": round(mean, 3),
            "model_seconds": round(self.model_seconds, 3),
        }


class MicroBatcher:
    def __init__(
        self, tag_batch: TagBatch, max_wait_ms: float = 5.0, max_batch_texts: int = 64, max_queue: int = 1024, max_batch_chars: int = 20_000
    ):
        self.tag_batch = tag_batch
        self.max_wait = max_wait_ms / 1000
        self.max_batch_texts = max_batch_texts
        self.max_batch_chars = max_batch_chars
        self.max_queue = max_queue
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Request | None] | None = None
        self._ring: deque[_Request] = deque()  # taken from the queue, texts left to tag
        self._worker: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nertune-tag")
        self._stopping = False
        self._arrived = -float("inf")  # when the latest request came (event-loop clock)
        self._gap = float("inf")  # and how long after the one before it

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._worker.done() and not self._stopping

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run(), name="nertune-batcher")

    async def stop(self) -> None:
        """Refuse new work, answer everything queued, then end the worker."""
        if self._worker is None:
            return
        self._stopping = True
        self._queue.put_nowait(None)  # behind every request already queued
        await self._worker
        self._executor.shutdown(wait=True)

    async def submit(self, texts: list[str]) -> list[list[dict]]:
        if self._stopping or self._worker is None:
            raise Stopped()
        if self._queue.qsize() + len(self._ring) >= self.max_queue:
            raise Overloaded()
        if not texts:
            return []
        loop = asyncio.get_running_loop()
        request = _Request(list(texts), loop.create_future())
        now = loop.time()
        self._gap, self._arrived = now - self._arrived, now
        self._queue.put_nowait(request)
        return await request.future

    async def _run(self) -> None:
        queue, ring = self._queue, self._ring
        stopped = False  # the stop marker was read: answer what is left, then end
        while True:
            if not ring and not stopped:
                first = await queue.get()
                if first is None:
                    stopped = True
                else:
                    ring.append(first)
                    # Gather: wait a little for company unless enough is already waiting or requests come one by one.
                    crowded = self._gap < self.max_wait  # this request came close behind another
                    if self.max_wait > 0 and crowded and len(first.texts) < self.max_batch_texts and queue.qsize() == 0:
                        await asyncio.sleep(self.max_wait)
            while not queue.empty():
                item = queue.get_nowait()
                if item is None:
                    stopped = True
                else:
                    ring.append(item)
            passes = self._next_pass()
            if not passes:
                if stopped:
                    return
                continue
            try:
                await self._process(passes)
            except Exception:  # a bug here must not leave requests waiting forever
                for request, _, _ in passes:
                    self._fail(request)

    def _next_pass(self) -> list[Slice]:
        """The next text of each request in turn, within the pass's budget; unfinished requests go to the back."""
        ring = self._ring
        for request in [r for r in ring if r.future.done()]:  # answered, failed, or the client went away
            ring.remove(request)
        taken: dict[int, list] = {}
        texts = chars = 0
        full = False
        while ring and not full:
            grew = False
            for request in ring:
                start, end = taken.setdefault(id(request), [request, len(request.results), len(request.results)])[1:]
                if end == len(request.texts):
                    continue
                size = len(request.texts[end])
                if texts and (texts == self.max_batch_texts or chars + size > self.max_batch_chars):
                    full = True
                    break
                taken[id(request)][2] = end + 1
                texts, chars, grew = texts + 1, chars + size, True
            if not grew:
                break
        passes = [(request, start, end) for request, start, end in taken.values() if end > start]
        for request, _, end in passes:
            ring.remove(request)
            if end < len(request.texts):
                ring.append(request)  # the rest after everyone else
        return passes

    async def _process(self, passes: list[Slice]) -> None:
        texts = [text for request, start, end in passes for text in request.texts[start:end]]
        self.stats.batches += 1
        self.stats.requests += sum(start == 0 for _, start, _ in passes)  # requests the model has begun on
        self.stats.texts += len(texts)
        self.stats.largest_batch = max(self.stats.largest_batch, len(passes))
        try:
            results = await self._tag(texts)
        except Exception:
            if len(passes) == 1:
                self._fail(passes[0][0])
                return
            # One bad request must not fail its neighbours: retry each alone.
            for request, start, end in passes:
                try:
                    self._advance(request, await self._tag(request.texts[start:end]))
                except Exception:
                    self._fail(request)
            return
        at = 0
        for request, start, end in passes:
            self._advance(request, results[at : at + end - start])
            at += end - start

    def _advance(self, request: _Request, results: list[list[dict]]) -> None:
        request.results.extend(results)
        if len(request.results) == len(request.texts) and not request.future.done():
            request.future.set_result(request.results)

    async def _tag(self, texts: list[str]) -> list[list[dict]]:
        started = time.perf_counter()
        try:
            results = await asyncio.get_running_loop().run_in_executor(self._executor, self.tag_batch, texts)
        finally:
            self.stats.model_seconds += time.perf_counter() - started
        if len(results) != len(texts):
            raise RuntimeError(f"tag_batch returned {len(results)} results for {len(texts)} texts")
        return results

    def _fail(self, request: _Request) -> None:
        self.stats.failures += 1
        log.exception("tagging failed for a request of %d text(s)", len(request.texts))
        if not request.future.done():
            request.future.set_exception(TaggingFailed())
