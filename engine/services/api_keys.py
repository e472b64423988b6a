"""API keys for the REST API: create (the secret is shown once), list, revoke, authenticate.

A key acts in one tenant with one role. Only the SHA-256 of the secret is stored: the
secret is 32 random bytes, so a slow password hash would add latency to every request
without adding safety.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from engine.auth import ADMIN, Actor
from engine.errors import InvalidInput, NotFound, PermissionDenied
from engine.services.workflows import Out
from engine.store.db import session_scope
from engine.store.models import ApiKey, Role, utcnow

__all__ = ["ApiKeyOut", "create_api_key", "list_api_keys", "revoke_api_key", "actor_for_api_key", "KEY_PREFIX"]

KEY_PREFIX = "sa_"
#: ``last_used_at`` is written at most this often per key, so reads stay reads.
_TOUCH_EVERY = timedelta(seconds=60)


class ApiKeyOut(Out):
    """A key as lists show it: never the secret, only its first characters."""

    id: str
    tenant_id: str
    user_id: str | None
    name: str
    role: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_api_key(db: Engine, actor: Actor, *, name: str, role: str) -> tuple[ApiKeyOut, str]:
    """A new key for the actor's tenant (owners only). Returns the key and its secret, once."""
    actor.require(ADMIN)
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise InvalidInput("a key needs a name of 1 to 200 characters", field="name")
    if role not in {r.value for r in Role}:
        raise InvalidInput(f"unknown role {role!r} (owner, editor or analyst)", field="role")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    with session_scope(db) as s:
        row = ApiKey(tenant_id=actor.tenant_id, user_id=actor.user_id, name=name, role=role,
                     key_hash=_hash(secret), prefix=secret[:8])
        s.add(row)
    _audit(db, actor, {name: {"from": None, "to": f"created ({role}, {secret[:8]}...)"}})
    return ApiKeyOut.model_validate(row), secret


def _audit(db: Engine, actor: Actor, changes: dict) -> None:
    from engine.services.channel_settings import record_audit

    record_audit(db, actor, "apiKeys", changes)


def list_api_keys(db: Engine, actor: Actor) -> list[ApiKeyOut]:
    """The tenant's keys, newest first, revoked ones included (owners only)."""
    actor.require(ADMIN)
    with Session(db) as s:
        rows = s.exec(select(ApiKey).where(ApiKey.tenant_id == actor.tenant_id)
                      .order_by(col(ApiKey.created_at).desc(), ApiKey.id)).all()
        return [ApiKeyOut.model_validate(r) for r in rows]


def revoke_api_key(db: Engine, actor: Actor, key_id: str) -> ApiKeyOut:
    """Stop a key from working (owners only). Revoking twice keeps the first time."""
    actor.require(ADMIN)
    with session_scope(db) as s:
        row = s.exec(select(ApiKey).where(ApiKey.id == key_id, ApiKey.tenant_id == actor.tenant_id)).first()
        if row is None:
            raise NotFound(f"API key {key_id} not found")
        revoked = row.revoked_at is None
        if revoked:
            row.revoked_at = utcnow()
            s.add(row)
    if revoked:
        _audit(db, actor, {row.name: {"from": "active", "to": "revoked"}})
    return ApiKeyOut.model_validate(row)


def actor_for_api_key(db: Engine, secret: str) -> Actor:
    """Who a request with this secret acts as; raises PermissionDenied for unknown or revoked keys."""
    if not secret or not secret.startswith(KEY_PREFIX) or len(secret) > 200:
        raise PermissionDenied("invalid or revoked API key")
    with Session(db) as s:
        row = s.exec(select(ApiKey).where(ApiKey.key_hash == _hash(secret))).first()
    if row is None or row.revoked_at is not None:
        raise PermissionDenied("invalid or revoked API key")
    _touch(db, row)
    return Actor(tenant_id=row.tenant_id, user_id=row.user_id, role=row.role, email=f"api-key:{row.name}")


def _touch(db: Engine, row: ApiKey) -> None:
    now = utcnow()
    if row.last_used_at is not None and now - row.last_used_at < _TOUCH_EVERY:
        return
    with session_scope(db) as s:
        s.exec(sa.update(ApiKey).where(col(ApiKey.id) == row.id).values(last_used_at=now))
