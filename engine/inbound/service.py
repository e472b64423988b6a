"""Turn verified provider webhooks into events (idempotent by provider message id) and
delivery-status updates of outbox messages. Signature checks happen before anything here."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.engine import Engine

from engine.inbound.updates import apply_status_updates

logger = logging.getLogger(__name__)

#: Status reports are applied in engine/inbound/updates.py (the outbox's owner); routes import both from here.
__all__ = ["apply_status_updates", "ingest_events"]


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
