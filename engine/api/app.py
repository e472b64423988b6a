"""The FastAPI app: the third door onto engine/services (next to the Streamlit UI and the CLI).

Every route authenticates with an API key (``Authorization: Bearer sa_...``) that acts in
one tenant with one role, and makes one service call; errors come back in one shape
(see ``engine/api/errors.py``). ``/api/health`` and ``/api/schema`` need no key.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Engine

from engine.api import contract, errors, inbound, insights, runs, scenarios, studio, webchat, workflows
from engine.api import privacy as privacy_routes
from engine.api.deps import Db
from engine.api.fast_events import FastEvents
from engine.api.limits import MAX_BODY_BYTES, BodySizeLimit, JsonGuard, single_query_values
from engine.api.ratelimit import RateLimit
from engine.store.db import reader
from engine.store.health import write_problem

DESCRIPTION = """
Workflows, runs, events and the outbox of one studio, over JSON.

**Auth:** every route except `/api/health` and `/api/schema` needs an API key:
`Authorization: Bearer sa_...`. Create one with
`python -m engine api-key create --tenant <slug> --name <name> --role owner|editor|analyst`.
The key's role decides what it may do (analysts read, editors build and run, owners everything).

**Errors:** `{"success": false, "error": {"code", "message", "field"?, "problems"?}}` with
401 `unauthorized`, 403 `forbidden`, 404 `not_found` (also for another studio's ids),
409 `conflict`, 413 `too_large`, 415 `unsupported_media_type`, 422 `invalid` (every problem with its
JSON path), 429 `rate_limited` (with `Retry-After`), 503 `unavailable` (with `Retry-After`: the database
cannot take the request now, e.g. a write lock held by another process past `STUDIO_DB_LOCK_TIMEOUT` or a
full disk; try again). Every route lists the codes it can answer.

**Limits:** JSON nested at most 32 levels, finite numbers only, no NUL characters, dates between
1970 and 2200, pages up to 1,000,000; see the README's "Limits" table.
"""


def _telemetry_options() -> dict:
    """FastAPI's built-in OpenTelemetry (newer releases) stays on only where OpenTelemetry is set up.

    Unconfigured, it still looks up its providers (and the environment) on every request, ~3 %
    of an event's server CPU. Any ``OTEL_*`` variable, or ``FASTAPI_OTEL_AUTO_CONFIGURE``, keeps it.
    """
    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    if any(name.startswith("OTEL_") or name == "FASTAPI_OTEL_AUTO_CONFIGURE" for name in os.environ):
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


def create_app(
    db: Engine | None = None,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    fast_events: bool = True,
    rate_limit: int | None = None,
) -> FastAPI:
    """The API over ``db`` (default: the process-wide engine of ``DATABASE_URL``).

    ``fast_events``: answer ``POST /api/events`` with a cached key without FastAPI's
    per-request machinery (``engine/api/fast_events.py``); same answers either way.
    ``rate_limit``: requests a minute per API key (default ``STUDIO_API_RATE_LIMIT``; 0 = none).
    """
    if db is None:
        from engine.store.db import get_engine

        db = get_engine()
    app = FastAPI(
        title="Studio Automations API",
        version="1",
        description=DESCRIPTION,
        dependencies=[Depends(single_query_values)],
        **_telemetry_options(),
    )
    app.state.db = db
    errors.install(app)
    contract.install(app)
    # Added first, so it runs inside the edge checks (add_middleware wraps outermost last):
    # rate limit -> body size -> JSON guard -> fast events -> FastAPI.
    app.add_middleware(FastEvents, db=db, enabled=fast_events)
    app.add_middleware(JsonGuard)
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    if rate_limit is None:
        from engine.settings import get_settings

        rate_limit = get_settings().api_rate_limit
    app.add_middleware(RateLimit, per_minute=rate_limit)
    app.include_router(workflows.router)
    app.include_router(insights.router)  # before runs: /executions/search must not match /executions/{id}
    app.include_router(runs.router)
    app.include_router(studio.router)  # channel settings, test message, audit, outbox retry
    app.include_router(inbound.router)  # public provider webhooks (signature-checked)
    app.include_router(webchat.router)  # widget.js and the public chat routes
    app.include_router(privacy_routes.router)
    app.include_router(scenarios.router)
    app.include_router(_meta_router())
    return app


def _meta_router() -> APIRouter:
    router = APIRouter(prefix="/api", tags=["meta"])

    @router.get(
        "/health",
        summary="Liveness and database check (no key needed)",
        description="200 when the database answers a read and commits a write (a one-row probe, at most one a "
        "second per process); 503 with `Retry-After` and the reason (`unwritable: ...`) when it does not.",
    )
    def health(db: Db) -> Any:
        try:
            with reader(db).connect() as conn:  # a deferred read: never waits for the writer
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            return JSONResponse({"status": "error", "database": reason}, status_code=503, headers={"Retry-After": "5"})
        problem = write_problem(db)  # a read said "ok" while every write failed (full disk, lock held)
        if problem is not None:
            return JSONResponse(
                {"status": "error", "database": f"unwritable: {problem}"}, status_code=503, headers={"Retry-After": "5"}
            )
        return {"status": "ok", "database": "ok"}

    @router.get("/schema", summary="JSON Schema of the workflow format (no key needed)")
    def schema() -> dict[str, Any]:
        from engine.workflow.definitions import workflow_json_schema

        return workflow_json_schema()

    return router
