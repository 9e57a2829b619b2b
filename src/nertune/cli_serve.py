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
from pathlib import Path
from typing import Optional

import typer

from nertune.cli import app
from nertune.errors import NertuneError

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _log_config() -> dict:
    """uvicorn's logging, all on stderr (stdout is for data), plus our own logger."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    config["loggers"]["nertune.serve"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def _check_model_dir(model_dir: str) -> None:
    """What else can go wrong with the directory (serve checked first that it exists), found before any worker starts."""
    from nertune.model.load import verify_manifest

    folder = Path(model_dir)
    if not (folder / "config.json").is_file():
        raise NertuneError("no config.json in the model directory", path=model_dir, fix="pass the --output-dir of a training run")
    verify_manifest(folder)


@app.command()
def serve(
    model_dir: str = typer.Argument(..., help="A model directory written by `nertune train` (or any token-classification model folder)."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on. The API has no authentication: keep it on loopback or behind a proxy."),
    port: int = typer.Option(8000, help="TCP port."),
    workers: int = typer.Option(1, help="Worker processes; each loads its own copy of the model."),
    device: Optional[str] = typer.Option(None, help="cpu | cuda | cuda:N (default: cuda when available)."),
    max_text_chars: int = typer.Option(100_000, help="Characters per text; longer gets 413."),
    max_texts: int = typer.Option(64, help="Texts per request; more gets 413."),
    max_body_bytes: int = typer.Option(1 << 20, help="Request body size; larger gets 413 before it is read."),
    max_wait_ms: float = typer.Option(5.0, help="How long the batcher waits to gather concurrent requests into one forward pass (0: no wait)."),
    max_batch_texts: int = typer.Option(64, help="Texts per forward pass."),
    max_queue: int = typer.Option(1024, help="Requests waiting for the model; more get 503 with Retry-After."),
    graceful_timeout: int = typer.Option(30, help="Seconds SIGTERM waits for in-flight requests before cancelling them."),
    access_log: bool = typer.Option(True, help="Log one line per request on stderr."),
):
    """Serve the tagger over HTTP: POST /v1/entities, GET /healthz, GET /v1/model, docs at /docs."""
    from nertune.model.load import require_model_dir

    require_model_dir(model_dir)
    import uvicorn

    from nertune.serve.limits import Limits
    from nertune.train.report import console

    if workers < 1:
        raise NertuneError(f"--workers must be at least 1, got {workers}", fix="pass --workers 1 or more")
    limits = Limits(max_text_chars=max_text_chars, max_texts=max_texts, max_body_bytes=max_body_bytes,
                    max_wait_ms=max_wait_ms, max_batch_texts=max_batch_texts, max_queue=max_queue)
    if host not in _LOOPBACK:
        console.print(f"[yellow]notice:[/] listening on {host}: the API has no authentication or TLS; put it behind a proxy")
    server = dict(host=host, port=port, log_config=_log_config(), access_log=access_log,
                  timeout_graceful_shutdown=graceful_timeout, lifespan="on")
    if workers == 1:
        from nertune.serve.app import create_app

        uvicorn.run(create_app(model_dir, limits, device), **server)
        return
    from nertune.serve.app import ENV

    _check_model_dir(model_dir)
    os.environ[ENV] = json.dumps({"model_dir": str(Path(model_dir).resolve()), "device": device, "limits": limits.public()})
    uvicorn.run("nertune.serve.app:create_app", factory=True, workers=workers, **server)
