"""The outbox as a studio sees it: every message with its delivery status in words, filters,
"retry" for a failed delivery, and the owner's decision on a message whose outcome is unknown
("mark as sent" / "send again"; editors and owners). Status changes go through the state
machine (engine/messaging/outbox_states.py)."""

from __future__ import annotations

import logging
from datetime import datetime
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlmodel import col, func, select

from engine.errors import Conflict, InvalidInput, NotFound
from engine.messaging import outbox_states as states
from engine.security.auth import EDIT, READ, Actor
from engine.services.workflows import MAX_PAGE_SIZE
from engine.store.models import DueKind, DueWork, Execution, OutboxMessage, OutboxStatus, Tenant
from engine.store.runs import due_row
from engine.uow import UnitOfWork

logger = logging.getLogger(__name__)

__all__ = ["OUTBOX_STATUSES", "OutboxRow", "OutboxRows", "browse_outbox", "mark_sent", "retry_delivery", "send_again"]

OUTBOX_STATUSES = tuple(s.value for s in OutboxStatus)


class OutboxRow(BaseModel):
    id: str
    created_at: datetime
    channel: str
    recipient: str
    subject: str | None
    body: str
    status: str
    #: The status in words: "retrying (attempt 3 of 5, next at 15:42)" in the studio's time zone.
    status_text: str
    attempts: int
    next_attempt_at: datetime | None
    reason: str | None
    adapter: str
    provider_message_id: str | None
    workflow_name: str | None
    execution_id: str | None
    sent_at: datetime | None
    delivery_events: list[dict]


class OutboxRows(BaseModel):
    items: list[OutboxRow]
    total: int
    page: int
    page_size: int


def browse_outbox(
    *,
    uow: UnitOfWork,
    actor: Actor,
    status: str | None = None,
    channel: str | None = None,
    recipient: str | None = None,
    execution_id: str | None = None,
    page: int = 1,
    page_size: int = 50,
) -> OutboxRows:
    """Newest first, one page, with the workflow of each message."""
    actor.require(READ)
    if status and status not in OUTBOX_STATUSES:
        raise InvalidInput(f"unknown status {status!r} (one of {', '.join(OUTBOX_STATUSES)})", field="status")
    if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidInput(f"page must be >= 1 and page size between 1 and {MAX_PAGE_SIZE}", field="page")
    where = [col(OutboxMessage.tenant_id) == actor.tenant_id]
    if status:
        where.append(col(OutboxMessage.status) == status)
    if channel:
        where.append(col(OutboxMessage.channel) == channel)
    if recipient:
        where.append(col(OutboxMessage.recipient).contains(recipient.strip()))
    if execution_id:
        where.append(col(OutboxMessage.execution_id) == execution_id)
    s = uow.session
    total = s.exec(select(func.count()).select_from(OutboxMessage).where(*where)).one()
    rows = s.exec(
        select(OutboxMessage, Execution.workflow_name)
        .join(Execution, col(Execution.id) == OutboxMessage.execution_id, isouter=True)
        .where(*where)
        .order_by(col(OutboxMessage.created_at).desc(), OutboxMessage.id)
        .offset((page - 1) * page_size)
        .limit(page_size)
    ).all()
    tz, now = studio_zone(uow, actor), uow.now()
    items = [_outbox_row(m, wf, tz, now) for m, wf in rows]
    return OutboxRows(items=_masked(uow, actor, items), total=total, page=page, page_size=page_size)


def _masked(uow: UnitOfWork, actor: Actor, items: list[OutboxRow]) -> list[OutboxRow]:
    """Analysts see contacts masked unless an owner allows them (engine/messaging/masking.py)."""
    from engine.messaging import masking

    if masking.sees_contacts(uow=uow, actor=actor):
        return items
    return [OutboxRow.model_validate(masking.mask_data(i.model_dump())) for i in items]


def retry_delivery(*, uow: UnitOfWork, actor: Actor, outbox_id: str) -> OutboxRow:
    """Queue a failed message for another round of delivery attempts by the worker (same row)."""
    actor.require(EDIT)
    row = _owned(uow, actor, outbox_id)
    if row["status"] != OutboxStatus.FAILED:
        raise Conflict(
            f"only failed messages can be retried (this one is {states.LABELS.get(row['status'], row['status'])})"
        )
    return _send_again(uow, actor, row, event="retry")


def send_again(*, uow: UnitOfWork, actor: Actor, outbox_id: str) -> OutboxRow:
    """The owner decides that a message whose outcome is unknown did not arrive: send it again
    (the member may get it twice if the provider had it after all)."""
    actor.require(EDIT)
    row = _owned(uow, actor, outbox_id)
    if row["status"] != OutboxStatus.UNKNOWN:
        raise Conflict(f"only messages whose outcome is unknown can be sent again (this one is {row['status']})")
    return _send_again(uow, actor, row, event="send again")


def mark_sent(*, uow: UnitOfWork, actor: Actor, outbox_id: str) -> OutboxRow:
    """The owner decides that a message whose outcome is unknown did arrive: it counts as sent."""
    actor.require(EDIT)
    row = _owned(uow, actor, outbox_id)
    if row["status"] != OutboxStatus.UNKNOWN:
        raise Conflict(f"only messages whose outcome is unknown can be marked as sent (this one is {row['status']})")
    event = {"status": "marked sent", "at": uow.now().isoformat(), "by": actor.email or "system"}
    if not states.move(
        uow.session,
        row,
        OutboxStatus.SENT,
        error=None,
        sent_at=row["sending_at"] or uow.now(),
        detail=states.with_event(row, event),
    ):
        raise Conflict("the message changed meanwhile; reload the outbox")
    logger.info("outbox message %s marked as sent by %s", outbox_id, actor.email or "system")
    return _one(uow, actor, outbox_id)


def _owned(uow: UnitOfWork, actor: Actor, outbox_id: str) -> dict:
    row = states.load(uow.connection(), outbox_id, tenant_id=actor.tenant_id, lock=True)
    if row is None:
        raise NotFound(f"message {outbox_id} not found")
    return row


def _send_again(uow: UnitOfWork, actor: Actor, row: dict, *, event: str) -> OutboxRow:
    """failed/unknown -> pending with a new deliver item: a fresh round of attempts."""
    if row["adapter"] == "outbox":
        raise Conflict("this channel has no provider configured: connect it in Settings > Channels first")
    entry = {"status": event, "at": uow.now().isoformat(), "by": actor.email or "system", "previousError": row["error"]}
    if not states.move(
        uow.session,
        row,
        OutboxStatus.PENDING,
        error=None,
        attempts=0,
        next_attempt_at=None,
        detail=states.with_event(row, entry, keep=50),
    ):
        raise Conflict("the message changed meanwhile; reload the outbox")
    uow.insert(
        DueWork,
        due_row(
            uow.now(),
            tenant_id=actor.tenant_id,
            kind=DueKind.DELIVER,
            due_at=uow.now(),
            payload={"outboxId": row["id"]},
        ),
    )
    logger.info("outbox message %s queued again (%s) by %s", row["id"], event, actor.email or "system")
    return _one(uow, actor, row["id"])


def _one(uow: UnitOfWork, actor: Actor, outbox_id: str) -> OutboxRow:
    s = uow.session
    s.expire_all()  # the row changed through Core statements
    m = s.exec(
        select(OutboxMessage).where(OutboxMessage.id == outbox_id, OutboxMessage.tenant_id == actor.tenant_id)
    ).one()
    wf = (
        s.exec(select(Execution.workflow_name).where(Execution.id == m.execution_id)).first()
        if m.execution_id
        else None
    )
    return _outbox_row(m, wf, studio_zone(uow, actor), uow.now())


def studio_zone(uow: UnitOfWork, actor: Actor) -> ZoneInfo:
    name = uow.session.exec(select(Tenant.timezone).where(Tenant.id == actor.tenant_id)).first()
    return ZoneInfo(name or "UTC")


def _outbox_row(m: OutboxMessage, workflow_name: str | None, tz: ZoneInfo, now: datetime) -> OutboxRow:
    """A stored message as the outbox page and API show it."""
    return OutboxRow(
        id=m.id,
        created_at=m.created_at,
        channel=m.channel,
        recipient=m.recipient,
        subject=m.subject,
        body=m.body,
        status=m.status,
        status_text=states.describe(m.status, attempts=m.attempts, next_attempt_at=m.next_attempt_at, tz=tz, now=now),
        attempts=m.attempts,
        next_attempt_at=m.next_attempt_at,
        reason=m.error,
        adapter=m.adapter,
        provider_message_id=m.provider_message_id,
        workflow_name=workflow_name,
        execution_id=m.execution_id,
        sent_at=m.sent_at,
        delivery_events=list((m.detail or {}).get("deliveryEvents") or []),
    )
