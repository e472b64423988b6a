"""Limits enforced at the edge, before any route reads the request: body size, JSON shape, NUL characters."""

from __future__ import annotations

import json
import typing
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.api.errors import error_response
from engine.errors import InvalidInput
from engine.workflow import limits

MAX_BODY_BYTES = 1024 * 1024
#: Paths of the provider webhooks (engine/api/inbound.py).
PROVIDER_PATHS = "/hooks/"


class BodySizeLimit:
    """Answer 413 to a body larger than ``max_bytes``.

    A declared ``Content-Length`` is checked up front; a chunked body is read up to the
    limit and replayed to the app (FastAPI reads whole bodies anyway, so nothing is lost).
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await error_response(400, "bad_request", "invalid Content-Length header")(scope, receive, send)
            elif int(declared) > self.max_bytes:
                await self._too_large(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        if b"chunked" not in headers.get(b"transfer-encoding", b""):
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # client went away
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
        await self.app(scope, replay_body(body, receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = (
            f"{self.max_bytes // 1024} KB"
            if self.max_bytes % (1024 * 1024)
            else f"{self.max_bytes // (1024 * 1024)} MB"
        )
        response = error_response(
            413, "too_large", f"the request body is larger than the limit of {limit}", headers={"Connection": "close"}
        )
        await response(scope, receive, send)


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands ``body`` (already read) to the next app once, then the client's messages."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class JsonGuard:
    """Refuse, before any route runs, what no backend can store or serve back (422, naming the field).

    * a JSON body nested deeper than :data:`engine.workflow.limits.MAX_JSON_DEPTH`, with ``NaN`` or
      ``Infinity``, or with a NUL character in any string or key;
    * a NUL character in the path, a query parameter or a header.

    The body is read once (its size is already bounded by :class:`BodySizeLimit`) and replayed.
    A body that is not valid JSON goes on to FastAPI, which answers its usual 422.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = _request_line_problem(scope)
        # Provider webhooks check their signature first and then these limits themselves
        # (engine/inbound/payload.py), answering as the provider's retry rules need.
        if problem is None and _is_json(scope) and not scope.get("path", "").startswith(PROVIDER_PATHS):
            body, complete = await read_body(receive)
            if not complete:
                return  # client went away
            problem = body_problem(body)
            receive = replay_body(body, receive)
        if problem is not None:
            field, message = problem
            await error_response(
                422,
                "invalid",
                f"{field}: {message}",
                field=field,
                problems=[{"path": field, "message": message, "severity": "error"}],
            )(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _is_json(scope: Scope) -> bool:
    if scope.get("method") not in ("POST", "PUT", "PATCH", "DELETE"):
        return False
    content_type = dict(scope.get("headers") or []).get(b"content-type", b"")
    return content_type.split(b";")[0].strip().lower().endswith(b"json")


async def read_body(receive: Receive) -> tuple[bytes, bool]:
    """The whole request body, and False when the client went away before sending it all."""
    chunks, more = [], True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return b"", False
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks), True


def _reject_constant(name: str) -> float:
    raise limits.LimitExceeded(f"numbers must be finite (got {name})")


def _plainly_fine(body: bytes) -> bool:
    """Whether the raw text alone shows the body is within the limits (most events): JSON can
    only write NUL as ``\\u0000``, NaN and Infinity by name, and depth needs brackets."""
    return (
        body.count(b"[") + body.count(b"{") <= limits.MAX_JSON_DEPTH
        and b"\\u0000" not in body.lower()
        and b"NaN" not in body
        and b"Infinity" not in body
    )


def body_problem(body: bytes) -> tuple[str, str] | None:
    """``(field, message)`` of the first thing in a JSON body beyond the limits, or ``None``."""
    if not body.strip() or _plainly_fine(body):
        return None
    try:
        value = json.loads(body, parse_constant=_reject_constant)
    except limits.LimitExceeded as exc:
        return "body", str(exc)
    except RecursionError:
        return "body", f"nested more than {limits.MAX_JSON_DEPTH} levels deep"
    except ValueError:
        return None  # not JSON (or not UTF-8): FastAPI words that error
    for where, message in limits.json_problems(value):
        return where or "body", message
    return None


def _request_line_problem(scope: Scope) -> tuple[str, str] | None:
    nul = "cannot contain the NUL character (\\u0000)"
    if "\x00" in scope.get("path", ""):
        return "path", nul
    for name, value in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return name.replace("\x00", "\\u0000") or "query", nul
    for name, value in scope.get("headers") or []:
        if b"\x00" in value:
            return name.decode("latin-1"), nul
    return None


class AnyQueryRoute(APIRoute):
    """A route whose URL is not ours to decide (a provider's configured callback URL, a CORS
    preflight that repeats the real request's query): :func:`single_query_values` lets it be."""

    any_query = True


def single_query_values(request: Request) -> None:
    """An app-wide dependency: only the query parameters a route takes, each once (else 422).

    ``?pagesize=10`` (a typo) or ``?status=a&status=b`` would otherwise be quietly ignored or
    use the last value. Parameters a route declares as a list (``list[str]``) may repeat, so
    routes added later keep working without doing anything.
    """
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or getattr(route, "any_query", False):  # provider webhooks: the URL is theirs
        return
    fields = list(_query_fields(dependant))
    known = {field.alias for field in fields}
    for name in request.query_params:
        if name not in known:
            allowed = ", ".join(sorted(known)) or "none"
            raise InvalidInput(f"unknown query parameter (this route takes: {allowed})", field=name or "query")
    for field in fields:
        if _is_list(field.field_info.annotation):
            continue
        if len(request.query_params.getlist(field.alias)) > 1:
            raise InvalidInput("is given more than once; give it once", field=field.alias)


def _is_list(annotation: object) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (list, set, tuple, frozenset):
        return True
    return any(_is_list(arg) for arg in typing.get_args(annotation)) if origin is not None else False


def _query_fields(dependant):
    yield from dependant.query_params
    for sub in dependant.dependencies:
        yield from _query_fields(sub)
