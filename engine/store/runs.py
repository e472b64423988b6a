"""Runtime persistence: the runner's and the worker's statements, and the rows they write.

Everything the runtime says to the database is here, in one place, over the model tables:

* **Row builders** (:class:`RowFactory`, :func:`event_row`, :func:`execution_row`,
  :func:`step_row`, :func:`outbox_row`, :func:`due_row`): complete rows for the fast INSERTs
  (``engine.store.fast`` needs every column). Columns not given take the model's own default
  (the SQLAlchemy column default, else the model field's default or default factory), read
  once per table; a column whose default is "now" takes the caller's ``now`` (the unit of
  work's clock), never the wall clock. A new column with a default therefore needs no edit here.
* **Hot statements** (:class:`~engine.store.fast.FastStatement`): the ingest look-ups, the
  execution save (only while the lease token matches), the run counters.
* **The worker's updates**: take over executions, close due items.

``engine.store.fast`` stays the mechanism beneath (compile once, run on the DB-API connection).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic_core import PydanticUndefined

from engine.store.fast import FastStatement
from engine.store.models import (
    DueStatus,
    DueWork,
    EventRecord,
    Execution,
    ExecutionStatus,
    OutboxMessage,
    StepRun,
    StepStatus,
    Tenant,
    Workflow,
    new_id,
    utcnow,
)

# ---------------------------------------------------------------------- rows


class RowFactory:
    """Complete rows for one table: given values over the table's own defaults.

    Built once per model: the scalar defaults as one dict, the default factories as a list
    (``id`` -> ``new_id``, JSON columns -> ``dict``/``list``, timestamps defaulting to now ->
    the ``now`` the caller passes). A row costs a dict merge plus one call per factory the
    caller left out, about what a hand-typed dict literal costs.
    """

    __slots__ = ("columns", "model", "_factories", "_now_columns", "_static")

    def __init__(self, model: Any) -> None:
        self.model = model
        self.columns: list[str] = [c.key for c in model.__table__.columns]
        fields = getattr(model, "model_fields", {})
        static: dict[str, Any] = {}
        factories: list[tuple[str, Any]] = []
        now_columns: list[str] = []
        for column in model.__table__.columns:
            key, default = column.key, column.default
            field = fields.get(key)
            factory = getattr(field, "default_factory", None)
            if default is not None and default.is_scalar:
                static[key] = default.arg
            elif default is not None and default.is_callable:
                factory = factory or (lambda wrapped=default.arg: wrapped(None))  # SQLAlchemy passes a context
            elif factory is None and field is not None and field.default is not PydanticUndefined:
                static[key] = field.default
            elif factory is None:
                static[key] = None  # required: the caller gives it (NOT NULL fails loudly if not)
                continue
            if factory is utcnow:
                now_columns.append(key)
            elif factory is not None:
                factories.append((key, factory))
        self._static, self._factories, self._now_columns = static, tuple(factories), tuple(now_columns)

    def __call__(self, values: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
        row = {**self._static, **values}
        for key, factory in self._factories:
            if key not in values:
                row[key] = factory()
        for key in self._now_columns:
            if key not in values:
                if now is None:
                    raise ValueError(
                        f"{self.model.__tablename__}.{key} defaults to now: pass now (the unit of work's time)"
                    )
                row[key] = now
        return row


_factories: dict[Any, RowFactory] = {}


def row_factory(model: Any) -> RowFactory:
    found = _factories.get(model)
    if found is None:
        found = _factories[model] = RowFactory(model)
    return found


def build_row(model: Any, now: datetime | None = None, **values: Any) -> dict[str, Any]:
    """A complete row for ``model``: ``values`` over the table's defaults (see :class:`RowFactory`)."""
    return row_factory(model)(values, now)


_EVENT, _EXECUTION, _STEP = RowFactory(EventRecord), RowFactory(Execution), RowFactory(StepRun)
_OUTBOX, _DUE = RowFactory(OutboxMessage), RowFactory(DueWork)
_factories.update({EventRecord: _EVENT, Execution: _EXECUTION, StepRun: _STEP, OutboxMessage: _OUTBOX, DueWork: _DUE})


def event_row(
    tenant_id: str, ev: Any, now: datetime, depth: int, parent: str | None, is_test: bool = False
) -> dict[str, Any]:
    """The stored event for a parsed :class:`engine.workflow.definitions.Event`."""
    data = dict(ev.data)
    if ev.lead_id:
        data["leadId"] = ev.lead_id
    if ev.booking_id:
        data["bookingId"] = ev.booking_id
    return _EVENT(
        {
            "tenant_id": tenant_id,
            "trigger_type": ev.trigger_type,
            "channel": ev.channel,
            "content": ev.content,
            "sender": ev.from_,
            "intent": ev.intent,
            "intent_confidence": ev.intent_confidence,
            "custom_fields": ev.custom_fields,
            "data": data,
            "received_at": ev.received_at or now,
            "idempotency_key": ev.idempotency_key,
            "depth": depth,
            "parent_execution_id": parent,
            "is_test": is_test,
        },
        now,
    )


def execution_row(
    tenant_id: str,
    wf: Any,
    event_id: str | None,
    context: dict[str, Any],
    explanation: list,
    now: datetime,
    mode: str,
    depth: int,
    is_test: bool = False,
) -> dict[str, Any]:
    """A new execution of workflow ``wf`` (id, name, version, definition), running, with its lease."""
    definition = wf.definition
    first = definition["actions"][0]["id"] if definition.get("actions") else None
    return _EXECUTION(
        {
            "tenant_id": tenant_id,
            "workflow_id": wf.id,
            "workflow_name": wf.name,
            "workflow_version": wf.version,
            "event_id": event_id,
            "status": ExecutionStatus.RUNNING,
            "mode": mode,
            "definition": definition,
            "context": context,
            "explanation": explanation,
            "current_action_id": first,
            "lease_token": new_id(),
            "heartbeat_at": now,
            "depth": depth,
            "started_at": now,
            "is_test": is_test,
        },
        now,
    )


def step_row(tenant_id: str, execution_id: str, action: Any, attempt: int, now: datetime) -> dict[str, Any]:
    """A step of ``action`` starting now (status running)."""
    return _STEP(
        {
            "tenant_id": tenant_id,
            "execution_id": execution_id,
            "action_id": action.id,
            "action_type": action.type,
            "attempt": attempt,
            "status": StepStatus.RUNNING,
            "started_at": now,
        },
        now,
    )


def outbox_row(now: datetime, **values: Any) -> dict[str, Any]:
    """An outbox message (``created_at`` = now)."""
    return _OUTBOX(values, now)


def due_row(now: datetime, **values: Any) -> dict[str, Any]:
    """A due-work item (``created_at`` = now; ``due_at`` must be given)."""
    return _DUE(values, now)


# ---------------------------------------------------------------------- inserts

#: An INSERT of every column per table, compiled once per dialect.
_INSERTS: dict[Any, FastStatement] = {}


def insert_statement(model: Any) -> FastStatement:
    """The fast INSERT of complete rows into ``model``'s table."""
    found = _INSERTS.get(model)
    if found is None:
        found = _INSERTS[model] = FastStatement(model.__table__.insert())
    return found


FAST_INSERTS = {model: insert_statement(model) for model in (EventRecord, Execution, StepRun, OutboxMessage, DueWork)}
#: Parents first (SQLAlchemy's foreign-key order): the write buffer writes tables in this order.
TABLE_ORDER = {t.name: i for i, t in enumerate(EventRecord.metadata.sorted_tables)}

# ---------------------------------------------------------------------- ingest look-ups

_ev, _ex, _wf, _tc = EventRecord.__table__.c, Execution.__table__.c, Workflow.__table__.c, Tenant.__table__.c
TENANT_COLUMNS = ("id", "slug", "name", "timezone", "settings")
FAST_TENANT = FastStatement(sa.select(*(_tc[k] for k in TENANT_COLUMNS)).where(_tc.id == sa.bindparam("tenant_id")))
#: Two IN parameters (the same type twice when there is one): no expanding parameter, one SQL text.
FAST_CANDIDATES = FastStatement(
    sa.select(_wf.id, _wf.name, _wf.version, _wf.definition, _wf.trigger_type).where(
        _wf.tenant_id == sa.bindparam("tenant_id"),
        _wf.trigger_type.in_([sa.bindparam("t1"), sa.bindparam("t2")]),
        _wf.enabled == sa.true(),
    )
)
#: On the DB-API connection: on a plain (not begun) Connection they begin no transaction.
FAST_EVENT_BY_KEY = FastStatement(
    sa.select(_ev.id).where(_ev.tenant_id == sa.bindparam("tenant_id"), _ev.idempotency_key == sa.bindparam("key"))
)
FAST_EXECUTIONS_OF = FastStatement(sa.select(_ex.id).where(_ex.event_id == sa.bindparam("event_id")))


def tenant_row(target: Any, tenant_id: str) -> dict[str, Any] | None:
    """The tenant's columns the runner needs, or None."""
    row = FAST_TENANT.first(target, {"tenant_id": tenant_id})
    return None if row is None else dict(zip(TENANT_COLUMNS, row))


def candidate_rows(target: Any, tenant_id: str, trigger_type: str, other: str) -> list[tuple]:
    """(id, name, version, definition, trigger type) of the tenant's enabled workflows of either type."""
    return FAST_CANDIDATES.all(target, {"tenant_id": tenant_id, "t1": trigger_type, "t2": other})


def event_by_key(target: Any, tenant_id: str, key: str) -> str | None:
    row = FAST_EVENT_BY_KEY.first(target, {"tenant_id": tenant_id, "key": key})
    return row[0] if row else None


def executions_of(target: Any, event_id: str) -> list[str]:
    return [row[0] for row in FAST_EXECUTIONS_OF.all(target, {"event_id": event_id})]


# ---------------------------------------------------------------------- execution progress

#: SET columns come from the parameters given; only the holder of the lease token may write.
_SAVE_EXECUTION = sa.update(Execution.__table__).where(
    _ex.id == sa.bindparam("b_id"), _ex.lease_token == sa.bindparam("b_token")
)
SAVE_KEYS = ["status", "context", "current_action_id", "actions_executed", "heartbeat_at"]
FAST_SAVE = FastStatement(_SAVE_EXECUTION, SAVE_KEYS)
FAST_SAVE_FINISHED = FastStatement(_SAVE_EXECUTION, SAVE_KEYS + ["finished_at", "error"])
FAST_COUNT_RUN = FastStatement(
    sa.update(Workflow.__table__)
    .where(_wf.id == sa.bindparam("b_id"))
    .values(
        run_count=_wf.run_count + sa.bindparam("b_n"),
        success_count=_wf.success_count + sa.bindparam("b_ok"),
        error_count=_wf.error_count + sa.bindparam("b_bad"),
        last_run_at=sa.bindparam("b_at"),
    )
)
_st = StepRun.__table__.c
_FINISH_STEP = sa.update(StepRun.__table__).where(_st.id == sa.bindparam("b_id"))
FINISH_STEP_KEYS = ["status", "input", "output", "error", "finished_at"]
FAST_FINISH_STEP = FastStatement(_FINISH_STEP, FINISH_STEP_KEYS)


def save_execution(conn: Any, values: dict[str, Any], finished: bool) -> bool:
    """Write an execution's progress (``values``: ``b_id``, ``b_token`` and the SAVE keys, plus
    ``finished_at``/``error`` when ``finished``); False when the lease token no longer matches."""
    return (FAST_SAVE_FINISHED if finished else FAST_SAVE).rowcount(conn, values) == 1


def save_executions(conn: Any, values: Sequence[Mapping[str, Any]], finished: bool) -> bool:
    """:func:`save_execution` for many executions in one ``executemany``; False when any lease
    token no longer matches (fewer rows updated than given)."""
    return (FAST_SAVE_FINISHED if finished else FAST_SAVE).rowcount_many(conn, values) == len(values)


def count_runs(conn: Any, workflow_id: str, n: int, ok: int, bad: int, at: datetime) -> None:
    """Add finished runs to the workflow's counters."""
    FAST_COUNT_RUN.rowcount(conn, {"b_id": workflow_id, "b_n": n, "b_ok": ok, "b_bad": bad, "b_at": at})


def finish_step(conn: Any, step: dict[str, Any]) -> None:
    """Write the outcome of a step that was committed as running (an external step)."""
    FAST_FINISH_STEP.rowcount(conn, {"b_id": step["id"], **{k: step[k] for k in FINISH_STEP_KEYS}})


# ---------------------------------------------------------------------- the worker

_due = DueWork.__table__.c
_wf = Workflow.__table__.c
_tenant = Tenant.__table__.c
TAKE_OVER = (
    sa.update(Execution.__table__)
    .where(_ex.id == sa.bindparam("b_id"))
    .values(lease_token=sa.bindparam("b_token"), status=ExecutionStatus.RUNNING, heartbeat_at=sa.bindparam("b_now"))
)
CLOSE_DUE = (
    sa.update(DueWork.__table__)
    .where(_due.id == sa.bindparam("b_id"), _due.locked_by == sa.bindparam("b_by"), _due.status == DueStatus.CLAIMED)
    .values(status=DueStatus.DONE, done_at=sa.bindparam("b_now"), locked_until=None)
)


def lock_executions(conn: sa.Connection, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The executions' rows by id, locked (``FOR UPDATE`` in id order) on PostgreSQL."""
    stmt = sa.select(Execution.__table__).where(_ex.id.in_(sorted(set(ids)))).order_by(_ex.id)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return {row["id"]: dict(row) for row in conn.execute(stmt).mappings()}


def execution_for_resume(session: Any, execution_id: str) -> Execution | None:
    """The execution as an ORM row (locked on PostgreSQL), to take it over."""
    stmt = sa.select(Execution).where(_ex.id == execution_id)
    if session.bind.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return session.execute(stmt).scalars().first()


def due_filter(now: datetime, ids: Sequence[str] | None = None) -> Any:
    """Due items: pending and due, or claimed with an expired lease (only ``ids`` when given)."""
    due = sa.or_(
        sa.and_(_due.status == DueStatus.PENDING, _due.due_at <= now),
        sa.and_(_due.status == DueStatus.CLAIMED, _due.locked_until < now),
    )
    return due if ids is None else sa.and_(due, _due.id.in_(ids))


def claim_due(
    session: Any,
    *,
    now: datetime,
    lease: Any,
    worker: str,
    limit: int,
    postgres: bool,
    ids: Sequence[str] | None = None,
    kinds: Sequence[str] | None = None,
    other_kinds: bool = False,
) -> list[DueWork]:
    """Lease up to ``limit`` due items to ``worker`` (SKIP LOCKED on PostgreSQL); the claimed rows.

    ``kinds``: only items of these kinds (or, with ``other_kinds``, only items of other kinds)."""
    where = due_filter(now, ids)
    if kinds is not None:
        where = sa.and_(where, _due.kind.not_in(kinds) if other_kinds else _due.kind.in_(kinds))
    stmt = sa.select(_due.id).where(where).order_by(_due.due_at).limit(limit)
    if postgres:
        stmt = stmt.with_for_update(skip_locked=True)
    claimed = list(session.execute(stmt).scalars().all())
    if not claimed:
        return []
    session.execute(
        sa.update(DueWork)
        .where(_due.id.in_(claimed))
        .values(status=DueStatus.CLAIMED, locked_by=worker, locked_until=now + lease, attempts=_due.attempts + 1)
    )
    return list(session.execute(sa.select(DueWork).where(_due.id.in_(claimed)).order_by(_due.due_at)).scalars().all())


def close_due(conn: Any, item_id: str, worker: str, now: datetime) -> bool:
    """Mark a claimed item done; False when it is no longer leased to ``worker``."""
    return conn.execute(CLOSE_DUE, {"b_id": item_id, "b_by": worker, "b_now": now}).rowcount == 1


def close_due_many(conn: Any, item_ids: Sequence[str], worker: str, now: datetime) -> int:
    """Mark claimed items done; how many were still leased to ``worker``."""
    return conn.execute(CLOSE_DUE, [{"b_id": i, "b_by": worker, "b_now": now} for i in item_ids]).rowcount


def renew_due(conn: Any, item_ids: Sequence[str], worker: str, until: datetime) -> int:
    """Extend ``worker``'s leases of these items to ``until``; how many it still held.

    On PostgreSQL the rows are locked in id order and rows another transaction holds are
    skipped (this worker's own item being closed right now, a claim racing an expired lease):
    a renewal never waits, so it can never be part of a deadlock; a skipped row is renewed
    on the next round."""
    ids = sorted(set(item_ids))
    if not ids:
        return 0
    mine = sa.and_(_due.id.in_(ids), _due.locked_by == worker, _due.status == DueStatus.CLAIMED)
    if conn.dialect.name == "postgresql":
        locked = sa.select(_due.id).where(mine).order_by(_due.id).with_for_update(skip_locked=True).scalar_subquery()
        stmt = sa.update(DueWork.__table__).where(_due.id.in_(locked))
    else:
        stmt = sa.update(DueWork.__table__).where(mine)
    return conn.execute(stmt.values(locked_until=until)).rowcount


def hold_due(conn: Any, item_id: str, worker: str, until: datetime) -> bool:
    """Renew one item's lease before its work begins; False when it is no longer ``worker``'s
    (its lease ran out and another worker claimed it): then the work must not begin."""
    return (
        conn.execute(
            sa.update(DueWork.__table__)
            .where(_due.id == item_id, _due.locked_by == worker, _due.status == DueStatus.CLAIMED)
            .values(locked_until=until)
        ).rowcount
        == 1
    )


def lock_due(conn: Any, item_id: str) -> None:
    """Lock the item's row first (PostgreSQL), so a transaction that also writes its outbox
    message takes the two locks in the same order as the one that began the send."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(_due.id).where(_due.id == item_id).with_for_update())


def release_due(conn: Any, item_ids: Sequence[str], worker: str) -> int:
    """Give claimed items that were never started back (a stopping worker): due again at once,
    their claim not counted as an attempt."""
    ids = sorted(set(item_ids))
    if not ids:
        return 0
    return conn.execute(
        sa.update(DueWork.__table__)
        .where(_due.id.in_(ids), _due.locked_by == worker, _due.status == DueStatus.CLAIMED)
        .values(status=DueStatus.PENDING, locked_until=None, attempts=_due.attempts - 1)
    ).rowcount


def reschedule_due(conn: Any, item_id: str, worker: str, values: dict[str, Any]) -> None:
    """Record a failed item's error and its next try (or final failure), if still ``worker``'s."""
    conn.execute(sa.update(DueWork).where(_due.id == item_id, _due.locked_by == worker).values(**values))


def due_cron(session: Any, now: datetime, limit: int, postgres: bool) -> list[tuple]:
    """(workflow id, tenant id, definition, fire time, timezone) of cron workflows due now."""
    stmt = (
        sa.select(_wf.id, _wf.tenant_id, _wf.definition, _wf.next_fire_at, _tenant.timezone)
        .join(Tenant, _tenant.id == _wf.tenant_id)
        .where(_wf.next_fire_at <= now, _wf.enabled == sa.true())
        .limit(limit)
    )
    if postgres:
        stmt = stmt.with_for_update(skip_locked=True, of=Workflow)
    return list(session.execute(stmt).all())


def advance_cron(conn: Any, workflow_id: str, fired_at: datetime, next_at: datetime | None) -> None:
    """Move the workflow's next fire time on, unless someone else already did."""
    conn.execute(
        sa.update(Workflow).where(_wf.id == workflow_id, _wf.next_fire_at == fired_at).values(next_fire_at=next_at)
    )


def stale_executions(session: Any, stale_before: datetime, limit: int) -> list[str]:
    """Running executions without progress since ``stale_before`` (their runner died)."""
    return list(
        session.execute(
            sa.select(_ex.id).where(_ex.status == ExecutionStatus.RUNNING, _ex.heartbeat_at < stale_before).limit(limit)
        )
        .scalars()
        .all()
    )
