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

import asyncio
import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from engine import services
from engine.api import errors
from engine.api.limits import read_body, replay_body
from engine.errors import EngineError
from engine.security.auth import EDIT, Actor
from engine.uow import unit_of_work

logger = logging.getLogger(__name__)

PATH = "/api/events"
#: Threads ingesting fast-path events: as many as one group commit takes (``max_batch``, 64),
#: so up to 64 concurrent requests share one commit instead of the last ones waiting in the
#: pool's queue for the next (at 64 connections: 0.64-0.65 ms of server CPU per request
#: against 0.68-0.78 ms with 40 threads, alternating runs at load 18-23). Only the batch's
#: leader holds a database connection, so the pool (40 + 10) is not the bound. A plain
#: ``ThreadPoolExecutor`` instead of ``run_in_threadpool``: anyio's capacity limiter and
#: per-call machinery cost ~12 % of the server's GIL time (py-spy, 64 connections).
THREADS = 64


class FastEvents:
    """ASGI middleware: see the module docstring. ``enabled=False`` passes everything on."""

    def __init__(self, app: ASGIApp, *, db: Engine, enabled: bool = True) -> None:
        self.app = app
        self.db = db
        self.enabled = enabled
        self._pool: ThreadPoolExecutor | None = None

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:  # on the first request: one event loop, no race
            self._pool = ThreadPoolExecutor(THREADS, thread_name_prefix="fast-events")
        return self._pool

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
            result = await asyncio.get_running_loop().run_in_executor(
                self._executor(), functools.partial(_ingest, self.db, actor, event)
            )
        except EngineError as exc:
            response = errors._engine_error(Request(scope), exc)
        except IntegrityError as exc:
            response = errors._integrity_error(Request(scope), exc)
        except Exception as exc:  # noqa: BLE001 - the same answer the app's handler gives
            response = errors._unexpected(Request(scope), exc)
        else:
            response = Response(
                orjson.dumps(
                    {
                        "success": True,
                        "eventId": result.event_id,
                        "executionIds": result.execution_ids,
                        "duplicate": result.duplicate,
                        "intent": result.intent,
                        "intentConfidence": result.intent_confidence,
                    }
                ),
                media_type="application/json",
            )
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


def _ingest(db: Engine, actor: Actor, event: dict[str, Any]) -> Any:
    """The event commits in the runner's group commit; the unit of work only reads (see ingest_event)."""
    with unit_of_work(db, read_only=True) as uow:
        return services.ingest_event(uow=uow, actor=actor, event=event)
