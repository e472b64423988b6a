"""Retention: how long a studio keeps execution details and summary rows, and the pruning
that enforces it without stalling the product.

Two horizons per studio (tenant setting ``retention``; defaults ``STUDIO_RETENTION_*``):

* **details** (default 90 days): steps' input and output, the run context and explanation,
  rendered message bodies, event payloads. Pruned rows keep their summary: status, times,
  workflow, channel, recipient, counts.
* **summary** (default 2 years): the execution, outbox and event rows themselves. Before an
  execution row goes, it is added to ``execution_rollups`` (per day, workflow, status, mode),
  so :func:`execution_counts` and the workflow counters stay right.

Pruning walks each table by its ``(tenant_id, time)`` index in batches of ``batch`` rows,
one short transaction per batch and a pause between batches, so ingest never waits long
for the write lock (SQLite) or row locks (PostgreSQL). Progress of detail pruning is kept
in ``retention_marks`` so a batch never revisits rows it already did. On SQLite, freed
pages are reused by later writes, and a database with ``auto_vacuum=INCREMENTAL`` (every
file created since this change) gives them back to the file system a few pages at a time.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from sqlalchemy.engine import Engine

from engine.errors import InvalidInput, NotFound
from engine.security.auth import ADMIN, READ, Actor
from engine.settings import get_settings
from engine.store import rollups
from engine.store.db import session_scope
from engine.store.lifecycle import ExecutionRollup, RetentionMark
from engine.store.models import (
    FINISHED_STATUSES,
    EventRecord,
    Execution,
    OutboxMessage,
    StepRun,
    Tenant,
    utcnow,
)
from engine.tenant_settings import TenantSettings, patched, settings_of
from engine.uow import UnitOfWork

logger = logging.getLogger(__name__)

MAX_DAYS = 3650 * 3
_ex, _st, _ob, _ev = Execution.__table__, StepRun.__table__, OutboxMessage.__table__, EventRecord.__table__
_roll, _marks = ExecutionRollup.__table__, RetentionMark.__table__
_FINISHED = [str(s) for s in FINISHED_STATUSES]


# --------------------------------------------------------------------------- settings


class RetentionOut(BaseModel):
    """A studio's retention in days (``custom``: set by the studio, not the defaults)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    details_days: int
    summary_days: int
    custom: bool = False

    def to_api(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def retention_of(settings: TenantSettings | dict[str, Any] | None) -> RetentionOut:
    """The retention a tenant's settings ask for, the process defaults where they are silent."""
    conf = settings_of(settings).retention
    env = get_settings()
    return RetentionOut(
        details_days=(conf and conf.details_days) or env.retention_details_days,
        summary_days=(conf and conf.summary_days) or env.retention_summary_days,
        custom=conf is not None,
    )


def check_retention(details_days: Any, summary_days: Any) -> tuple[int, int]:
    """Validated (details, summary) days; raises InvalidInput naming the field."""
    values = {}
    for name, value in (("detailsDays", details_days), ("summaryDays", summary_days)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput(f"must be a whole number of days, got {value!r}", field=name)
        if not 1 <= value <= MAX_DAYS:
            raise InvalidInput(f"must be between 1 and {MAX_DAYS} days, got {value}", field=name)
        values[name] = value
    if values["summaryDays"] < values["detailsDays"]:
        raise InvalidInput(
            f"must be at least detailsDays ({values['detailsDays']}): details cannot outlive their summary",
            field="summaryDays",
        )
    return values["detailsDays"], values["summaryDays"]


def get_retention(*, uow: UnitOfWork, actor: Actor) -> RetentionOut:
    """The studio's retention (any role may read it)."""
    actor.require(READ)
    tenant = uow.session.get(Tenant, actor.tenant_id)
    if tenant is None:
        raise NotFound("tenant not found")
    return retention_of(tenant.settings)


def set_retention(*, uow: UnitOfWork, actor: Actor, details_days: int, summary_days: int) -> RetentionOut:
    """Owners: how many days details and summary rows are kept (takes effect at the next pruning)."""
    actor.require(ADMIN)
    details, summary = check_retention(details_days, summary_days)
    s = uow.session
    tenant = s.get(Tenant, actor.tenant_id, with_for_update=True)
    if tenant is None:
        raise NotFound("tenant not found")
    tenant.settings = patched(tenant.settings, {"retention": {"detailsDays": details, "summaryDays": summary}})[0]
    s.add(tenant)
    logger.info(
        "tenant %s: retention set to %s days of details, %s days of summaries", actor.tenant_id, details, summary
    )
    return RetentionOut(details_days=details, summary_days=summary, custom=True)


# --------------------------------------------------------------------------- counts that survive pruning


def execution_counts(
    db: Engine,
    actor: Actor,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    workflow_id: str | None = None,
) -> dict[str, int]:
    """Executions per status in ``[since, until)``: live rows plus the rollups of pruned ones.

    Rollups are per UTC day, so a pruned execution counts in the period containing its day.
    """
    actor.require(READ)
    counts: Counter[str] = Counter()
    with db.connect() as conn:
        q = sa.select(_ex.c.status, sa.func.count()).where(_ex.c.tenant_id == actor.tenant_id).group_by(_ex.c.status)
        r = (
            sa.select(_roll.c.status, sa.func.sum(_roll.c.count))
            .where(_roll.c.tenant_id == actor.tenant_id)
            .group_by(_roll.c.status)
        )
        if since is not None:
            q, r = q.where(_ex.c.started_at >= since), r.where(_roll.c.day >= since.date())
        if until is not None:
            q, r = q.where(_ex.c.started_at < until), r.where(_roll.c.day < until.date())
        if workflow_id is not None:
            q, r = q.where(_ex.c.workflow_id == workflow_id), r.where(_roll.c.workflow_id == workflow_id)
        for stmt in (q, r):
            for status, n in conn.execute(stmt):
                counts[status] += int(n or 0)
    return dict(counts)


# --------------------------------------------------------------------------- pruning


@dataclass
class PruneReport:
    """What one pruning pass did."""

    details: Counter = field(default_factory=Counter)  # table -> rows whose details were removed
    deleted: Counter = field(default_factory=Counter)  # table -> rows deleted (summary retention)
    batches: int = 0
    vacuumed_pages: int = 0
    finished: bool = True  # False: stopped by the budget or a stop request; more is due

    def total(self) -> int:
        return sum(self.details.values()) + sum(self.deleted.values())


class Pruner:
    """Prunes every tenant in small transactions. ``clock`` and ``stop`` are injected."""

    def __init__(
        self,
        db: Engine,
        *,
        clock: Callable[[], datetime] = utcnow,
        batch: int | None = None,
        pause: float | None = None,
        stop: Callable[[], bool] = lambda: False,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> None:
        env = get_settings()
        self.db, self.clock, self.stop, self.sleep = db, clock, stop, sleep
        self.batch = batch or env.prune_batch
        self.pause = env.prune_pause if pause is None else pause
        self._sqlite = db.dialect.name == "sqlite"

    def run(self, *, budget: float | None = None) -> PruneReport:
        """Prune all tenants until done, ``budget`` seconds have passed, or ``stop()``."""
        report, deadline = PruneReport(), (time.monotonic() + budget) if budget else None
        with self.db.connect() as conn:
            tenants = conn.execute(sa.select(Tenant.__table__.c.id, Tenant.__table__.c.settings)).all()
        for tenant_id, settings in tenants:
            if not self.prune_tenant(tenant_id, retention_of(settings), report, deadline):
                report.finished = False
                break
        if self._sqlite and report.total():
            report.vacuumed_pages = self.incremental_vacuum()
        if report.total():
            logger.info(
                "pruned: details %s, deleted %s in %s batches",
                dict(report.details),
                dict(report.deleted),
                report.batches,
            )
        return report

    def prune_tenant(
        self, tenant_id: str, retention: RetentionOut, report: PruneReport, deadline: float | None = None
    ) -> bool:
        """All pruning of one tenant; False when stopped before it was done."""
        now = self.clock()
        summary_cutoff = now - timedelta(days=retention.summary_days)
        details_cutoff = now - timedelta(days=retention.details_days)
        steps = [
            (lambda: self._delete_executions(tenant_id, summary_cutoff), report.deleted, "executions"),
            (
                lambda: self._delete_old(_ob, _ob.c.created_at, tenant_id, summary_cutoff),
                report.deleted,
                "outbox_messages",
            ),
            (lambda: self._delete_old(_ev, _ev.c.received_at, tenant_id, summary_cutoff), report.deleted, "events"),
            (lambda: self._execution_details(tenant_id, details_cutoff), report.details, "executions"),
            (lambda: self._outbox_details(tenant_id, details_cutoff), report.details, "outbox_messages"),
            (lambda: self._event_details(tenant_id, details_cutoff), report.details, "events"),
        ]
        for step, counter, table in steps:
            while True:
                if self.stop() or (deadline is not None and time.monotonic() > deadline):
                    return False
                n = step()
                if not n:
                    break
                counter[table] += n
                report.batches += 1
                self.sleep(self.pause)  # let waiting writers in between batches
        return True

    # ------------------------------------------------------------------ summary retention

    def delete_skipped(self, cutoff: datetime) -> int:
        """Delete skipped executions older than ``cutoff`` (all tenants), batch by batch, keeping their counts."""
        total = 0
        while not self.stop():
            n = self._delete_executions(None, cutoff, statuses=["skipped"])
            if not n:
                break
            total += n
            self.sleep(self.pause)
        return total

    def _delete_executions(self, tenant_id: str | None, cutoff: datetime, statuses: list[str] = _FINISHED) -> int:
        """Add the oldest finished executions to the rollups and delete them (one batch)."""
        with session_scope(self.db) as s:
            where = [_ex.c.started_at < cutoff, _ex.c.status.in_(statuses)]
            if tenant_id is not None:
                where.append(_ex.c.tenant_id == tenant_id)
            rows = s.execute(
                sa.select(
                    _ex.c.id,
                    _ex.c.tenant_id,
                    _ex.c.started_at,
                    _ex.c.workflow_id,
                    _ex.c.workflow_name,
                    _ex.c.status,
                    _ex.c.mode,
                    _ex.c.actions_executed,
                    _ex.c.is_test,
                    _ex.c.finished_at,
                    _ex.c.event_id,
                )
                .where(*where)
                .order_by(_ex.c.started_at)
                .limit(self.batch)
                # Two workers never roll up the same rows (SQLite: BEGIN IMMEDIATE serialises).
                .with_for_update(skip_locked=True)
            ).all()
            if not rows:
                return 0
            _add_rollups(s, list(rows))
            _take_from_insights(s, "executions", [r._mapping for r in rows])
            _take_steps_from_insights(s, [r.id for r in rows])  # their steps go with them (ON DELETE CASCADE)
            s.execute(sa.delete(_ex).where(_ex.c.id.in_([r.id for r in rows])))
            return len(rows)

    def _delete_old(self, table: sa.Table, time_col: sa.Column, tenant_id: str, cutoff: datetime) -> int:
        with session_scope(self.db) as s:
            rows = (
                s.execute(
                    sa.select(table.c.id, *(table.c[k] for k in _ROLLUP_KEYS[table.name]))
                    .where(table.c.tenant_id == tenant_id, time_col < cutoff)
                    .order_by(time_col)
                    .limit(self.batch)
                )
                .mappings()
                .all()
            )
            if rows:
                _take_from_insights(s, table.name, rows)
                s.execute(sa.delete(table).where(table.c.id.in_([r["id"] for r in rows])))
            return len(rows)

    # ------------------------------------------------------------------ details retention

    def _execution_details(self, tenant_id: str, cutoff: datetime) -> int:
        def scrub(s, ids: list[str], now: datetime) -> None:
            _take_steps_from_insights(s, ids)
            s.execute(sa.delete(_st).where(_st.c.execution_id.in_(ids)))
            s.execute(
                sa.update(_ex)
                .where(_ex.c.id.in_(ids), _ex.c.status.in_(_FINISHED))
                .values(context={"detailsPrunedAt": now.isoformat()}, explanation=[])
            )

        return self._walk(
            "execution_details", _ex, _ex.c.started_at, tenant_id, cutoff, scrub, only=_ex.c.status.in_(_FINISHED)
        )

    def _outbox_details(self, tenant_id: str, cutoff: datetime) -> int:
        def scrub(s, ids: list[str], now: datetime) -> None:
            s.execute(
                sa.update(_ob)
                .where(_ob.c.id.in_(ids))
                .values(body="", subject=None, detail={"detailsPrunedAt": now.isoformat()})
            )

        return self._walk("outbox_details", _ob, _ob.c.created_at, tenant_id, cutoff, scrub)

    def _event_details(self, tenant_id: str, cutoff: datetime) -> int:
        def scrub(s, ids: list[str], now: datetime) -> None:
            s.execute(sa.update(_ev).where(_ev.c.id.in_(ids)).values(content=None, data={}, custom_fields={}))

        return self._walk("event_details", _ev, _ev.c.received_at, tenant_id, cutoff, scrub)

    def _walk(
        self,
        kind: str,
        table: sa.Table,
        time_col: sa.Column,
        tenant_id: str,
        cutoff: datetime,
        scrub: Callable[[Any, list[str], datetime], None],
        only: Any = None,
    ) -> int:
        """Scrub the next batch of rows older than ``cutoff`` after the tenant's mark; move the mark."""
        with session_scope(self.db) as s:
            mark = s.execute(
                sa.select(_marks.c.pruned_until, _marks.c.last_id).where(
                    _marks.c.tenant_id == tenant_id, _marks.c.kind == kind
                )
            ).first()
            stmt = sa.select(table.c.id, time_col).where(table.c.tenant_id == tenant_id, time_col < cutoff)
            if mark is not None and mark.pruned_until is not None:
                stmt = stmt.where(
                    time_col >= mark.pruned_until, sa.or_(time_col > mark.pruned_until, table.c.id > mark.last_id)
                )
            rows = s.execute(stmt.order_by(time_col, table.c.id).limit(self.batch)).all()
            if not rows:
                return 0
            ids = [r[0] for r in rows]
            if only is not None:  # e.g. a still-running execution keeps its details
                ids = list(s.execute(sa.select(table.c.id).where(table.c.id.in_(ids), only)).scalars())
            if ids:
                scrub(s, ids, self.clock())
            _move_mark(s, tenant_id, kind, rows[-1][1], rows[-1][0], len(ids), self.clock())
            return len(rows)

    # ------------------------------------------------------------------ SQLite file size

    def incremental_vacuum(self, *, pages_per_step: int = 2000) -> int:
        """Give free pages back to the file system (only on files with auto_vacuum=INCREMENTAL)."""
        freed = 0
        with self.db.connect() as conn:
            if conn.exec_driver_sql("PRAGMA auto_vacuum").scalar() != 2:
                return 0
            conn.rollback()
            free = _freelist(conn)
            while free and not self.stop():
                with conn.begin():
                    # The pragma frees one page per step of the statement: fetch every step.
                    driver: Any = conn.connection.driver_connection  # the sqlite3 connection
                    cur = driver.execute(f"PRAGMA incremental_vacuum({min(free, pages_per_step)})")
                    cur.fetchall()
                left = _freelist(conn)
                if left >= free:
                    break  # nothing more could be given back
                freed, free = freed + free - left, left
                self.sleep(self.pause)
        return freed


def _freelist(conn) -> int:
    free = conn.exec_driver_sql("PRAGMA freelist_count").scalar() or 0
    conn.rollback()
    return int(free)


#: The columns the Insights rollups key deleted rows by (engine/store/rollups.py).
_ROLLUP_KEYS = {
    "outbox_messages": ("tenant_id", "channel", "status", "created_at", "is_test"),
    "events": ("tenant_id", "channel", "intent", "received_at", "is_test", "depth"),
}


def _take_from_insights(s, table: str, rows: Sequence[Any]) -> None:
    """Subtract deleted rows from the Insights rollups in the same transaction."""
    deltas = rollups.Deltas()
    if table == "executions":
        sources = rollups.event_sources(s, [r["event_id"] for r in rows if r["event_id"]])
        for r in rows:
            deltas.execution(r, -1, sources.get(r["event_id"]) if r["event_id"] else None)
    else:
        add = deltas.outbox if table == "outbox_messages" else deltas.event
        for r in rows:
            add(r, -1)
    rollups.apply(s, deltas)


def _take_steps_from_insights(s, execution_ids: list[str]) -> None:
    """Subtract the steps of these executions (about to be deleted) from the Insights rollups."""
    counted = rollups.counted_executions(s, execution_ids)
    if not counted:
        return
    steps = s.execute(
        sa.select(_st.c.tenant_id, _st.c.action_type, _st.c.status, _st.c.started_at).where(
            _st.c.execution_id.in_(sorted(counted))
        )
    ).mappings()
    deltas = rollups.Deltas()
    for row in steps:
        deltas.step(row, -1)
    rollups.apply(s, deltas)


def _add_rollups(s, rows: list[Any]) -> None:
    groups: dict[tuple, list] = {}
    for r in rows:
        key = (r.tenant_id, r.started_at.date(), r.workflow_id or "", r.status, r.mode)
        g = groups.setdefault(key, [r.workflow_name or "", 0, 0])
        g[1] += 1
        g[2] += r.actions_executed or 0
    values = [
        {
            "id": _new_id(),
            "tenant_id": tenant_id,
            "day": day,
            "workflow_id": wf,
            "workflow_name": name,
            "status": status,
            "mode": mode,
            "count": n,
            "actions_executed": acts,
        }
        for (tenant_id, day, wf, status, mode), (name, n, acts) in groups.items()
    ]
    stmt = _upsert(s)(_roll).values(values)
    s.execute(
        stmt.on_conflict_do_update(
            index_elements=["tenant_id", "day", "workflow_id", "status", "mode"],
            set_={
                "count": _roll.c.count + stmt.excluded.count,
                "actions_executed": _roll.c.actions_executed + stmt.excluded.actions_executed,
            },
        )
    )


def _move_mark(s, tenant_id: str, kind: str, until: datetime, last_id: str, n: int, now: datetime) -> None:
    stmt = _upsert(s)(_marks).values(
        tenant_id=tenant_id, kind=kind, pruned_until=until, last_id=last_id, rows_done=n, updated_at=now
    )
    s.execute(
        stmt.on_conflict_do_update(
            index_elements=["tenant_id", "kind"],
            set_={"pruned_until": until, "last_id": last_id, "rows_done": _marks.c.rows_done + n, "updated_at": now},
        )
    )


def _upsert(s):
    if s.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def _new_id() -> str:
    from engine.store.models import new_id

    return new_id()


def pruning_status(db: Engine, actor: Actor) -> dict[str, Any]:
    """How far detail pruning has come for the studio (for the settings page)."""
    actor.require(READ)
    with db.connect() as conn:
        rows = conn.execute(
            sa.select(_marks.c.kind, _marks.c.pruned_until, _marks.c.rows_done, _marks.c.updated_at).where(
                _marks.c.tenant_id == actor.tenant_id
            )
        ).all()
        rolled = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(_roll.c.count), 0)).where(_roll.c.tenant_id == actor.tenant_id)
        ).scalar()
    return {
        "marks": {r.kind: {"prunedUntil": r.pruned_until, "rows": r.rows_done, "at": r.updated_at} for r in rows},
        "rolledUpExecutions": int(rolled or 0),
    }
