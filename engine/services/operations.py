"""Operations on executions: filtered keyset pages, streamed CSV, replay, cancel, bulk replay,
and one member's timeline. Tenant-scoped like every service; other tenants' ids are "not found".

Exactly once, without locks held across I/O:

* **cancel** is one conditional ``UPDATE .. WHERE status IN (waiting, pending)``; the same
  transaction cancels the execution's due work (resume, follow-ups) and suppresses its
  deferred messages. A worker that already claimed a follow-up closes it with a conditional
  update first and sends nothing when the cancel won (see ``engine/worker/loop.py``); a worker that
  claimed its resume finds the execution cancelled and does nothing.
* **replay** inserts a new execution with ``replay_of = <failed id>``; the column is unique, so
  of two concurrent replays of one execution exactly one commits, the other gets ``Conflict``.
"""

from __future__ import annotations

import base64
import csv
import io
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from engine import domain
from engine.domain import ExecutionStatus
from engine.errors import Conflict, InvalidInput, NotFound
from engine.messaging import masking, outbox_states
from engine.runner.context import run_context
from engine.security.auth import EDIT, READ, Actor
from engine.services.runs import ExecutionOut, _execution_out, before_runner, runner_for
from engine.services.workflows import MAX_PAGE_SIZE, Out
from engine.store import rollups
from engine.store.models import (
    DueStatus,
    DueWork,
    EventRecord,
    Execution,
    OutboxMessage,
    OutboxStatus,
    StepRun,
    Workflow,
    new_id,
)
from engine.uow import UnitOfWork

logger = logging.getLogger(__name__)

__all__ = [
    "CANCELLABLE",
    "CSV_COLUMNS",
    "ExecutionFilter",
    "ExecutionKeysetPage",
    "ReplayOut",
    "bulk_replay",
    "count_replayable",
    "cancel_execution",
    "contact_timeline",
    "count_executions",
    "iter_executions_csv",
    "mask_executions",
    "contact_forms",
    "replay_execution",
    "search_executions",
]

CANCELLABLE = (ExecutionStatus.WAITING, ExecutionStatus.PENDING)
CSV_COLUMNS = (
    "id",
    "started_at",
    "finished_at",
    "workflow",
    "status",
    "mode",
    "trigger",
    "channel",
    "sender",
    "intent",
    "actions_executed",
    "error",
    "test",
    "replay_of",
)
_ex, _ev = Execution.__table__.c, EventRecord.__table__.c


@dataclass
class ExecutionFilter:
    """The executions page's filters; empty fields do not filter. Times are UTC bounds [start, end)."""

    start: datetime | None = None
    end: datetime | None = None
    status: str | None = None
    workflow_id: str | None = None
    trigger: str | None = None
    channel: str | None = None
    intent: str | None = None
    contact: str | None = None

    def check(self) -> None:
        if self.status and self.status not in domain.STATUS_FILTERS and self.status != domain.Outcome.IN_PROGRESS:
            raise InvalidInput(f"status must be one of {', '.join(domain.STATUS_FILTERS)}", field="status")
        if self.start and self.end and self.end <= self.start:
            raise InvalidInput("the end is not after the start", field="to")

    @property
    def needs_event(self) -> bool:
        return bool(self.trigger or self.channel or self.intent or self.contact)


class ExecutionKeysetPage(Out):
    items: list[ExecutionOut]
    #: Pass as ``after`` for the next (older) page; None on the last page.
    next_cursor: str | None = None
    page_size: int


class ReplayOut(Out):
    original_id: str
    execution: ExecutionOut


def _where(actor: Actor, f: ExecutionFilter) -> list[Any]:
    f.check()
    where: list[Any] = [_ex.tenant_id == actor.tenant_id]
    where += domain.status_filter(f.status) if f.status else [_ex.is_test == sa.false()]
    if f.status and f.status != domain.TEST_FILTER:
        where.append(_ex.is_test == sa.false())
    optional = [
        (f.start, lambda v: _ex.started_at >= v),
        (f.end, lambda v: _ex.started_at < v),
        (f.workflow_id, lambda v: _ex.workflow_id == v),
        (f.trigger, lambda v: _ev.trigger_type == v),
        (f.channel, lambda v: _ev.channel == v),
        (f.intent, lambda v: _ev.intent == v),
        (f.contact, lambda v: _ev.sender.in_(contact_forms(v))),
    ]
    where += [make(value) for value, make in optional if value]
    return where


def contact_forms(value: str) -> list[str]:
    """The contact as typed and in its normalised form (E.164 phone or lower-case e-mail)."""
    from engine.channels.phones import is_email, normalize_email, normalize_phone

    raw = value.strip()
    forms = {raw}
    try:
        forms.add(normalize_email(raw) if is_email(raw) else normalize_phone(raw))
    except Exception:  # noqa: BLE001 - not a phone number or address: match it as typed
        logger.debug("contact %r is not normalisable", raw)
    return sorted(forms)


def _select(actor: Actor, f: ExecutionFilter, *columns: Any) -> sa.Select:
    q = sa.select(*columns) if columns else select(Execution)
    if f.needs_event:
        q = q.join_from(Execution, EventRecord, _ev.id == _ex.event_id)
    return q.where(*_where(actor, f))


def encode_cursor(started_at: datetime, execution_id: str) -> str:
    raw = f"{started_at.astimezone(UTC).isoformat()}|{execution_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, execution_id = raw.split("|", 1)
        return datetime.fromisoformat(at), execution_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("not a cursor from this list", field="after") from exc


def _keyset(q: Any, after: str | None) -> Any:
    """Newest first, strictly older than the cursor: (started_at, id) < (at, id) with the index."""
    if after:
        at, execution_id = decode_cursor(after)
        q = q.where(sa.or_(_ex.started_at < at, sa.and_(_ex.started_at == at, _ex.id < execution_id)))
    return q.order_by(col(Execution.started_at).desc(), col(Execution.id).desc())


def search_executions(
    *,
    uow: UnitOfWork,
    actor: Actor,
    filters: ExecutionFilter | None = None,
    after: str | None = None,
    page_size: int = 50,
) -> ExecutionKeysetPage:
    """One keyset page of executions (newest first) with the filters; fast at any depth."""
    actor.require(READ)
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidInput(f"page size must be between 1 and {MAX_PAGE_SIZE}", field="pageSize")
    f = filters or ExecutionFilter()
    s = uow.session
    rows = list(s.exec(_keyset(_select(actor, f), after).limit(page_size + 1)).all())
    more = len(rows) > page_size
    rows = rows[:page_size]
    items = [_execution_out(r) for r in rows]
    items = mask_executions(uow=uow, actor=actor, items=items)
    nxt = encode_cursor(rows[-1].started_at, rows[-1].id) if more and rows else None
    return ExecutionKeysetPage(items=items, next_cursor=nxt, page_size=page_size)


def mask_executions(*, uow: UnitOfWork, actor: Actor, items: list[ExecutionOut]) -> list[ExecutionOut]:
    """Executions as the actor may see them: contacts masked for analysts (unless allowed)."""
    if masking.sees_contacts(uow=uow, actor=actor):
        return items
    return [ExecutionOut.model_validate(masking.mask_data(i.model_dump())) for i in items]


def count_executions(*, uow: UnitOfWork, actor: Actor, filters: ExecutionFilter | None = None) -> int:
    """How many executions match the filters (one COUNT)."""
    actor.require(READ)
    s = uow.session
    return s.execute(_select(actor, filters or ExecutionFilter(), sa.func.count())).scalar_one()


def _csv_row(ex: Execution, ev: dict[str, Any] | None) -> list[Any]:
    ev = ev or {}
    return [
        ex.id,
        ex.started_at.isoformat(),
        ex.finished_at.isoformat() if ex.finished_at else "",
        ex.workflow_name,
        ex.status,
        ex.mode,
        ev.get("trigger_type") or "",
        ev.get("channel") or "",
        ev.get("sender") or "",
        ev.get("intent") or "",
        ex.actions_executed,
        ex.error or "",
        "yes" if ex.is_test else "",
        ex.replay_of or "",
    ]


def iter_executions_csv(
    *,
    uow: UnitOfWork,
    actor: Actor,
    filters: ExecutionFilter | None = None,
    mask: Callable[[str], str] | None = None,
    batch: int = 1000,
) -> Iterator[str]:
    """Every matching execution as CSV text, streamed in keyset batches (never all rows at once)."""
    actor.require(READ)
    f, after = filters or ExecutionFilter(), None
    if mask is None and not masking.sees_contacts(uow=uow, actor=actor):
        mask = masking.mask_text
    yield _csv_line(CSV_COLUMNS)
    while True:
        s = uow.session
        cols = (Execution, _ev.trigger_type, _ev.channel, _ev.sender, _ev.intent)
        q = _keyset(
            _select(actor, f, *cols).outerjoin(EventRecord, _ev.id == _ex.event_id)
            if not f.needs_event
            else _select(actor, f, *cols),
            after,
        ).limit(batch)
        rows = s.execute(q).all()
        out = []
        for ex, trigger, channel, sender, intent in rows:
            ev = {
                "trigger_type": trigger,
                "channel": channel,
                "sender": mask(sender) if (mask and sender) else sender,
                "intent": intent,
            }
            out.append(_csv_line(_csv_row(ex, ev)))
        if out:
            yield "".join(out)
        if len(rows) < batch:
            return
        after = encode_cursor(rows[-1][0].started_at, rows[-1][0].id)


def _csv_line(values: Any) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerow(values)
    return buf.getvalue()


# --------------------------------------------------------------------------- cancel


_ex = Execution.__table__.c
_ROLLUP_COLUMNS = (_ex.tenant_id, _ex.workflow_id, _ex.started_at, _ex.is_test, _ex.mode)


def cancel_execution(*, uow: UnitOfWork, actor: Actor, execution_id: str, reason: str) -> ExecutionOut:
    """Cancel a waiting (or not yet started) execution: it never resumes, its follow-ups never fire."""
    actor.require(EDIT)
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("say why the execution is cancelled", field="reason")
    if len(reason) > 500:
        raise InvalidInput("at most 500 characters", field="reason")
    now = uow.now()
    s = uow.session
    status = _status_of(s, actor, execution_id)
    moved = s.execute(
        sa.update(Execution)
        .where(
            col(Execution.id) == execution_id,
            col(Execution.tenant_id) == actor.tenant_id,
            col(Execution.status).in_(CANCELLABLE),
        )
        .values(
            status=ExecutionStatus.CANCELLED,
            finished_at=now,
            lease_token=new_id(),
            current_action_id=None,
            error=f"cancelled by {actor.email or actor.role}: {reason}",
        )
    ).rowcount  # type: ignore[attr-defined]  # an UPDATE's result is a CursorResult
    if moved != 1:
        raise Conflict(f"only waiting executions can be cancelled; this one is {status}")
    deltas = rollups.Deltas()
    ex = s.execute(sa.select(*_ROLLUP_COLUMNS).where(col(Execution.id) == execution_id)).one()._mapping
    if not ex["is_test"] and ex["mode"] not in domain.UNCOUNTED_MODES:
        deltas.finish(ex["tenant_id"], ex["workflow_id"], ex["started_at"], ExecutionStatus.CANCELLED, now)
    deferred = sa.and_(
        col(OutboxMessage.execution_id) == execution_id, col(OutboxMessage.status) == OutboxStatus.DEFERRED
    )
    for row in s.execute(sa.select(OutboxMessage.__table__).where(deferred)).mappings().all():
        outbox_states.move(s, dict(row), OutboxStatus.SUPPRESSED, error=f"execution cancelled: {reason}")
    s.execute(
        sa.update(DueWork)
        .where(
            col(DueWork.execution_id) == execution_id, col(DueWork.status).in_((DueStatus.PENDING, DueStatus.CLAIMED))
        )
        .values(status=DueStatus.CANCELLED, done_at=now, error=f"execution cancelled: {reason}")
    )
    rollups.apply(s, deltas)
    logger.info("execution %s cancelled by %s", execution_id, actor.user_id or actor.role)
    from engine.services.runs import get_execution

    return get_execution(uow=uow, actor=actor, execution_id=execution_id)


def _status_of(s: Session, actor: Actor, execution_id: str) -> str:
    status = s.exec(
        select(Execution.status).where(Execution.id == execution_id, Execution.tenant_id == actor.tenant_id)
    ).first()
    if status is None:
        raise NotFound(f"execution {execution_id} not found")
    return status


# --------------------------------------------------------------------------- replay


def _failed_step(s: Session, execution_id: str) -> str | None:
    return s.exec(
        select(StepRun.action_id)
        .where(StepRun.execution_id == execution_id, StepRun.status == "failed")
        .order_by(col(StepRun.started_at).desc(), col(StepRun.attempt).desc())
    ).first()


def _replay_row(s: Session, actor: Actor, ex: Execution, from_step: str, version: str, now: datetime) -> dict[str, Any]:
    definition, number, name = ex.definition, ex.workflow_version, ex.workflow_name
    if version == "current":
        wf = s.get(Workflow, ex.workflow_id) if ex.workflow_id else None
        if wf is None or wf.tenant_id != actor.tenant_id:
            raise InvalidInput("the workflow was deleted: replay with the version it ran", field="version")
        definition, number, name = wf.definition, wf.version, wf.name
    ids = [a["id"] for a in definition.get("actions", [])]
    context = dict(ex.context or {})
    if from_step == "failed":
        start = _failed_step(s, ex.id)
        if start is None or start not in ids:
            raise InvalidInput("no failed step to start from in this version: replay from the start", field="fromStep")
        context.pop("failedSteps", None)
        context["attempts"] = {}
    else:
        start = ids[0] if ids else None
        trigger = context.get("trigger", {})
        context = run_context(trigger)
    context["replayOf"] = ex.id
    return {
        "id": new_id(),
        "tenant_id": actor.tenant_id,
        "workflow_id": ex.workflow_id,
        "workflow_name": name,
        "workflow_version": number,
        "event_id": ex.event_id,
        "status": ExecutionStatus.PENDING,
        "mode": ex.mode,
        "definition": definition,
        "context": context,
        "explanation": ex.explanation,
        "current_action_id": start,
        "lease_token": None,
        "heartbeat_at": None,
        "depth": ex.depth,
        "error": None,
        "started_at": now,
        "finished_at": None,
        "actions_executed": 0,
        "is_test": ex.is_test,
        "replay_of": ex.id,
    }


def replay_execution(
    *, uow: UnitOfWork, actor: Actor, execution_id: str, from_step: str = "failed", version: str = "original"
) -> ReplayOut:
    """Run a failed execution again as a new execution, from its failed step or from the start,
    with the definition it ran or the workflow's current one. Each failed execution is replayed
    at most once (``Conflict`` for the second attempt, even a concurrent one)."""
    actor.require(EDIT)
    if from_step not in ("failed", "start"):
        raise InvalidInput("fromStep must be failed or start", field="fromStep")
    if version not in ("original", "current"):
        raise InvalidInput("version must be original or current", field="version")
    try:
        s = uow.session
        ex = s.exec(
            select(Execution).where(Execution.id == execution_id, Execution.tenant_id == actor.tenant_id)
        ).first()
        if ex is None:
            raise NotFound(f"execution {execution_id} not found")
        if ex.status != ExecutionStatus.FAILED:
            raise Conflict(f"only failed executions can be replayed; this one is {ex.status}")
        replayed_by = s.exec(
            select(Execution.id).where(Execution.tenant_id == actor.tenant_id, Execution.replay_of == ex.id)
        ).first()
        if replayed_by is not None:  # (a concurrent replay is caught by the unique replay_of below)
            raise Conflict(f"execution {execution_id} was already replayed as {replayed_by}")
        row = _replay_row(s, actor, ex, from_step, version, uow.now())
        with s.begin_nested():  # a second replay fails alone: a bulk replay goes on with the next
            s.execute(sa.insert(Execution).values(**row))
            deltas = rollups.Deltas()
            rollups.inserted(s.connection(), {"executions": [row]}, deltas)
            rollups.apply(s, deltas)
    except IntegrityError as exc:
        raise Conflict(f"execution {execution_id} was already replayed") from exc
    before_runner(uow)  # the replay is stored; the runner drives it in its own transactions
    runner_for(uow.db).resume(row["id"])
    from engine.services.runs import get_execution

    return ReplayOut(original_id=execution_id, execution=get_execution(uow=uow, actor=actor, execution_id=row["id"]))


def _replayable(actor: Actor, filters: ExecutionFilter) -> sa.Select:
    f = ExecutionFilter(**{**filters.__dict__, "status": "failed"})
    replayed = sa.select(col(Execution.replay_of)).where(
        col(Execution.tenant_id) == actor.tenant_id, col(Execution.replay_of).isnot(None)
    )
    return _select(actor, f, _ex.id).where(_ex.id.notin_(replayed))


def count_replayable(*, uow: UnitOfWork, actor: Actor, filters: ExecutionFilter) -> int:
    """Failed executions matching the filters that were not replayed yet (what bulk replay would do)."""
    actor.require(READ)
    s = uow.session
    return s.execute(sa.select(sa.func.count()).select_from(_replayable(actor, filters).subquery())).scalar_one()


def bulk_replay(
    *,
    uow: UnitOfWork,
    actor: Actor,
    filters: ExecutionFilter,
    from_step: str = "failed",
    version: str = "original",
    limit: int = 1000,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Replay every failed, not yet replayed execution matching the filters (at most ``limit``)."""
    actor.require(EDIT)
    s = uow.session
    ids = list(s.execute(_keyset(_replayable(actor, filters), None).limit(limit)).scalars())
    done, errors = [], []
    for i, execution_id in enumerate(ids, 1):
        try:
            done.append(
                replay_execution(
                    uow=uow, actor=actor, execution_id=execution_id, from_step=from_step, version=version
                ).execution.id
            )
        except (Conflict, InvalidInput, NotFound) as exc:
            errors.append({"executionId": execution_id, "error": exc.message})
        if on_progress:
            on_progress(i, len(ids))
    return {"selected": len(ids), "replayed": done, "errors": errors}


# --------------------------------------------------------------------------- contact timeline


def contact_timeline(*, uow: UnitOfWork, actor: Actor, contact: str, limit: int = 200) -> list[dict[str, Any]]:
    """Everything one member sent and received, and every execution their messages started, in order
    (numbers and addresses inside the texts masked for analysts, as everywhere). Test-console rows are
    left out: a test conversation written as this member's number is not theirs."""
    actor.require(READ)
    contact = (contact or "").strip()
    if not contact:
        raise InvalidInput("give a phone number or an e-mail address", field="contact")
    ob = OutboxMessage.__table__.c
    s = uow.session
    inbound = s.execute(
        sa.select(_ev.id, _ev.received_at, _ev.channel, _ev.content, _ev.intent, _ev.trigger_type)
        .where(_ev.tenant_id == actor.tenant_id, _ev.sender.in_(contact_forms(contact)), _ev.is_test == sa.false())
        .order_by(_ev.received_at.desc())
        .limit(limit)
    ).all()
    outbound = s.execute(
        sa.select(ob.id, ob.created_at, ob.channel, ob.body, ob.status, ob.execution_id)
        .where(ob.tenant_id == actor.tenant_id, ob.recipient.in_(contact_forms(contact)), ob.is_test == sa.false())
        .order_by(ob.created_at.desc())
        .limit(limit)
    ).all()
    runs = s.execute(
        sa.select(_ex.id, _ex.started_at, _ex.workflow_name, _ex.status)
        .join_from(Execution, EventRecord, _ev.id == _ex.event_id)
        .where(_ex.tenant_id == actor.tenant_id, _ev.sender.in_(contact_forms(contact)), _ex.is_test == sa.false())
        .order_by(_ex.started_at.desc())
        .limit(limit)
    ).all()
    items = [
        {
            "at": r.received_at,
            "kind": "received",
            "channel": r.channel,
            "text": r.content or r.trigger_type,
            "detail": r.intent,
            "id": r.id,
        }
        for r in inbound
    ]
    items += [
        {
            "at": r.created_at,
            "kind": "sent",
            "channel": r.channel,
            "text": r.body,
            "detail": r.status,
            "id": r.execution_id,
        }
        for r in outbound
    ]
    items += [
        {
            "at": r.started_at,
            "kind": "execution",
            "channel": None,
            "text": r.workflow_name,
            "detail": r.status,
            "id": r.id,
        }
        for r in runs
    ]
    for item in items:
        item["at"] = item["at"].replace(tzinfo=UTC) if item["at"].tzinfo is None else item["at"]
    mask = masking.masker_for(uow=uow, actor=actor)  # texts quote numbers and addresses too
    return [mask(i) for i in sorted(items, key=lambda i: i["at"])[-limit:]]
