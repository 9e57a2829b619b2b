"""Every error the server sends is JSON: {"error": {"code": ..., "message": ..., ...}}.

A client can branch on `code` (stable, snake_case) and show `message`; a limit
violation also carries `limit`. FastAPI's own errors (404, 405, validation) are
rewritten into the same shape, and anything unexpected becomes a JSON 503 — the
worker logs it and keeps serving.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

log = logging.getLogger("nertune.serve")


class ApiError(Exception):
    """A request the server refuses, with its HTTP status and a stable error code."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None, **extra):
        super().__init__(message)
        self.status, self.code, self.message, self.headers, self.extra = status, code, message, headers, extra

    def response(self) -> JSONResponse:
        return JSONResponse({"error": {"code": self.code, "message": self.message, **self.extra}}, self.status, headers=self.headers)


MAX_DETAILS = 10  # a list of 100,000 wrong items is one problem, not a 10 MB answer


def validation_details(errors) -> list[dict]:
    """Pydantic errors without the echoed input (it can be megabytes) or non-JSON context."""
    return [
        {
            "loc": [str(part) for part in e.get("loc", ())],
            "msg": str(e.get("msg", "")).removeprefix("Value error, "),
            "type": e.get("type", ""),
        }
        for e in errors[:MAX_DETAILS]
    ]


def invalid_request(errors) -> ApiError:
    details = validation_details(errors)
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    where = ".".join(p for p in first["loc"] if p != "body") or "body"
    return ApiError(422, "invalid_request", f"{where}: {first['msg']}", details=details, errors=len(errors))


def install_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, error: ApiError):
        return error.response()

    async def http_error(request: Request, error: HTTPException):
        code = HTTPStatus(error.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
        return ApiError(error.status_code, code, str(error.detail), headers=getattr(error, "headers", None)).response()

    async def request_validation(request: Request, error: RequestValidationError):
        return invalid_request(error.errors()).response()

    async def unexpected(request: Request, error: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return ApiError(
            503, "internal_error", "the server could not answer this request; it is still running — retry, and report it if it repeats"
        ).response()

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, request_validation)
    app.add_exception_handler(Exception, unexpected)
