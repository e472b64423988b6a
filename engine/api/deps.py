"""Request dependencies: the database engine of the app and the Actor behind the API key.

Both are ``async``: FastAPI runs sync dependencies in the thread pool, one hop each, so
before they were async a request crossed threads three times (engine, actor, endpoint).
Now a request whose key is in the cache (see ``engine/services/api_keys.py``) resolves
both on the event loop without I/O and the endpoint is its only hop; a cache miss asks the
database in the thread pool (a deferred read, which never waits for the writer).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import Engine

from engine import services
from engine.api.errors import Unauthorized
from engine.auth import Actor
from engine.errors import PermissionDenied

_bearer = HTTPBearer(auto_error=False, scheme_name="apiKey", bearerFormat="sa_...",
                     description="An API key from `python -m engine api-key create --tenant <slug> --name <name> --role <role>`.")


async def get_db(request: Request) -> Engine:
    return request.app.state.db


async def current_actor(request: Request,
                        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Actor:
    """The tenant and role of the request's API key; 401 when it is missing, unknown or revoked."""
    if credentials is None:
        raise Unauthorized("missing API key: send the header 'Authorization: Bearer sa_...'")
    db = request.app.state.db
    actor = services.cached_actor_for_api_key(db, credentials.credentials)
    if actor is not None:
        return actor
    try:
        return await run_in_threadpool(services.actor_for_api_key, db, credentials.credentials)
    except PermissionDenied as exc:
        raise Unauthorized(exc.message) from exc


Db = Annotated[Engine, Depends(get_db)]
CurrentActor = Annotated[Actor, Depends(current_actor)]
