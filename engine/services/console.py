"""The test console: talk to a studio's automations like a member and see every decision.

A console input goes through the engine's normal ingest (``Runner.ingest``: matching,
intents, conditions, steps, outbox, policies) with ``test=True``: its event, executions and
messages are stored with ``is_test``, nothing is delivered, no counter, stat or frequency cap
of real members changes, and webhooks and remote AI are simulated unless ``real_calls``.
``live=True`` sends through the configured channels like any real event (the UI confirms).

"Send as if at" runs the input with a runner whose clock is shifted to the chosen time;
"Skip to next / Skip all" hands the conversation's due items to :class:`engine.worker.Worker`
with its clock at each item's due time (see :func:`fast_forward`).

A conversation is identified by its test contact (a fresh phone number and e-mail address):
its events are the tenant's events sent from that contact (test, and live ones sent from the console).

STOP and START work as for a member (engine/messaging/optout.py): a test conversation that wrote STOP gets
its replies suppressed with the reason until it writes START, on its own opt state, apart from
real members' opt-outs (:attr:`Conversation.opted_out`; live mode uses the real one).
"""

from __future__ import annotations

import logging
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from sqlmodel import Session, col, select

from engine.errors import InvalidInput, NotFound
from engine.runner import Runner, builtin_classifier
from engine.security.auth import EDIT, READ, Actor
from engine.services.runs import before_runner, runner_for
from engine.services.workflows import Out
from engine.store.models import (
    DueKind,
    DueStatus,
    DueWork,
    EventRecord,
    Execution,
    OutboxMessage,
    StepRun,
    Tenant,
    Workflow,
)
from engine.uow import UnitOfWork
from engine.workflow.definitions import MESSAGE_TRIGGER_CHANNELS, Channel

logger = logging.getLogger(__name__)

__all__ = [
    "INPUT_KINDS",
    "MAX_MESSAGE_CHARS",
    "ConsoleInput",
    "Conversation",
    "PendingItem",
    "Reply",
    "StepView",
    "TestContact",
    "TurnReport",
    "WorkflowDecision",
    "conversation",
    "fast_forward",
    "new_contact",
    "pending_items",
    "send",
    "turn_report",
]

#: Longer than any SMS or chat message a studio gets; beyond it the console says so.
MAX_MESSAGE_CHARS = 10_000
#: What the console can fire, with the trigger type each becomes.
INPUT_KINDS = {
    "message": None,
    "missed_call": "missed_call",
    "lead": "lead_created",
    "booking": "booking_created",
    "schedule": "time_based",
}
CHANNEL_TRIGGERS = {str(ch): str(tt) for tt, ch in MESSAGE_TRIGGER_CHANNELS.items()}


class TestContact(BaseModel):
    """Who the console writes as. Phone and e-mail identify the conversation."""

    __test__ = False  # not a pytest class

    name: str = Field(default="Test Member", max_length=200)
    phone: str = Field(max_length=32)
    email: str = Field(max_length=320)


class ConsoleInput(BaseModel):
    """One thing the member (or the world) does: a message, a missed call, a lead, a booking, a tick."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    kind: Literal["message", "missed_call", "lead", "booking", "schedule"] = "message"
    channel: Channel = Channel.WHATSAPP
    text: str | None = None
    subject: str | None = Field(default=None, max_length=500)
    lead_name: str | None = Field(default=None, max_length=200)
    lead_email: str | None = Field(default=None, max_length=320)
    lead_phone: str | None = Field(default=None, max_length=32)
    lead_source: str | None = Field(default=None, max_length=100)
    class_name: str | None = Field(default=None, max_length=200)
    starts_at: datetime | None = None
    workflow_id: str | None = None
    #: "Send as if at": the simulated time of this input (aware, any zone); None: now.
    at: datetime | None = None


class StepView(Out):
    action_id: str
    action_type: str
    attempt: int
    status: str
    input: dict
    output: dict
    error: str | None
    started_at: datetime
    duration_ms: float | None


class WorkflowDecision(Out):
    """One workflow of the studio and what it made of the input."""

    workflow_id: str | None
    workflow_name: str
    trigger_type: str
    #: ran (conditions held), skipped (conditions or the trigger's filter did not hold)
    outcome: Literal["ran", "skipped"]
    execution_id: str | None = None
    status: str | None = None
    reasons: list[str] = []
    explanation: list = []
    steps: list[StepView] = []
    error: str | None = None
    fast_forwarded: list = []
    event_id: str | None = None
    chained: bool = False


class Reply(Out):
    """A message the member would get (or got, in live mode)."""

    outbox_id: str
    execution_id: str | None
    workflow_name: str | None
    channel: str
    recipient: str
    subject: str | None
    body: str
    status: str
    at: datetime
    policy: dict = {}
    #: Why it was suppressed, held back or failed (an opt-out, a cap, quiet hours, the provider's error).
    reason: str | None = None
    ai_provider: str | None = None
    plan: dict | None = None


class TurnReport(Out):
    """Everything one console input led to."""

    event_id: str
    kind: str
    trigger_type: str
    channel: str | None
    text: str | None
    subject: str | None
    sender: str | None
    at: datetime
    is_test: bool
    intent: str | None
    intent_confidence: float | None
    #: False: no workflow looked at the intent, so the engine did not classify (shown for information).
    intent_used: bool
    decisions: list[WorkflowDecision]
    #: Workflows listening to other triggers: {trigger type: [names]}.
    other_triggers: dict[str, list[str]]
    replies: list[Reply]
    #: "out" / "in": the message was an opt-out (STOP) or opt-in (START) word of the studio.
    opt: Literal["out", "in"] | None = None
    #: The event's free data (booking class, lead name ...).
    event_data: dict = {}
    server_ms: float | None = None


class PendingItem(Out):
    id: str
    kind: str
    due_at: datetime
    workflow_name: str | None
    execution_id: str | None
    what: str


class Conversation(Out):
    contact: TestContact
    turns: list[TurnReport]
    pending: list[PendingItem]
    #: Why test replies to this contact are suppressed now (the test conversation wrote STOP), or None.
    opted_out: str | None = None
    #: The same for live mode: the real opt-out of this phone number or address, if any.
    opted_out_live: str | None = None


# --------------------------------------------------------------------------- contacts and input


def new_contact(name: str = "Test Member") -> TestContact:
    """A fresh test contact: an unused German mobile number and an example.com address."""
    digits = f"{secrets.randbelow(10**8):08d}"
    tag = secrets.token_hex(4)
    return TestContact(name=name, phone=f"+49151{digits}", email=f"test-{tag}@example.com")


def checked_contact(contact: TestContact) -> TestContact:
    from engine.channels.phones import normalize_email, normalize_phone
    from engine.errors import InvalidRecipient

    try:
        phone = normalize_phone(contact.phone)
    except InvalidRecipient as exc:
        raise InvalidInput(exc.message, field="contact.phone") from None
    try:
        email = normalize_email(contact.email)
    except InvalidRecipient as exc:
        raise InvalidInput(exc.message, field="contact.email") from None
    return TestContact(name=contact.name.strip() or "Test Member", phone=phone, email=email)


def _event_for(inp: ConsoleInput, contact: TestContact, now: datetime) -> dict[str, Any]:
    """The event the input becomes (what a provider webhook or the bookings page would ingest)."""
    received = inp.at.astimezone(UTC).isoformat() if inp.at else None
    base: dict[str, Any] = {"receivedAt": received} if received else {}
    if inp.kind == "message":
        text = (inp.text or "").strip()
        if not text:
            raise InvalidInput("type a message first", field="text")
        if len(text) > MAX_MESSAGE_CHARS:
            raise InvalidInput(
                f"the message has {len(text)} characters; at most {MAX_MESSAGE_CHARS} are accepted", field="text"
            )
        channel = str(inp.channel)
        sender = contact.email if channel == "email" else contact.phone
        data = {"name": contact.name}
        if channel == "email" and inp.subject:
            data["subject"] = inp.subject
        return {
            **base,
            "triggerType": CHANNEL_TRIGGERS[channel],
            "channel": channel,
            "content": text,
            "from": sender,
            "data": data,
        }
    if inp.kind == "missed_call":
        return {
            **base,
            "triggerType": "missed_call",
            "channel": "voice",
            "from": contact.phone,
            "data": {"name": contact.name},
        }
    if inp.kind == "lead":
        return {**base, **_lead_event(inp, contact)}
    if inp.kind == "booking":
        if not (inp.class_name or "").strip():
            raise InvalidInput("name the class that was booked", field="className")
        starts = inp.starts_at or (inp.at or now) + timedelta(days=1)
        return {
            **base,
            "triggerType": "booking_created",
            "from": contact.phone,
            "data": {
                "memberName": contact.name,
                "className": (inp.class_name or "").strip(),
                "startsAt": starts.isoformat(),
                "name": contact.name,
            },
        }
    raise InvalidInput(f"unknown input kind {inp.kind!r}", field="kind")


def _lead_event(inp: ConsoleInput, contact: TestContact) -> dict[str, Any]:
    from engine.channels.phones import normalize_email, normalize_phone
    from engine.errors import InvalidRecipient

    email: str | None = inp.lead_email or contact.email
    phone: str | None = inp.lead_phone or contact.phone
    try:
        email = normalize_email(email) if email else None
    except InvalidRecipient as exc:
        raise InvalidInput(exc.message, field="leadEmail") from None
    try:
        phone = normalize_phone(phone) if phone else None
    except InvalidRecipient as exc:
        raise InvalidInput(exc.message, field="leadPhone") from None
    name = (inp.lead_name or contact.name).strip()
    return {
        "triggerType": "lead_created",
        "from": phone or email,
        "data": {"name": name, "email": email, "phone": phone, "source": inp.lead_source or "test console"},
    }


def _runner(uow: UnitOfWork, at: datetime | None, drafts: dict[str, dict] | None) -> Runner:
    """The shared runner; or, for "send as if at" or drafts, one whose clock starts at ``at``
    and runs on (the engine takes the clock as a parameter) and which sees the drafts."""
    if at is None and not drafts:
        return runner_for(uow.db)
    if at is not None and at.tzinfo is None:
        raise InvalidInput("give the simulated time with its time zone", field="at")
    offset = at.astimezone(UTC) - uow.now() if at is not None else timedelta(0)
    clock = uow.clock
    runner = Runner(uow.db, clock=lambda: clock() + offset, classifier=builtin_classifier())
    runner.drafts = dict(drafts or {})
    return runner


def checked_drafts(*, uow: UnitOfWork, actor: Actor, drafts: dict[str, dict] | None) -> dict[str, dict]:
    """Drafts of the actor's own workflows only, each validated like a save would be."""
    if not drafts:
        return {}
    from engine.workflow.validation import errors_only, validate

    s = uow.session
    owned = set(
        s.exec(
            select(Workflow.id).where(Workflow.tenant_id == actor.tenant_id, col(Workflow.id).in_(list(drafts)))
        ).all()
    )
    out = {}
    for workflow_id, definition in drafts.items():
        if workflow_id not in owned:
            raise NotFound(f"workflow {workflow_id} not found")
        problems = errors_only(validate(definition))
        if problems:
            raise InvalidInput(f"the draft is not valid: {problems[0].message}", field=f"drafts.{problems[0].path}")
        out[workflow_id] = definition
    return out


# --------------------------------------------------------------------------- send


def send(
    *,
    uow: UnitOfWork,
    actor: Actor,
    contact: TestContact,
    inp: ConsoleInput,
    live: bool = False,
    real_calls: bool = False,
    drafts: dict[str, dict] | None = None,
) -> TurnReport:
    """Feed one input through the engine as ``contact`` and report every decision.

    Test mode (default) stores everything with ``is_test`` and delivers nothing; ``live``
    sends through the configured channels. Raises InvalidInput naming the field for bad input
    (nothing is stored then). ``drafts`` (test mode only): unsaved definitions by workflow id
    that matching uses instead of the stored ones.
    """
    actor.require(EDIT)
    if live and drafts:
        raise InvalidInput("drafts can only be tried in test mode", field="live")
    started = time.perf_counter()
    contact = checked_contact(contact)
    runner = _runner(uow, inp.at, checked_drafts(uow=uow, actor=actor, drafts=drafts))
    test = not live
    before_runner(uow)
    if inp.kind == "schedule":
        event_id = _fire_schedule(uow, actor, runner, inp, contact, test=test, real_calls=real_calls)
    else:
        result = runner.ingest(actor.tenant_id, _event_for(inp, contact, uow.now()), test=test, real_calls=real_calls)
        event_id = result.event_id
    report = turn_report(uow=uow, actor=actor, event_id=event_id, kind=inp.kind)
    report.server_ms = round((time.perf_counter() - started) * 1000, 1)
    logger.info(
        "console %s for tenant %s: %d workflow(s) considered in %.1f ms",
        inp.kind,
        actor.tenant_id,
        len(report.decisions),
        report.server_ms,
    )
    return report


def _fire_schedule(
    uow: UnitOfWork,
    actor: Actor,
    runner: Runner,
    inp: ConsoleInput,
    contact: TestContact,
    *,
    test: bool,
    real_calls: bool,
) -> str:
    """The schedule tick of one scheduled workflow, as the worker fires it (run_workflow, mode live/test)."""
    if not inp.workflow_id:
        raise InvalidInput("pick the scheduled workflow to tick", field="workflowId")
    s = uow.session
    wf = s.exec(select(Workflow).where(Workflow.id == inp.workflow_id, Workflow.tenant_id == actor.tenant_id)).first()
    if wf is None:
        raise NotFound(f"workflow {inp.workflow_id} not found")
    if wf.trigger_type != "time_based":
        raise InvalidInput(f"{wf.name!r} is not a scheduled workflow", field="workflowId")
    at = runner.clock()
    before_runner(uow)
    execution_id = runner.run_workflow(
        actor.tenant_id,
        wf.id,
        {"from": contact.phone, "scheduledFor": at.isoformat()},
        mode="live",
        test=test,
        real_calls=real_calls,
    )
    s = uow.session
    event_id = s.exec(select(Execution.event_id).where(Execution.id == execution_id)).one()
    assert event_id is not None  # a cron tick is an event
    return event_id


# --------------------------------------------------------------------------- reports


def turn_report(*, uow: UnitOfWork, actor: Actor, event_id: str, kind: str | None = None) -> TurnReport:
    """What one event led to: intent, every workflow considered (ran or why skipped), replies.

    Chained events (a lead created by a step ...) are followed: their decisions are included,
    marked ``chained``.
    """
    actor.require(READ)
    s = uow.session
    ev = s.exec(select(EventRecord).where(EventRecord.id == event_id, EventRecord.tenant_id == actor.tenant_id)).first()
    if ev is None:
        raise NotFound(f"event {event_id} not found")
    workflows = list(
        s.exec(
            select(  # type: ignore[call-overload]  # five ORM columns: beyond sqlmodel's typed overloads
                col(Workflow.id),
                col(Workflow.name),
                col(Workflow.trigger_type),
                col(Workflow.definition),
                col(Workflow.version),
            )
            .where(Workflow.tenant_id == actor.tenant_id, Workflow.enabled == sa.true())
            .order_by(sa.func.lower(Workflow.name))
        ).all()
    )
    events, executions = _event_tree(s, actor.tenant_id, ev)
    ex_ids = [e.id for e in executions]
    steps = _steps_by_execution(s, ex_ids)
    replies = _replies(s, actor.tenant_id, executions)
    decisions = [_decision(ex, steps.get(ex.id, []), chained=ex.event_id != ev.id) for ex in executions]
    decisions += _trigger_skips(ev, workflows, {e.workflow_id for e in executions if e.event_id == ev.id})
    listened = {ev.trigger_type} | ({"intent_detected"} if ev.trigger_type in CHANNEL_TRIGGERS.values() else set())
    listened |= {e.trigger_type for e in events}
    others: dict[str, list[str]] = {}
    for _wf_id, name, trigger_type, _definition, _version in workflows:
        if trigger_type not in listened:
            others.setdefault(trigger_type, []).append(name)
    intent, confidence, used = ev.intent, ev.intent_confidence, ev.intent is not None
    tenant = s.get(Tenant, actor.tenant_id)
    if intent is None and ev.content and ev.trigger_type in CHANNEL_TRIGGERS.values():
        classifier = builtin_classifier()
        if classifier is not None:
            guess = classifier(ev.content)
            intent, confidence = guess.intent, guess.confidence
    return TurnReport(
        event_id=ev.id,
        kind=kind or _kind_of(ev.trigger_type),
        trigger_type=ev.trigger_type,
        channel=ev.channel,
        text=ev.content,
        subject=(ev.data or {}).get("subject"),
        sender=ev.sender,
        at=ev.received_at,
        is_test=ev.is_test,
        intent=intent,
        intent_confidence=round(confidence, 4) if confidence is not None else None,
        intent_used=used,
        decisions=_ordered(decisions),
        other_triggers=others,
        replies=replies,
        opt=_opt_of(ev, tenant.settings if tenant else {}),
        event_data=dict(ev.data or {}),
    )


def _opt_of(ev: EventRecord, settings: dict[str, Any] | None) -> Literal["out", "in"] | None:
    """Whether the message was an opt word, judged as the ingest path judges it (engine/messaging/optout.py)."""
    from engine.messaging.optout import keyword, opt_words

    if ev.trigger_type not in CHANNEL_TRIGGERS.values() or not ev.sender:
        return None
    word = keyword(ev.content)
    stop, start = opt_words(settings)
    return "out" if word in stop else "in" if word in start else None


def _kind_of(trigger_type: str) -> str:
    for kind, tt in INPUT_KINDS.items():
        if tt == trigger_type:
            return kind
    return "message"


def _ordered(decisions: list[WorkflowDecision]) -> list[WorkflowDecision]:
    return sorted(decisions, key=lambda d: (d.chained, d.outcome != "ran", d.workflow_name.lower()))


def _event_tree(s: Session, tenant_id: str, ev: EventRecord) -> tuple[list[EventRecord], list[Execution]]:
    """The event's executions and those of the events they emitted (chains), breadth first."""
    events, executions = [ev], []
    frontier = [ev.id]
    for _ in range(10):  # the runner's chain depth limit is 5
        found = list(
            s.exec(
                select(Execution)
                .where(Execution.tenant_id == tenant_id, col(Execution.event_id).in_(frontier))
                .order_by(col(Execution.started_at), col(Execution.id))
            ).all()
        )
        executions += found
        if not found:
            break
        children = list(
            s.exec(
                select(EventRecord).where(
                    EventRecord.tenant_id == tenant_id, col(EventRecord.parent_execution_id).in_([x.id for x in found])
                )
            ).all()
        )
        events += children
        frontier = [c.id for c in children]
        if not frontier:
            break
    return events, executions


def _steps_by_execution(s: Session, ex_ids: list[str]) -> dict[str, list[StepRun]]:
    out: dict[str, list[StepRun]] = {}
    if not ex_ids:
        return out
    for st in s.exec(
        select(StepRun)
        .where(col(StepRun.execution_id).in_(ex_ids))
        .order_by(col(StepRun.started_at), col(StepRun.attempt))
    ).all():
        out.setdefault(st.execution_id, []).append(st)
    return out


def _decision(ex: Execution, steps: list[StepRun], *, chained: bool) -> WorkflowDecision:
    skipped = ex.status == "skipped"
    reasons = [e.get("message", "") for e in ex.explanation or [] if not e.get("passed")] if skipped else []
    return WorkflowDecision(
        workflow_id=ex.workflow_id,
        workflow_name=ex.workflow_name,
        trigger_type=(ex.definition or {}).get("trigger", {}).get("type", ""),
        outcome="skipped" if skipped else "ran",
        execution_id=ex.id,
        status=ex.status,
        reasons=reasons,
        explanation=ex.explanation or [],
        error=ex.error,
        event_id=ex.event_id,
        chained=chained,
        fast_forwarded=(ex.context or {}).get("fastForwarded", []),
        steps=[
            StepView(
                action_id=st.action_id,
                action_type=st.action_type,
                attempt=st.attempt,
                status=st.status,
                input=st.input,
                output=st.output,
                error=st.error,
                started_at=st.started_at,
                duration_ms=round((st.finished_at - st.started_at).total_seconds() * 1000, 1)
                if st.finished_at
                else None,
            )
            for st in steps
        ],
    )


def _trigger_skips(ev: EventRecord, workflows: list, started: set[str | None]) -> list[WorkflowDecision]:
    """Workflows listening to this trigger that the trigger's own filter (channel, intent) left out."""
    candidates = {ev.trigger_type} | ({"intent_detected"} if ev.trigger_type in CHANNEL_TRIGGERS.values() else set())
    out = []
    for wf_id, name, trigger_type, definition, _version in workflows:
        if trigger_type not in candidates or wf_id in started:
            continue
        config = (definition.get("trigger") or {}).get("config") or {}
        reasons = []
        if config.get("channel") and ev.channel and config["channel"] != ev.channel:
            reasons.append(f"listens on channel {config['channel']}, the message came on {ev.channel}")
        if config.get("intent") and config["intent"] != ev.intent:
            detected = f"the detected intent was {ev.intent}" if ev.intent else "no intent was detected"
            reasons.append(f"listens for intent {config['intent']}; {detected}")
        if not reasons:
            reasons.append("not started for this event")
        out.append(
            WorkflowDecision(
                workflow_id=wf_id,
                workflow_name=name,
                trigger_type=trigger_type,
                outcome="skipped",
                reasons=reasons,
                event_id=ev.id,
            )
        )
    return out


def _replies(s: Session, tenant_id: str, executions: list[Execution]) -> list[Reply]:
    if not executions:
        return []
    names = {e.id: e.workflow_name for e in executions}
    results = {e.id: (e.context or {}).get("results", {}) for e in executions}
    rows = s.exec(
        select(OutboxMessage)
        .where(OutboxMessage.tenant_id == tenant_id, col(OutboxMessage.execution_id).in_(list(names)))
        .order_by(col(OutboxMessage.created_at), col(OutboxMessage.id))
    ).all()
    out = []
    for row in rows:
        provider, plan = _ai_and_plan(results.get(row.execution_id or "") or {})
        out.append(
            Reply(
                outbox_id=row.id,
                execution_id=row.execution_id,
                workflow_name=names.get(row.execution_id or ""),
                channel=row.channel,
                recipient=row.recipient,
                subject=row.subject,
                body=row.body,
                status=row.status,
                at=row.created_at,
                policy=(row.detail or {}).get("policy") or {},
                reason=row.error,
                ai_provider=provider,
                plan=plan,
            )
        )
    return out


def _ai_and_plan(results: dict[str, Any]) -> tuple[str | None, dict | None]:
    """The AI provider that answered in this execution, and a generated workout plan, if any."""
    provider = plan = None
    for output in results.values():
        if not isinstance(output, dict):
            continue
        if output.get("provider") and provider is None:
            provider = str(output["provider"])
        if plan is None and output.get("days") and output.get("summary"):
            plan = output
    return provider, plan


# --------------------------------------------------------------------------- conversation and time travel


def _conversation_events(s: Session, tenant_id: str, contact: TestContact) -> list[EventRecord]:
    return list(
        s.exec(
            select(EventRecord)
            .where(
                EventRecord.tenant_id == tenant_id,
                EventRecord.depth == 0,
                col(EventRecord.sender).in_([contact.phone, contact.email]),
            )
            .order_by(col(EventRecord.received_at), col(EventRecord.id))
        ).all()
    )


def conversation(*, uow: UnitOfWork, actor: Actor, contact: TestContact) -> Conversation:
    """The contact's conversation (test and live inputs sent as this contact): every input with
    its report, and what is still due."""
    actor.require(READ)
    contact = checked_contact(contact)
    s = uow.session
    ids = [e.id for e in _conversation_events(s, actor.tenant_id, contact)]
    turns = [turn_report(uow=uow, actor=actor, event_id=event_id) for event_id in ids]
    test_state, live_state = _opt_states(s, actor.tenant_id, contact)
    return Conversation(
        contact=contact,
        turns=turns,
        pending=pending_items(uow=uow, actor=actor, contact=contact),
        opted_out=test_state,
        opted_out_live=live_state,
    )


def _opt_states(s: Session, tenant_id: str, contact: TestContact) -> tuple[str | None, str | None]:
    """(test, live): why messages to the contact's phone or address are suppressed now, if they are."""
    from engine.messaging.optout import opt_out_reason

    row = s.get(Tenant, tenant_id)
    tenant = {"id": tenant_id, "settings": dict(row.settings or {}) if row else {}}

    def first(test: bool) -> str | None:
        return next(
            (r for to in (contact.phone, contact.email) if (r := opt_out_reason(s, tenant, to, test=test))), None
        )

    return first(True), first(False)


def _conversation_executions(s: Session, tenant_id: str, contact: TestContact) -> dict[str, Execution]:
    out: dict[str, Execution] = {}
    for ev in _conversation_events(s, tenant_id, contact):
        out.update((e.id, e) for e in _event_tree(s, tenant_id, ev)[1])
    return out


def _pending_rows(s: Session, tenant_id: str, contact: TestContact) -> tuple[list[DueWork], dict[str, Execution]]:
    executions = _conversation_executions(s, tenant_id, contact)
    if not executions:
        return [], executions
    rows = list(
        s.exec(
            select(DueWork).where(
                DueWork.tenant_id == tenant_id,
                DueWork.status == DueStatus.PENDING,
                col(DueWork.execution_id).in_(list(executions)),
            )
        ).all()
    )
    outbox_ids = set(
        s.exec(
            select(OutboxMessage.id).where(
                OutboxMessage.tenant_id == tenant_id, col(OutboxMessage.execution_id).in_(list(executions))
            )
        ).all()
    )
    if outbox_ids:
        deliveries = s.exec(
            select(DueWork).where(
                DueWork.tenant_id == tenant_id,
                DueWork.status == DueStatus.PENDING,
                col(DueWork.kind) == DueKind.DELIVER,
                col(DueWork.execution_id).is_(None),
            )
        ).all()
        rows += [d for d in deliveries if (d.payload or {}).get("outboxId") in outbox_ids]
    rows.sort(key=lambda r: (r.due_at, r.id))
    return rows, executions


def pending_items(*, uow: UnitOfWork, actor: Actor, contact: TestContact) -> list[PendingItem]:
    """Waits, follow-ups and deferred messages of the conversation that are not due yet, soonest first."""
    actor.require(READ)
    s = uow.session
    rows, executions = _pending_rows(s, actor.tenant_id, contact)
    out = []
    for row in rows:
        ex = executions.get(row.execution_id or "")
        labels: dict[str, str] = {
            DueKind.RESUME: f"continue at step {(row.payload or {}).get('actionId')}",
            DueKind.FOLLOW_UP: f"follow-up: {(row.payload or {}).get('body', '')[:80]}",
            DueKind.DELIVER: "deliver a message held back by quiet hours",
        }
        what = labels.get(row.kind, row.kind)
        out.append(
            PendingItem(
                id=row.id,
                kind=row.kind,
                due_at=row.due_at,
                execution_id=row.execution_id,
                workflow_name=ex.workflow_name if ex else None,
                what=what,
            )
        )
    return out


def fast_forward(
    *,
    uow: UnitOfWork,
    actor: Actor,
    contact: TestContact,
    all_items: bool = False,
    max_items: int = 100,
    drafts: dict[str, dict] | None = None,
) -> list[PendingItem]:
    """Resume the conversation's next due item (or all of them, including ones they create) now.

    Each item goes through :meth:`engine.worker.Worker.handle`, claimed by a worker whose clock
    is the item's due time, so the run continues exactly as it would have then. The execution
    records ``fastForwarded`` (due time and when). Returns the items handled. Only test
    conversations can be fast-forwarded; other conversations' items are never touched.
    """
    from engine.worker import Worker

    actor.require(EDIT)
    contact = checked_contact(contact)
    handled: list[PendingItem] = []
    while len(handled) < max_items:
        pending = pending_items(uow=uow, actor=actor, contact=contact)
        if not pending:
            break
        item = pending[0]
        _mark_fast_forwarded(uow, actor.tenant_id, item)
        due = item.due_at
        offset = due - uow.now()

        def clock(o=offset, now=uow.clock):
            return now() + o

        runner = Runner(uow.db, clock=clock, classifier=builtin_classifier())
        runner.drafts = checked_drafts(uow=uow, actor=actor, drafts=drafts)
        before_runner(uow)
        worker = Worker(uow.db, name=f"console:{actor.tenant_id}", clock=clock, runner=runner)
        for claimed in worker.claim(ids=[item.id]):
            worker.handle(claimed)
        handled.append(item)
        if not all_items:
            break
    return handled


def _mark_fast_forwarded(uow: UnitOfWork, tenant_id: str, item: PendingItem) -> None:
    mark = {"dueAt": item.due_at.isoformat(), "at": uow.now().isoformat(), "kind": item.kind}
    s = uow.session
    row = s.get(DueWork, item.id)
    if row is None or row.tenant_id != tenant_id:
        return
    row.payload = {**(row.payload or {}), "fastForwarded": mark}
    s.add(row)
    if item.execution_id:
        ex = s.get(Execution, item.execution_id)
        if ex is not None and ex.status == "waiting":
            context = dict(ex.context or {})
            context["fastForwarded"] = [*context.get("fastForwarded", []), mark]
            ex.context = context
            s.add(ex)
