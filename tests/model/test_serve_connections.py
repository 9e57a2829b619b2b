"""Idle, trickling and too many connections cannot take the server down (issue 22, point 3)."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import pytest

from nertune.serve.batcher import MicroBatcher
from nertune.serve.process import ServerProcess

TEXT = "EU rejects German call to boycott British lamb ."


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    """A server under a 1,024-descriptor limit, soft and hard (a systemd service's soft limit; here it cannot
    be raised): it keeps at most 704 connections open."""
    log = tmp_path_factory.mktemp("guarded") / "server.log"
    running = ServerProcess(
        tiny_model, log, "--no-access-log", "--head-timeout", "3", "--body-timeout", "2", max_descriptors=1024
    ).wait_ready()
    yield running
    assert running.stop(), running.log.read_text()


def _half_sent(port: int, count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"POST /v1/entities HTTP/1.1\r\nHost: x\r\n")  # a head that never ends
        sockets.append(sock)
    return sockets


def test_more_idle_connections_than_descriptors_do_not_stop_valid_requests(server):
    idle = _half_sent(server.port, 1100)  # more than the 1,024 descriptors the server has
    try:
        started = time.monotonic()
        with httpx.Client(base_url=server.url, timeout=10) as http:
            answers = [http.post("/v1/entities", json={"text": TEXT}) for _ in range(10)]
        assert [a.status_code for a in answers] == [200] * 10
        assert all(a.json()["entities"] for a in answers)
        assert time.monotonic() - started < 30
        assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200
    finally:
        for sock in idle:
            sock.close()
    log = server.log.read_text()
    assert len(log) < 20_000 and "Too many open files" not in log, log[-2000:]


def test_a_head_that_never_ends_is_closed_after_its_deadline(server):
    (sock,) = _half_sent(server.port, 1)
    try:
        sock.settimeout(10)
        started = time.monotonic()
        assert sock.recv(1024) == b""  # closed by the server, nothing sent
        assert 2.5 < time.monotonic() - started < 8
    finally:
        sock.close()


def test_a_trickling_body_gets_408(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b'POST /v1/entities HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"te')
        answer = b""
        while b"}}" not in answer and (chunk := sock.recv(4096)):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408") and b"body_timeout" in answer


def test_a_large_request_runs_in_slices_and_small_ones_pass_between():
    """One request of 40 texts x 10,000 characters (0.4 s of 'model' each 1,000 characters: 4 s in all) and,
    while it runs, 10 one-line requests: each small one waits at most about one slice (20,000 characters)."""

    def tag_batch(texts):  # the model's time grows with the characters of the pass
        time.sleep(sum(len(t) for t in texts) / 100_000)
        return [[{"text": t[:5], "length": len(t)}] for t in texts]

    async def scenario():
        batcher = MicroBatcher(tag_batch, max_wait_ms=1, max_batch_texts=64, max_batch_chars=20_000)
        await batcher.start()
        big_texts = [f"{i:05d}" + "x" * 9_995 for i in range(40)]
        big = asyncio.create_task(batcher.submit(big_texts))
        await asyncio.sleep(0.3)
        waits = []
        for i in range(10):
            started = time.monotonic()
            assert await batcher.submit([f"small {i}"]) == [[{"text": "small", "length": len(f"small {i}")}]]
            waits.append(time.monotonic() - started)
        answer = await big
        await batcher.stop()
        return waits, answer, big.done(), batcher.stats

    waits, answer, _, stats = asyncio.run(scenario())
    assert [r[0]["text"] for r in answer] == [f"{i:05d}" for i in range(40)]  # whole, in order
    assert max(waits) < 0.6, waits  # one slice is 0.2 s; the whole request 4 s
    assert stats.batches >= 20 and stats.requests == 11
