"""The HTTP side of errors and bodies: a Dora error becomes a status and a JSON body.

Every error body is ``{"error": {"status", "message", "violations": [...]}}``; a
violation names the field path and, for an apply, the document, line and column
it is written at. Statuses follow the gRPC codes' usual HTTP mapping.
"""

from __future__ import annotations

import json
from typing import Any

import grpc
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dora.api import errors

STATUS_OF: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 422,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.OUT_OF_RANGE: 410,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
}


def error_body(error: errors.DoraError, *,
               violations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    found = violations if violations is not None else [
        {"field": v.field, "description": v.description} for v in error.violations
    ]
    return {"error": {"status": error.code.name, "message": error.message,
                      "violations": found}}


def error_response(error: errors.DoraError, *,
                   violations: list[dict[str, Any]] | None = None) -> JSONResponse:
    # An error the apiserver has no class for is its failure, not the gateway's.
    status = STATUS_OF.get(error.code, 502)
    return JSONResponse(error_body(error, violations=violations), status_code=status)


async def handle_dora_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.DoraError)
    located = getattr(exc, "located", None)
    return error_response(exc, violations=located)


async def handle_http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no route matches: a path with a newline escapes even
    the ``/api/{rest:path}`` fallback; a method not allowed) in the API's error shape,
    so every 4xx carries ``error.message``."""
    assert isinstance(exc, HTTPException)
    error: errors.DoraError = errors.NotFound(f"no API route {request.url.path!r}") \
        if exc.status_code == 404 else errors.DoraError(exc.detail)
    return JSONResponse(error_body(error), status_code=exc.status_code,
                        headers=dict(exc.headers or {}))


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object; a clear 422 for anything else."""
    raw = await request.body()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.Invalid(f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise errors.Invalid("the body must be a JSON object")
    return data


def int_field(data: dict[str, Any], name: str, *, low: int | None = None,
              required: bool = True, default: int | None = None) -> int | None:
    value = data.get(name, default)
    if value is None:
        if required:
            raise errors.Invalid("required", field=name)
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.Invalid("expected an integer", field=name)
    if low is not None and value < low:
        raise errors.Invalid(f"must be {low} or more", field=name)
    return value


def str_field(data: dict[str, Any], name: str, *, required: bool = True) -> str:
    value = data.get(name, "")
    if not isinstance(value, str):
        raise errors.Invalid("expected a string", field=name)
    if required and not value:
        raise errors.Invalid("required", field=name)
    return value
