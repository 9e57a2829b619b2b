"""Idle and slow connections cannot take the server down.

uvicorn gives a connection no deadline until its first response (keep-alive counts only after one),
and accepts sockets until the process runs out of file descriptors. `GuardedH11Protocol` adds:

    head deadline   a connection must deliver a whole request head within `head_timeout` seconds of
                    opening (or of its previous response); else it is closed
    connection cap  at most `max_connections` open at once, kept below the descriptor limit; past it the
                    oldest connection still waiting for a request head is closed to make room, and only
                    when every connection is busy with a request is the newcomer answered 503
    body deadline   (limits.read_body) the body must arrive within `body_timeout` seconds: 408

`OnceEvery` keeps a flood of one log message (say, accept() failing) to a line every few seconds with
a count of what it held back.
"""

from __future__ import annotations

import json
import logging
import resource
import time

from uvicorn.protocols.http.h11_impl import H11Protocol

RESERVED_DESCRIPTORS = 64  # the model's files, logs, the listening socket, the executor's pipes
# asyncio accepts up to `backlog` sockets at each wake-up, and a connection closed to make room is only gone a few
# loop turns later: the cap leaves room for four such bursts.
BACKLOG = 64


def raise_descriptor_limit() -> int:
    """The soft open-file limit raised to the hard one (as Go's runtime does at start), and returned."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else max(soft, 65536), hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def default_max_connections() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, min(1000, soft - RESERVED_DESCRIPTORS - 4 * BACKLOG)) if soft != resource.RLIM_INFINITY else 1000


def _busy_503() -> bytes:
    body = json.dumps(
        {"error": {"code": "too_many_connections", "message": "the server has too many open connections; retry shortly"}}
    ).encode()
    return (
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a head deadline and a connection cap (set by `configure`)."""

    head_timeout: float = 10.0
    max_connections: int = 1000
    shed = 0  # connections closed for the cap or the deadline, for tests and /healthz

    @classmethod
    def configure(cls, head_timeout: float, max_connections: int) -> type["GuardedH11Protocol"]:
        """Set for this process (each uvicorn worker process configures itself in create_app)."""
        cls.head_timeout, cls.max_connections = head_timeout, max_connections
        return cls

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._opened = time.monotonic()
        self._head_timer = None
        if len(self.connections) > self.max_connections and not self._make_room():
            type(self).shed += 1
            transport.write(_busy_503())
            transport.close()
            return
        self._arm()

    def _make_room(self) -> bool:
        waiting = [c for c in self.connections if c is not self and getattr(c, "_head_timer", None) is not None]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda c: c._opened)
        type(self).shed += 1
        oldest._disarm()
        oldest.transport.close()
        return True

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_late)

    def _disarm(self) -> None:
        if getattr(self, "_head_timer", None) is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self.cycle is None or self.cycle.response_complete:  # still no request head
            type(self).shed += 1
            self.transport.close()

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and not self.cycle.response_complete:
            self._disarm()  # a request head arrived: the body deadline (read_body) takes over

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # a kept-alive connection must send its next head in time too

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)


class OnceEvery(logging.Filter):
    """Let one copy of a repeated message through every `seconds`; say how many were held back."""

    def __init__(self, seconds: float = 10.0):
        super().__init__()
        self.seconds = seconds
        self.last: dict[str, tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        key = f"{record.name}:{record.levelno}:{message}"
        now = time.monotonic()
        seen, held = self.last.get(key, (-1e9, 0))
        if now - seen < self.seconds:
            self.last[key] = (seen, held + 1)
            return False
        if held:
            record.msg, record.args = f"{message} ({held} more like it in the last {now - seen:.0f} s)", ()
        self.last[key] = (now, 0)
        if len(self.last) > 1000:  # messages with ever-new text: forget the old ones
            self.last.clear()
        return True
