"""Insights for analysts: KPIs over a date range in the studio's timezone with the previous
period's deltas, series for charts, per-workflow numbers, the flow graph's counts, conversions.

Everything is aggregated in SQL (``GROUP BY``, ``CASE`` buckets, ``ORDER BY .. LIMIT 1 OFFSET k``
for percentiles), on SQLite and PostgreSQL alike; Python only reshapes the few aggregate rows.
Counts follow ``engine.domain`` (the one definition of runs, success, skipped, test runs).
Day buckets are local days: their UTC boundaries come from ``zoneinfo``, so a 23- or 25-hour
DST day is one bucket with exactly its own executions.
"""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session, col

from engine import domain
from engine.auth import READ, Actor
from engine.errors import InvalidInput, NotFound
from engine.store.models import (
    Booking,
    EventRecord,
    Execution,
    Lead,
    OutboxMessage,
    StepRun,
    Tenant,
    Workflow,
)
from engine.uow import UnitOfWork

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MINUTES_SAVED",
    "MAX_RANGE_DAYS",
    "RANGE_PRESETS",
    "Period",
    "action_failure_rates",
    "conversions",
    "executions_by_day",
    "flow_numbers",
    "inbound_heatmap",
    "intents_by_day",
    "kpis",
    "per_workflow",
    "resolve_period",
    "skip_reasons",
    "stats",
    "top_errors",
    "volume_by_trigger_channel",
]

RANGE_PRESETS = ("today", "7d", "30d", "month", "custom")
MAX_RANGE_DAYS = 400
DEFAULT_MINUTES_SAVED = 2.0
#: Inbound channels of members' messages (the event's ``channel``).
MESSAGE_CHANNELS = ("whatsapp", "sms", "email", "web", "voice")
_ev, _ex, _ob, _st = EventRecord.__table__.c, Execution.__table__.c, OutboxMessage.__table__.c, StepRun.__table__.c


@contextmanager
def _reading(uow: UnitOfWork):
    """The unit of work's session for a block of reads (the entry point's unit ends the transaction)."""
    yield uow.session


@dataclass(frozen=True)
class Period:
    """A range of whole local days [first, last] and its UTC bounds [start, end)."""

    first: date
    last: date
    tz: str
    start: datetime
    end: datetime

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range((self.last - self.first).days + 1)]

    def previous(self) -> Period:
        """The period of the same number of days right before this one."""
        n = (self.last - self.first).days + 1
        return period_of(self.first - timedelta(days=n), self.first - timedelta(days=1), self.tz)

    def boundaries(self) -> list[datetime]:
        """UTC instants of each local midnight from first to last + 1 (DST-correct)."""
        return [_local_midnight(d, self.tz) for d in [*self.days, self.last + timedelta(days=1)]]


def _local_midnight(day: date, tz: str) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(tz)).astimezone(UTC)


def period_of(first: date, last: date, tz: str) -> Period:
    if last < first:
        raise InvalidInput("the end of the range is before its start", field="to")
    if (last - first).days + 1 > MAX_RANGE_DAYS:
        raise InvalidInput(f"a range has at most {MAX_RANGE_DAYS} days", field="to")
    return Period(first, last, tz, _local_midnight(first, tz), _local_midnight(last + timedelta(days=1), tz))


def resolve_period(
    tz: str, preset: str = "30d", *, first: date | None = None, last: date | None = None, now: datetime | None = None
) -> Period:
    """A preset (today, 7d, 30d, month) or a custom [first, last] of local dates, in the studio's zone."""
    today = (now or datetime.now(UTC)).astimezone(ZoneInfo(tz)).date()
    if preset == "custom" or first or last:
        if first is None or last is None:
            raise InvalidInput(
                "a custom range needs both from and to (YYYY-MM-DD)", field="from" if first is None else "to"
            )
        return period_of(first, last, tz)
    spans = {"today": 1, "7d": 7, "30d": 30}
    if preset == "month":
        return period_of(today.replace(day=1), today, tz)
    if preset not in spans:
        raise InvalidInput(f"range must be one of {', '.join(RANGE_PRESETS)}", field="range")
    return period_of(today - timedelta(days=spans[preset] - 1), today, tz)


def _tenant(s: Session, actor: Actor) -> Tenant:
    tenant = s.get(Tenant, actor.tenant_id)
    if tenant is None:
        raise NotFound("studio not found")
    return tenant


def _in(column: Any, p: Period) -> sa.ColumnElement[bool]:
    return sa.and_(column >= p.start, column < p.end)


def _seconds(later: Any, earlier: Any, dialect: str) -> Any:
    """Seconds between two timestamp expressions, per dialect."""
    if dialect == "postgresql":
        return sa.func.extract("epoch", later - earlier)
    return (sa.func.julianday(later) - sa.func.julianday(earlier)) * 86400.0


def _plus(column: Any, delta: timedelta, dialect: str) -> Any:
    """A timestamp expression moved by ``delta``, per dialect."""
    if dialect == "postgresql":
        return column + sa.literal(delta, sa.Interval())
    return sa.func.strftime("%Y-%m-%d %H:%M:%f", column, f"+{delta.total_seconds():.0f} seconds")


def _day_bucket(column: Any, p: Period) -> Any:
    """The index of the local day a timestamp falls on (CASE over the UTC midnights)."""
    bounds = p.boundaries()
    return sa.case(*[(column < b, i) for i, b in enumerate(bounds[1:])], else_=None)


def _ceil(x: Any) -> Any:
    """ceil() for a positive SQL number (SQLite has no ceil without its math extension)."""
    whole = sa.cast(x, sa.Integer)
    return whole + sa.case((x > whole, 1), else_=0)


def _percentiles(s: Session, values: sa.Select, qs: tuple[float, ...]) -> list[float | None]:
    """Nearest-rank percentiles of a one-column select in one SQL pass (window functions)."""
    sub = values.subquery()
    v = next(iter(sub.c))
    ranked = (
        sa.select(v.label("v"), sa.func.row_number().over(order_by=v).label("rn"), sa.func.count().over().label("n"))
        .where(v.isnot(None))
        .subquery()
    )
    wanted = [sa.case((_ceil(ranked.c.n * q) < 1, 1), else_=_ceil(ranked.c.n * q)) for q in qs]
    found = s.execute(
        sa.select(ranked.c.rn, ranked.c.v, ranked.c.n).where(sa.or_(*(ranked.c.rn == w for w in wanted)))
    ).all()
    if not found:
        return [None for _ in qs]
    n = found[0].n
    by_rank = {r.rn: round(float(r.v), 1) for r in found}
    return [by_rank.get(max(1, math.ceil(n * q))) for q in qs]


# --------------------------------------------------------------------------- KPIs


def _execution_counts(s: Session, tenant_id: str, p: Period) -> dict[str, int]:
    q = sa.select(*domain.count_columns()).where(_ex.tenant_id == tenant_id, domain.counted(), _in(_ex.started_at, p))
    return dict(s.execute(q).one()._mapping)


def _inbound(s: Session, tenant_id: str, p: Period) -> dict[str, int]:
    base = [_ev.tenant_id == tenant_id, _ev.is_test == sa.false(), _ev.depth == 0, _in(_ev.received_at, p)]
    q = sa.select(
        sa.func.count(), sa.func.coalesce(sa.func.sum(sa.case((_ev.channel.in_(MESSAGE_CHANNELS), 1), else_=0)), 0)
    ).where(*base)
    events, messages = s.execute(q).one()
    return {"inbound_events": events, "inbound_messages": messages}


def _messages(s: Session, tenant_id: str, p: Period) -> dict[str, dict[str, int]]:
    q = (
        sa.select(_ob.channel, _ob.status, sa.func.count())
        .where(_ob.tenant_id == tenant_id, _ob.is_test == sa.false(), _in(_ob.created_at, p))
        .group_by(_ob.channel, _ob.status)
    )
    out: dict[str, dict[str, int]] = {}
    for channel, status, n in s.execute(q):
        out.setdefault(channel, {})[status] = n
    return out


def _count(s: Session, model: Any, tenant_id: str, p: Period) -> int:
    t = model.__table__.c
    return s.execute(sa.select(sa.func.count()).where(t.tenant_id == tenant_id, _in(t.created_at, p))).scalar_one()


#: First-reply percentiles are estimated from at most this many of the period's latest inbound
#: messages: a bounded sample keeps the query constant-time at any volume (the exact value
#: would be a rollup written by the runner; see docs/PERFORMANCE.md).
REPLY_SAMPLE = 2000


def _first_reply_seconds(s: Session, tenant_id: str, p: Period) -> list[float | None]:
    """Median and p90 of inbound message -> first automated message of its executions.

    Driven from the period's latest inbound messages (covering index, newest first, at most
    ``REPLY_SAMPLE``), then each message's executions and their first outbox row.
    """
    dialect = s.get_bind().dialect.name
    inbound = (
        sa.select(_ev.id.label("id"), _ev.received_at.label("at"))
        .where(
            _ev.tenant_id == tenant_id,
            _ev.is_test == sa.false(),
            _ev.depth == 0,
            _ev.channel.in_(MESSAGE_CHANNELS),
            _in(_ev.received_at, p),
        )
        .order_by(_ev.received_at.desc())
        .limit(REPLY_SAMPLE)
        .subquery()
    )
    first_out = (
        sa.select(sa.func.min(_ob.created_at))
        .where(_ob.execution_id == _ex.id, _ob.is_test == sa.false())
        .correlate(Execution.__table__)
        .scalar_subquery()
    )
    replied = (
        sa.select(inbound.c.id, inbound.c.at, sa.func.min(first_out).label("replied"))
        .select_from(inbound.join(Execution.__table__, _ex.event_id == inbound.c.id))
        .where(domain.counted())
        .group_by(inbound.c.id, inbound.c.at)
        .subquery()
    )
    values = sa.select(_seconds(replied.c.replied, replied.c.at, dialect).label("d")).where(
        replied.c.replied.isnot(None)
    )
    return _percentiles(s, values, (0.5, 0.9))


def _minutes_saved(s: Session, tenant: Tenant, p: Period) -> float:
    """Succeeded runs per workflow x that workflow's minutes saved per run (settings, default 2)."""
    per = (tenant.settings or {}).get("minutesSaved", {})
    q = (
        sa.select(_ex.workflow_id, sa.func.count())
        .where(_ex.tenant_id == tenant.id, domain.counted(), _in(_ex.started_at, p), _ex.status == "succeeded")
        .group_by(_ex.workflow_id)
    )
    return round(sum(n * float(per.get(wf or "", DEFAULT_MINUTES_SAVED)) for wf, n in s.execute(q)), 1)


def _kpis_in(s: Session, tenant: Tenant, p: Period) -> dict[str, Any]:
    counts = _execution_counts(s, tenant.id, p)
    median, p90 = _first_reply_seconds(s, tenant.id, p)
    return {
        **_inbound(s, tenant.id, p),
        "executions": counts["runs"],
        "succeeded": counts["succeeded"],
        "failures": counts["failed"],
        "skipped": counts["skipped"],
        "in_progress": counts["in_progress"],
        "cancelled": counts["cancelled"],
        "success_rate": domain.success_rate(counts["succeeded"], counts["failed"]),
        "leads_created": _count(s, Lead, tenant.id, p),
        "bookings": _count(s, Booking, tenant.id, p),
        "first_reply_median_s": median,
        "first_reply_p90_s": p90,
        "minutes_saved": _minutes_saved(s, tenant, p),
        "messages": _messages(s, tenant.id, p),
    }


def _delta(now: Any, before: Any) -> Any:
    if isinstance(now, dict) or now is None or before is None:
        return None
    return round(now - before, 4)


def kpis(*, uow: UnitOfWork, actor: Actor, period: Period) -> dict[str, Any]:
    """Every KPI for the period, the same for the previous period of equal length, and deltas."""
    actor.require(READ)
    with _reading(uow) as s:
        tenant = _tenant(s, actor)
        current, previous = _kpis_in(s, tenant, period), _kpis_in(s, tenant, period.previous())
    return {"current": current, "previous": previous, "delta": {k: _delta(v, previous[k]) for k, v in current.items()}}


def stats(
    *,
    uow: UnitOfWork,
    actor: Actor,
    first: date | None = None,
    last: date | None = None,
    preset: str = "30d",
    now: datetime | None = None,
) -> dict[str, Any]:
    """What ``GET /api/stats`` returns: the range, KPIs with previous period and deltas, top skip reasons."""
    actor.require(READ)
    tz = _tz(uow, actor)
    p = resolve_period(tz, preset, first=first, last=last, now=now or uow.now())
    prev = p.previous()
    return {
        "range": {
            "from": p.first.isoformat(),
            "to": p.last.isoformat(),
            "timezone": tz,
            "previousFrom": prev.first.isoformat(),
            "previousTo": prev.last.isoformat(),
        },
        **kpis(uow=uow, actor=actor, period=p),
        "skipReasons": skip_reasons(uow=uow, actor=actor, p=p),
    }


def _tz(uow: UnitOfWork, actor: Actor) -> str:
    with _reading(uow) as s:
        return _tenant(s, actor).timezone


# --------------------------------------------------------------------------- series


def executions_by_day(*, uow: UnitOfWork, actor: Actor, p: Period) -> list[dict[str, Any]]:
    """Counted executions per local day and outcome (rows: day, outcome, n)."""
    actor.require(READ)
    bucket = _day_bucket(_ex.started_at, p).label("b")
    outcome = sa.case((_ex.status.in_(domain.IN_PROGRESS_STATUSES), "in_progress"), else_=_ex.status).label("o")
    q = (
        sa.select(bucket, outcome, sa.func.count())
        .where(_ex.tenant_id == actor.tenant_id, domain.counted(), _in(_ex.started_at, p))
        .group_by(bucket, outcome)
    )
    with _reading(uow) as s:
        rows = s.execute(q).all()
    days = p.days
    return [{"day": days[b].isoformat(), "outcome": o, "n": n} for b, o, n in rows if b is not None]


def intents_by_day(*, uow: UnitOfWork, actor: Actor, p: Period) -> list[dict[str, Any]]:
    """Inbound messages per local day and recognised intent."""
    actor.require(READ)
    bucket = _day_bucket(_ev.received_at, p).label("b")
    intent = sa.func.coalesce(_ev.intent, "unknown").label("i")
    q = (
        sa.select(bucket, intent, sa.func.count())
        .where(
            _ev.tenant_id == actor.tenant_id,
            _ev.is_test == sa.false(),
            _ev.depth == 0,
            _ev.channel.in_(MESSAGE_CHANNELS),
            _in(_ev.received_at, p),
        )
        .group_by(bucket, intent)
    )
    with _reading(uow) as s:
        rows = s.execute(q).all()
    return [{"day": p.days[b].isoformat(), "intent": i, "n": n} for b, i, n in rows if b is not None]


def inbound_heatmap(*, uow: UnitOfWork, actor: Actor, p: Period) -> list[dict[str, Any]]:
    """Inbound messages by local weekday and hour: SQL groups by UTC hour, each hour is then placed
    on the studio's wall clock (zones with half-hour offsets land on the hour they start in)."""
    actor.require(READ)
    with _reading(uow) as s:
        dialect = s.get_bind().dialect.name
        hour = (
            sa.func.date_trunc("hour", _ev.received_at)
            if dialect == "postgresql"
            else sa.func.strftime("%Y-%m-%d %H:00:00", _ev.received_at)
        ).label("h")
        q = (
            sa.select(hour, sa.func.count())
            .where(
                _ev.tenant_id == actor.tenant_id,
                _ev.is_test == sa.false(),
                _ev.depth == 0,
                _ev.channel.in_(MESSAGE_CHANNELS),
                _in(_ev.received_at, p),
            )
            .group_by(hour)
        )
        rows = s.execute(q).all()
    zone, cells = ZoneInfo(p.tz), dict[Any, Any]()
    for h, n in rows:
        utc = (h if isinstance(h, datetime) else datetime.fromisoformat(h)).replace(tzinfo=UTC)
        local = utc.astimezone(zone)
        key = (local.strftime("%a"), local.weekday(), local.hour)
        cells[key] = cells.get(key, 0) + n
    return [
        {"weekday": k[0], "weekdayNo": k[1], "hour": k[2], "n": n}
        for k, n in sorted(cells.items(), key=lambda i: i[0][1:])
    ]


def volume_by_trigger_channel(*, uow: UnitOfWork, actor: Actor, p: Period) -> list[dict[str, Any]]:
    """Counted executions per trigger type and channel of their event."""
    actor.require(READ)
    channel = sa.func.coalesce(_ev.channel, "none").label("c")
    q = (
        sa.select(_ev.trigger_type, channel, sa.func.count())
        .select_from(Execution.__table__.join(EventRecord.__table__, _ev.id == _ex.event_id))
        .where(_ex.tenant_id == actor.tenant_id, domain.counted(), _in(_ex.started_at, p))
        .group_by(_ev.trigger_type, channel)
    )
    with _reading(uow) as s:
        return [{"trigger": t, "channel": c, "n": n} for t, c, n in s.execute(q)]


def top_errors(*, uow: UnitOfWork, actor: Actor, p: Period, limit: int = 10) -> list[dict[str, Any]]:
    """The most frequent errors of failed executions (text as stored), with one example id."""
    actor.require(READ)
    q = (
        sa.select(
            sa.func.coalesce(_ex.error, "(no message)").label("e"), sa.func.count().label("n"), sa.func.max(_ex.id)
        )
        .where(_ex.tenant_id == actor.tenant_id, domain.counted(), _ex.status == "failed", _in(_ex.started_at, p))
        .group_by(sa.text("1"))
        .order_by(sa.desc("n"))
        .limit(limit)
    )
    with _reading(uow) as s:
        return [{"error": e, "n": n, "exampleId": ex} for e, n, ex in s.execute(q)]


def skip_reasons(*, uow: UnitOfWork, actor: Actor, p: Period, limit: int = 5) -> list[dict[str, Any]]:
    """Top reasons executions were skipped: per workflow (its conditions did not hold)."""
    actor.require(READ)
    q = (
        sa.select(_ex.workflow_name, sa.func.count().label("n"))
        .where(_ex.tenant_id == actor.tenant_id, domain.counted(), _ex.status == "skipped", _in(_ex.started_at, p))
        .group_by(_ex.workflow_name)
        .order_by(sa.desc("n"))
        .limit(limit)
    )
    with _reading(uow) as s:
        return [
            {"reason": f"conditions of “{name}” did not hold", "workflow": name, "n": n} for name, n in s.execute(q)
        ]


def action_failure_rates(*, uow: UnitOfWork, actor: Actor, p: Period) -> list[dict[str, Any]]:
    """Per action type: step attempts, failed attempts, failure rate."""
    actor.require(READ)
    failed = sa.func.coalesce(sa.func.sum(sa.case((_st.status == "failed", 1), else_=0)), 0)
    q = (
        sa.select(_st.action_type, sa.func.count(), failed)
        .select_from(StepRun.__table__.join(Execution.__table__, _ex.id == _st.execution_id))
        .where(_ex.tenant_id == actor.tenant_id, domain.counted(), _in(_ex.started_at, p))
        .group_by(_st.action_type)
    )
    with _reading(uow) as s:
        return [
            {"actionType": t, "attempts": n, "failed": f, "failureRate": round(f / n, 4) if n else 0.0}
            for t, n, f in s.execute(q)
        ]


# --------------------------------------------------------------------------- per workflow


def _median_durations(s: Session, tenant_id: str, p: Period) -> dict[str, float]:
    """Median seconds from start to finish per workflow (window functions, both dialects)."""
    dur = _seconds(_ex.finished_at, _ex.started_at, s.get_bind().dialect.name)
    ranked = (
        sa.select(
            _ex.workflow_id.label("w"),
            dur.label("d"),
            sa.func.row_number().over(partition_by=_ex.workflow_id, order_by=dur).label("rn"),
            sa.func.count().over(partition_by=_ex.workflow_id).label("n"),
        )
        .where(
            _ex.tenant_id == tenant_id,
            domain.counted(),
            _in(_ex.started_at, p),
            _ex.finished_at.isnot(None),
            _ex.status.in_(("succeeded", "failed")),
        )
        .subquery()
    )
    q = sa.select(ranked.c.w, ranked.c.d).where((ranked.c.rn * 2 - ranked.c.n).in_((0, 1)))  # lower median
    return {w: round(float(d), 2) for w, d in s.execute(q)}


def _trend(s: Session, tenant_id: str, p: Period) -> dict[str, list[int]]:
    bucket = _day_bucket(_ex.started_at, p).label("b")
    q = (
        sa.select(_ex.workflow_id, bucket, sa.func.count())
        .where(_ex.tenant_id == tenant_id, domain.counted(), _in(_ex.started_at, p))
        .group_by(_ex.workflow_id, bucket)
    )
    out: dict[str, list[int]] = {}
    for w, b, n in s.execute(q):
        if b is not None:
            out.setdefault(w, [0] * len(p.days))[b] = n
    return out


def per_workflow(*, uow: UnitOfWork, actor: Actor, p: Period) -> list[dict[str, Any]]:
    """Per workflow: runs, success rate, skipped, errors, median duration, last run, daily trend."""
    actor.require(READ)
    q = (
        sa.select(
            col(Workflow.id), col(Workflow.name), *domain.count_columns(), sa.func.max(_ex.started_at).label("last")
        )
        .select_from(
            Workflow.__table__.outerjoin(
                Execution.__table__,
                sa.and_(
                    _ex.tenant_id == Workflow.tenant_id,
                    _ex.workflow_id == Workflow.id,
                    domain.counted(),
                    _in(_ex.started_at, p),
                ),
            )
        )
        .where(col(Workflow.tenant_id) == actor.tenant_id)
        .group_by(Workflow.id, Workflow.name)
        .order_by(Workflow.name)
    )
    with _reading(uow) as s:
        rows = s.execute(q).all()
        medians, trends = _median_durations(s, actor.tenant_id, p), _trend(s, actor.tenant_id, p)
    out = []
    for r in rows:
        runs = r.runs if r.last is not None else 0
        out.append(
            {
                "workflowId": r.id,
                "workflow": r.name,
                "runs": runs,
                "succeeded": r.succeeded,
                "successRate": domain.success_rate(r.succeeded, r.failed),
                "skipped": r.skipped,
                "errors": r.failed,
                "inProgress": r.in_progress,
                "medianDurationS": medians.get(r.id),
                "lastRun": r.last.replace(tzinfo=UTC).isoformat() if r.last else None,
                "trend": trends.get(r.id, [0] * len(p.days)),
            }
        )
    return out


def flow_numbers(*, uow: UnitOfWork, actor: Actor, workflow_id: str, p: Period) -> dict[str, dict[str, int]]:
    """Per action id: how many executions reached it, and how many of those succeeded, failed, waited.

    Counted per execution (the last attempt's status wins over retries): a branch's split is
    the ``reached`` of the steps it leads to.
    """
    actor.require(READ)
    last = (
        sa.select(_st.execution_id, _st.action_id, sa.func.max(_st.attempt).label("a"))
        .select_from(StepRun.__table__.join(Execution.__table__, _ex.id == _st.execution_id))
        .where(
            _ex.tenant_id == actor.tenant_id, _ex.workflow_id == workflow_id, domain.counted(), _in(_ex.started_at, p)
        )
        .group_by(_st.execution_id, _st.action_id)
        .subquery()
    )
    q = (
        sa.select(_st.action_id, _st.status, sa.func.count())
        .join(
            last,
            sa.and_(
                last.c.execution_id == _st.execution_id, last.c.action_id == _st.action_id, last.c.a == _st.attempt
            ),
        )
        .group_by(_st.action_id, _st.status)
    )
    out: dict[str, dict[str, int]] = {}
    with _reading(uow) as s:
        for action_id, status, n in s.execute(q):
            entry = out.setdefault(action_id, {"reached": 0})
            entry[status] = entry.get(status, 0) + n
            entry["reached"] += n
    return out


# --------------------------------------------------------------------------- conversions


def goal_of(*, uow: UnitOfWork, actor: Actor, workflow_id: str) -> dict[str, Any] | None:
    """The workflow's conversion goal from the studio settings: {"kind": "booking"|"lead", "days": N}."""
    actor.require(READ)
    with _reading(uow) as s:
        return ((_tenant(s, actor).settings or {}).get("goals") or {}).get(workflow_id)


def conversions(
    *, uow: UnitOfWork, actor: Actor, workflow_id: str, p: Period, kind: str = "booking", days: int = 7
) -> dict[str, Any]:
    """Share of the workflow's counted executions whose contact booked (or became a lead) within
    ``days`` after the execution started, and the median time to convert (hours)."""
    actor.require(READ)
    if kind not in ("booking", "lead"):
        raise InvalidInput("goal must be booking or lead", field="kind")
    if not 1 <= days <= 90:
        raise InvalidInput("days must be between 1 and 90", field="days")
    window = timedelta(days=days)
    if kind == "booking":
        g = Booking.__table__.c
        match = g.member_contact == _ev.sender
    else:
        g = Lead.__table__.c
        match = sa.or_(g.phone == _ev.sender, g.email == _ev.sender)
    first_goal = (
        sa.select(sa.func.min(g.created_at))
        .where(
            g.tenant_id == actor.tenant_id,
            match,
            g.created_at >= _ex.started_at,
            g.created_at < _plus(_ex.started_at, window, uow.db.dialect.name),
        )
        .correlate(Execution.__table__, EventRecord.__table__)
        .scalar_subquery()
    )
    runs = (
        sa.select(_ex.started_at.label("s"), first_goal.label("g"))
        .select_from(Execution.__table__.join(EventRecord.__table__, _ev.id == _ex.event_id))
        .where(
            _ex.tenant_id == actor.tenant_id,
            _ex.workflow_id == workflow_id,
            domain.counted(),
            _ex.status != "skipped",
            _in(_ex.started_at, p),
            _ev.sender.isnot(None),
        )
        .subquery()
    )
    with _reading(uow) as s:
        total, converted = s.execute(sa.select(sa.func.count(), sa.func.count(runs.c.g))).one()
        dialect = s.get_bind().dialect.name
        (median,) = _percentiles(s, sa.select((_seconds(runs.c.g, runs.c.s, dialect) / 3600.0).label("h")), (0.5,))
    return {
        "kind": kind,
        "days": days,
        "executions": total,
        "converted": converted,
        "rate": round(converted / total, 4) if total else None,
        "medianHoursToConvert": median,
    }
