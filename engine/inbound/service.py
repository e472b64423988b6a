"""Turn verified provider webhooks into events (idempotent by provider message id) and
delivery-status updates of outbox messages. Signature checks happen before anything here."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from engine.inbound.updates import RANK, STATUS_MAP, StatusUpdate
from engine.store import rollups
from engine.store.models import OutboxMessage, utcnow
from engine.uow import Clock, unit_of_work

logger = logging.getLogger(__name__)


def ingest_events(db: Engine, tenant_id: str, events: list[dict[str, Any]]) -> dict[str, int]:
    """Store each event and start its workflows; a provider's retry (same message id) is a duplicate.

    External steps (remote AI, webhooks) are handed to the worker so the provider gets its
    answer at once; the reply messages themselves are delivered by the worker anyway.
    """
    from engine.services.runs import runner_for

    counts = {"events": 0, "duplicates": 0, "executions": 0}
    runner = runner_for(db)
    for event in events:
        result = runner.ingest(tenant_id, event, defer_external=True)
        if result.duplicate:
            counts["duplicates"] += 1
            logger.info(
                "inbound %s %s is a duplicate (event %s)",
                event["triggerType"],
                event.get("idempotencyKey"),
                result.event_id,
            )
            continue
        counts["events"] += 1
        counts["executions"] += len(result.execution_ids)
    return counts


def apply_status_updates(db: Engine, tenant_id: str, updates: list[StatusUpdate], *, clock: Clock = utcnow) -> int:
    """Move the matching outbox messages forward (sent < delivered < read; failed keeps the error).

    Returns how many messages changed. Unknown ids (messages not sent by us) are ignored;
    a report that would move a message backwards (out-of-order callbacks) is only logged.
    """
    changed = 0
    for upd in updates:
        status = STATUS_MAP.get(upd.status.lower())
        if status is None:
            logger.info("ignored provider status %r for %s", upd.status, upd.provider_message_id)
            continue
        with unit_of_work(db, clock=clock) as uow:
            s = uow.session
            stmt = select(OutboxMessage).where(
                OutboxMessage.tenant_id == tenant_id, OutboxMessage.provider_message_id == upd.provider_message_id
            )
            if s.get_bind().dialect.name == "postgresql":
                stmt = stmt.with_for_update()
            msg = s.exec(stmt).first()
            if msg is None:
                logger.info("status %s for unknown provider message %s", upd.status, upd.provider_message_id)
                continue
            history = list((msg.detail or {}).get("deliveryEvents") or [])
            history.append(
                {
                    "status": upd.status,
                    "at": upd.at or uow.now().isoformat(),
                    **({"error": upd.error} if upd.error else {}),
                }
            )
            detail = {**(msg.detail or {}), "deliveryEvents": history[-20:]}
            values: dict[str, Any] = {"detail": detail}
            if RANK.get(status, 0) > RANK.get(msg.status, 0):
                values["status"] = status
                if status == "failed":
                    values["error"] = upd.error or f"provider reported {upd.status}"
                changed += 1
            before = rollups.outbox_values(msg)  # (the ORM UPDATE changes msg too)
            s.execute(sa.update(OutboxMessage).where(col(OutboxMessage.id) == msg.id).values(**values))
            if "status" in values:  # the Insights' messages by outcome, in this transaction
                deltas = rollups.Deltas()
                deltas.outbox_status(before, values["status"])
                rollups.apply(s, deltas)
    return changed
