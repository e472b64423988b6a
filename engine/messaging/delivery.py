"""The outbox: every message an action sends is a row first; adapters deliver later.

With no adapter configured for a channel the message is ``recorded`` (shown in the UI,
nothing leaves the machine). With one, it is ``pending`` and a ``deliver`` due-work row
hands it to the adapter from the worker, with durable retries.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from engine.errors import InvalidInput
from engine.messaging.optout import opt_out_reason
from engine.store.models import DueKind, DueWork, OutboxMessage, OutboxStatus
from engine.store.runs import due_row, outbox_row
from engine.tenant_settings import settings_of
from engine.uow import UnitOfWork, unit_of_work


def default_channel(trigger: dict[str, Any], recipient: str | None) -> str:
    """The trigger's channel, else guessed from the recipient (e-mail address or phone)."""
    if trigger.get("channel"):
        return trigger["channel"]
    if recipient and "@" in recipient:
        return "email"
    return "sms" if recipient and any(ch.isdigit() for ch in recipient) else "web"


def normalize_recipient(channel: str, recipient: str, tenant: dict[str, Any]) -> str:
    """E.164 for phone channels, a checked address for e-mail; raises InvalidRecipient."""
    if channel not in ("whatsapp", "sms", "email"):
        return recipient
    region = settings_of(tenant.get("settings")).default_region
    if isinstance(recipient, str) and isinstance(region, str):
        return _normalized(channel, recipient, region)
    return _normalize(channel, recipient, region)


def _normalize(channel: str, recipient: str, region: str) -> str:
    from engine.channels.phones import normalize_email, normalize_phone

    if channel in ("whatsapp", "sms"):
        return normalize_phone(recipient, region)
    return normalize_email(recipient)


#: Normalising is a pure function of its arguments (phone parsing costs ~0.1 ms); contacts
#: write again and again, so recent results are kept. Failures raise and are not kept.
_normalized = lru_cache(maxsize=4096)(_normalize)


def configured_adapter(tenant: dict[str, Any], channel: str) -> str | None:
    """The adapter name configured for the channel in tenant settings, or None (outbox only)."""
    conf = settings_of(tenant.get("settings")).channels.block(channel)
    adapter = conf.adapter if conf else None
    return adapter if adapter and adapter not in ("outbox", "outbox_only") else None


def queue_message(
    uow: UnitOfWork,
    *,
    tenant: dict[str, Any],
    execution_id: str | None,
    step_id: str | None,
    channel: str,
    recipient: str | None,
    body: str,
    subject: str | None,
    now: datetime,
    trigger: dict[str, Any] | None = None,
    test: bool = False,
) -> dict[str, Any]:
    """Write the message to the outbox (in the caller's unit of work) and return the step output.

    Tenant policies apply here: a frequency cap per contact and day suppresses, quiet hours
    defer (durably, to the end of the quiet period). A direct reply within minutes of the
    contact's own message is exempt from both.

    ``test`` (test console): the row is flagged, never handed to an adapter (``simulated``),
    and caps count only other test messages, so tests and real members never affect each other.
    """
    if not recipient:
        raise InvalidInput(
            "no recipient: set one in the action or send from a trigger that has a sender", field="recipient"
        )
    recipient = normalize_recipient(channel, recipient, tenant)
    adapter = None if test else configured_adapter(tenant, channel)
    status: str = OutboxStatus.SIMULATED if test else (OutboxStatus.PENDING if adapter else OutboxStatus.RECORDED)
    reason = _opt_out_reason(uow, tenant, recipient, test)  # the member wrote STOP (engine/messaging/optout.py)
    policy: dict[str, Any] = (
        {"status": OutboxStatus.SUPPRESSED, "reason": reason}
        if reason
        else _policy(uow, tenant, recipient, now, trigger or {}, test)
    )
    status = policy.get("status") or status
    row = outbox_row(
        now,
        tenant_id=tenant["id"],
        execution_id=execution_id,
        step_run_id=step_id,
        channel=channel,
        recipient=recipient,
        subject=subject,
        body=body,
        status=status,
        adapter=adapter or "outbox",
        error=policy.get("reason"),
        detail={"policy": _public(policy)} if policy else {},
        deliver_after=policy.get("deferredUntil"),
        is_test=test,
    )
    uow.insert(OutboxMessage, row)  # buffered in the runner's transactions (engine/runner/buffer.py)
    due_at = policy.get("deferredUntil") or (now if adapter else None)
    if due_at and status != OutboxStatus.SUPPRESSED:
        uow.insert(
            DueWork,
            due_row(now, tenant_id=tenant["id"], kind=DueKind.DELIVER, due_at=due_at, payload={"outboxId": row["id"]}),
        )
    out = {
        "outboxId": row["id"],
        "channel": channel,
        "recipient": recipient,
        "status": status,
        "adapter": row["adapter"],
    }
    return {**out, "policy": _public(policy)} if policy else out


def _opt_out_reason(uow: UnitOfWork, tenant: dict[str, Any], recipient: str, test: bool = False) -> str | None:
    # Only a studio where someone opted out looks (so most messages never touch the session);
    # a test conversation keeps its own opt state (engine/messaging/optout.py), looked up for each test message.
    if test or settings_of(tenant.get("settings")).opt_outs_recorded:
        return opt_out_reason(uow.session, tenant, recipient, test=test)
    return None


def _public(policy: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in policy.items()}


def _policy(
    uow: UnitOfWork, tenant: dict[str, Any], recipient: str, now: datetime, trigger: dict[str, Any], test: bool = False
) -> dict[str, Any]:
    """Quiet hours and frequency cap for this message: {} when it may go now."""
    settings = settings_of(tenant.get("settings"))
    quiet, cap = settings.quiet_hours, settings.frequency_cap
    if not quiet and cap is None:
        return {}
    from datetime import time

    from engine.channels.policy import QuietHours, frequency_cap_reached, is_direct_reply, next_allowed_time

    received = trigger.get("receivedAt")
    if trigger.get("from") == recipient and received and is_direct_reply(datetime.fromisoformat(received), now):
        return {"exempt": "direct reply to the contact's own message"}
    tz = tenant["tz"]
    local = now.astimezone(tz)
    if cap is not None:
        day_start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        sent = _sent_since(uow.session, tenant["id"], recipient, day_start, test)
        if frequency_cap_reached(sent, int(cap)):
            return {
                "status": OutboxStatus.SUPPRESSED,
                "reason": f"frequency cap: {recipient} already got {sent} automated message(s) today (limit {cap})",
            }
    if quiet:
        hours = QuietHours(time.fromisoformat(quiet.start), time.fromisoformat(quiet.end))
        allowed = next_allowed_time(local, hours)
        if allowed is not None:
            return {
                "status": OutboxStatus.DEFERRED,
                "deferredUntil": allowed.astimezone(now.tzinfo),
                "reason": f"quiet hours {quiet.start}-{quiet.end}: "
                f"deferred to {allowed.isoformat(timespec='minutes')}",
            }
    return {}


def _sent_since(session: Session, tenant_id: str, recipient: str, since: datetime, test: bool = False) -> int:
    """Messages counted by the frequency cap: live ones for live runs, test ones for test runs."""
    from sqlmodel import func, select

    counted: tuple[OutboxStatus, ...] = (
        OutboxStatus.RECORDED,
        OutboxStatus.SENT,
        OutboxStatus.PENDING,
        OutboxStatus.DEFERRED,
    )
    if test:
        counted = (*counted, OutboxStatus.SIMULATED)
    return session.exec(
        select(func.count())
        .select_from(OutboxMessage)
        .where(
            OutboxMessage.tenant_id == tenant_id,
            OutboxMessage.recipient == recipient,
            col(OutboxMessage.created_at) >= since,
            col(OutboxMessage.status).in_(counted),
            OutboxMessage.is_test == test,
        )
    ).one()


def schedule_follow_up(
    uow: UnitOfWork,
    *,
    tenant_id: str,
    execution_id: str,
    step_id: str,
    due_at: datetime,
    channel: str,
    recipient: str | None,
    body: str,
    test: bool = False,
) -> str:
    """A durable follow-up: the worker writes the message to the outbox when it is due."""
    payload: dict[str, Any] = {"channel": channel, "recipient": recipient, "body": body, "stepId": step_id}
    if test:
        payload["test"] = True
    item = due_row(
        uow.now(),
        tenant_id=tenant_id,
        kind=DueKind.FOLLOW_UP,
        due_at=due_at,
        execution_id=execution_id,
        payload=payload,
    )
    uow.insert(DueWork, item)
    return item["id"]


def deliver(db, outbox_id: str, *, now: datetime) -> str:
    """Hand a pending outbox message to its channel's adapter (called by the worker)."""
    from engine.channels.base import OutgoingMessage
    from engine.channels.registry import adapter_for
    from engine.settings import get_settings
    from engine.store.models import Tenant

    with unit_of_work(db, clock=lambda: now) as uow:
        s = uow.session
        msg = s.get(OutboxMessage, outbox_id)
        if msg is None or msg.status not in (OutboxStatus.PENDING, OutboxStatus.DEFERRED):
            return msg.status if msg else "missing"
        reason = _opted_out(s, msg)
        if reason:  # the member opted out after the message was queued (e.g. deferred by quiet hours)
            msg.status, msg.error = OutboxStatus.SUPPRESSED, reason
            s.add(msg)
            return msg.status
        if msg.adapter == "outbox":  # deferred by quiet hours, no adapter: now it counts as recorded
            msg.status, msg.sent_at = (OutboxStatus.SIMULATED if msg.is_test else OutboxStatus.RECORDED), now
            s.add(msg)
            return msg.status
        tenant = s.get(Tenant, msg.tenant_id)
        assert tenant is not None  # the message's tenant (foreign key)
        from engine.services.channel_settings import resolved_tenant_settings

        settings, channel = resolved_tenant_settings(s, msg.tenant_id, dict(tenant.settings or {})), msg.channel
        outgoing = OutgoingMessage(channel=channel, recipient=msg.recipient, body=msg.body, subject=msg.subject)
        last_inbound = _last_inbound_at(s, msg.tenant_id, msg.recipient, channel)
    adapter = adapter_for(channel, settings, allow_base_url_override=get_settings().allow_provider_base_url)
    result = adapter.send(outgoing, last_inbound_at=last_inbound, now=now)
    with unit_of_work(db, clock=lambda: now) as uow:
        msg = uow.session.get(OutboxMessage, outbox_id)
        assert msg is not None  # read above; outbox rows are overwritten by retention, never deleted alone
        msg.status, msg.provider_message_id, msg.error = result.status, result.provider_message_id, result.error
        msg.detail = {**(msg.detail or {}), **(result.detail or {})}
        msg.sent_at = now if result.status == "sent" else None
        uow.session.add(msg)
    return result.status


def _opted_out(session: Session, msg: OutboxMessage) -> str | None:
    from engine.messaging.optout import opt_out_reason
    from engine.store.models import Tenant

    tenant = session.get(Tenant, msg.tenant_id)
    settings = tenant.settings if tenant else {}
    return opt_out_reason(session, {"id": msg.tenant_id, "settings": settings}, msg.recipient, test=msg.is_test)


def _last_inbound_at(session: Session, tenant_id: str, sender: str, channel: str | None = None) -> datetime | None:
    """When the contact last wrote to us (on ``channel`` when given: WhatsApp's 24-hour window
    counts only the contact's WhatsApp messages)."""
    from sqlmodel import func, select

    from engine.store.models import EventRecord

    where = [EventRecord.tenant_id == tenant_id, EventRecord.sender == sender, EventRecord.is_test == sa.false()]
    if channel == "whatsapp":
        where.append(EventRecord.channel == channel)
    return session.exec(select(func.max(EventRecord.received_at)).where(*where)).one()
