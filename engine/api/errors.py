"""One error shape for every failure the API answers:

``{"success": false, "error": {"code", "message", "field"?, "problems"?}}``

Engine errors map by type (not found 404, forbidden 403, invalid 422, conflict 409), a
missing or bad API key is 401, and FastAPI's own request checks (malformed JSON, wrong
types, bad query parameters) are re-worded into the same shape, naming the field.

Storage faults (a lock held past the lock timeout, a full disk, failing storage, an
unreachable database: ``engine/store/faults.py``) are 503 ``unavailable`` with
``Retry-After``, on every route including the public provider webhooks (``/hooks/...``):
providers retry a 503 later, and what the failed transaction would have written was not
committed (a message stored before the fault is a duplicate on the retry).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.errors import (
    Conflict,
    EngineError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    StorageUnavailable,
    ValidationFailed,
)
from engine.store.faults import storage_fault
from engine.workflow.limits import LimitExceeded

logger = logging.getLogger(__name__)


class Unauthorized(EngineError):
    """Send an API key: 'Authorization: Bearer sa_...'."""


#: Most specific first: ValidationFailed is an InvalidInput.
_BY_TYPE: list[tuple[type[EngineError], int, str]] = [
    (StorageUnavailable, 503, "unavailable"),
    (Unauthorized, 401, "unauthorized"),
    (NotFound, 404, "not_found"),
    (PermissionDenied, 403, "forbidden"),
    (InvalidInput, 422, "invalid"),
    (Conflict, 409, "conflict"),
]

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    503: "unavailable",
}


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    field: str | None = None,
    problems: list[dict] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    error: dict[str, Any] = {"code": code, "message": message}
    if field:
        error["field"] = field
    if problems is not None:
        error["problems"] = problems
    return JSONResponse({"success": False, "error": error}, status_code=status, headers=headers)


def _engine_error(request: Request, exc: EngineError) -> JSONResponse:
    status, code = next(((s, c) for t, s, c in _BY_TYPE if isinstance(exc, t)), (400, "bad_request"))
    problems = [p.to_dict() for p in exc.problems] if isinstance(exc, ValidationFailed) else None
    field = getattr(exc, "field", None)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if isinstance(exc, StorageUnavailable):
        return _unavailable(request, exc)
    return error_response(status, code, exc.message, field=field, problems=problems, headers=headers)


def _location(loc: tuple | list) -> str:
    """``("body", "actions", 0, "id")`` -> ``actions[0].id``; the part of the request is dropped."""
    path = ""
    for part in list(loc)[1:] if loc and loc[0] in ("body", "query", "path", "header") else list(loc):
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _request_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    if isinstance(exc.body, (bytes, bytearray)) and exc.body:
        # FastAPI hands the raw bytes on when the Content-Type is not JSON (e.g. curl -d without -H).
        return error_response(
            415,
            "unsupported_media_type",
            "send the body as JSON with the header 'Content-Type: application/json'",
            field="body",
        )
    problems = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            where = (err.get("ctx") or {}).get("error", "")
            return error_response(
                422, "invalid", f"the request body is not valid JSON ({where})".replace(" ()", ""), field="body"
            )
        path = _location(err.get("loc", ())) or "body"
        message = (
            "a JSON body is required" if path == "body" and err.get("type") == "missing" else err.get("msg", "invalid")
        )
        problems.append({"path": path, "message": message, "severity": "error"})
    first = problems[0] if problems else {"path": "body", "message": "invalid request"}
    return error_response(
        422, "invalid", f"{first['path']}: {first['message']}", field=first["path"], problems=problems
    )


def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = _HTTP_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))


def _integrity_error(request: Request, exc: IntegrityError) -> JSONResponse:
    # A unique constraint raced us, e.g. an idempotency key used before in a manual run.
    logger.info("integrity error on %s %s: %s", request.method, request.url.path, exc.orig)
    return error_response(
        409,
        "conflict",
        "this conflicts with data that already exists (for example an idempotency key that was used before)",
    )


def _limit_error(request: Request, exc: LimitExceeded) -> JSONResponse:
    field = exc.path or "body"
    return error_response(
        422,
        "invalid",
        f"{field}: {exc}",
        field=field,
        problems=[{"path": field, "message": str(exc), "severity": "error"}],
    )


#: Seconds between two warnings about storage faults of one kind (an outage answers thousands).
_WARN_EVERY = 10.0
_warned: dict[str, float] = {}


def _unavailable(request: Request, fault: StorageUnavailable, exc: BaseException | None = None) -> JSONResponse:
    # One line, the driver's own words: SQLAlchemy's message would carry the statement's parameters.
    cause = exc if exc is not None and exc is not fault else fault.__cause__
    reason = str(getattr(cause, "orig", None) or cause or fault.message).strip().splitlines()[0]
    now = time.monotonic()
    level = logging.WARNING if now - _warned.get(fault.kind, float("-inf")) >= _WARN_EVERY else logging.DEBUG
    if level == logging.WARNING:
        _warned[fault.kind] = now
    logger.log(level, "%s %s answered 503 (%s): %s", request.method, request.url.path, fault.kind, reason)
    return error_response(503, "unavailable", fault.message, headers={"Retry-After": str(fault.retry_after)})


def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """A database error that is not a constraint: 503 when it is a storage fault, else 500."""
    fault = storage_fault(exc)
    return _unavailable(request, fault, exc) if fault is not None else _unexpected(request, exc)


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    fault = storage_fault(exc)
    if fault is not None:  # raised from a storage fault somewhere down the stack
        return _unavailable(request, fault, exc)
    # The route's template, not the path: some paths carry a secret (the inbound e-mail token).
    where = getattr(request.scope.get("route"), "path", None) or request.url.path
    logger.error("unhandled error on %s %s", request.method, where, exc_info=exc)
    # The connection may be in any state: tell the client not to reuse it.
    return error_response(
        500, "internal", "internal error; the server log has the details", headers={"Connection": "close"}
    )


def install(app: FastAPI) -> None:
    # Starlette types every handler as taking Exception; each of these gets only its own class.
    app.add_exception_handler(EngineError, _engine_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _request_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(IntegrityError, _integrity_error)  # type: ignore[arg-type]
    app.add_exception_handler(LimitExceeded, _limit_error)  # type: ignore[arg-type]
    for database_error in (sa.exc.DBAPIError, sa.exc.TimeoutError, sqlite3.Error, *_driver_errors()):
        app.add_exception_handler(database_error, _database_error)
    app.add_exception_handler(Exception, _unexpected)


def _driver_errors() -> tuple[type[Exception], ...]:
    """PostgreSQL's driver errors, when it is installed (raised unwrapped outside SQLAlchemy's calls)."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover
        return ()
    return (psycopg.Error,)
