"""A delivery-status report from a provider, and how reports move outbox messages.

Reports find their message by the provider's id, or (WhatsApp) by our own reference echoed
back in ``biz_opaque_callback_data`` when the provider's answer to our send was lost and we
never learnt its id: such a report settles a message whose outcome was unknown. Reports move
messages only through the state machine (``engine/messaging/outbox_states.py``) and only forward
(:data:`RANK`; statuses arrive out of order).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from engine.messaging import outbox_states as states
from engine.store.models import OutboxMessage, OutboxStatus, utcnow
from engine.uow import Clock, unit_of_work

logger = logging.getLogger(__name__)

#: Provider status -> outbox status (WhatsApp and Twilio names). Twilio's queued/sending mean
#: Twilio has the message: sent as far as the studio is concerned.
STATUS_MAP: dict[str, str] = {
    "queued": OutboxStatus.SENT,
    "accepted": OutboxStatus.SENT,
    "sending": OutboxStatus.SENT,
    "sent": OutboxStatus.SENT,
    "delivered": OutboxStatus.DELIVERED,
    "read": OutboxStatus.READ,
    "failed": OutboxStatus.FAILED,
    "undelivered": OutboxStatus.FAILED,
}
#: A later report never moves a message back (statuses may arrive out of order).
RANK: dict[str, int] = states.PROVIDER_RANK


@dataclass
class StatusUpdate:
    provider_message_id: str
    status: str
    error: str | None = None
    at: str | None = None
    reference: str | None = None  # our own reference echoed back by the provider (WhatsApp biz_opaque_callback_data)


_ob = OutboxMessage.__table__.c


def _find(conn: Any, tenant_id: str, upd: StatusUpdate) -> dict[str, Any] | None:
    """The message the report is about: by the provider's id, else by our reference (the outbox
    id) when that message has no provider id yet or the same one."""
    lock = conn.dialect.name == "postgresql"
    stmt = sa.select(OutboxMessage.__table__).where(
        _ob.tenant_id == tenant_id, _ob.provider_message_id == upd.provider_message_id
    )
    row = conn.execute(stmt.with_for_update() if lock else stmt).mappings().first()
    if row is None and upd.reference:
        found = states.load(conn, upd.reference, tenant_id=tenant_id, lock=lock)
        if found is not None and found["provider_message_id"] in (None, upd.provider_message_id):
            return found
    return dict(row) if row is not None else None


def apply_status_updates(db: Engine, tenant_id: str, updates: list[StatusUpdate], *, clock: Clock = utcnow) -> int:
    """Move the matching outbox messages forward (sent < delivered < read; failed keeps the error).

    Returns how many messages changed. Unknown ids (messages not sent by us) are ignored;
    a report that would move a message backwards (out-of-order callbacks) is only recorded in
    the message's delivery history.
    """
    changed = 0
    for upd in updates:
        status = STATUS_MAP.get(upd.status.lower())
        if status is None:
            logger.info("ignored provider status %r for %s", upd.status, upd.provider_message_id)
            continue
        with unit_of_work(db, clock=clock) as uow:
            conn = uow.connection()
            row = _find(conn, tenant_id, upd)
            if row is None:
                logger.info("status %s for unknown provider message %s", upd.status, upd.provider_message_id)
                continue
            event = {
                "status": upd.status,
                "at": upd.at or uow.now().isoformat(),
                **({"error": upd.error} if upd.error else {}),
            }
            values: dict[str, Any] = {"detail": states.with_event(row, event)}
            if row["provider_message_id"] is None:  # found by our reference: the send's answer was lost
                values["provider_message_id"] = upd.provider_message_id
            if states.is_forward_report(row["status"], status):
                if status == OutboxStatus.FAILED:
                    values["error"] = upd.error or f"provider reported {upd.status}"
                elif row["status"] in (OutboxStatus.SENDING, OutboxStatus.UNKNOWN):
                    values.update(error=None, sent_at=row["sent_at"] or uow.now())
                if states.move(conn, row, status, **values):
                    changed += 1
                    continue
                values.pop("error", None)  # lost the race: keep only the history and the id
            states.update_fields(
                conn, row["id"], **{k: v for k, v in values.items() if k in ("detail", "provider_message_id")}
            )
    return changed
