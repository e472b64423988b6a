"""Request dependencies: the database engine of the app and the Actor behind the API key."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import Engine

from engine import services
from engine.api.errors import Unauthorized
from engine.auth import Actor
from engine.errors import PermissionDenied

_bearer = HTTPBearer(auto_error=False, scheme_name="apiKey", bearerFormat="sa_...",
                     description="An API key from `python -m engine api-key create --tenant <slug> --name <name> --role <role>`.")


def get_db(request: Request) -> Engine:
    return request.app.state.db


def current_actor(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Actor:
    """The tenant and role of the request's API key; 401 when it is missing, unknown or revoked."""
    if credentials is None:
        raise Unauthorized("missing API key: send the header 'Authorization: Bearer sa_...'")
    try:
        return services.actor_for_api_key(get_db(request), credentials.credentials)
    except PermissionDenied as exc:
        raise Unauthorized(exc.message) from exc


Db = Annotated[Engine, Depends(get_db)]
CurrentActor = Annotated[Actor, Depends(current_actor)]
