"""The outbox as a studio sees it: every message with its delivery status, filters, and
"retry" for a failed delivery (editors and owners)."""

from __future__ import annotations

import logging
from datetime import datetime

import sqlalchemy as sa
from pydantic import BaseModel
from sqlmodel import col, func, select

from engine.errors import Conflict, InvalidInput, NotFound
from engine.security.auth import EDIT, READ, Actor
from engine.services.workflows import MAX_PAGE_SIZE
from engine.store import rollups
from engine.store.models import (
    DueKind,
    DueWork,
    Execution,
    OutboxMessage,
    OutboxStatus,
)
from engine.uow import UnitOfWork

logger = logging.getLogger(__name__)

__all__ = ["OUTBOX_STATUSES", "OutboxRow", "OutboxRows", "browse_outbox", "retry_delivery"]

OUTBOX_STATUSES = tuple(s.value for s in OutboxStatus)


class OutboxRow(BaseModel):
    id: str
    created_at: datetime
    channel: str
    recipient: str
    subject: str | None
    body: str
    status: str
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
    items = [_outbox_row(m, wf) for m, wf in rows]
    return OutboxRows(items=_masked(uow, actor, items), total=total, page=page, page_size=page_size)


def _masked(uow: UnitOfWork, actor: Actor, items: list[OutboxRow]) -> list[OutboxRow]:
    """Analysts see contacts masked unless an owner allows them (engine/messaging/masking.py)."""
    from engine.messaging import masking

    if masking.sees_contacts(uow=uow, actor=actor):
        return items
    return [OutboxRow.model_validate(masking.mask_data(i.model_dump())) for i in items]


def retry_delivery(*, uow: UnitOfWork, actor: Actor, outbox_id: str) -> OutboxRow:
    """Queue a failed message for one more delivery attempt by the worker (same message, same row)."""
    actor.require(EDIT)
    s = uow.session
    msg = s.exec(
        select(OutboxMessage).where(OutboxMessage.id == outbox_id, OutboxMessage.tenant_id == actor.tenant_id)
    ).first()
    if msg is None:
        raise NotFound(f"message {outbox_id} not found")
    if msg.status != OutboxStatus.FAILED:
        raise Conflict(f"only failed messages can be retried (this one is {msg.status})")
    if msg.adapter == "outbox":
        raise Conflict("this channel has no provider configured: connect it in Settings > Channels first")
    history = list((msg.detail or {}).get("deliveryEvents") or [])
    history.append(
        {"status": "retry", "at": uow.now().isoformat(), "by": actor.email or "system", "previousError": msg.error}
    )
    before = rollups.outbox_values(msg)  # (the ORM UPDATE below changes msg too)
    s.execute(
        sa.update(OutboxMessage)
        .where(col(OutboxMessage.id) == msg.id)
        .values(status=OutboxStatus.PENDING, error=None, detail={**(msg.detail or {}), "deliveryEvents": history})
    )
    deltas = rollups.Deltas()
    deltas.outbox_status(before, OutboxStatus.PENDING)
    rollups.apply(s, deltas)
    s.add(DueWork(tenant_id=actor.tenant_id, kind=DueKind.DELIVER, due_at=uow.now(), payload={"outboxId": msg.id}))
    logger.info("outbox message %s queued for retry by %s", outbox_id, actor.email or "system")
    return _one(uow, actor, outbox_id)


def _one(uow: UnitOfWork, actor: Actor, outbox_id: str) -> OutboxRow:
    s = uow.session
    m = s.exec(
        select(OutboxMessage).where(OutboxMessage.id == outbox_id, OutboxMessage.tenant_id == actor.tenant_id)
    ).one()
    wf = (
        s.exec(select(Execution.workflow_name).where(Execution.id == m.execution_id)).first()
        if m.execution_id
        else None
    )
    return _outbox_row(m, wf)


def _outbox_row(m: OutboxMessage, workflow_name: str | None) -> OutboxRow:
    """A stored message as the outbox page and API show it."""
    return OutboxRow(
        id=m.id,
        created_at=m.created_at,
        channel=m.channel,
        recipient=m.recipient,
        subject=m.subject,
        body=m.body,
        status=m.status,
        reason=m.error,
        adapter=m.adapter,
        provider_message_id=m.provider_message_id,
        workflow_name=workflow_name,
        execution_id=m.execution_id,
        sent_at=m.sent_at,
        delivery_events=list((m.detail or {}).get("deliveryEvents") or []),
    )
