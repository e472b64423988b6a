"""Web chat: messages from the embeddable widget become ``web_chat`` events; the replies a
workflow sends on the ``web`` channel (recorded in the outbox) are read back by the widget.

Guarded by the studio's public chat key, an origin allow-list (``settings.webChat.allowedOrigins``),
a per-conversation and per-studio rate limit (in-process sliding window), and the conversation's
token: the widget makes a random token with ``crypto.getRandomValues`` and sends it (header
``X-Chat-Token``) with every read and write. The first message binds the conversation to it
(SHA-256 kept in ``web_chat_conversations``); from then on a request without that token is
answered "conversation not found", exactly like a conversation that does not exist, so knowing a
conversation id (it is the contact shown in the studio's executions) reveals nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import threading
import time
from collections import defaultdict, deque
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from engine.errors import EngineError, InvalidInput, NotFound, PermissionDenied
from engine.security.auth import ADMIN, Actor
from engine.store.models import EventRecord, OutboxMessage, Tenant, WebChatConversation
from engine.tenant_settings import patched, settings_of
from engine.uow import UnitOfWork, unit_of_work

logger = logging.getLogger(__name__)

CONVERSATION_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
#: The widget sends 64 hex digits (32 random bytes); other clients may use any url-safe text this long.
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{32,128}$")
TOKEN_HEADER = "X-Chat-Token"
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


class UnknownConversation(NotFound):
    """conversation not found: start a new one"""


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


def _token(token: str | None) -> str:
    if not isinstance(token, str) or not TOKEN_RE.match(token):
        raise InvalidInput("must be the widget's random token (32-128 letters, digits, - or _)", field=TOKEN_HEADER)
    return token


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _has_history(s: Session, tenant_id: str, contact: str) -> bool:
    """Whether the conversation has messages from before tokens (or its binding was lost)."""
    event = select(EventRecord.id).where(EventRecord.tenant_id == tenant_id, EventRecord.sender == contact).limit(1)
    reply = (
        select(OutboxMessage.id)
        .where(OutboxMessage.tenant_id == tenant_id, OutboxMessage.recipient == contact)
        .limit(1)
    )
    return s.exec(event).first() is not None or s.exec(reply).first() is not None


def _bind(s: Session, tenant_id: str, conversation_hash: str, token_hash: str, now: datetime) -> None:
    from sqlalchemy.dialects import postgresql, sqlite

    insert: Any = postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert
    row = {"tenant_id": tenant_id, "conversation_hash": conversation_hash, "token_hash": token_hash, "created_at": now}
    # Two first messages at once: the first insert wins, the other is checked against it.
    s.execute(insert(WebChatConversation).values(**row).on_conflict_do_nothing())


def check_token(*, uow: UnitOfWork, tenant_id: str, conversation_id: str, token: str | None, bind: bool) -> None:
    """The conversation belongs to whoever holds ``token``; else :class:`UnknownConversation`.

    ``bind``: a write may start the conversation and bind it to ``token``, unless it already
    has messages (from before tokens existed): those cannot be claimed by whoever learns the id.
    """
    conversation_id, token = _conversation(conversation_id), _token(token)
    s = uow.session
    where = (
        col(WebChatConversation.tenant_id) == tenant_id,
        col(WebChatConversation.conversation_hash) == _digest(conversation_id),
    )
    stmt = sa.select(col(WebChatConversation.token_hash)).where(*where)
    stored = s.execute(stmt).scalar()
    if stored is None and bind and not _has_history(s, tenant_id, f"web:{conversation_id}"):
        _bind(s, tenant_id, _digest(conversation_id), _digest(token), uow.now())
        stored = s.execute(stmt).scalar()
    if stored is None or not hmac.compare_digest(stored, _digest(token)):
        raise UnknownConversation()


def _limit(limiter: SlidingWindow, key: str) -> None:
    wait = limiter.hit(key)
    if wait is not None:
        raise RateLimited(f"too many messages: try again in {wait:.0f} s", retry_after=wait)


def post_message(
    db: Engine, tenant_id: str, *, conversation_id: str, token: str | None, text: str, client_message_id: str
) -> dict[str, Any]:
    """Store the visitor's message as a ``web_chat`` event (idempotent per client message id).

    The conversation's first message binds it to ``token``; later ones must bring the same.
    """
    from engine.inbound.service import ingest_events

    conversation_id, token = _conversation(conversation_id), _token(token)
    text = (text or "").strip()
    if not text:
        raise InvalidInput("is empty", field="text")
    if len(text) > MAX_TEXT:
        raise InvalidInput(f"is longer than {MAX_TEXT} characters", field="text")
    if not CONVERSATION_RE.match(client_message_id or ""):
        raise InvalidInput("must be 8-64 letters, digits, - or _", field="clientMessageId")
    _limit(_per_studio, tenant_id)
    with unit_of_work(db) as uow:
        check_token(uow=uow, tenant_id=tenant_id, conversation_id=conversation_id, token=token, bind=True)
    # After the token: someone without it cannot use up the visitor's allowance.
    _limit(_per_conversation, f"{tenant_id}:{conversation_id}")
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


def replies(
    db: Engine, tenant_id: str, *, conversation_id: str, token: str | None, after: datetime | None = None
) -> list[dict[str, Any]]:
    """The studio's replies in this conversation (oldest first, at most 50), for the holder of its token."""
    where = [
        OutboxMessage.tenant_id == tenant_id,
        OutboxMessage.channel == "web",
        OutboxMessage.recipient == f"web:{conversation_id}",
    ]
    if after is not None:
        where.append(OutboxMessage.created_at > after)
    with unit_of_work(db, read_only=True) as uow:
        check_token(uow=uow, tenant_id=tenant_id, conversation_id=conversation_id, token=token, bind=False)
        stmt = select(OutboxMessage).where(*where).order_by(col(OutboxMessage.created_at)).limit(50)
        rows = uow.session.exec(stmt).all()
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
