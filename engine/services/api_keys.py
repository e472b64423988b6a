"""API keys for the REST API: create (the secret is shown once), list, revoke, authenticate.

A key acts in one tenant with one role. Only the SHA-256 of the secret is stored: the
secret is 32 random bytes, so a slow password hash would add latency to every request
without adding safety.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from engine.errors import InvalidInput, NotFound, PermissionDenied
from engine.security.auth import ADMIN, Actor
from engine.services.workflows import Out
from engine.store.faults import fault_kind
from engine.store.models import ApiKey, Role
from engine.uow import UnitOfWork, unit_of_work

logger = logging.getLogger(__name__)

__all__ = [
    "ApiKeyOut",
    "create_api_key",
    "list_api_keys",
    "revoke_api_key",
    "actor_for_api_key",
    "KEY_PREFIX",
    "cached_actor_for_api_key",
    "KEY_CACHE",
]

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


def create_api_key(*, uow: UnitOfWork, actor: Actor, name: str, role: str) -> tuple[ApiKeyOut, str]:
    """A new key for the actor's tenant (owners only). Returns the key and its secret, once."""
    actor.require(ADMIN)
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise InvalidInput("a key needs a name of 1 to 200 characters", field="name")
    if role not in {r.value for r in Role}:
        raise InvalidInput(f"unknown role {role!r} (owner, editor or analyst)", field="role")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    s = uow.session
    row = ApiKey(
        tenant_id=actor.tenant_id,
        user_id=actor.user_id,
        name=name,
        role=role,
        key_hash=_hash(secret),
        prefix=secret[:8],
        created_at=uow.now(),
    )
    s.add(row)
    _audit(uow, actor, {name: {"from": None, "to": f"created ({role}, {secret[:8]}...)"}})
    return ApiKeyOut.model_validate(row), secret


def _audit(uow: UnitOfWork, actor: Actor, changes: dict) -> None:
    from engine.services.channel_settings import record_audit

    record_audit(uow=uow, actor=actor, area="apiKeys", changes=changes)


def list_api_keys(*, uow: UnitOfWork, actor: Actor) -> list[ApiKeyOut]:
    """The tenant's keys, newest first, revoked ones included (owners only)."""
    actor.require(ADMIN)
    s = uow.session
    rows = s.exec(
        select(ApiKey).where(ApiKey.tenant_id == actor.tenant_id).order_by(col(ApiKey.created_at).desc(), ApiKey.id)
    ).all()
    return [ApiKeyOut.model_validate(r) for r in rows]


def revoke_api_key(*, uow: UnitOfWork, actor: Actor, key_id: str) -> ApiKeyOut:
    """Stop a key from working (owners only). Revoking twice keeps the first time."""
    actor.require(ADMIN)
    s = uow.session
    row = s.exec(select(ApiKey).where(ApiKey.id == key_id, ApiKey.tenant_id == actor.tenant_id)).first()
    if row is None:
        raise NotFound(f"API key {key_id} not found")
    revoked = row.revoked_at is None
    if revoked:
        row.revoked_at = uow.now()
        s.add(row)
    KEY_CACHE.forget(row.id)
    if revoked:
        _audit(uow, actor, {row.name: {"from": "active", "to": "revoked"}})
    return ApiKeyOut.model_validate(row)


def actor_for_api_key(*, uow: UnitOfWork, secret: str) -> Actor:
    """Who a request with this secret acts as; raises PermissionDenied for unknown or revoked keys.

    Asks the database through ``uow``, which must be read-only (a deferred read: it never
    waits for a writer; the last-used time is written in a short unit of its own), and
    remembers the answer in :data:`KEY_CACHE`; see :func:`cached_actor_for_api_key` for the
    lookup without I/O.
    """
    if not secret or not secret.startswith(KEY_PREFIX) or len(secret) > 200:
        raise PermissionDenied("invalid or revoked API key")
    key_hash = _hash(secret)
    s = uow.session
    row = s.exec(select(ApiKey).where(ApiKey.key_hash == key_hash)).first()
    if row is None or row.revoked_at is not None:
        KEY_CACHE.forget_hash(uow.db, key_hash)
        raise PermissionDenied("invalid or revoked API key")
    _touch(uow, row)
    actor = Actor(tenant_id=row.tenant_id, user_id=row.user_id, role=row.role, email=f"api-key:{row.name}")
    KEY_CACHE.put(uow.db, key_hash, row.id, actor)
    return actor


def cached_actor_for_api_key(db: Engine, secret: str) -> Actor | None:
    """The actor of a key verified less than ``STUDIO_API_KEY_CACHE_SECONDS`` ago, else None.

    No database round trip and no I/O: safe to call on the event loop. None means "ask
    :func:`actor_for_api_key`" (unknown keys are never cached, so they always reach the database).
    """
    if not secret or not secret.startswith(KEY_PREFIX) or len(secret) > 200:
        return None
    return KEY_CACHE.get(db, _hash(secret))


class KeyCache:
    """Verified API keys per process: ``(engine, sha256 of the secret) -> (actor, key id, expiry)``.

    **Revocation bound.** An entry lives ``ttl`` seconds (``STUDIO_API_KEY_CACHE_SECONDS``,
    default 5). The process that revokes a key forgets it at once; every other process (other
    ``--workers``, other hosts) stops accepting it at most ``ttl`` seconds after the
    revocation committed (plus the few milliseconds of a lookup that read the row just
    before), because it then asks the database again. Only successful lookups are
    cached, so a new key works at once, and at most ``max_entries`` keys are kept (oldest out).
    """

    def __init__(
        self, *, ttl: float | None = None, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[Engine, str], tuple[Actor, str, float]] = OrderedDict()

    @property
    def ttl(self) -> float:
        if self._ttl is not None:
            return self._ttl
        from engine.settings import get_settings

        return get_settings().api_key_cache_seconds

    @ttl.setter
    def ttl(self, seconds: float | None) -> None:
        """Fix the entry lifetime; None: ``STUDIO_API_KEY_CACHE_SECONDS`` again."""
        self._ttl = seconds

    def get(self, db: Engine, key_hash: str) -> Actor | None:
        entry = self._entries.get((db, key_hash))
        if entry is None:
            return None
        if entry[2] <= self.clock():
            with self._lock:
                self._entries.pop((db, key_hash), None)
            return None
        return entry[0]

    def put(self, db: Engine, key_hash: str, key_id: str, actor: Actor) -> None:
        ttl = self.ttl
        if ttl <= 0:
            return
        with self._lock:
            self._entries[(db, key_hash)] = (actor, key_id, self.clock() + ttl)
            self._entries.move_to_end((db, key_hash))
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def forget(self, key_id: str) -> None:
        """Drop a key by id (on revocation in this process)."""
        with self._lock:
            for k in [k for k, (_a, kid, _e) in self._entries.items() if kid == key_id]:
                del self._entries[k]

    def forget_hash(self, db: Engine, key_hash: str) -> None:
        with self._lock:
            self._entries.pop((db, key_hash), None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


#: The process-wide cache used by the REST API.
KEY_CACHE = KeyCache()


def _touch(uow: UnitOfWork, row: ApiKey) -> None:
    """Record the key's last use. Bookkeeping, not part of the request: written in a short unit
    of work of its own (at most once a minute per key), so the lookup's unit stays a read that
    never waits for the writer."""
    now = uow.now()
    if row.last_used_at is not None and now - row.last_used_at < _TOUCH_EVERY:
        return
    try:
        with unit_of_work(uow.db, clock=uow.clock) as own:
            own.session.exec(sa.update(ApiKey).where(col(ApiKey.id) == row.id).values(last_used_at=now))
    except Exception as exc:
        # A full disk or a lock held elsewhere must not fail a request that only reads: the
        # time is written at the key's next use.
        if fault_kind(exc) is None:
            raise
        logger.warning("last use of API key %s not recorded: %s", row.id, fault_kind(exc))
