"""The outbox: every message an action sends is a row first; adapters deliver later.

With no adapter configured for a channel the message is ``recorded`` (shown in the UI,
nothing leaves the machine). With one, it is ``pending`` and a ``deliver`` due-work row
hands it to the adapter from the worker, with durable retries.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from engine.errors import InvalidInput
from engine.messaging import outbox_states as states
from engine.messaging.optout import opt_out_reason
from engine.store.models import DueKind, DueStatus, DueWork, OutboxMessage, OutboxStatus, utcnow
from engine.store.runs import close_due, due_row, hold_due, lock_due, outbox_row, reschedule_due
from engine.tenant_settings import settings_of
from engine.uow import Clock, UnitOfWork, unit_of_work

logger = logging.getLogger(__name__)

#: Backoff of transient provider errors: up to 30 s, 1, 2, 4 minutes (full jitter, Retry-After honoured).
RETRY_BASE_SECONDS = 30.0


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
    states.check_initial(status)
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


#: What the frequency cap counts: every message that went out, may have, or is on its way
#: (not the failed, suppressed or simulated ones).
CAP_COUNTED = frozenset(OutboxStatus) - {OutboxStatus.FAILED, OutboxStatus.SUPPRESSED, OutboxStatus.SIMULATED}


def _sent_since(session: Session, tenant_id: str, recipient: str, since: datetime, test: bool = False) -> int:
    """Messages counted by the frequency cap: live ones for live runs, test ones for test runs."""
    from sqlmodel import func, select

    counted = sorted(CAP_COUNTED | {OutboxStatus.SIMULATED} if test else CAP_COUNTED)
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


# --------------------------------------------------------------------------- sending


@dataclass(frozen=True)
class Claim:
    """The worker's lease on a ``deliver`` due item. A provider call begins only while the item
    is still this worker's, and the item ends in the transaction that records the outcome."""

    item_id: str
    worker: str
    lease: timedelta


@dataclass
class _Send:
    """A message marked ``sending`` (committed), ready for its one provider call."""

    row: dict[str, Any]
    adapter: Any
    message: Any
    last_inbound_at: datetime | None


@dataclass
class _Outcome:
    """What the provider call came to: the message's next status, its columns, the history entry."""

    status: str
    values: dict[str, Any] = field(default_factory=dict)
    event: dict[str, Any] = field(default_factory=dict)
    next_at: datetime | None = None


#: Written on a message whose sender stopped between "sending" and the provider's answer.
SENDER_STOPPED = (
    "outcome unknown: the worker stopped while sending (the provider may have it). "
    "Mark it as sent, or send it again, from the outbox"
)


def deliver(
    db,
    outbox_id: str,
    *,
    clock: Clock | None = None,
    claim: Claim | None = None,
    now: datetime | None = None,
) -> str:
    """Hand one message to its channel's adapter (the worker's ``deliver`` item); its status after.

    At most one provider call per message and attempt: (1) in one transaction the message moves
    to ``sending`` (compare-and-set) while the worker still holds ``claim``; (2) the provider is
    called with no transaction open; (3) the outcome and the due item's end commit together
    (``sent``, ``retrying`` with the next time, ``failed`` with the error and attempts, or
    ``unknown`` when the answer was lost). A message found still ``sending`` in (1) belongs to
    a worker that died: it becomes ``unknown``, never sent again. An unknown outcome is looked
    up where the provider offers it (:func:`settle_by_lookup`).
    """
    clock = clock or ((lambda: now) if now is not None else utcnow)
    begun = _begin(db, outbox_id, clock, claim)
    if isinstance(begun, str):
        return settle_by_lookup(db, outbox_id, clock=clock) if begun == OutboxStatus.UNKNOWN else begun
    status = _finish(db, begun, _call(begun, clock()), clock, claim)
    return settle_by_lookup(db, outbox_id, clock=clock) if status == OutboxStatus.UNKNOWN else status


def _begin(db, outbox_id: str, clock: Clock, claim: Claim | None) -> _Send | str:
    """Step (1): the message is ``sending`` when this returns a :class:`_Send`; else its status."""
    from engine.channels.base import OutboxOnlyAdapter, OutgoingMessage
    from engine.channels.registry import adapter_for
    from engine.errors import EngineError
    from engine.services.channel_settings import resolved_tenant_settings
    from engine.settings import get_settings
    from engine.store.models import Tenant

    with unit_of_work(db, clock=clock) as uow:
        conn, now, S = uow.connection(), uow.now(), OutboxStatus
        if claim is not None and not hold_due(conn, claim.item_id, claim.worker, now + claim.lease):
            logger.info("deliver item %s is no longer %s's: not sending", claim.item_id, claim.worker)
            return "lost"
        row = states.load(conn, outbox_id, lock=True)
        if row is None:
            _end_item(conn, claim, now)
            return "missing"

        def end(to: str, event: dict[str, Any] | None = None, failed: str | None = None, **values: Any) -> str:
            detail = states.with_event(row, {"status": to, "at": now.isoformat(), **event}) if event else row["detail"]
            states.move(conn, row, to, detail=detail, **values)
            _end_item(conn, claim, now, failed=failed)
            return to

        if row["status"] == S.SENDING:  # its sender died or lost its lease between (1) and (3)
            logger.warning("outbox message %s was left sending: outcome unknown", outbox_id)
            return end(S.UNKNOWN, {"error": SENDER_STOPPED}, error=SENDER_STOPPED)
        if row["status"] not in states.SENDABLE:  # settled meanwhile (a cancel, the owner)
            _end_item(conn, claim, now)
            return row["status"]
        reason = _opted_out(uow.session, row)
        if reason:  # the member opted out after the message was queued (e.g. deferred by quiet hours)
            return end(S.SUPPRESSED, error=reason)
        no_provider = S.SIMULATED if row["is_test"] else S.RECORDED
        if row["adapter"] == "outbox":  # deferred by quiet hours, no adapter: now it counts as recorded
            return end(no_provider, sent_at=now)
        tenant = uow.session.get(Tenant, row["tenant_id"])
        assert tenant is not None  # the message's tenant (foreign key)
        settings = resolved_tenant_settings(uow.session, row["tenant_id"], dict(tenant.settings or {}))
        try:
            adapter = adapter_for(
                row["channel"], settings, allow_base_url_override=get_settings().allow_provider_base_url
            )
        except EngineError as exc:  # the channel's settings are invalid: no attempt can work until fixed
            return end(S.FAILED, {"error": exc.message}, failed=exc.message, error=exc.message)
        if isinstance(adapter, OutboxOnlyAdapter):  # the provider was disconnected since it was queued
            return end(no_provider, sent_at=now)
        message = OutgoingMessage(
            channel=row["channel"], recipient=row["recipient"], body=row["body"], subject=row["subject"]
        )
        last_inbound = _last_inbound_at(uow.session, row["tenant_id"], row["recipient"], row["channel"])
        attempts = row["attempts"] + 1
        if not states.move(conn, row, S.SENDING, attempts=attempts, sending_at=now, next_attempt_at=None):
            return "lost"
        return _Send(
            {**row, "status": S.SENDING, "attempts": attempts, "sending_at": now}, adapter, message, last_inbound
        )


def _call(send: _Send, now: datetime) -> _Outcome:
    """Step (2): the one provider call, no transaction open; every failure becomes an outcome."""
    from engine.errors import EngineError, OutcomeUnknown, PermanentError, RetryableError
    from engine.outbound.retry import backoff_delay

    S, attempt, at = OutboxStatus, send.row["attempts"], now.isoformat()
    try:
        result = send.adapter.send(
            send.message, last_inbound_at=send.last_inbound_at, now=now, reference=send.row["id"]
        )
    except OutcomeUnknown as exc:
        return _Outcome(
            S.UNKNOWN, {"error": exc.message}, {"status": S.UNKNOWN, "at": at, "attempt": attempt, "error": exc.message}
        )
    except RetryableError as exc:
        if attempt >= states.MAX_ATTEMPTS:
            error = f"{exc.message} (gave up after {attempt} attempts)"
            return _Outcome(
                S.FAILED, {"error": error}, {"status": S.FAILED, "at": at, "attempt": attempt, "error": exc.message}
            )
        next_at = now + timedelta(
            seconds=backoff_delay(attempt, base=RETRY_BASE_SECONDS, cap=3600.0, retry_after=exc.retry_after)
        )
        return _Outcome(
            S.RETRYING,
            {"error": exc.message, "next_attempt_at": next_at},
            {"status": S.RETRYING, "at": at, "attempt": attempt, "error": exc.message, "nextAt": next_at.isoformat()},
            next_at,
        )
    except (PermanentError, EngineError) as exc:  # refused for good (bad token, bad number, ...)
        return _Outcome(
            S.FAILED, {"error": exc.message}, {"status": S.FAILED, "at": at, "attempt": attempt, "error": exc.message}
        )
    except Exception as exc:  # a bug, maybe after the request went out: never send blindly again
        logger.exception("sending outbox message %s failed unexpectedly", send.row["id"])
        error = f"outcome unknown: unexpected {type(exc).__name__} while sending: {exc}"
        return _Outcome(
            S.UNKNOWN, {"error": error}, {"status": S.UNKNOWN, "at": at, "attempt": attempt, "error": error}
        )
    detail = {**(send.row["detail"] or {}), **(result.detail or {})}
    if result.status == "sent":
        values = {"provider_message_id": result.provider_message_id, "sent_at": now, "error": None, "detail": detail}
        return _Outcome(S.SENT, values)
    status = {"suppressed": S.SUPPRESSED, "recorded": S.RECORDED}.get(result.status, S.FAILED)
    return _Outcome(
        status, {"error": result.error, "detail": detail}, {"status": status, "at": at, "error": result.error}
    )


def _finish(db, send: _Send, outcome: _Outcome, clock: Clock, claim: Claim | None) -> str:
    """Step (3): the outcome and the due item's end, in one transaction; the message's status."""
    S = OutboxStatus
    with unit_of_work(db, clock=clock) as uow:
        conn, now = uow.connection(), uow.now()
        if claim is not None:
            lock_due(conn, claim.item_id)  # the item, then the message: the order _begin locks them in
        row = states.load(conn, send.row["id"], lock=True)
        assert row is not None  # outbox rows are overwritten by retention and erasure, never deleted alone
        values = dict(outcome.values)
        detail = values.pop("detail", row["detail"])
        if outcome.event:
            detail = states.with_event({**row, "detail": detail}, outcome.event)
        if row["status"] in (S.SENDING, S.UNKNOWN) and states.allowed(row["status"], outcome.status):
            # UNKNOWN: another worker took this one for dead meanwhile; the answer settles it.
            states.move(conn, row, outcome.status, detail=detail, **values)
            status = outcome.status
        elif outcome.status == S.SENT and row["status"] in (*states.ACCEPTED, S.FAILED):
            # A provider report (with our reference) arrived before the answer: keep its status.
            states.update_fields(
                conn,
                row["id"],
                provider_message_id=row["provider_message_id"] or values.get("provider_message_id"),
                sent_at=row["sent_at"] or now,
            )
            status = row["status"]
        else:
            logger.warning(
                "outbox message %s is %s; the send's outcome %s is not applied",
                row["id"],
                row["status"],
                outcome.status,
            )
            status = row["status"]
        if claim is not None and status == S.RETRYING and outcome.next_at is not None:
            reschedule_due(
                conn,
                claim.item_id,
                claim.worker,
                {
                    "status": DueStatus.PENDING,
                    "due_at": outcome.next_at,
                    "locked_until": None,
                    "error": values.get("error"),
                },
            )
        else:
            _end_item(conn, claim, now, failed=values.get("error") if status == S.FAILED else None)
    return status


def _end_item(conn: Any, claim: Claim | None, now: datetime, *, failed: str | None = None) -> None:
    """Close the deliver item (failed with the error when the message failed) if still ours."""
    if claim is None:
        return
    if failed is None:
        close_due(conn, claim.item_id, claim.worker, now)
    else:
        reschedule_due(
            conn,
            claim.item_id,
            claim.worker,
            {"status": DueStatus.FAILED, "done_at": now, "locked_until": None, "error": failed},
        )


def gave_up(conn: Any, outbox_id: str | None, *, error: str, now: datetime) -> None:
    """The worker gave up on a deliver item for a reason outside the provider call (the database,
    a bug): its message ends with it, in the same transaction: ``failed`` when no call had
    begun, ``unknown`` when one had (it may have gone out)."""
    row = states.load(conn, outbox_id, lock=True) if outbox_id else None
    if row is None:
        return
    if row["status"] == OutboxStatus.SENDING:
        to, error = OutboxStatus.UNKNOWN, f"outcome unknown: {error}"
    elif row["status"] in states.SENDABLE:
        to = OutboxStatus.FAILED
    else:
        return
    states.move(
        conn, row, to, error=error, detail=states.with_event(row, {"status": to, "at": now.isoformat(), "error": error})
    )


def settle_by_lookup(db, outbox_id: str, *, clock: Clock = utcnow) -> str:
    """Ask the provider whether an ``unknown`` message went out, where its API can tell (Twilio's
    message list); ``sent`` when it did, else it stays ``unknown`` with what the look-up found,
    for the owner to decide. Returns the message's status."""
    from engine.channels.base import FindsSentMessages, OutgoingMessage
    from engine.channels.registry import adapter_for
    from engine.errors import EngineError
    from engine.services.channel_settings import resolved_tenant_settings
    from engine.settings import get_settings
    from engine.store.models import Tenant

    with unit_of_work(db, clock=clock, read_only=True) as uow:
        row = states.load(uow.connection(), outbox_id)
        if row is None or row["status"] != OutboxStatus.UNKNOWN:
            return row["status"] if row else "missing"
        tenant = uow.session.get(Tenant, row["tenant_id"])
        settings = (
            resolved_tenant_settings(uow.session, row["tenant_id"], dict(tenant.settings or {})) if tenant else {}
        )
    try:
        adapter = adapter_for(row["channel"], settings, allow_base_url_override=get_settings().allow_provider_base_url)
    except EngineError:
        return OutboxStatus.UNKNOWN
    if not isinstance(adapter, FindsSentMessages):
        return OutboxStatus.UNKNOWN
    since = row["sending_at"] or row["created_at"]
    message = OutgoingMessage(
        channel=row["channel"], recipient=row["recipient"], body=row["body"], subject=row["subject"]
    )
    found, note = None, ""
    try:
        found = adapter.find_sent(message, reference=outbox_id, since=since)
    except EngineError as exc:
        note = f"look-up failed: {exc.message}"
    with unit_of_work(db, clock=clock) as uow:
        conn, now = uow.connection(), uow.now()
        row = states.load(conn, outbox_id, lock=True)
        if row is None or row["status"] != OutboxStatus.UNKNOWN:
            return row["status"] if row else "missing"
        if found is not None:
            event = {
                "status": "sent",
                "at": now.isoformat(),
                "by": "look-up",
                "providerMessageId": found.provider_message_id,
            }
            states.move(
                conn,
                row,
                OutboxStatus.SENT,
                provider_message_id=found.provider_message_id,
                sent_at=since,
                error=None,
                detail=states.with_event(row, event),
            )
            logger.info("outbox message %s settled by a look-up: sent as %s", outbox_id, found.provider_message_id)
            return OutboxStatus.SENT
        note = note or f"the provider lists no such message since {since.isoformat(timespec='seconds')}"
        states.update_fields(
            conn, outbox_id, detail=states.with_event(row, {"status": "unknown", "at": now.isoformat(), "lookup": note})
        )
    return OutboxStatus.UNKNOWN


def _opted_out(session: Session, row: dict[str, Any]) -> str | None:
    from engine.messaging.optout import opt_out_reason
    from engine.store.models import Tenant

    tenant = session.get(Tenant, row["tenant_id"])
    settings = tenant.settings if tenant else {}
    return opt_out_reason(
        session, {"id": row["tenant_id"], "settings": settings}, row["recipient"], test=bool(row.get("is_test"))
    )


def _last_inbound_at(session: Session, tenant_id: str, sender: str, channel: str | None = None) -> datetime | None:
    """When the contact last wrote to us (on ``channel`` when given: WhatsApp's 24-hour window
    counts only the contact's WhatsApp messages)."""
    from sqlmodel import func, select

    from engine.store.models import EventRecord

    where = [EventRecord.tenant_id == tenant_id, EventRecord.sender == sender, EventRecord.is_test == sa.false()]
    if channel == "whatsapp":
        where.append(EventRecord.channel == channel)
    return session.exec(select(func.max(EventRecord.received_at)).where(*where)).one()
