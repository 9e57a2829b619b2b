"""Micro-batching: concurrent requests share one forward pass.

Each request puts its texts on a queue and awaits a future. One worker task
takes the first waiting request, waits at most `max_wait_ms` for more (no wait
when enough are already queued), and runs `tag_batch` over all their texts in a
single thread — the model runs one batch at a time, the event loop stays free
to accept and parse the next requests meanwhile. Results go back to each
request's future in order.

A failing batch never takes the worker down: its requests are retried one by
one so only the request that fails gets an error. `stop()` drains the queue
before it returns, so a graceful shutdown answers everything already accepted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
        return {"batches": self.batches, "requests": self.requests, "texts": self.texts, "failures": self.failures,
                "largest_batch_requests": self.largest_batch, "mean_requests_per_batch": round(mean, 3),
                "model_seconds": round(self.model_seconds, 3)}


class MicroBatcher:
    def __init__(self, tag_batch: TagBatch, max_wait_ms: float = 5.0, max_batch_texts: int = 64, max_queue: int = 1024):
        self.tag_batch = tag_batch
        self.max_wait = max_wait_ms / 1000
        self.max_batch_texts = max_batch_texts
        self.max_queue = max_queue
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Request | None] | None = None
        self._worker: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nertune-tag")
        self._stopping = False

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
        if self._queue.qsize() >= self.max_queue:
            raise Overloaded()
        request = _Request(list(texts), asyncio.get_running_loop().create_future())
        self._queue.put_nowait(request)
        return await request.future

    async def _run(self) -> None:
        queue = self._queue
        while True:
            first = await queue.get()
            if first is None:
                return
            batch, size = [first], len(first.texts)
            # Gather: wait a little for company unless enough is already waiting.
            if self.max_wait > 0 and size < self.max_batch_texts and queue.qsize() == 0:
                await asyncio.sleep(self.max_wait)
            done = False
            while size < self.max_batch_texts and not queue.empty():
                item = queue.get_nowait()
                if item is None:
                    done = True
                    break
                batch.append(item)
                size += len(item.texts)
            try:
                await self._process(batch)
            except Exception:  # a bug here must not leave requests waiting forever
                for request in batch:
                    self._fail(request)
            if done:
                await self._drain_rest()
                return

    async def _drain_rest(self) -> None:
        # Only reached after the stop marker: anything behind it still gets an answer.
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None:
                try:
                    await self._process([item])
                except Exception:
                    self._fail(item)

    async def _process(self, batch: list[_Request]) -> None:
        live = [r for r in batch if not r.future.done()]  # a client that went away cancelled its future
        if not live:
            return
        texts = [text for r in live for text in r.texts]
        self.stats.batches += 1
        self.stats.requests += len(live)
        self.stats.texts += len(texts)
        self.stats.largest_batch = max(self.stats.largest_batch, len(live))
        try:
            results = await self._tag(texts)
        except Exception:
            if len(live) == 1:
                self._fail(live[0])
                return
            # One bad request must not fail its neighbours: retry each alone.
            for request in live:
                try:
                    self._answer(request, await self._tag(request.texts))
                except Exception:
                    self._fail(request)
            return
        start = 0
        for request in live:
            self._answer(request, results[start : start + len(request.texts)])
            start += len(request.texts)

    async def _tag(self, texts: list[str]) -> list[list[dict]]:
        started = time.perf_counter()
        try:
            results = await asyncio.get_running_loop().run_in_executor(self._executor, self.tag_batch, texts)
        finally:
            self.stats.model_seconds += time.perf_counter() - started
        if len(results) != len(texts):
            raise RuntimeError(f"tag_batch returned {len(results)} results for {len(texts)} texts")
        return results

    @staticmethod
    def _answer(request: _Request, result: list[list[dict]]) -> None:
        if not request.future.done():
            request.future.set_result(result)

    def _fail(self, request: _Request) -> None:
        self.stats.failures += 1
        log.exception("tagging failed for a request of %d text(s)", len(request.texts))
        if not request.future.done():
            request.future.set_exception(TaggingFailed())
