"""Request dependencies: the database engine of the app and the Actor behind the API key.

Both are ``async``: FastAPI runs sync dependencies in the thread pool, one hop each, so
before they were async a request crossed threads three times (engine, actor, endpoint).
Now a request whose key is in the cache (see ``engine/services/api_keys.py``) resolves
both on the event loop without I/O and the endpoint is its only hop; a cache miss asks the
database in the thread pool (a deferred read, which never waits for the writer).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import Engine

from engine import services
from engine.api.errors import Unauthorized
from engine.errors import PermissionDenied
from engine.security.auth import Actor
from engine.uow import UnitOfWork, unit_of_work

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    bearerFormat="sa_...",
    description="An API key from `python -m engine api-key create --tenant <slug> --name <name> --role <role>`.",
)


async def get_db(request: Request) -> Engine:
    return request.app.state.db


async def current_actor(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Actor:
    """The tenant and role of the request's API key; 401 when it is missing, unknown or revoked."""
    if credentials is None:
        raise Unauthorized("missing API key: send the header 'Authorization: Bearer sa_...'")
    db = request.app.state.db
    actor = services.cached_actor_for_api_key(db, credentials.credentials)
    if actor is not None:
        return actor
    try:
        return await run_in_threadpool(_actor_for_api_key, db, credentials.credentials)
    except PermissionDenied as exc:
        raise Unauthorized(exc.message) from exc


def _actor_for_api_key(db: Engine, secret: str) -> Actor:
    with unit_of_work(db, read_only=True) as uow:
        return services.actor_for_api_key(uow=uow, secret=secret)


def write_unit(request: Request) -> Iterator[UnitOfWork]:
    """The request's unit of work: commits when the route returns, before the response is sent
    (so a failed commit is the response), rolls back when it raises."""
    with unit_of_work(request.app.state.db) as uow:
        yield uow


def read_unit(request: Request) -> Iterator[UnitOfWork]:
    """A read-only unit of work for GET routes: never takes SQLite's write lock. It lasts until
    the response is sent, so a streamed download reads inside it."""
    with unit_of_work(request.app.state.db, read_only=True) as uow:
        yield uow


Db = Annotated[Engine, Depends(get_db)]
CurrentActor = Annotated[Actor, Depends(current_actor)]
#: One unit of work per request: ``Uow`` for routes that write, ``ReadUow`` for GET routes.
Uow = Annotated[UnitOfWork, Depends(write_unit, scope="function")]
ReadUow = Annotated[UnitOfWork, Depends(read_unit, scope="request")]
