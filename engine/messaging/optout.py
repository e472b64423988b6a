"""Opt-out and opt-in by keyword: a member who writes STOP (or ABMELDEN, or the studio's own
words) on any channel gets no more automated messages until they write START.

The check sits in the engine's ingest path (:func:`note_opt_words` is called by the runner
for every stored event, whichever door it came through: REST, provider webhooks, UI, CLI),
so no route can forget it. Delivery (:func:`opt_out_reason`) then suppresses messages to an
opted-out contact with the reason, as WhatsApp's and Twilio's rules expect. Like Twilio, a
message counts only when its whole text is the word (trimmed, any case, trailing "!" or ".").

To keep the ingest path cheap, a studio's settings carry ``optOutsRecorded`` once anyone
opted out; studios without it skip the look-up per message.

**Test conversations** (the test console, ``is_test``) opt out and in exactly like members, but
on their own: their state is the latest opt word among the contact's own *test* events
(:func:`test_opt_out_reason`), so nothing is written beside real members' opt-outs, a test STOP
never silences a real member and a real opt-out never silences a test conversation.
"""

from __future__ import annotations

import logging
from datetime import datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from engine.errors import InvalidInput, InvalidRecipient, NotFound
from engine.security.auth import ADMIN, READ, Actor
from engine.settings import get_settings
from engine.store.lifecycle import ContactOptOut
from engine.store.models import EventRecord, Tenant, new_id
from engine.tenant_settings import OptOutWords, TenantSettings, patched, settings_of
from engine.uow import UnitOfWork

logger = logging.getLogger(__name__)

FLAG = "optOutsRecorded"
MAX_WORD = 32
_opt, _tenants, _ev = ContactOptOut.__table__, Tenant.__table__, EventRecord.__table__
#: How far back a test conversation's own messages are read for its opt state (a console chat is short).
TEST_LOOKBACK = 200


class OptOutOut(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)

    contact: str
    opted_out: bool
    word: str
    channel: str | None = None
    changed_at: datetime

    def to_api(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


# --------------------------------------------------------------------------- words


def _split(words: str) -> list[str]:
    return [w.strip().upper() for w in words.split(",") if w.strip()]


def opt_words(settings: TenantSettings | dict[str, Any] | None) -> tuple[frozenset[str], frozenset[str]]:
    """(opt-out words, opt-in words) of a studio: its own, else ``STUDIO_OPT_OUT_WORDS`` / ``STUDIO_OPT_IN_WORDS``."""
    conf = settings_of(settings).opt_out or OptOutWords()
    env = get_settings()
    stop, start = _hashable(conf.stop_words), _hashable(conf.start_words)
    try:
        return _opt_words(stop, start, env.opt_out_words, env.opt_in_words)
    except TypeError:  # not a list of words: as given, uncached
        return _opt_words.__wrapped__(stop, start, env.opt_out_words, env.opt_in_words)


def _hashable(words: Any) -> Any:
    return tuple(words) if isinstance(words, list) else words


@lru_cache(maxsize=1024)
def _opt_words(stop: Any, start: Any, env_stop: str, env_start: str) -> tuple[frozenset[str], frozenset[str]]:
    """Cached: every short inbound message is looked up in these sets (the ingest path)."""
    stop = stop or _split(env_stop)
    start = start or _split(env_start)
    return frozenset(w.upper() for w in stop), frozenset(w.upper() for w in start)


def keyword(content: str | None) -> str | None:
    """The message as a keyword ("Stop!" -> "STOP"), or None when it is longer than any word."""
    if not content or len(content) > MAX_WORD + 4:
        return None
    word = content.strip().rstrip("!.").strip().upper()
    return word or None


def check_words(words: Any, field: str) -> list[str]:
    """A list of 1..20 words of 1..32 letters, digits or spaces; InvalidInput names the field."""
    if isinstance(words, str):
        words = _split(words)
    if not isinstance(words, list) or not 1 <= len(words) <= 20:
        raise InvalidInput("give between 1 and 20 words", field=field)
    clean = []
    for w in words:
        if not isinstance(w, str) or not w.strip() or len(w.strip()) > MAX_WORD:
            raise InvalidInput(f"{w!r} is not a word of 1 to {MAX_WORD} characters", field=field)
        clean.append(w.strip().upper())
    return sorted(set(clean))


def contact_key(sender: str, settings: TenantSettings | dict[str, Any] | None) -> str:
    """The contact as outbox recipients are written: E.164 or a normalised e-mail address."""
    from engine.channels.phones import is_email, normalize_email, normalize_phone

    region = settings_of(settings).default_region
    try:
        if is_email(sender):
            return normalize_email(sender)
        return normalize_phone(sender, region if isinstance(region, str) else "DE")
    except InvalidRecipient:
        return sender.strip()


# --------------------------------------------------------------------------- the ingest path


def note_opt_words(s: Any, tenant: dict[str, Any], record: dict[str, Any], now: datetime) -> str | None:
    """Called by the runner for every stored event: record an opt-out or opt-in word.

    ``s`` is the runner's unit of work (its transaction is begun only when a word matched).
    Returns "out", "in" or None.
    """
    word = keyword(record.get("content"))
    sender = record.get("sender")
    if word is None or not sender:
        return None
    stop, start = opt_words(tenant.get("settings"))
    if word not in stop and word not in start:
        return None
    opted_out = word in stop
    conn = s.connection()
    _upsert(
        conn, tenant["id"], contact_key(sender, tenant.get("settings")), opted_out, word, record.get("channel"), now
    )
    if opted_out and not settings_of(tenant.get("settings")).opt_outs_recorded:
        _set_flag(conn, tenant)
    logger.info("tenant %s: a contact opted %s with %r", tenant["id"], "out" if opted_out else "in", word)
    return "out" if opted_out else "in"


def _upsert(
    conn: Any, tenant_id: str, contact: str, opted_out: bool, word: str, channel: str | None, now: datetime
) -> None:
    from sqlalchemy.dialects import postgresql, sqlite

    insert: Any = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(_opt).values(
        id=new_id(),
        tenant_id=tenant_id,
        contact=contact,
        opted_out=opted_out,
        word=word,
        channel=channel,
        changed_at=now,
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["tenant_id", "contact"],
            set_={"opted_out": opted_out, "word": word, "channel": channel, "changed_at": now},
        )
    )


def _set_flag(conn: Any, tenant: dict[str, Any]) -> None:
    # Locked (PostgreSQL): written back whole, so an owner's settings save in between must not be lost.
    found = sa.select(_tenants.c.settings).where(_tenants.c.id == tenant["id"]).with_for_update()
    settings = conn.execute(found).scalar() or {}
    conn.execute(sa.update(_tenants).where(_tenants.c.id == tenant["id"]).values(settings={**settings, FLAG: True}))
    tenant["settings"] = settings_of(tenant.get("settings")).model_copy(update={"opt_outs_recorded": True})


# --------------------------------------------------------------------------- delivery


def opt_out_reason(s: Any, tenant: dict[str, Any], recipient: str, *, test: bool = False) -> str | None:
    """Why a message to ``recipient`` must not go out (the contact opted out), or None.

    ``test``: a test-console message, judged by the test conversation's own words only.
    """
    if test:
        return test_opt_out_reason(s, tenant, recipient)
    if not settings_of(tenant.get("settings")).opt_outs_recorded:
        return None
    row = s.execute(
        sa.select(_opt.c.word, _opt.c.channel, _opt.c.changed_at).where(
            _opt.c.tenant_id == tenant["id"], _opt.c.contact == recipient, _opt.c.opted_out == sa.true()
        )
    ).first()
    return None if row is None else _reason(row.word, row.channel, row.changed_at, tenant)


def test_opt_out_reason(s: Any, tenant: dict[str, Any], recipient: str) -> str | None:
    """Why a test message to ``recipient`` must not go out: the contact's latest opt word among its
    own test messages was an opt-out word (what :func:`note_opt_words` would have recorded)."""
    stop, start = opt_words(tenant.get("settings"))
    rows = s.execute(
        sa.select(_ev.c.content, _ev.c.channel, _ev.c.received_at)
        .where(
            _ev.c.tenant_id == tenant["id"],
            _ev.c.sender == recipient,
            _ev.c.is_test == sa.true(),
            sa.func.length(_ev.c.content) <= MAX_WORD + 4,  # longer texts are never a word (keyword())
        )
        .order_by(_ev.c.received_at.desc(), _ev.c.id.desc())
        .limit(TEST_LOOKBACK)
    )
    for row in rows:
        word = keyword(row.content)
        if word in start:
            return None
        if word in stop:
            return "test conversation " + _reason(word, row.channel, row.received_at, tenant)
    return None


def _reason(word: str, channel: str | None, at: datetime, tenant: dict[str, Any]) -> str:
    on = f" on {channel}" if channel else ""
    _, start = opt_words(tenant.get("settings"))
    again = "START" if "START" in start or not start else min(start)  # the studio's own word when it has one
    return (
        f"opted out: the contact wrote {word}{on} on {at:%Y-%m-%d %H:%M} UTC; "
        f"no automated messages until they write {again}"
    )


# --------------------------------------------------------------------------- the studio's view


def list_opt_outs(*, uow: UnitOfWork, actor: Actor, opted_out_only: bool = True, limit: int = 500) -> list[OptOutOut]:
    """Contacts who opted out (or all with a recorded word), newest first."""
    actor.require(READ)
    stmt = sa.select(_opt).where(_opt.c.tenant_id == actor.tenant_id).order_by(_opt.c.changed_at.desc()).limit(limit)
    if opted_out_only:
        stmt = stmt.where(_opt.c.opted_out == sa.true())
    conn = uow.connection()
    return [OptOutOut.model_validate(dict(r)) for r in conn.execute(stmt).mappings()]


def set_opt_out(*, uow: UnitOfWork, actor: Actor, contact: str, opted_out: bool, note: str = "manual") -> OptOutOut:
    """Owners: mark a contact opted out or in by hand (e.g. a member asked at the desk)."""
    actor.require(ADMIN)
    if not isinstance(contact, str) or not contact.strip():
        raise InvalidInput("give a phone number or e-mail address", field="contact")
    s = uow.session
    row = s.get(Tenant, actor.tenant_id)
    if row is None:
        raise NotFound("tenant not found")
    tenant: dict[str, Any] = {"id": row.id, "settings": settings_of(row.settings)}
    key = contact_key(contact, tenant["settings"])
    if not key.startswith("+") and "@" not in key:
        raise InvalidInput(f"{contact!r} is not a phone number or e-mail address", field="contact")
    conn = s.connection()
    now = uow.now()
    _upsert(conn, actor.tenant_id, key, opted_out, note.upper()[:MAX_WORD], None, now)
    if opted_out and not tenant["settings"].opt_outs_recorded:
        _set_flag(conn, tenant)
    return OptOutOut(contact=key, opted_out=opted_out, word=note.upper()[:MAX_WORD], changed_at=now)


def set_opt_words(*, uow: UnitOfWork, actor: Actor, stop_words: Any, start_words: Any) -> dict[str, list[str]]:
    """Owners: the studio's own opt-out and opt-in words (a word may not be in both)."""
    actor.require(ADMIN)
    stop, start = check_words(stop_words, "stopWords"), check_words(start_words, "startWords")
    both = set(stop) & set(start)
    if both:
        raise InvalidInput(f"{', '.join(sorted(both))} cannot both opt out and opt in", field="startWords")
    s = uow.session
    row = s.get(Tenant, actor.tenant_id, with_for_update=True)
    if row is None:
        raise NotFound("tenant not found")
    row.settings = patched(row.settings, {"optOut": {"stopWords": stop, "startWords": start}})[0]
    s.add(row)
    return {"stopWords": stop, "startWords": start}
