"""Insights for analysts: KPIs over a date range in the studio's timezone with the previous
period's deltas, series for charts, per-workflow numbers, the flow graph's counts, conversions.

The counts (executions by outcome, workflow, trigger and channel; inbound events by channel and
intent; messages by channel and status; durations) are read from the hourly rollups that the
writers keep in the same transactions as the rows (``engine.store.rollups``), so a 30-day range
sums a few thousand rollup rows however many executions it had. What is per row and bounded
stays SQL over rows: top errors, action failure rates, the flow graph, conversions, the
first-reply sample, leads and bookings. Counts follow ``engine.domain`` (the one definition of
runs, success, skipped, test runs). Day buckets are local days: their UTC boundaries come from
``zoneinfo``, so a 23- or 25-hour DST day is one bucket with exactly its own executions (local
days are unions of UTC hours for zones with whole-hour offsets).
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
from engine.errors import InvalidInput, NotFound
from engine.security.auth import READ, Actor
from engine.store import rollups
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
from engine.tenant_settings import settings_of
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
_ru = rollups.InsightRollup.__table__.c
_OUTCOME_KEYS = {"succeeded": "succeeded", "failed": "failed", "skipped": "skipped", "in_progress": "in_progress"}


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
    """The index of the local day a timestamp falls on: a binary search over the UTC midnights as
    nested CASEs (about log2(days) comparisons per row, not one per day)."""
    bounds = p.boundaries()

    def search(lo: int, hi: int) -> Any:  # the day is in [lo, hi)
        if hi - lo == 1:
            return sa.literal(lo)
        mid = (lo + hi) // 2
        return sa.case((column < bounds[mid], search(lo, mid)), else_=search(mid, hi))

    return sa.case((sa.or_(column < bounds[0], column >= bounds[-1]), None), else_=search(0, len(bounds) - 1))


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


def _rolled(tenant_id: str, kind: str, p: Period, *where: Any) -> list[Any]:
    """WHERE clauses of one rollup kind's hours in the period."""
    return [_ru.tenant_id == tenant_id, _ru.kind == kind, _in(_ru.hour, p), *where]


def _n() -> Any:
    return sa.func.sum(_ru.n)


def _counts_of(pairs: Any) -> dict[str, int]:
    """(outcome, n) pairs -> the labelled counts of ``domain.count_columns``."""
    out = dict.fromkeys(domain.COUNT_KEYS, 0)
    for outcome, n in pairs:
        out[outcome] = out.get(outcome, 0) + int(n or 0)
        out["runs"] += int(n or 0)
    return out


def _execution_counts(s: Session, tenant_id: str, p: Period) -> dict[str, int]:
    q = sa.select(_ru.k2, _n()).where(*_rolled(tenant_id, rollups.TOTALS, p)).group_by(_ru.k2)
    return _counts_of(s.execute(q))


def _inbound(s: Session, tenant_id: str, p: Period) -> dict[str, int]:
    messages = sa.func.sum(sa.case((_ru.k1.in_(MESSAGE_CHANNELS), _ru.n), else_=0))
    q = sa.select(sa.func.coalesce(_n(), 0), sa.func.coalesce(messages, 0)).where(
        *_rolled(tenant_id, rollups.EVENTS, p)
    )
    events, messages_n = s.execute(q).one()
    return {"inbound_events": int(events), "inbound_messages": int(messages_n)}


def _messages(s: Session, tenant_id: str, p: Period) -> dict[str, dict[str, int]]:
    q = sa.select(_ru.k1, _ru.k2, _n()).where(*_rolled(tenant_id, rollups.OUTBOX, p)).group_by(_ru.k1, _ru.k2)
    out: dict[str, dict[str, int]] = {}
    for channel, status, n in s.execute(q):
        if n:
            out.setdefault(channel, {})[status] = int(n)
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
    per = settings_of(tenant.settings).minutes_saved
    q = (
        sa.select(_ru.k1, _n())
        .where(*_rolled(tenant.id, rollups.EXECUTIONS, p, _ru.k2 == "succeeded"))
        .group_by(_ru.k1)
    )
    return round(sum(int(n) * float(per.get(wf or "", DEFAULT_MINUTES_SAVED)) for wf, n in s.execute(q)), 1)


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
    bucket = _day_bucket(_ru.hour, p).label("b")
    q = (
        sa.select(bucket, _ru.k2, _n())
        .where(*_rolled(actor.tenant_id, rollups.TOTALS, p))
        .group_by(bucket, _ru.k2)
        .order_by(bucket, _ru.k2)
    )
    with _reading(uow) as s:
        rows = s.execute(q).all()
    days = p.days
    return [{"day": days[b].isoformat(), "outcome": o, "n": int(n)} for b, o, n in rows if b is not None and n]


def intents_by_day(*, uow: UnitOfWork, actor: Actor, p: Period) -> list[dict[str, Any]]:
    """Inbound messages per local day and recognised intent."""
    actor.require(READ)
    bucket = _day_bucket(_ru.hour, p).label("b")
    intent = sa.case((_ru.k2 == "", "unknown"), else_=_ru.k2).label("i")
    q = (
        sa.select(bucket, intent, _n())
        .where(*_rolled(actor.tenant_id, rollups.EVENTS, p, _ru.k1.in_(MESSAGE_CHANNELS)))
        .group_by(bucket, intent)
    )
    with _reading(uow) as s:
        rows = s.execute(q).all()
    return [{"day": p.days[b].isoformat(), "intent": i, "n": int(n)} for b, i, n in rows if b is not None and n]


def inbound_heatmap(*, uow: UnitOfWork, actor: Actor, p: Period) -> list[dict[str, Any]]:
    """Inbound messages by local weekday and hour: the rollups' UTC hours, each placed on the
    studio's wall clock (zones with half-hour offsets land on the hour they start in)."""
    actor.require(READ)
    q = (
        sa.select(_ru.hour, _n())
        .where(*_rolled(actor.tenant_id, rollups.EVENTS, p, _ru.k1.in_(MESSAGE_CHANNELS)))
        .group_by(_ru.hour)
    )
    with _reading(uow) as s:
        rows = [(h, int(n)) for h, n in s.execute(q) if n]
    zone, cells = ZoneInfo(p.tz), dict[Any, Any]()
    for h, n in rows:
        local = h.astimezone(zone)
        key = (local.strftime("%a"), local.weekday(), local.hour)
        cells[key] = cells.get(key, 0) + n
    return [
        {"weekday": k[0], "weekdayNo": k[1], "hour": k[2], "n": n}
        for k, n in sorted(cells.items(), key=lambda i: i[0][1:])
    ]


def volume_by_trigger_channel(*, uow: UnitOfWork, actor: Actor, p: Period) -> list[dict[str, Any]]:
    """Counted executions per trigger type and channel of their event."""
    actor.require(READ)
    q = sa.select(_ru.k1, _ru.k2, _n()).where(*_rolled(actor.tenant_id, rollups.SOURCES, p)).group_by(_ru.k1, _ru.k2)
    with _reading(uow) as s:
        return [{"trigger": t, "channel": c, "n": int(n)} for t, c, n in s.execute(q) if n]


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
    n = _n().label("n")
    q = (
        sa.select(_ru.k1, n)
        .where(*_rolled(actor.tenant_id, rollups.EXECUTIONS, p, _ru.k2 == "skipped"))
        .group_by(_ru.k1)
        .having(n > 0)
        .order_by(sa.desc("n"), _ru.k1)
        .limit(limit)
    )
    with _reading(uow) as s:
        rows = s.execute(q).all()
        names = _workflow_names(s, actor.tenant_id, [w for w, _ in rows])
    return [{"reason": f"conditions of “{names[w]}” did not hold", "workflow": names[w], "n": int(k)} for w, k in rows]


def _workflow_names(s: Session, tenant_id: str, ids: list[str]) -> dict[str, str]:
    """Names by workflow id; a deleted workflow (or none) by the name its last execution kept."""
    q = sa.select(col(Workflow.id), col(Workflow.name)).where(col(Workflow.id).in_([i for i in ids if i]))
    found = {str(w): str(name) for w, name in s.execute(q)}
    for wf in ids:
        if wf not in found:
            kept = s.execute(
                sa.select(_ex.workflow_name)
                .where(_ex.tenant_id == tenant_id, _ex.workflow_id == (wf or None))
                .order_by(_ex.started_at.desc())
                .limit(1)
            ).scalar()
            found[wf] = kept or "(deleted workflow)"
    return found


def action_failure_rates(*, uow: UnitOfWork, actor: Actor, p: Period) -> list[dict[str, Any]]:
    """Per action type: step attempts started in the period, failed attempts, failure rate."""
    actor.require(READ)
    failed = sa.func.coalesce(sa.func.sum(sa.case((_ru.k2 == "failed", _ru.n), else_=0)), 0)
    q = sa.select(_ru.k1, _n(), failed).where(*_rolled(actor.tenant_id, rollups.STEPS, p)).group_by(_ru.k1)
    with _reading(uow) as s:
        return [
            {"actionType": t, "attempts": int(n), "failed": int(f), "failureRate": round(f / n, 4) if n else 0.0}
            for t, n, f in s.execute(q)
            if n
        ]


# --------------------------------------------------------------------------- per workflow


def _median_durations(s: Session, tenant_id: str, p: Period) -> dict[str, float]:
    """Lower median seconds from start to finish per workflow, from the duration buckets.

    Durations are bucketed per UTC day (0.1 s up to a minute, then 8 buckets per doubling): the
    days that overlap the period count, and the median is its bucket's lower bound."""
    first = datetime.combine(p.start.astimezone(UTC).date(), time(0), tzinfo=UTC)
    q = (
        sa.select(_ru.k1, _ru.k2, _n())
        .where(_ru.tenant_id == tenant_id, _ru.kind == rollups.DURATIONS, _ru.hour >= first, _ru.hour < p.end)
        .group_by(_ru.k1, _ru.k2)
    )
    buckets: dict[str, list[tuple[int, int]]] = {}
    for wf, bucket, n in s.execute(q):
        if n:
            buckets.setdefault(wf, []).append((int(bucket), int(n)))
    out = {}
    for wf, counts in buckets.items():
        rank, seen = (sum(n for _, n in counts) + 1) // 2, 0
        for bucket, n in sorted(counts):
            seen += n
            if seen >= rank:
                out[wf] = round(rollups.bucket_seconds(bucket), 2)
                break
    return out


def _trend(s: Session, tenant_id: str, p: Period) -> dict[str, dict[str, Any]]:
    """Per workflow: counts by outcome, the last hour with a run, and runs per local day (two
    queries: grouping by workflow and outcome, then by workflow and day, is cheaper than by all three)."""
    where = _rolled(tenant_id, rollups.EXECUTIONS, p)
    out: dict[str, dict[str, Any]] = {}
    for w, outcome, n, hour in s.execute(
        sa.select(_ru.k1, _ru.k2, _n(), sa.func.max(_ru.hour)).where(*where).group_by(_ru.k1, _ru.k2)
    ):
        if n:
            entry = out.setdefault(w, {"trend": [0] * len(p.days), "outcomes": [], "hour": hour})
            entry["outcomes"].append((outcome, n))
            entry["hour"] = max(entry["hour"], hour)
    bucket = _day_bucket(_ru.hour, p).label("b")
    for w, b, n in s.execute(sa.select(_ru.k1, bucket, _n()).where(*where).group_by(_ru.k1, bucket)):
        if b is not None and w in out:
            out[w]["trend"][b] += int(n)
    return out


def _last_run(s: Session, tenant_id: str, workflow_id: str, hour: datetime, p: Period) -> datetime | None:
    """The exact start of the workflow's last counted run: only its last rolled-up hour is read."""
    return s.execute(
        sa.select(_ex.started_at)
        .where(
            _ex.tenant_id == tenant_id,
            _ex.workflow_id == workflow_id,
            _ex.started_at >= hour,
            _ex.started_at < p.end,
            domain.counted(),
        )
        .order_by(_ex.started_at.desc())
        .limit(1)
    ).scalar()


def per_workflow(*, uow: UnitOfWork, actor: Actor, p: Period) -> list[dict[str, Any]]:
    """Per workflow: runs, success rate, skipped, errors, median duration, last run, daily trend."""
    actor.require(READ)
    q = (
        sa.select(col(Workflow.id), col(Workflow.name))
        .where(col(Workflow.tenant_id) == actor.tenant_id)
        .order_by(Workflow.name)
    )
    out = []
    with _reading(uow) as s:
        rows = s.execute(q).all()
        medians, trends = _median_durations(s, actor.tenant_id, p), _trend(s, actor.tenant_id, p)
        for r in rows:
            t = trends.get(r.id)
            c = _counts_of(t["outcomes"] if t else [])
            last = _last_run(s, actor.tenant_id, r.id, t["hour"], p) if t else None
            out.append(
                {
                    "workflowId": r.id,
                    "workflow": r.name,
                    "runs": c["runs"],
                    "succeeded": c["succeeded"],
                    "successRate": domain.success_rate(c["succeeded"], c["failed"]),
                    "skipped": c["skipped"],
                    "errors": c["failed"],
                    "inProgress": c["in_progress"],
                    "medianDurationS": medians.get(r.id),
                    "lastRun": last.astimezone(UTC).isoformat() if last else None,
                    "trend": t["trend"] if t else [0] * len(p.days),
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
        goal = settings_of(_tenant(s, actor).settings).goals.get(workflow_id)
        return goal.model_dump() if goal else None


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
