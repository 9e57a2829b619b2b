"""The HTTP API around a Tagger: POST /v1/entities, GET /healthz, GET /v1/model, the schema at /openapi.json.

What a stranger may learn: the labels, the model's folder name, the backend, the headline metrics and
the limits. Paths, the recipe, the machine, library versions and the git SHA only with `details`; the
interactive /docs page (its scripts come from a CDN) only with `docs`.

`create_app` is the factory. `nertune serve` calls it with a model directory;
with --workers N each uvicorn worker process calls it with no arguments and
reads the same settings from the NERTUNE_SERVE environment variable. The model
is always the one the operator chose: no request can name a file or a model.
"""

from __future__ import annotations

import json
import os
from contextlib import asynccontextmanager
from pathlib import Path

import yaml
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, StrictStr, ValidationError, model_validator
from starlette.requests import Request
from starlette.responses import JSONResponse

from nertune import __version__
from nertune.data.schemes import entity_types
from nertune.errors import NertuneError
from nertune.serve.batcher import MicroBatcher, Overloaded, Stopped, TaggingFailed
from nertune.serve.connections import GuardedH11Protocol
from nertune.serve.http_errors import ApiError, install_error_handlers, invalid_request
from nertune.serve.limits import Limits, read_body

ENV = "NERTUNE_SERVE"  # JSON: {"model_dir": ..., "device": ..., "limits": {...}} for worker processes


# ---- the request and response shapes (they are also the OpenAPI docs) --------


class EntitiesRequest(BaseModel):
    """Either one text or a list of texts; nothing else (unknown fields are refused)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"text": "George Washington went to Washington."}, {"texts": ["EU rejects German call.", "Peter Blackburn"]}]
        },
    )
    text: StrictStr | None = None
    texts: list[StrictStr] | None = None

    @model_validator(mode="after")
    def _exactly_one(self):
        if (self.text is None) == (self.texts is None):
            raise ValueError('give exactly one of "text" (a string) or "texts" (a list of strings)')
        return self


class Entity(BaseModel):
    text: str
    type: str
    start: int  # character offsets into the text: text[start:end] == entity text
    end: int
    score: float


class Entities(BaseModel):
    entities: list[Entity]


class BatchEntities(BaseModel):
    results: list[Entities]


class ErrorBody(BaseModel):
    error: dict


# ---- checking one request ----------------------------------------------------


def parse_request(body: bytes, limits: Limits) -> EntitiesRequest:
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ApiError(400, "invalid_encoding", f"request body is not UTF-8 (byte {error.start})") from None
    except (ValueError, RecursionError) as error:
        reason = str(error) if isinstance(error, ValueError) else "nested too deeply"
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {reason}") from None
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_request", f'request body must be a JSON object like {{"text": "..."}}, not {type(data).__name__}')
    try:
        request = EntitiesRequest.model_validate(data)
    except ValidationError as error:
        raise invalid_request(error.errors()) from None
    texts = [request.text] if request.text is not None else request.texts
    if len(texts) > limits.max_texts:
        raise ApiError(
            413, "too_many_texts", f"{len(texts)} texts in one request; at most {limits.max_texts} (--max-texts)", limit=limits.max_texts
        )
    for i, text in enumerate(texts):
        where = "text" if request.text is not None else f"texts[{i}]"
        if len(text) > limits.max_text_chars:
            raise ApiError(
                413,
                "text_too_long",
                f"{where} has {len(text)} characters; at most {limits.max_text_chars} (--max-text-chars)",
                limit=limits.max_text_chars,
                index=i,
            )
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:  # a lone surrogate escape such as "\ud800"
            raise ApiError(422, "invalid_text", f"{where} has an unpaired surrogate at character {error.start}", index=i) from None
    return request


# ---- what /v1/model shows ----------------------------------------------------

HEADLINE = ("precision", "recall", "f1", "accuracy")


def model_info(tagger, model_dir: str | Path | None, limits: Limits, details: bool = False) -> dict:
    labels = [tagger.id2label[i] for i in sorted(tagger.id2label)]
    public = {
        "model": Path(model_dir).resolve().name if model_dir is not None else None,
        "backend": getattr(tagger, "backend", "pytorch"),
        "precision": getattr(tagger, "precision", "fp32"),
        "labels": labels,
        "entity_types": entity_types(labels),
        "metrics": None,
        "limits": limits.public(),
    }
    info = {**public, "device": str(getattr(tagger, "device", "cpu")), "recipe": None, "nertune": __version__}
    if model_dir is not None:
        for key, name, parse in (("recipe", "recipe.yaml", yaml.safe_load), ("metrics", "metrics.json", json.loads)):
            path = Path(model_dir) / name
            if path.is_file():
                try:
                    info[key] = parse(path.read_text(encoding="utf-8"))
                except (ValueError, yaml.YAMLError) as error:
                    raise NertuneError(
                        f"cannot read {name} ({str(error).splitlines()[0]})", path=str(path), fix=f"repair or delete {name}"
                    ) from None
    if details:
        return info
    metrics = info["metrics"] if isinstance(info["metrics"], dict) else {}
    headline = {
        split: {k: metrics[split].get(k) for k in HEADLINE} for split in ("validation", "test") if isinstance(metrics.get(split), dict)
    }
    return {**public, "metrics": headline or None}


# ---- the app -----------------------------------------------------------------


def settings_from_env() -> dict:
    raw = os.environ.get(ENV)
    if not raw:
        raise NertuneError(f"no model given: set {ENV} or use `nertune serve MODEL_DIR`", fix="run `nertune serve MODEL_DIR`")
    return json.loads(raw)


def create_app(
    model_dir: str | Path | None = None,
    limits: Limits | None = None,
    device: str | None = None,
    tagger=None,
    details: bool = False,
    docs: bool = False,
    precision: str = "auto",
) -> FastAPI:
    if model_dir is None and tagger is None:
        settings = settings_from_env()
        model_dir, device, limits = settings["model_dir"], settings.get("device"), Limits(**settings.get("limits", {}))
        details, docs, precision = settings.get("details", False), settings.get("docs", False), settings.get("precision", "auto")
        GuardedH11Protocol.configure(limits.head_timeout, limits.max_connections)  # this worker process's connections
    limits = limits or Limits()
    if tagger is None:
        from nertune.tag.tagger import Tagger  # noqa: PLC0415  (workers' parent: no torch)

        tagger = Tagger.load(model_dir, device=device, precision=precision)
    tagger.tag_batch(["Warm up the model before the first request ."])  # and fail here, not on a client
    info = model_info(tagger, model_dir, limits, details)
    batcher = MicroBatcher(tagger.tag_batch, limits.max_wait_ms, limits.max_batch_texts, limits.max_queue, limits.max_batch_chars)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        yield
        await batcher.stop()  # uvicorn has finished in-flight requests; answer anything still queued

    app = FastAPI(
        title="nertune",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url=None,
        description="Named entity recognition with a model fine-tuned by nertune. Every error is JSON: "
        '`{"error": {"code": ..., "message": ...}}`.',
    )
    install_error_handlers(app)
    error_docs = {
        status: {"model": ErrorBody, "description": what}
        for status, what in (
            (400, "invalid JSON or not UTF-8"),
            (413, "body, text or text count over a limit"),
            (422, "wrong shape or types"),
            (503, "overloaded, shutting down or tagging failed: retry"),
        )
    }

    @app.post(
        "/v1/entities",
        summary="Tag one text or a list of texts",
        response_model=None,
        responses={
            200: {"model": Entities | BatchEntities, "description": '{"entities": [...]} for "text"; {"results": [...]} for "texts"'},
            **error_docs,
        },
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": EntitiesRequest.model_json_schema()}}}},
    )
    async def entities(request: Request):
        payload = parse_request(await read_body(request, limits.max_body_bytes, limits.body_timeout), limits)
        texts = [payload.text] if payload.text is not None else payload.texts
        results = await _tag(batcher, texts) if texts else []
        if payload.text is not None:
            return JSONResponse({"entities": results[0]})
        return JSONResponse({"results": [{"entities": r} for r in results]})

    @app.get("/healthz", summary="Liveness and batching counters")
    async def healthz():
        if not batcher.running:
            raise ApiError(503, "shutting_down", "the server is shutting down")
        return {"status": "ok", "pid": os.getpid(), "batching": batcher.stats.public()}

    @app.get("/v1/model", summary="Labels, entity types, backend and headline metrics of the served model (more with --details)")
    async def model():
        return info

    return app


async def _tag(batcher: MicroBatcher, texts: list[str]) -> list[list[dict]]:
    try:
        return await batcher.submit(texts)
    except Overloaded:
        raise ApiError(
            503, "overloaded", f"more than {batcher.max_queue} requests are waiting; retry shortly", headers={"Retry-After": "1"}
        ) from None
    except Stopped:
        raise ApiError(
            503, "shutting_down", "the server is shutting down; retry on another instance", headers={"Retry-After": "1"}
        ) from None
    except TaggingFailed:
        raise ApiError(
            503, "tagging_failed", "the model failed on this request (logged on the server); the server is still running"
        ) from None
