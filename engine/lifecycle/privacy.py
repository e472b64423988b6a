"""A member's data on request (GDPR articles 15 and 17): export and erasure of one contact.

A contact is a phone number or an e-mail address. :func:`find_contact_rows` gathers every
row of the studio that holds it: events it sent or that mention it, the executions those
events started (and their steps, messages, due work, chained events), executions, steps,
messages and due work whose text mentions it, leads and bookings with it. Export writes
those rows as one JSON document; erasure anonymises them in one transaction (rows stay, so
anonymous counts stay) and records *that* it happened: who, when and a hash of the contact.

Text is matched case-insensitively as a substring of every text and JSON column, in the
forms a number is commonly written (E.164, without "+", national, international with
spaces). Those are full scans of the studio's rows: this runs on request, not on a hot path.

An erasure also leaves no copy in the files: it commits, then (SQLite) checkpoints the
write-ahead log into the database file and truncates it (``engine.store.db.truncate_wal``).
Every connection runs with ``secure_delete`` on, so the bytes the erasure overwrote, index
entries it replaced and pages it freed are zeros in the file; the ``-shm`` file holds only the
log's index (page numbers). A backup made afterwards (``VACUUM INTO``, ``pg_dump``) copies live
rows only. The Insights rollups hold counts keyed by workflow, channel, intent and status,
nothing of a member. On PostgreSQL no row shows the data after the erasure commits; the
superseded row versions stay in the table files until (auto)vacuum reclaims them, which is
the server's business (``VACUUM`` the tables to hurry it).
"""

from __future__ import annotations

import hashlib
import logging
from datetime import date, datetime
from typing import Any

import phonenumbers
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from engine.errors import EngineError, InvalidInput, InvalidRecipient, NotFound
from engine.security.auth import ADMIN, Actor
from engine.store.db import truncate_wal
from engine.store.lifecycle import ContactErasure, ContactOptOut
from engine.store.models import (
    Booking,
    DueStatus,
    DueWork,
    EventRecord,
    Execution,
    Lead,
    OutboxMessage,
    StepRun,
    Tenant,
)
from engine.tenant_settings import settings_of
from engine.uow import UnitOfWork

logger = logging.getLogger(__name__)

ERASED = "[erased]"
_ev, _ex, _st, _ob = EventRecord.__table__, Execution.__table__, StepRun.__table__, OutboxMessage.__table__
_lead, _book, _due, _opt = Lead.__table__, Booking.__table__, DueWork.__table__, ContactOptOut.__table__
_erasures = ContactErasure.__table__

#: What erasure writes over each table's personal columns (everything else is kept for counts).
SCRUB: dict[str, dict[str, Any]] = {
    "events": {"sender": None, "content": None, "data": {}, "custom_fields": {}, "idempotency_key": None},
    "executions": {"context": {"erased": True}, "explanation": [], "error": None},
    "step_runs": {"input": {}, "output": {}, "error": None},
    "outbox_messages": {"recipient": ERASED, "body": "", "subject": None, "detail": {}, "error": None},
    "leads": {"name": ERASED, "email": None, "phone": None, "notes": None, "custom_fields": {}},
    "bookings": {"member_name": ERASED, "member_contact": None},
    "due_work": {"payload": {}},
}


class CopiesRemain(EngineError):
    """The erasure is saved, but the database's write-ahead log still holds earlier copies because
    another connection kept reading for too long; repeat the erasure in a moment (it finds
    nothing left to change and empties the log)."""


class Contact(BaseModel):
    """One member's phone number or e-mail address, normalised, with the forms to look for."""

    kind: str  # "phone" or "email"
    value: str
    variants: list[str]

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"{self.kind}:{self.value}".encode()).hexdigest()


class ErasureOut(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)

    id: str
    contact_hash: str
    kind: str
    erased_by: str
    erased_at: datetime
    counts: dict

    def to_api(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


# --------------------------------------------------------------------------- the contact


def parse_contact(*, phone: str | None = None, email: str | None = None, region: str = "DE") -> Contact:
    """Exactly one of ``phone`` / ``email``, normalised; InvalidInput names the field."""
    phone, email = (phone or "").strip() or None, (email or "").strip() or None
    if bool(phone) == bool(email):
        raise InvalidInput("give exactly one of phone or email", field="phone" if phone else "email")
    if email:
        from engine.channels.phones import normalize_email

        try:
            value = normalize_email(email)
        except InvalidRecipient as exc:
            raise InvalidInput(exc.message, field="email") from None
        return Contact(kind="email", value=value, variants=sorted({value, email.lower()}))
    from engine.channels.phones import normalize_phone

    assert phone is not None  # exactly one of phone and email was given
    try:
        value = normalize_phone(phone, region)
    except InvalidRecipient as exc:
        raise InvalidInput(exc.message, field="phone") from None
    number = phonenumbers.parse(value)
    forms = {
        value,
        value[1:],
        phone,
        phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL),
        phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL),
        phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL).replace(" ", ""),
    }
    return Contact(kind="phone", value=value, variants=sorted(f for f in forms if len(f) >= 6))


def _contact_for(s, actor: Actor, phone: str | None, email: str | None) -> Contact:
    tenant = s.get(Tenant, actor.tenant_id)
    if tenant is None:
        raise NotFound("tenant not found")
    return parse_contact(phone=phone, email=email, region=settings_of(tenant.settings).default_region)


# --------------------------------------------------------------------------- finding rows


def _mentions(table: sa.Table, contact: Contact) -> Any:
    """Any text or JSON column of ``table`` contains one of the contact's forms."""
    cols = [c for c in table.columns if c.name not in ("id", "tenant_id") and is_text(c)]
    texts = [sa.cast(c, sa.Text) if isinstance(c.type, sa.JSON) else c for c in cols]
    return sa.or_(sa.false(), *[t.ilike(f"%{_escape(v)}%", escape="\\") for t in texts for v in contact.variants])


def is_text(column: sa.Column) -> bool:
    """A column holding text: strings (also SQLModel's AutoString, a TypeDecorator) and JSON."""
    kind = column.type.impl_instance if isinstance(column.type, sa.types.TypeDecorator) else column.type
    return isinstance(kind, (sa.String, sa.JSON))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _ids(s, table: sa.Table, tenant_id: str, *conditions: Any) -> set[str]:
    given = [c for c in conditions if c is not None]
    if not given:
        return set()
    return set(s.execute(sa.select(table.c.id).where(table.c.tenant_id == tenant_id, sa.or_(*given))).scalars())


def find_contact_rows(s, tenant_id: str, contact: Contact) -> dict[str, set[str]]:
    """Ids per table of every row of the tenant that holds the contact's data.

    The member's leads and bookings come first; their ids and the leads' other phone or
    e-mail are then looked for too (a booking made by e-mail is the same member), and the
    events, the executions they started and the events those emitted are followed.
    """
    leads = _ids(
        s,
        _lead,
        tenant_id,
        _lead.c.email.in_(contact.variants),
        _lead.c.phone.in_(contact.variants),
        _mentions(_lead, contact),
    )
    needles = _widen(s, contact, leads)
    found = {"leads": leads | _ids(s, _lead, tenant_id, _mentions(_lead, needles))}
    found["bookings"] = _ids(
        s, _book, tenant_id, _book.c.lead_id.in_(found["leads"]) if found["leads"] else None, _mentions(_book, needles)
    )
    needles = needles.model_copy(update={"variants": sorted(set(needles.variants) | found["bookings"])})
    events = _ids(s, _ev, tenant_id, _ev.c.sender.in_(needles.variants), _mentions(_ev, needles))
    executions: set[str] = set()
    for _ in range(MAX_FOLLOW):  # events start executions, executions emit events (bounded like chains)
        new_ex = _ids(s, _ex, tenant_id, _ex.c.event_id.in_(events) if events else None, _mentions(_ex, needles))
        new_ev = _ids(s, _ev, tenant_id, _ev.c.parent_execution_id.in_(new_ex) if new_ex else None)
        if new_ex <= executions and new_ev <= events:
            break
        executions |= new_ex
        events |= new_ev
    found["events"], found["executions"] = events, executions

    def by_execution(t):
        return t.c.execution_id.in_(executions) if executions else None

    found["step_runs"] = _ids(s, _st, tenant_id, by_execution(_st), _mentions(_st, needles))
    found["outbox_messages"] = _ids(
        s, _ob, tenant_id, by_execution(_ob), _ob.c.recipient.in_(needles.variants), _mentions(_ob, needles)
    )
    found["due_work"] = _ids(s, _due, tenant_id, by_execution(_due), _mentions(_due, needles))
    found["contact_opt_outs"] = _ids(s, _opt, tenant_id, _opt.c.contact.in_(needles.variants))
    return found


#: How many rounds of event -> execution -> emitted event are followed (chains are at most 5 deep).
MAX_FOLLOW = 8


def _widen(s, contact: Contact, lead_ids: set[str]) -> Contact:
    """The contact's forms plus its leads' ids and their other phone or e-mail address."""
    extra = set(lead_ids)
    if lead_ids:
        for email, phone in s.execute(sa.select(_lead.c.email, _lead.c.phone).where(_lead.c.id.in_(lead_ids))):
            extra |= {v for v in (email, phone) if v}
    return contact.model_copy(update={"variants": sorted(set(contact.variants) | extra)})


_TABLES = {t.name: t for t in (_ev, _ex, _st, _ob, _due, _lead, _book, _opt)}


# --------------------------------------------------------------------------- export


def contact_counts(
    *, uow: UnitOfWork, actor: Actor, phone: str | None = None, email: str | None = None
) -> dict[str, int]:
    """How many rows per table hold the contact (what an export shows and an erasure changes)."""
    actor.require(ADMIN)
    s = uow.session
    found = find_contact_rows(s, actor.tenant_id, _contact_for(s, actor, phone, email))
    return {name: len(ids) for name, ids in found.items()}


def export_contact(
    *, uow: UnitOfWork, actor: Actor, phone: str | None = None, email: str | None = None
) -> dict[str, Any]:
    """Everything stored about one contact, as one JSON-ready document (owners only)."""
    actor.require(ADMIN)
    s = uow.session
    contact = _contact_for(s, actor, phone, email)
    found = find_contact_rows(s, actor.tenant_id, contact)
    tables = {name: _rows(s, _TABLES[name], ids) for name, ids in found.items()}
    logger.info(
        "tenant %s: exported the data of a contact (%s rows)", actor.tenant_id, sum(len(v) for v in tables.values())
    )
    return {
        "contact": {"kind": contact.kind, "value": contact.value},
        "tenantId": actor.tenant_id,
        "exportedAt": uow.now().isoformat(),
        "counts": {k: len(v) for k, v in tables.items()},
        "tables": tables,
    }


def _rows(s, table: sa.Table, ids: set[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    order = next(
        (c for c in table.columns if c.name in ("received_at", "started_at", "created_at", "changed_at")), table.c.id
    )
    ids_list = sorted(ids)
    for i in range(0, len(ids_list), 500):
        chunk = s.execute(sa.select(table).where(table.c.id.in_(ids_list[i : i + 500])).order_by(order)).mappings()
        rows += [{k: _jsonable(v) for k, v in row.items()} for row in chunk]
    return rows


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, (datetime, date)) else value


# --------------------------------------------------------------------------- erasure


def erase_contact(*, uow: UnitOfWork, actor: Actor, phone: str | None = None, email: str | None = None) -> ErasureOut:
    """Anonymise every row holding the contact, in one transaction, and record the erasure.

    Rows are overwritten, not deleted, so counts (executions per workflow, messages per
    channel, leads per status) stay; opt-out rows of the contact are deleted. The erasure
    commits the unit of work itself and then removes the overwritten bytes from the files
    (see the module docstring), so when it returns no file of the database holds the data;
    :class:`CopiesRemain` if that could not be done in time (the erasure itself is saved).
    """
    actor.require(ADMIN)
    s = uow.session
    contact = _contact_for(s, actor, phone, email)
    found = find_contact_rows(s, actor.tenant_id, contact)
    counts = {name: len(ids) for name, ids in found.items()}
    for name, ids in found.items():
        _scrub(s, _TABLES[name], actor.tenant_id, ids, uow.now())
    record = {
        "id": _new_id(),
        "tenant_id": actor.tenant_id,
        "contact_hash": contact.digest,
        "kind": contact.kind,
        "erased_by": actor.email or actor.user_id or "system",
        "erased_at": uow.now(),
        "counts": counts,
    }
    s.execute(sa.insert(_erasures).values(record))
    logger.info("tenant %s: erased a contact (%s)", actor.tenant_id, counts)
    uow.commit()  # the erasure is durable before the old copies are wiped from the files
    if not truncate_wal(uow.db):
        raise CopiesRemain()
    return ErasureOut.model_validate(record)


def _scrub(s, table: sa.Table, tenant_id: str, ids: set[str], now: datetime) -> None:
    ids_list = sorted(ids)
    for i in range(0, len(ids_list), 500):
        where = (table.c.tenant_id == tenant_id, table.c.id.in_(ids_list[i : i + 500]))
        if table is _opt:
            s.execute(sa.delete(table).where(*where))
            continue
        s.execute(sa.update(table).where(*where).values(**SCRUB[table.name]))
        if table is _due:  # a follow-up to an erased contact must not go out any more
            s.execute(
                sa.update(table)
                .where(*where, table.c.status.in_([DueStatus.PENDING, DueStatus.CLAIMED]))
                .values(status=DueStatus.CANCELLED, error="contact erased", done_at=now)
            )


def list_erasures(*, uow: UnitOfWork, actor: Actor, limit: int = 100) -> list[ErasureOut]:
    """The studio's erasure records, newest first (owners only)."""
    actor.require(ADMIN)
    conn = uow.connection()
    rows = (
        conn.execute(
            sa.select(_erasures)
            .where(_erasures.c.tenant_id == actor.tenant_id)
            .order_by(_erasures.c.erased_at.desc())
            .limit(limit)
        )
        .mappings()
        .all()
    )
    return [ErasureOut.model_validate(dict(r)) for r in rows]


def was_erased(*, uow: UnitOfWork, actor: Actor, phone: str | None = None, email: str | None = None) -> bool:
    """Whether this contact's data was erased before (the hash is compared, nothing else is kept)."""
    actor.require(ADMIN)
    s = uow.session
    digest = _contact_for(s, actor, phone, email).digest
    return (
        s.execute(
            sa.select(_erasures.c.id).where(
                _erasures.c.tenant_id == actor.tenant_id, _erasures.c.contact_hash == digest
            )
        ).first()
        is not None
    )


def _new_id() -> str:
    from engine.store.models import new_id

    return new_id()
