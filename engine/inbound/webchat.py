"""Web chat: messages from the embeddable widget become ``web_chat`` events; the replies a
workflow sends on the ``web`` channel (recorded in the outbox) are read back by the widget.

Guarded by the studio's public chat key, an origin allow-list (``settings.webChat.allowedOrigins``)
and a per-conversation and per-studio rate limit (in-process sliding window).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import defaultdict, deque
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from engine.auth import ADMIN, Actor
from engine.errors import EngineError, InvalidInput, NotFound, PermissionDenied
from engine.store.models import OutboxMessage, Tenant
from engine.tenant_settings import patched, settings_of
from engine.uow import UnitOfWork

logger = logging.getLogger(__name__)

CONVERSATION_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
ORIGIN_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$")
MAX_TEXT = 2000
#: (messages, seconds): per conversation and per studio.
PER_CONVERSATION = (10, 60.0)
PER_STUDIO = (120, 60.0)


class RateLimited(EngineError):
    """Too many messages; wait a moment."""

    def __init__(self, message: str | None = None, *, retry_after: float = 10.0) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class SlidingWindow:
    """At most ``limit`` hits per ``window`` seconds per key (thread-safe, in memory)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def hit(self, key: str, now: float | None = None) -> float | None:
        """Record a hit; returns None when allowed, else the seconds until the next is allowed."""
        now = time.monotonic() if now is None else now
        with self._lock:
            hits = self._hits[key]
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(0.1, hits[0] + self.window - now)
            hits.append(now)
            return None


_per_conversation = SlidingWindow(*PER_CONVERSATION)
_per_studio = SlidingWindow(*PER_STUDIO)


def allowed_origins(db: Engine, tenant_id: str) -> list[str]:
    with Session(db) as s:
        tenant = s.get(Tenant, tenant_id)
        return list(settings_of(tenant.settings).web_chat.allowed_origins) if tenant else []


def check_origin(db: Engine, tenant_id: str, origin: str | None) -> str:
    """The origin if it is on the studio's allow-list; raises :class:`PermissionDenied`."""
    allowed = allowed_origins(db, tenant_id)
    if not origin or origin.rstrip("/") not in allowed:
        logger.warning("web chat for tenant %s refused from origin %r", tenant_id, origin)
        raise PermissionDenied("this website is not allowed to use the chat (Settings > Channels > Web chat)")
    return origin.rstrip("/")


def _conversation(conversation_id: str) -> str:
    if not isinstance(conversation_id, str) or not CONVERSATION_RE.match(conversation_id):
        raise InvalidInput("must be 8-64 letters, digits, - or _", field="conversationId")
    return conversation_id


def post_message(
    db: Engine, tenant_id: str, *, conversation_id: str, text: str, client_message_id: str
) -> dict[str, Any]:
    """Store the visitor's message as a ``web_chat`` event (idempotent per client message id)."""
    from engine.inbound.service import ingest_events

    conversation_id = _conversation(conversation_id)
    text = (text or "").strip()
    if not text:
        raise InvalidInput("is empty", field="text")
    if len(text) > MAX_TEXT:
        raise InvalidInput(f"is longer than {MAX_TEXT} characters", field="text")
    if not CONVERSATION_RE.match(client_message_id or ""):
        raise InvalidInput("must be 8-64 letters, digits, - or _", field="clientMessageId")
    for limiter, key in ((_per_conversation, f"{tenant_id}:{conversation_id}"), (_per_studio, tenant_id)):
        wait = limiter.hit(key)
        if wait is not None:
            raise RateLimited(f"too many messages: try again in {wait:.0f} s", retry_after=wait)
    event = {
        "triggerType": "web_chat",
        "channel": "web",
        "from": f"web:{conversation_id}",
        "content": text,
        "idempotencyKey": f"web:{conversation_id}:{client_message_id}",
        "data": {"conversationId": conversation_id, "provider": "widget"},
    }
    counts = ingest_events(db, tenant_id, [event])
    return {"accepted": True, "duplicate": bool(counts["duplicates"])}


def replies(db: Engine, tenant_id: str, *, conversation_id: str, after: datetime | None = None) -> list[dict[str, Any]]:
    """The studio's replies in this conversation (oldest first, at most 50)."""
    conversation_id = _conversation(conversation_id)
    where = [
        OutboxMessage.tenant_id == tenant_id,
        OutboxMessage.channel == "web",
        OutboxMessage.recipient == f"web:{conversation_id}",
    ]
    if after is not None:
        where.append(OutboxMessage.created_at > after)
    with Session(db) as s:
        rows = s.exec(select(OutboxMessage).where(*where).order_by(col(OutboxMessage.created_at)).limit(50)).all()
    return [{"id": r.id, "text": r.body, "at": r.created_at.isoformat()} for r in rows]


def save_web_chat(*, uow: UnitOfWork, actor: Actor, allowed_origins: list[str]) -> list[str]:
    """Set the websites allowed to embed the chat (``https://www.studio.de``; owners only)."""
    from engine.services.channel_settings import record_audit

    actor.require(ADMIN)
    clean = []
    for raw in allowed_origins:
        origin = raw.strip().rstrip("/")
        if not origin:
            continue
        if not ORIGIN_RE.match(origin):
            raise InvalidInput(
                f"{origin!r} is not an origin like https://www.example.com (no path)", field="webChat.allowedOrigins"
            )
        clean.append(origin)
    s = uow.session
    tenant = s.get(Tenant, actor.tenant_id, with_for_update=True, populate_existing=True)
    if tenant is None:
        raise NotFound("tenant not found")
    old = list(settings_of(tenant.settings).web_chat.allowed_origins)
    tenant.settings = patched(tenant.settings, {"webChat.allowedOrigins": clean})[0]
    s.add(tenant)
    if old != clean:
        record_audit(uow=uow, actor=actor, area="webChat", changes={"allowedOrigins": {"from": old, "to": clean}})
    return clean
