"""The hot path of ``POST /api/events``: auth from the key cache and ingest in one hop, as plain ASGI.

Why: under load FastAPI's per-request machinery (dependency solving, query and header
parsing, response validation, exception middleware, telemetry hooks) took more CPU than
ingesting the event itself (py-spy, GIL-holding samples: ~60 % framework, ~11 % ingest).
This middleware answers the common case without it and hands everything else to the
FastAPI route, unchanged, with the body replayed:

* handled here: ``POST /api/events`` with ``Content-Type: application/json``, a bearer key
  that is in the key cache (verified less than ``STUDIO_API_KEY_CACHE_SECONDS`` ago) with
  the ``edit`` permission, a JSON object as body and at most a plain ``Idempotency-Key``
  header that agrees with the body;
* handed on: anything else (no key, unknown or uncached key, wrong role, other content
  types, malformed JSON, a body that is not an object, conflicting idempotency keys). The
  FastAPI route then answers exactly as before (and caches the key for the next request).

The answer is the route's answer, byte for byte (same JSON, same error shape from
``engine/api/errors.py``); the route stays the documented one in OpenAPI. Outer middlewares
(the body size limit, and any rate limiter added later) still see every request.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from engine import services
from engine.api import errors
from engine.api.limits import read_body, replay_body
from engine.auth import EDIT, Actor
from engine.errors import EngineError

logger = logging.getLogger(__name__)

PATH = "/api/events"


class FastEvents:
    """ASGI middleware: see the module docstring. ``enabled=False`` passes everything on."""

    def __init__(self, app: ASGIApp, *, db: Engine, enabled: bool = True) -> None:
        self.app = app
        self.db = db
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (self.enabled and scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == PATH):
            await self.app(scope, receive, send)
            return
        actor, idempotency_key = self._precheck(scope)
        if actor is None:
            await self.app(scope, receive, send)
            return
        body, complete = await read_body(receive)
        if not complete:
            return  # the client went away
        event = _event_or_none(body, idempotency_key)
        if event is None:
            await self.app(scope, replay_body(body, receive), send)
            return
        await self._ingest(scope, receive, send, actor, event)

    def _precheck(self, scope: Scope) -> tuple[Actor | None, str | None]:
        """The cached actor when the headers qualify for the fast path, else (None, None)."""
        auth = content_type = idempotency_key = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value
            elif name == b"content-type":
                content_type = value
            elif name == b"idempotency-key":
                idempotency_key = value
        if auth is None or not auth.startswith(b"Bearer ") or content_type is None:
            return None, None
        if content_type.split(b";", 1)[0].strip().lower() != b"application/json":
            return None, None
        if idempotency_key is not None:
            if len(idempotency_key) > 200 or not idempotency_key.isascii():
                return None, None
            idempotency_key = idempotency_key.decode()
        actor = services.cached_actor_for_api_key(self.db, auth[7:].decode("latin-1").strip())
        if actor is None or not actor.can(EDIT):
            return None, None
        return actor, idempotency_key

    async def _ingest(self, scope: Scope, receive: Receive, send: Send, actor: Actor, event: dict[str, Any]) -> None:
        response: Response
        try:
            result = await run_in_threadpool(services.ingest_event, self.db, actor, event)
        except EngineError as exc:
            response = errors._engine_error(Request(scope), exc)
        except IntegrityError as exc:
            response = errors._integrity_error(Request(scope), exc)
        except Exception as exc:  # noqa: BLE001 - the same answer the app's handler gives
            response = errors._unexpected(Request(scope), exc)
        else:
            response = Response(orjson.dumps({"success": True, "eventId": result.event_id,
                                              "executionIds": result.execution_ids, "duplicate": result.duplicate,
                                              "intent": result.intent, "intentConfidence": result.intent_confidence}),
                                media_type="application/json")
        await response(scope, receive, send)


def _event_or_none(body: bytes, idempotency_key: str | None) -> dict[str, Any] | None:
    """The event as the route would see it, or None when the route must decide (and word the error)."""
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict):
        return None
    if idempotency_key:
        if event.get("idempotencyKey") not in (None, idempotency_key):
            return None
        event = {**event, "idempotencyKey": idempotency_key}
    return event
