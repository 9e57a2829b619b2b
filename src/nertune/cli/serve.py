"""`nertune serve MODEL_DIR`: the tagger over HTTP (FastAPI + uvicorn).

One worker (the default) loads the model here, before the port opens, so a bad
model directory is a one-line error, not a crash loop. With --workers N each
uvicorn worker process loads its own copy from the settings passed in the
NERTUNE_SERVE environment variable. SIGTERM / Ctrl-C finish in-flight requests
(up to --graceful-timeout seconds), then the batcher answers whatever is queued.
"""

from __future__ import annotations

import copy
import json
import os
import signal
from pathlib import Path
from typing import Optional

import typer

from nertune.cli.app import app
from nertune.cli.options import precision_option
from nertune.errors import NertuneError
from nertune.model.load import check_precision, require_model_dir, verify_manifest

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _log_config() -> dict:
    """uvicorn's logging, all on stderr (stdout is for data), plus our own logger."""
    from uvicorn.config import LOGGING_CONFIG  # noqa: PLC0415  (optional: serve extra)

    config = copy.deepcopy(LOGGING_CONFIG)
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    config["loggers"]["nertune.serve"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    # A flood of one message (accept() failing, say) becomes a line every 10 s with a count (serve/connections.py).
    config["filters"] = {"once_every": {"()": "nertune.serve.connections.OnceEvery"}}
    config["handlers"]["default"]["filters"] = ["once_every"]
    config["root"] = {"handlers": ["default"], "level": "WARNING"}  # asyncio's errors too, through the same filter
    return config


def _check_model_dir(model_dir: str) -> None:
    """What else can go wrong with the directory (serve checked first that it exists), found before any worker starts."""
    folder = Path(model_dir)
    if not (folder / "config.json").is_file():
        raise NertuneError("no config.json in the model directory", path=model_dir, fix="pass the --output-dir of a training run")
    verify_manifest(folder)


@app.command()
def serve(
    model_dir: str = typer.Argument(..., help="A model directory written by `nertune train` (or any token-classification model folder)."),
    host: str = typer.Option(
        "127.0.0.1", help="Interface to listen on. The API has no authentication: keep it on loopback or behind a proxy."
    ),
    port: int = typer.Option(8000, help="TCP port."),
    workers: int = typer.Option(1, help="Worker processes; each loads its own copy of the model."),
    device: Optional[str] = typer.Option(None, help="cpu | cuda | cuda:N (default: cuda when available)."),
    precision: str = precision_option(),
    max_text_chars: int = typer.Option(100_000, help="Characters per text; longer gets 413."),
    max_texts: int = typer.Option(64, help="Texts per request; more gets 413."),
    max_body_bytes: int = typer.Option(1 << 20, help="Request body size; larger gets 413 before it is read."),
    max_wait_ms: float = typer.Option(
        5.0, help="How long the batcher waits to gather concurrent requests into one forward pass (0: no wait)."
    ),
    max_batch_texts: int = typer.Option(64, help="Texts per forward pass."),
    max_batch_chars: int = typer.Option(
        20_000,
        help=(
            "Characters per forward pass: a larger request is tagged in slices, with other requests' texts between them "
            "(a longer text runs alone)."
        ),
    ),
    max_queue: int = typer.Option(1024, help="Requests waiting for the model; more get 503 with Retry-After."),
    graceful_timeout: int = typer.Option(30, help="Seconds SIGTERM waits for in-flight requests before cancelling them."),
    head_timeout: float = typer.Option(
        10.0, help="Seconds a connection has to send a whole request head (after opening, or after its last response); then it is closed."
    ),
    body_timeout: float = typer.Option(30.0, help="Seconds the body has to arrive once the head has; then 408."),
    max_connections: Optional[int] = typer.Option(
        None,
        help=(
            "Open connections at once (default: 1000, or fewer to stay below the file-descriptor limit); "
            "past it the oldest idle one is closed, else 503."
        ),
    ),
    access_log: bool = typer.Option(True, help="Log one line per request on stderr."),
    details: bool = typer.Option(
        False, "--details", help="GET /v1/model also shows the recipe, all metrics, paths, the machine and library versions."
    ),
    docs: bool = typer.Option(False, "--docs", help="Serve the interactive /docs page (its scripts load from a CDN: not offline)."),
):
    """Serve the tagger over HTTP: POST /v1/entities, GET /healthz, GET /v1/model, the schema at /openapi.json."""
    check_precision(precision)
    require_model_dir(model_dir)
    import uvicorn  # noqa: PLC0415  (optional: serve extra)

    # uvicorn handles SIGINT / SIGTERM itself (finish in-flight requests) and then re-raises the signal to
    # the handler before it: the default one, so the process ends as killed by that signal.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)

    from nertune.console import notice  # noqa: PLC0415  (CLI start-up: rich console)
    from nertune.serve.connections import raise_descriptor_limit  # noqa: PLC0415  (optional: serve extra)
    from nertune.serve.limits import Limits  # noqa: PLC0415  (optional: serve extra)

    raise_descriptor_limit()  # before the limits' default connection cap is read from it

    if workers < 1:
        raise NertuneError(f"--workers must be at least 1, got {workers}", fix="pass --workers 1 or more")
    limits = Limits(
        max_text_chars=max_text_chars,
        max_texts=max_texts,
        max_body_bytes=max_body_bytes,
        max_wait_ms=max_wait_ms,
        max_batch_texts=max_batch_texts,
        max_batch_chars=max_batch_chars,
        max_queue=max_queue,
        head_timeout=head_timeout,
        body_timeout=body_timeout,
        **({"max_connections": max_connections} if max_connections is not None else {}),
    )
    if host not in _LOOPBACK:
        notice(f"listening on {host}: the API has no authentication or TLS; put it behind a proxy")
    from nertune.serve.connections import BACKLOG, GuardedH11Protocol  # noqa: PLC0415  (optional: serve extra)

    server = dict(
        host=host,
        port=port,
        log_config=_log_config(),
        access_log=access_log,
        timeout_graceful_shutdown=graceful_timeout,
        lifespan="on",
        http=GuardedH11Protocol.configure(limits.head_timeout, limits.max_connections),
        backlog=BACKLOG,
    )
    if workers == 1:
        from nertune.serve.app import create_app  # noqa: PLC0415  (optional: serve extra)

        uvicorn.run(create_app(model_dir, limits, device, details=details, docs=docs, precision=precision), **server)
        return
    from nertune.serve.app import ENV  # noqa: PLC0415  (optional: serve extra)

    _check_model_dir(model_dir)
    os.environ[ENV] = json.dumps(
        {
            "model_dir": str(Path(model_dir).resolve()),
            "device": device,
            "precision": precision,
            "limits": limits.public(),
            "details": details,
            "docs": docs,
        }
    )
    uvicorn.run("nertune.serve.app:create_app", factory=True, workers=workers, **server)
