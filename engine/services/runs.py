"""Running things: events, manual and dry runs, executions with their steps, the outbox,
leads and bookings. Tenant-scoped like every service; other tenants' ids are "not found"."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import col, func, select

from engine import domain
from engine.errors import InvalidInput, NotFound
from engine.runner import IngestResult, Runner, builtin_classifier
from engine.security.auth import EDIT, READ, Actor
from engine.services.workflows import MAX_PAGE_SIZE, Out
from engine.store.models import Booking, EventRecord, Execution, Lead, OutboxMessage, StepRun
from engine.uow import UnitOfWork
from engine.workflow import limits
from engine.workflow.definitions import MESSAGE_TRIGGER_CHANNELS
from engine.workflow.limits import MAX_PAGE

__all__ = [
    "StepOut",
    "ExecutionOut",
    "ExecutionPage",
    "OutboxOut",
    "OutboxPage",
    "LeadOut",
    "BookingOut",
    "ingest_event",
    "run_workflow",
    "list_executions",
    "get_execution",
    "list_outbox",
    "list_leads",
    "create_booking",
    "list_bookings",
    "runner_for",
]

_runners: dict[int, Runner] = {}


def before_runner(uow: UnitOfWork) -> None:
    """End ``uow``'s transaction before the runner works on its own units of work (a manual run,
    a replay, the test console): what it wrote so far commits, it holds no write lock the runner
    would wait for, and what it reads afterwards includes the runner's work."""
    uow.flush()
    uow.commit()  # an unused unit (the events hot path) has nothing to end


def runner_for(db: Engine) -> Runner:
    """One runner per database engine, with the built-in intent classifier."""
    if id(db) not in _runners:
        _runners[id(db)] = Runner(db, classifier=builtin_classifier())
    return _runners[id(db)]


class StepOut(Out):
    action_id: str
    action_type: str
    attempt: int
    status: str
    input: dict
    output: dict
    error: str | None
    started_at: datetime
    finished_at: datetime | None


class ExecutionOut(Out):
    id: str
    workflow_id: str | None
    workflow_name: str
    event_id: str | None
    status: str
    mode: str
    started_at: datetime
    finished_at: datetime | None
    explanation: list
    error: str | None
    actions_executed: int
    current_action_id: str | None = None
    results: dict = {}
    trigger: dict = {}
    steps: list[StepOut] = []
    #: Set when retention removed the details (steps, trigger data); "erased" for an erased member.
    details_removed: str | None = None
    #: The failed execution this one replays (issue 11), and whether it is a test-console run.
    replay_of: str | None = None
    is_test: bool = False
    #: The execution that replays this one (set by :func:`get_execution`): it cannot be replayed again.
    replayed_by: str | None = None

    @property
    def success(self) -> bool:
        """Success as :func:`engine.domain.is_success` defines it (a waiting run has not succeeded yet)."""
        return domain.is_success(self.status)


class ExecutionPage(Out):
    items: list[ExecutionOut]
    total: int
    page: int
    page_size: int


class OutboxOut(Out):
    id: str
    execution_id: str | None
    channel: str
    recipient: str
    subject: str | None
    body: str
    status: str
    adapter: str
    provider_message_id: str | None
    error: str | None
    detail: dict
    created_at: datetime
    sent_at: datetime | None
    #: Provider calls made, and when the next one is due (``retrying``).
    attempts: int = 0
    next_attempt_at: datetime | None = None
    #: The status in words, e.g. "retrying (attempt 3 of 5, next at 15:42)" in the studio's time zone.
    status_text: str = ""


class OutboxPage(Out):
    items: list[OutboxOut]
    total: int
    page: int
    page_size: int


class LeadOut(Out):
    id: str
    name: str
    email: str | None
    phone: str | None
    source: str | None
    status: str
    notes: str | None
    custom_fields: dict
    created_at: datetime


class BookingOut(Out):
    id: str
    lead_id: str | None
    member_name: str
    member_contact: str | None
    class_name: str
    starts_at: datetime
    status: str


def _check_page(page: int, page_size: int) -> None:
    if not 1 <= page <= MAX_PAGE or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidInput(
            f"page must be between 1 and {MAX_PAGE:,} and page size between 1 and {MAX_PAGE_SIZE}", field="page"
        )


def _newest_first(
    uow: UnitOfWork, model: Any, time_column: Any, actor: Actor, filters: dict[Any, Any], page: int, page_size: int
) -> tuple[int, list[Any]]:
    """Total and one page of the tenant's rows, newest first; filters with a None value are ignored."""
    _check_page(page, page_size)
    where = [model.tenant_id == actor.tenant_id, *(column == value for column, value in filters.items() if value)]
    s = uow.session
    total = s.exec(select(func.count()).select_from(model).where(*where)).one()
    rows = s.exec(
        select(model)
        .where(*where)
        .order_by(col(time_column).desc(), model.id)
        .offset((page - 1) * page_size)
        .limit(page_size)
    ).all()
    return total, list(rows)


def _execution_out(ex: Execution, steps: list[StepRun] | None = None) -> ExecutionOut:
    return ExecutionOut(
        id=ex.id,
        workflow_id=ex.workflow_id,
        workflow_name=ex.workflow_name,
        event_id=ex.event_id,
        status=ex.status,
        mode=ex.mode,
        started_at=ex.started_at,
        finished_at=ex.finished_at,
        explanation=ex.explanation,
        error=ex.error,
        actions_executed=ex.actions_executed,
        current_action_id=ex.current_action_id,
        results=(ex.context or {}).get("results", {}),
        trigger=(ex.context or {}).get("trigger", {}),
        steps=[StepOut.model_validate(st) for st in steps or []],
        details_removed=(ex.context or {}).get("detailsPrunedAt")
        or ("erased" if (ex.context or {}).get("erased") else None),
        replay_of=getattr(ex, "replay_of", None),
        is_test=bool(getattr(ex, "is_test", False)),
    )


def ingest_event(*, uow: UnitOfWork, actor: Actor, event: dict[str, Any]) -> IngestResult:
    """Store an inbound event and run the workflows it matches (test console, API, adapters).

    The event commits in the runner's own buffered unit of work, shared with concurrent events
    (group commit; its external steps run right after, outside any transaction): ``uow`` only
    reads (the idempotency check), so pass a read-only one, or one that has not written yet.
    """
    actor.require(EDIT)
    limits.check_json(event)
    before_runner(uow)
    result = runner_for(uow.db).ingest(actor.tenant_id, event)
    if result.duplicate:
        _check_same_event(uow, actor, result.event_id, event)
    elif result.intent is None:
        _detect_intent(uow, result, event)
    return result


def _detect_intent(uow: UnitOfWork, result: IngestResult, event: dict[str, Any]) -> None:
    """The intent of a message event no workflow asked about, as the spec's orchestrator reports it."""
    content, classifier = event.get("content"), runner_for(uow.db).classifier
    if classifier is None or not isinstance(content, str) or not content.strip():
        return
    if event.get("triggerType") not in MESSAGE_TRIGGER_CHANNELS:
        return
    found = classifier(content)
    result.intent, result.intent_confidence = found.intent, round(found.confidence, 4)


#: What the stored event keeps of a request, and the request's key for it.
_SAME_EVENT_FIELDS = (
    ("trigger_type", "triggerType"),
    ("channel", "channel"),
    ("content", "content"),
    ("sender", "from"),
    ("custom_fields", "customFields"),
)


def _check_same_event(uow: UnitOfWork, actor: Actor, event_id: str, event: dict[str, Any]) -> None:
    """A reused idempotency key must come with the same event (as payment APIs do): 422 otherwise."""
    s = uow.session
    stored = s.get(EventRecord, event_id)
    if stored is None:
        return
    for column, key in _SAME_EVENT_FIELDS:
        given = event.get(key)
        if key == "customFields":
            given = given or {}
        elif key == "channel" and given is None:
            continue  # filled in from the trigger type when left out
        if given != getattr(stored, column):
            raise InvalidInput(
                f"this idempotency key was used for a different event ({key} differs); use a new key for a new event",
                field="idempotencyKey",
            )


def run_workflow(
    *,
    uow: UnitOfWork,
    actor: Actor,
    workflow_id: str,
    trigger_data: dict[str, Any] | None = None,
    bypass_conditions: bool = False,
    dry_run: bool = False,
) -> ExecutionOut:
    """Run one workflow now; a dry run sends nothing, calls nothing and writes no lead."""
    actor.require(EDIT)
    limits.check_json(trigger_data or {}, "triggerData")
    before_runner(uow)
    execution_id = runner_for(uow.db).run_workflow(
        actor.tenant_id, workflow_id, trigger_data or {}, bypass_conditions=bypass_conditions, dry_run=dry_run
    )
    return get_execution(uow=uow, actor=actor, execution_id=execution_id)


def list_executions(
    *,
    uow: UnitOfWork,
    actor: Actor,
    workflow_id: str | None = None,
    status: str | None = None,
    page: int = 1,
    page_size: int = 50,
) -> ExecutionPage:
    """Newest first, one SQL page (uses the (tenant, workflow, started_at) index)."""
    actor.require(READ)
    filters = {Execution.workflow_id: workflow_id, Execution.status: status}
    total, rows = _newest_first(uow, Execution, Execution.started_at, actor, filters, page, page_size)
    return ExecutionPage(
        items=[_visible(uow, actor, _execution_out(r)) for r in rows], total=total, page=page, page_size=page_size
    )


def get_execution(*, uow: UnitOfWork, actor: Actor, execution_id: str) -> ExecutionOut:
    """One execution with its step trace (every attempt, in order)."""
    actor.require(READ)
    s = uow.session
    ex = s.exec(select(Execution).where(Execution.id == execution_id, Execution.tenant_id == actor.tenant_id)).first()
    if ex is None:
        raise NotFound(f"execution {execution_id} not found")
    steps = s.exec(
        select(StepRun).where(StepRun.execution_id == ex.id).order_by(col(StepRun.started_at), col(StepRun.attempt))
    ).all()
    out = _execution_out(ex, list(steps))
    out.replayed_by = s.exec(
        select(Execution.id).where(Execution.tenant_id == actor.tenant_id, Execution.replay_of == ex.id)
    ).first()
    return _visible(uow, actor, out)


def _visible(uow: UnitOfWork, actor: Actor, out: ExecutionOut) -> ExecutionOut:
    """Contacts masked for analysts unless the owner allows them (engine.messaging.masking)."""
    from engine.messaging import masking

    return (
        out
        if masking.sees_contacts(uow=uow, actor=actor)
        else ExecutionOut.model_validate(masking.mask_data(out.model_dump()))
    )


def list_outbox(
    *,
    uow: UnitOfWork,
    actor: Actor,
    execution_id: str | None = None,
    status: str | None = None,
    page: int = 1,
    page_size: int = 50,
) -> OutboxPage:
    actor.require(READ)
    filters = {OutboxMessage.execution_id: execution_id, OutboxMessage.status: status}
    total, rows = _newest_first(uow, OutboxMessage, OutboxMessage.created_at, actor, filters, page, page_size)
    from engine.messaging.outbox_states import describe
    from engine.services.outbox import studio_zone

    tz, now = studio_zone(uow, actor), uow.now()

    def words(r: OutboxMessage) -> str:
        return describe(r.status, attempts=r.attempts, next_attempt_at=r.next_attempt_at, tz=tz, now=now)

    items = [OutboxOut.model_validate(r).model_copy(update={"status_text": words(r)}) for r in rows]
    from engine.messaging import masking

    if not masking.sees_contacts(uow=uow, actor=actor):
        items = [OutboxOut.model_validate(masking.mask_data(i.model_dump())) for i in items]
    return OutboxPage(items=items, total=total, page=page, page_size=page_size)


def list_leads(*, uow: UnitOfWork, actor: Actor, page: int = 1, page_size: int = 50) -> list[LeadOut]:
    actor.require(READ)
    _check_page(page, page_size)
    s = uow.session
    rows = s.exec(
        select(Lead)
        .where(Lead.tenant_id == actor.tenant_id)
        .order_by(col(Lead.created_at).desc(), Lead.id)
        .offset((page - 1) * page_size)
        .limit(page_size)
    ).all()
    return [LeadOut.model_validate(r) for r in rows]


def create_booking(
    *,
    uow: UnitOfWork,
    actor: Actor,
    member_name: str,
    class_name: str,
    starts_at: datetime,
    member_contact: str | None = None,
    lead_id: str | None = None,
) -> tuple[BookingOut, IngestResult]:
    """Store a booking and emit ``booking_created`` in the same unit of work: both commit or neither.

    The workflows it starts run their local steps in that unit of work too; external steps
    (webhooks, remote AI) are handed to the worker.
    """
    actor.require(EDIT)
    if not member_name.strip():
        raise InvalidInput("member name is required", field="memberName")
    if not class_name.strip():
        raise InvalidInput("class name is required", field="className")
    if lead_id is not None and not lead_id.strip():
        raise InvalidInput("must be a lead's id or left out", field="leadId")
    for field, text in (
        ("memberName", member_name),
        ("className", class_name),
        ("memberContact", member_contact),
        ("leadId", lead_id),
    ):
        limits.check_text(text, field)
    limits.check_date(starts_at, "startsAt")
    s = uow.session
    if lead_id and not s.exec(select(Lead.id).where(Lead.id == lead_id, Lead.tenant_id == actor.tenant_id)).first():
        raise NotFound(f"lead {lead_id} not found")
    booking = Booking(
        tenant_id=actor.tenant_id,
        lead_id=lead_id,
        member_name=member_name.strip(),
        member_contact=member_contact,
        class_name=class_name.strip(),
        starts_at=starts_at,
    )
    s.add(booking)
    out = BookingOut.model_validate(booking)
    event = {
        "triggerType": "booking_created",
        "bookingId": booking.id,
        "leadId": lead_id,
        "from": member_contact,
        "data": {
            "memberName": booking.member_name,
            "className": booking.class_name,
            "startsAt": booking.starts_at.isoformat(),
        },
    }
    result = runner_for(uow.db).ingest(actor.tenant_id, event, uow=uow)
    return out, result


def list_bookings(*, uow: UnitOfWork, actor: Actor, page: int = 1, page_size: int = 50) -> list[BookingOut]:
    actor.require(READ)
    _check_page(page, page_size)
    s = uow.session
    rows = s.exec(
        select(Booking)
        .where(Booking.tenant_id == actor.tenant_id)
        .order_by(col(Booking.starts_at).desc(), Booking.id)
        .offset((page - 1) * page_size)
        .limit(page_size)
    ).all()
    return [BookingOut.model_validate(r) for r in rows]
