"""What one request may ask of the server, and reading a body within those bounds.

Every limit is a CLI flag of `nertune serve`; the defaults fit a sentence-to-page
tagging service on a small machine. A request over a limit gets 413 and a JSON
error naming the limit — never a half-read body, never a 500.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field

from starlette.requests import ClientDisconnect, Request

from nertune.errors import NertuneError
from nertune.serve.connections import default_max_connections
from nertune.serve.http_errors import ApiError


@dataclass(frozen=True)
class Limits:
    max_text_chars: int = 100_000  # characters in one text
    max_texts: int = 64  # texts in one {"texts": [...]} request
    max_body_bytes: int = 1 << 20  # request body, before parsing
    max_wait_ms: float = 5.0  # how long the batcher waits to gather more requests
    max_batch_texts: int = 64  # texts in one forward pass
    max_batch_chars: int = 20_000  # characters in one forward pass: a large request runs as slices between others
    max_queue: int = 1024  # requests waiting for the model; more get 503 + Retry-After
    head_timeout: float = 10.0  # seconds for a connection to deliver a request head (serve/connections.py)
    body_timeout: float = 30.0  # seconds for the body to arrive once the head has: 408
    max_connections: int = field(default_factory=default_max_connections)  # open at once, below the descriptor limit

    def __post_init__(self):
        for name, value in asdict(self).items():
            flag = "--" + name.replace("_", "-")
            if value < 0 or (value == 0 and name != "max_wait_ms"):
                raise NertuneError(
                    f"{flag} must be {'>= 0' if name == 'max_wait_ms' else '> 0'}, got {value}", fix=f"pass a positive {flag}"
                )
        if self.max_wait_ms > 1000:
            raise NertuneError(
                f"--max-wait-ms must be at most 1000 (it is a batching wait, not a timeout), got {self.max_wait_ms}",
                fix="use a few milliseconds, e.g. 5",
            )

    def public(self) -> dict:
        return asdict(self)


def body_too_large(limit: int) -> ApiError:
    return ApiError(413, "body_too_large", f"request body is larger than {limit} bytes (--max-body-bytes)", limit=limit)


async def read_body(request: Request, limit: int, timeout: float = 30.0) -> bytes:
    """The whole body, refusing (413) as soon as it is known to exceed `limit` bytes, and (408) when it
    has not all arrived within `timeout` seconds: a trickling client holds nothing for long.

    Content-Length is checked before reading anything; a chunked body is counted
    while it streams, so a huge upload is never held in memory.
    """
    try:
        return await asyncio.wait_for(_read_body(request, limit), timeout)
    except asyncio.TimeoutError:
        raise ApiError(
            408, "body_timeout", f"the request body did not arrive within {timeout:g} s (--body-timeout)", limit=timeout
        ) from None


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "invalid_content_length", "Content-Length is not a number")
        if int(declared) > limit:
            raise body_too_large(limit)
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise body_too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect:  # nobody is left to answer; not a server error
        raise ApiError(400, "client_disconnected", "the client closed the connection before sending the whole body") from None
    return b"".join(chunks)
