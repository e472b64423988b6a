"""The outbox: every message an action sends is a row first; adapters deliver later.

With no adapter configured for a channel the message is ``recorded`` (shown in the UI,
nothing leaves the machine). With one, it is ``pending`` and a ``deliver`` due-work row
hands it to the adapter from the worker, with durable retries.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from engine.errors import InvalidInput
from engine.store.models import DueKind, DueWork, OutboxMessage, OutboxStatus


def default_channel(trigger: dict[str, Any], recipient: str | None) -> str:
    """The trigger's channel, else guessed from the recipient (e-mail address or phone)."""
    if trigger.get("channel"):
        return trigger["channel"]
    if recipient and "@" in recipient:
        return "email"
    return "sms" if recipient and any(ch.isdigit() for ch in recipient) else "web"


def configured_adapter(tenant: dict[str, Any], channel: str) -> str | None:
    """The adapter name configured for the channel in tenant settings, or None (outbox only)."""
    conf = (tenant.get("settings") or {}).get("channels", {}).get(channel) or {}
    adapter = conf.get("adapter")
    return adapter if adapter and adapter not in ("outbox", "outbox_only") else None


def queue_message(
    session: Session, *, tenant: dict[str, Any], execution_id: str | None, step_id: str | None, channel: str,
    recipient: str | None, body: str, subject: str | None, now: datetime, trigger: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the message to the outbox (in the caller's transaction) and return the step output."""
    if not recipient:
        raise InvalidInput("no recipient: set one in the action or send from a trigger that has a sender", field="recipient")
    adapter = configured_adapter(tenant, channel)
    msg = OutboxMessage(tenant_id=tenant["id"], execution_id=execution_id, step_run_id=step_id, channel=channel,
                        recipient=recipient, subject=subject, body=body, adapter=adapter or "outbox",
                        status=OutboxStatus.PENDING if adapter else OutboxStatus.RECORDED, created_at=now)
    session.add(msg)
    if adapter:
        session.add(DueWork(tenant_id=tenant["id"], kind=DueKind.DELIVER, due_at=now, payload={"outboxId": msg.id}))
    return {"outboxId": msg.id, "channel": channel, "recipient": recipient, "status": msg.status, "adapter": msg.adapter}


def schedule_follow_up(
    session: Session, *, tenant_id: str, execution_id: str, step_id: str, due_at: datetime, channel: str,
    recipient: str | None, body: str,
) -> str:
    """A durable follow-up: the worker writes the message to the outbox when it is due."""
    item = DueWork(tenant_id=tenant_id, kind=DueKind.FOLLOW_UP, due_at=due_at, execution_id=execution_id,
                   payload={"channel": channel, "recipient": recipient, "body": body, "stepId": step_id})
    session.add(item)
    return item.id


def deliver(db, outbox_id: str, *, now: datetime) -> str:
    """Hand a pending outbox message to its channel's adapter (called by the worker)."""
    from engine.channels.base import OutgoingMessage
    from engine.channels.registry import adapter_for
    from engine.settings import get_settings
    from engine.store.db import session_scope
    from engine.store.models import Tenant

    with session_scope(db) as s:
        msg = s.get(OutboxMessage, outbox_id)
        if msg is None or msg.status != OutboxStatus.PENDING:
            return msg.status if msg else "missing"
        tenant = s.get(Tenant, msg.tenant_id)
        settings, channel = dict(tenant.settings or {}), msg.channel
        outgoing = OutgoingMessage(channel=channel, recipient=msg.recipient, body=msg.body, subject=msg.subject)
        last_inbound = _last_inbound_at(s, msg.tenant_id, msg.recipient)
    adapter = adapter_for(channel, settings, allow_base_url_override=get_settings().allow_provider_base_url)
    result = adapter.send(outgoing, last_inbound_at=last_inbound, now=now)
    with session_scope(db) as s:
        msg = s.get(OutboxMessage, outbox_id)
        msg.status, msg.provider_message_id, msg.error = result.status, result.provider_message_id, result.error
        msg.detail = {**(msg.detail or {}), **(result.detail or {})}
        msg.sent_at = now if result.status == "sent" else None
        s.add(msg)
    return result.status


def _last_inbound_at(session: Session, tenant_id: str, sender: str) -> datetime | None:
    from sqlmodel import func, select

    from engine.store.models import EventRecord

    return session.exec(select(func.max(EventRecord.received_at)).where(
        EventRecord.tenant_id == tenant_id, EventRecord.sender == sender)).one()
