"""Hourly rollups for Insights: counts kept in the same transaction as the rows they count.

One table, ``insight_rollups``, keyed by (tenant, kind, UTC hour, k1, k2), holds a count ``n``
per key. One table rather than one per kind so that a runner batch writes **one** multi-row
upsert (``INSERT .. VALUES (..),(..) ON CONFLICT .. DO UPDATE SET n = n + excluded.n``)
whatever it touched; rows are sorted by key so concurrent PostgreSQL transactions lock them
in the same order. The kinds:

=====  ==========================================  ==============================  ==========
kind   what is counted                             k1 / k2                          hour of
=====  ==========================================  ==============================  ==========
``x``  counted executions (``engine.domain``)      workflow id ("" none) / outcome  started_at
``t``  the same, whole studio                      "" / outcome                     started_at
``a``  step attempts of counted executions         action type / step status        step start
``s``  counted executions with an event            trigger type / channel ("none")  started_at
``d``  counted succeeded/failed executions'        workflow id / duration bucket    started_at
       durations (``hour`` is the UTC **day**)                                      (day)
``e``  inbound events (not test, depth 0)          channel ("" none) / intent ("")  received_at
``o``  outbox messages (not test)                  channel / status                 created_at
=====  ==========================================  ==============================  ==========

The outcome (``domain.Outcome``) lumps pending, running and waiting together, so only the
step from "in progress" to an end (finish, cancel) moves a count between outcomes.

Local days are unions of UTC hours, so a 23- or 25-hour DST day is exact for zones with
whole-hour offsets. Durations are kept per UTC day in fine buckets (0.1 s up to a minute,
then 8 per doubling): the per-workflow median is read from them.

Who writes deltas (always inside the transaction that changes the rows):

* the runner's write buffer (``engine.runner.buffer``): the batch's new rows, aggregated in
  Python, and finishes of executions written earlier (``Deltas.finish``), at commit;
* an ORM flush of ``Execution``/``EventRecord``/``OutboxMessage`` objects (the listener at the
  end of this module): inserts, changes of a key column, deletes;
* Core statements that change those rows elsewhere call :func:`apply` with their deltas
  (cancel and replay in ``engine.services.operations``, delivery callbacks, retention).

:func:`backfill` recomputes everything from rows (the migration and the benchmark use it);
:func:`from_rows` is the same computation as a dict (tests compare it with the table).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Field

from engine.domain import IN_PROGRESS_STATUSES, UNCOUNTED_MODES
from engine.store.models import EventRecord, Execution, OutboxMessage, SQLModel, StepRun, UTCDateTime

#: Inbound channels of members' messages (the event's ``channel``); as the Insights count them.
MESSAGE_CHANNELS = ("whatsapp", "sms", "email", "web", "voice")
EXECUTIONS, TOTALS, STEPS, SOURCES, DURATIONS, EVENTS, OUTBOX = "x", "t", "a", "s", "d", "e", "o"
KINDS = (EXECUTIONS, TOTALS, STEPS, SOURCES, DURATIONS, EVENTS, OUTBOX)
_FINE_BUCKETS = 600  # 0.1 s each, up to 60 s
_PER_DOUBLING = 8


class InsightRollup(SQLModel, table=True):
    """A count per (tenant, kind, UTC hour, k1, k2); see the module docstring for the kinds."""

    __tablename__ = "insight_rollups"

    tenant_id: str = Field(foreign_key="tenants.id", ondelete="CASCADE", primary_key=True, max_length=32)
    kind: str = Field(primary_key=True, max_length=1)
    hour: datetime = Field(sa_column=sa.Column(UTCDateTime(), primary_key=True))
    k1: str = Field(default="", primary_key=True, max_length=64)
    k2: str = Field(default="", primary_key=True, max_length=64)
    n: int = 0


_t = InsightRollup.__table__
_c = _t.c
Key = tuple[str, str, datetime, str, str]


# --------------------------------------------------------------------------- keys


def hour_of(at: datetime) -> datetime:
    """The naive UTC hour an instant falls in (rows carry aware or naive UTC datetimes)."""
    tz = at.tzinfo
    if tz is not None and tz is not UTC:
        at = at.astimezone(UTC)
    return at.replace(minute=0, second=0, microsecond=0, tzinfo=None)


def duration_bucket(seconds: float) -> int:
    """0.1 s buckets up to a minute, then ``_PER_DOUBLING`` buckets per doubling."""
    if seconds < 60:
        return max(0, int(seconds * 10 + 1e-3))
    return _FINE_BUCKETS + int(math.log2(seconds / 60) * _PER_DOUBLING)


_BUCKETS = [str(i) for i in range(_FINE_BUCKETS + 1)]


def bucket_seconds(bucket: int) -> float:
    """The lower bound of a duration bucket (what a median read from the buckets reports)."""
    if bucket < _FINE_BUCKETS:
        return bucket / 10
    return 60 * 2 ** ((bucket - _FINE_BUCKETS) / _PER_DOUBLING)


def outcome(status: str) -> str:
    return "in_progress" if status in IN_PROGRESS_STATUSES else str(status)


def _counted(row: Mapping[str, Any]) -> bool:
    return not row.get("is_test") and row.get("mode", "live") not in UNCOUNTED_MODES


class Deltas(dict[Key, int]):
    """Rollup deltas by key, added up in Python until :meth:`write` (or :func:`apply`)."""

    def add(self, key: Key, n: int) -> None:
        self[key] = self.get(key, 0) + n

    def merge(self, other: Mapping[Key, int]) -> None:
        for key, n in other.items():
            self[key] = self.get(key, 0) + n

    # --- executions

    def execution(self, row: Mapping[str, Any], sign: int = 1, event: Mapping[str, Any] | None = None) -> None:
        """A counted execution row (as inserted or deleted): its outcome, duration and source."""
        if not _counted(row):
            return
        tenant, wf, started, status = row["tenant_id"], row["workflow_id"] or "", row["started_at"], row["status"]
        hour, out = hour_of(started), outcome(status)
        self.add((tenant, EXECUTIONS, hour, wf, out), sign)
        self.add((tenant, TOTALS, hour, "", out), sign)
        finished = row.get("finished_at")
        if finished is not None and (status == "succeeded" or status == "failed"):
            self._duration(tenant, wf, hour, started, finished, sign)
        if event is not None:
            self.add((tenant, SOURCES, hour, event["trigger_type"], event["channel"] or "none"), sign)

    def finish(
        self, tenant_id: str, workflow_id: str | None, started_at: datetime, status: str, finished_at: datetime | None
    ) -> None:
        """A counted execution written earlier as in progress has ended with ``status``."""
        hour, wf = hour_of(started_at), workflow_id or ""
        self.add((tenant_id, EXECUTIONS, hour, wf, "in_progress"), -1)
        self.add((tenant_id, EXECUTIONS, hour, wf, outcome(status)), 1)
        self.add((tenant_id, TOTALS, hour, "", "in_progress"), -1)
        self.add((tenant_id, TOTALS, hour, "", outcome(status)), 1)
        if finished_at is not None and status in ("succeeded", "failed"):
            self._duration(tenant_id, wf, hour, started_at, finished_at, 1)

    def _duration(self, tenant: str, wf: str, hour: datetime, started: datetime, finished: Any, sign: int) -> None:
        if (started.tzinfo is None) != (finished.tzinfo is None):
            started, finished = _aware(started), _aware(finished)
        seconds = (finished - started).total_seconds()
        bucket = _BUCKETS[int(seconds * 10 + 1e-3)] if 0 <= seconds < 60 else str(duration_bucket(seconds))
        self.add((tenant, DURATIONS, hour.replace(hour=0), wf, bucket), sign)

    def step(self, row: Mapping[str, Any], sign: int = 1) -> None:
        """A step attempt of a counted execution (the caller knows the execution counts)."""
        key = (row["tenant_id"], STEPS, hour_of(row["started_at"]), row["action_type"], row["status"])
        self.add(key, sign)

    def step_status(self, row: Mapping[str, Any], old_status: str) -> None:
        """A step written earlier with ``old_status`` now has ``row["status"]``."""
        if old_status != row["status"]:
            self.step({**row, "status": old_status}, -1)
            self.step(row, 1)

    # --- events and messages

    def event(self, row: Mapping[str, Any], sign: int = 1) -> None:
        if row.get("is_test") or row.get("depth", 0) != 0:
            return
        key = (row["tenant_id"], EVENTS, hour_of(row["received_at"]), row["channel"] or "", row["intent"] or "")
        self.add(key, sign)

    def outbox(self, row: Mapping[str, Any], sign: int = 1) -> None:
        if row.get("is_test"):
            return
        self.add((row["tenant_id"], OUTBOX, hour_of(row["created_at"]), row["channel"], row["status"]), sign)

    def outbox_status(self, row: Mapping[str, Any], new_status: str) -> None:
        """An outbox row's status changes from ``row["status"]`` to ``new_status``."""
        if row["status"] != new_status:
            self.outbox(row, -1)
            self.outbox({**row, "status": new_status}, 1)

    # --- writing

    def write(self, conn: Any) -> None:
        """One multi-row upsert of the non-zero deltas, sorted by key (lock order); then empty."""
        rows = sorted((k, n) for k, n in self.items() if n)
        self.clear()
        if rows:
            upsert(conn, rows)


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- the upsert

_SQL: dict[tuple[str, int], str] = {}
_CHUNK = 500


def _sql(dialect: str, count: int) -> str:
    found = _SQL.get((dialect, count))
    if found is None:
        mark = "?" if dialect == "sqlite" else "%s"
        one = "(" + ", ".join([mark] * 6) + ")"
        found = _SQL[(dialect, count)] = (
            "INSERT INTO insight_rollups (tenant_id, kind, hour, k1, k2, n) VALUES "
            + ", ".join([one] * count)
            + " ON CONFLICT (tenant_id, kind, hour, k1, k2) DO UPDATE SET n = insight_rollups.n + excluded.n"
        )
    return found


_TEXTS: dict[datetime, str] = {}


def _sqlite_time(hour: datetime) -> str:
    """An hour as SQLAlchemy's SQLite DATETIME text (cached: a batch's keys share a few hours)."""
    text = _TEXTS.get(hour)
    if text is None:
        if len(_TEXTS) > 4096:
            _TEXTS.clear()
        text = _TEXTS[hour] = hour.strftime("%Y-%m-%d %H:%M:%S.%f")
    return text


def upsert(conn: sa.Connection, rows: list[tuple[Key, int]]) -> None:
    """Add counts (sorted rows) with one statement per 500 keys, on the DB-API cursor of
    ``conn``'s transaction (the runner's hot path: no SQLAlchemy statement machinery)."""
    dialect = conn.dialect.name
    sqlite = dialect == "sqlite"
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start : start + _CHUNK]
            params: list[Any] = []
            for (tenant, kind, hour, k1, k2), n in chunk:
                params += (tenant, kind, _sqlite_time(hour) if sqlite else hour, k1, k2, n)
            cursor.execute(_sql(dialect, len(chunk)), params)
    finally:
        cursor.close()


def outbox_values(msg: Any) -> dict[str, Any]:
    """The rollup key columns of an ``OutboxMessage`` object (before a Core UPDATE changes it)."""
    return {k: getattr(msg, k) for k in _OUTBOX_KEYS}


def apply(conn: Any, deltas: Deltas) -> None:
    """Write ``deltas`` now (a Core statement changed rows in ``conn``'s transaction)."""
    if deltas:
        deltas.write(conn if isinstance(conn, sa.Connection) else conn.connection())


def forget_workflow(conn: sa.Connection, tenant_id: str, workflow_id: str) -> None:
    """A deleted workflow's counts move to the "no workflow" key, as its executions' rows do."""
    q = sa.select(_c.kind, _c.hour, _c.k2, _c.n).where(
        _c.tenant_id == tenant_id, _c.kind.in_((EXECUTIONS, DURATIONS)), _c.k1 == workflow_id, _c.n != 0
    )
    deltas = Deltas()
    for kind, hour, k2, n in conn.execute(q):
        deltas.add((tenant_id, kind, hour_of(hour), workflow_id, k2), -n)
        deltas.add((tenant_id, kind, hour_of(hour), "", k2), n)
    deltas.write(conn)


def counted_executions(conn: Any, execution_ids: Iterable[str]) -> set[str]:
    """Which of the given executions count (the step rollups of the others are not kept)."""
    ids = sorted(set(execution_ids))
    if not ids:
        return set()
    ex = Execution.__table__.c
    return set(conn.execute(sa.select(ex.id).where(ex.id.in_(ids), _counted_sql(ex))).scalars())


def event_sources(conn: Any, event_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """trigger type and channel of the given events, by id (for executions whose event is not at hand)."""
    ids = sorted({i for i in event_ids if i})
    if not ids:
        return {}
    ev = EventRecord.__table__.c
    rows = conn.execute(sa.select(ev.id, ev.trigger_type, ev.channel).where(ev.id.in_(ids)))
    return {r.id: {"trigger_type": r.trigger_type, "channel": r.channel} for r in rows}


def inserted(conn: Any, tables: Mapping[str, list[dict[str, Any]]], deltas: Deltas) -> None:
    """Deltas for complete rows about to be inserted (``tables``: table name -> rows)."""
    events = tables.get("events", ())
    for row in events:
        deltas.event(row)
    for row in tables.get("outbox_messages", ()):
        deltas.outbox(row)
    executions = tables.get("executions")
    if not executions:
        return
    by_id = {row["id"]: row for row in events}
    missing = [r["event_id"] for r in executions if r["event_id"] and r["event_id"] not in by_id and _counted(r)]
    if missing:
        by_id.update(event_sources(conn, missing))
    for row in executions:
        deltas.execution(row, 1, by_id.get(row["event_id"]) if row["event_id"] else None)


def inserted_deltas(conn: Any, table: str, rows: list[dict[str, Any]]) -> Deltas:
    """:func:`inserted` for rows of one table, as a new :class:`Deltas`."""
    deltas = Deltas()
    inserted(conn, {table: rows}, deltas)
    return deltas


# --------------------------------------------------------------------------- from rows


def _hour_sql(column: Any, dialect: str, unit: str = "hour") -> Any:
    if dialect == "postgresql":
        return sa.func.date_trunc(unit, column)
    return sa.func.strftime("%Y-%m-%d %H:00:00.000000" if unit == "hour" else "%Y-%m-%d 00:00:00.000000", column)


def _seconds(later: Any, earlier: Any, dialect: str) -> Any:
    if dialect == "postgresql":
        return sa.func.extract("epoch", later - earlier)
    return (sa.func.julianday(later) - sa.func.julianday(earlier)) * 86400.0


def _counted_sql(ex: Any) -> Any:
    return sa.and_(ex.is_test == sa.false(), ex.mode.notin_(UNCOUNTED_MODES))


def _outcome_sql(ex: Any) -> Any:
    return sa.case((ex.status.in_(IN_PROGRESS_STATUSES), "in_progress"), else_=ex.status)


def _bucket_sql(seconds: Any) -> Any:
    """:func:`duration_bucket` in SQL (``floor`` and ``ln``: SQLite 3.35+ built with its math
    functions, as CPython's is; PostgreSQL always)."""
    fine = sa.cast(sa.func.floor(seconds * 10 + 1e-3), sa.Integer)
    log = _FINE_BUCKETS + sa.cast(sa.func.floor(sa.func.ln(seconds / 60) / math.log(2) * _PER_DOUBLING), sa.Integer)
    return sa.case((seconds < 60, sa.case((fine < 0, 0), else_=fine)), else_=log)


def source_selects(dialect: str, tenant_id: str | None = None) -> list[sa.Select]:
    """SELECT (tenant_id, kind, hour, k1, k2, n) per kind, grouped from the rows."""
    ex, ev, ob = Execution.__table__.c, EventRecord.__table__.c, OutboxMessage.__table__.c

    def scoped(table_c: Any, *where: Any) -> list[Any]:
        return [*where, *([table_c.tenant_id == tenant_id] if tenant_id else [])]

    hx = _hour_sql(ex.started_at, dialect)
    wf = sa.func.coalesce(ex.workflow_id, "")
    out = _outcome_sql(ex)
    executions = (
        sa.select(ex.tenant_id, sa.literal(EXECUTIONS), hx, wf, out, sa.func.count())
        .where(*scoped(ex, _counted_sql(ex)))
        .group_by(ex.tenant_id, hx, wf, out)
    )
    totals = (
        sa.select(ex.tenant_id, sa.literal(TOTALS), hx, sa.literal(""), out, sa.func.count())
        .where(*scoped(ex, _counted_sql(ex)))
        .group_by(ex.tenant_id, hx, out)
    )
    st = StepRun.__table__.c
    hs = _hour_sql(st.started_at, dialect)
    steps = (
        sa.select(st.tenant_id, sa.literal(STEPS), hs, st.action_type, st.status, sa.func.count())
        .select_from(StepRun.__table__.join(Execution.__table__, ex.id == st.execution_id))
        .where(*scoped(st, _counted_sql(ex)))
        .group_by(st.tenant_id, hs, st.action_type, st.status)
    )
    channel = sa.func.coalesce(ev.channel, "none")
    sources = (
        sa.select(ex.tenant_id, sa.literal(SOURCES), hx, ev.trigger_type, channel, sa.func.count())
        .select_from(Execution.__table__.join(EventRecord.__table__, ev.id == ex.event_id))
        .where(*scoped(ex, _counted_sql(ex)))
        .group_by(ex.tenant_id, hx, ev.trigger_type, channel)
    )
    dx = _hour_sql(ex.started_at, dialect, "day")
    bucket = sa.cast(_bucket_sql(_seconds(ex.finished_at, ex.started_at, dialect)), sa.String)
    durations = (
        sa.select(ex.tenant_id, sa.literal(DURATIONS), dx, wf, bucket, sa.func.count())
        .where(*scoped(ex, _counted_sql(ex), ex.finished_at.isnot(None), ex.status.in_(("succeeded", "failed"))))
        .group_by(ex.tenant_id, dx, wf, bucket)
    )
    he, ev_ch, intent = (
        _hour_sql(ev.received_at, dialect),
        sa.func.coalesce(ev.channel, ""),
        sa.func.coalesce(ev.intent, ""),
    )
    events = (
        sa.select(ev.tenant_id, sa.literal(EVENTS), he, ev_ch, intent, sa.func.count())
        .where(*scoped(ev, ev.is_test == sa.false(), ev.depth == 0))
        .group_by(ev.tenant_id, he, ev_ch, intent)
    )
    ho = _hour_sql(ob.created_at, dialect)
    outbox = (
        sa.select(ob.tenant_id, sa.literal(OUTBOX), ho, ob.channel, ob.status, sa.func.count())
        .where(*scoped(ob, ob.is_test == sa.false()))
        .group_by(ob.tenant_id, ho, ob.channel, ob.status)
    )
    return [executions, totals, steps, sources, durations, events, outbox]


def backfill(conn: sa.Connection, tenant_id: str | None = None) -> None:
    """Replace the rollups (of one tenant, or all) with counts recomputed from the rows
    (``INSERT .. SELECT .. GROUP BY`` per kind). The migration and the benchmark use it."""
    dialect = conn.dialect.name
    conn.execute(sa.delete(_t).where(*([_c.tenant_id == tenant_id] if tenant_id else [])))
    for select in source_selects(dialect, tenant_id):
        conn.execute(_t.insert().from_select(["tenant_id", "kind", "hour", "k1", "k2", "n"], select))


def from_rows(conn: Any, tenant_id: str | None = None) -> dict[Key, int]:
    """What the rollups should hold, recomputed from the rows (zero counts left out)."""
    out: dict[Key, int] = {}
    for select in source_selects(conn.dialect.name, tenant_id):
        for tenant, kind, hour, k1, k2, n in conn.execute(select):
            at = hour if isinstance(hour, datetime) else datetime.fromisoformat(hour)
            key = (tenant, kind, hour_of(at), k1, str(k2))
            out[key] = out.get(key, 0) + int(n)
    return {k: n for k, n in out.items() if n}


def stored(conn: Any, tenant_id: str | None = None) -> dict[Key, int]:
    """The rollups as stored (zero counts left out)."""
    q = sa.select(_c.tenant_id, _c.kind, _c.hour, _c.k1, _c.k2, _c.n).where(_c.n != 0)
    if tenant_id:
        q = q.where(_c.tenant_id == tenant_id)
    return {(t, k, hour_of(h), k1, k2): n for t, k, h, k1, k2, n in conn.execute(q)}


# --------------------------------------------------------------------------- ORM writes

_EXECUTION_KEYS = ("tenant_id", "workflow_id", "status", "mode", "is_test", "started_at", "finished_at", "event_id")
_EVENT_KEYS = ("tenant_id", "channel", "intent", "received_at", "is_test", "depth")
_OUTBOX_KEYS = ("tenant_id", "channel", "status", "created_at", "is_test")
_STEP_KEYS = ("tenant_id", "execution_id", "action_type", "status", "started_at")
_ORM: dict[Any, tuple[str, ...]] = {
    Execution: _EXECUTION_KEYS,
    EventRecord: _EVENT_KEYS,
    OutboxMessage: _OUTBOX_KEYS,
    StepRun: _STEP_KEYS,
}
_PENDING = "insight_rollups"


def _values(obj: Any, keys: tuple[str, ...], old: bool) -> dict[str, Any]:
    state = sa.inspect(obj)
    out = {}
    for key in keys:
        value = getattr(obj, key)
        if old:
            history = state.attrs[key].history
            if history.deleted:
                value = history.deleted[0]
        out[key] = value
    return out


def _changed(obj: Any, keys: tuple[str, ...]) -> bool:
    state = sa.inspect(obj)
    return any(state.attrs[k].history.has_changes() for k in keys)


@sa_event.listens_for(OrmSession, "before_flush")
def _before_flush(session: OrmSession, _ctx: Any, _instances: Any) -> None:
    """Rows the ORM is about to insert, change or delete: old values are only known now."""
    work: list[tuple[type, dict[str, Any], int]] = []
    for obj in session.new:
        keys = _ORM.get(type(obj))
        if keys is not None:
            work.append((type(obj), _values(obj, keys, old=False), 1))
    for obj in session.dirty:
        keys = _ORM.get(type(obj))
        if keys is not None and _changed(obj, keys):
            work.append((type(obj), _values(obj, keys, old=True), -1))
            work.append((type(obj), _values(obj, keys, old=False), 1))
    for obj in session.deleted:
        keys = _ORM.get(type(obj))
        if keys is not None:
            work.append((type(obj), _values(obj, keys, old=True), -1))
    if work:
        session.info.setdefault(_PENDING, []).extend(work)


@sa_event.listens_for(OrmSession, "after_flush")
def _after_flush(session: OrmSession, _ctx: Any) -> None:
    work = session.info.pop(_PENDING, None)
    if not work:
        return
    conn = session.connection()
    deltas = Deltas()
    need = [v["event_id"] for model, v, _ in work if model is Execution and v["event_id"]]
    sources = event_sources(conn, need) if need else {}
    counted = counted_executions(conn, [v["execution_id"] for model, v, _ in work if model is StepRun])
    for model, values, sign in work:
        if model is StepRun:
            if values["execution_id"] in counted:
                deltas.step(values, sign)
        elif model is Execution:
            event = sources.get(values["event_id"]) if values["event_id"] else None
            deltas.execution(values, sign, event)
        elif model is EventRecord:
            deltas.event(values, sign)
        else:
            deltas.outbox(values, sign)
    deltas.write(conn)


@sa_event.listens_for(OrmSession, "after_rollback")
def _after_rollback(session: OrmSession) -> None:
    session.info.pop(_PENDING, None)


def difference(stored: Mapping[Key, int], expected: Mapping[Key, int]) -> dict[Key, tuple[int, int]]:
    """Keys whose stored count differs from the rows' count: (stored, expected)."""
    keys = set(stored) | set(expected)
    return {k: (stored.get(k, 0), expected.get(k, 0)) for k in sorted(keys) if stored.get(k, 0) != expected.get(k, 0)}
