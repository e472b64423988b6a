"""Insights and executions-list benchmark: N executions (with events, steps and messages) in one
studio and N in another, then the Insights numbers for 30 days, the whole Insights page's
service calls, and executions pages 1 and 1,000 (keyset).

    python -m bench.bench_insights --n 100000                      # a temporary SQLite file
    python -m bench.bench_insights --n 1000000 --database-url postgresql://postgres@127.0.0.1:5432/bench

Rows are bulk-inserted (the store's compiled INSERTs, ``executemany`` in batches of 5,000) over
the last 60 days; then the Insights rollups are filled from the rows by the same
``engine.store.rollups.backfill`` the migration runs. Each figure is the median of ``--repeat``
runs in milliseconds. Nothing is asserted: it prints figures. On a given database the two
benchmark studios are deleted again at the end.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from engine.security.auth import system_actor
from engine.services import insights, operations
from engine.store import rollups
from engine.store.db import get_engine, migrate
from engine.store.models import (
    EventRecord,
    Execution,
    OutboxMessage,
    StepRun,
    Tenant,
    Workflow,
    new_id,
    utcnow,
)
from engine.store.runs import insert_statement
from engine.uow import unit_of_work

BATCH = 5000
STATUSES = ["succeeded"] * 70 + ["failed"] * 8 + ["skipped"] * 17 + ["waiting"] * 3 + ["cancelled"] * 2
CHANNELS = ["whatsapp", "sms", "email", "web", "voice"]
INTENTS = ["pricing", "booking", "cancellation", "opening_hours", None]


def _read(db, service, **kwargs):
    """One read as a page or a GET route makes it: in a read-only unit of work of its own."""
    with unit_of_work(db, read_only=True) as uow:
        return service(uow=uow, **kwargs)


def _workflows(conn, tenant_id: str, count: int = 20) -> list[str]:
    now = utcnow()
    rows: list[dict[str, Any]] = [
        {
            "id": new_id(),
            "tenant_id": tenant_id,
            "name": f"Workflow {i:02d}",
            "description": None,
            "enabled": True,
            "trigger_type": "whatsapp_message",
            "version": 1,
            "created_by": None,
            "created_at": now,
            "updated_at": now,
            "run_count": 0,
            "success_count": 0,
            "error_count": 0,
            "last_run_at": None,
            "next_fire_at": None,
            "definition": {
                "name": f"Workflow {i:02d}",
                "trigger": {"type": "whatsapp_message", "config": {}},
                "conditions": [],
                "actions": [{"id": "send-1", "type": "send_whatsapp", "config": {"message": "Hallo"}}],
            },
        }
        for i in range(count)
    ]
    conn.execute(sa.insert(Workflow.__table__), rows)
    return [r["id"] for r in rows]


def _batch(tenant_id: str, workflows: list[str], size: int, rnd: random.Random, now) -> dict[str, list[dict]]:
    events, executions, steps, messages = [], [], [], []
    for _ in range(size):
        at = now - timedelta(seconds=rnd.randrange(60 * 86_400))
        status, channel, sender = rnd.choice(STATUSES), rnd.choice(CHANNELS), f"+49151{rnd.randrange(10**7, 10**8)}"
        ev_id, ex_id = new_id(), new_id()
        events.append(
            {
                "id": ev_id,
                "tenant_id": tenant_id,
                "trigger_type": f"{channel}_message",
                "channel": channel,
                "content": "Hallo",
                "sender": sender,
                "intent": rnd.choice(INTENTS),
                "intent_confidence": 0.9,
                "custom_fields": {},
                "data": {},
                "received_at": at,
                "idempotency_key": None,
                "depth": 0,
                "parent_execution_id": None,
                "is_test": False,
            }
        )
        done = status in ("succeeded", "failed", "skipped", "cancelled")
        executions.append(
            {
                "id": ex_id,
                "tenant_id": tenant_id,
                "workflow_id": rnd.choice(workflows),
                "workflow_name": "Workflow",
                "workflow_version": 1,
                "event_id": ev_id,
                "status": status,
                "mode": "live",
                "definition": {},
                "context": {"trigger": {"from": sender}},
                "explanation": [],
                "current_action_id": None,
                "lease_token": None,
                "heartbeat_at": None,
                "depth": 0,
                "error": "step send-1 failed: HTTP 500" if status == "failed" else None,
                "started_at": at,
                "finished_at": at + timedelta(milliseconds=rnd.randrange(5, 900)) if done else None,
                "actions_executed": 1,
                "is_test": False,
                "replay_of": None,
            }
        )
        if status in ("succeeded", "failed"):
            steps.append(
                {
                    "id": new_id(),
                    "tenant_id": tenant_id,
                    "execution_id": ex_id,
                    "action_id": "send-1",
                    "action_type": "send_whatsapp",
                    "attempt": 1,
                    "status": status,
                    "input": {},
                    "output": {},
                    "error": None,
                    "started_at": at,
                    "finished_at": at,
                }
            )
            messages.append(
                {
                    "id": new_id(),
                    "tenant_id": tenant_id,
                    "execution_id": ex_id,
                    "step_run_id": None,
                    "channel": channel,
                    "recipient": sender,
                    "subject": None,
                    "body": "Hallo",
                    "status": "sent" if status == "succeeded" else "failed",
                    "adapter": "outbox",
                    "provider_message_id": None,
                    "error": None,
                    "detail": {},
                    "created_at": at + timedelta(seconds=rnd.randrange(1, 40)),
                    "sent_at": None,
                    "deliver_after": None,
                    "is_test": False,
                }
            )
    return {"events": events, "executions": executions, "steps": steps, "messages": messages}


def fill(db, tenant_id: str, n: int, seed: int) -> float:
    """Insert n executions with their events, steps and messages, then the studio's rollups
    (``rollups.backfill``); returns seconds taken."""
    rnd, now, t0 = random.Random(seed), utcnow(), time.perf_counter()
    with db.begin() as conn:
        workflows = _workflows(conn, tenant_id)
    tables: dict[str, Any] = {
        "events": EventRecord,
        "executions": Execution,
        "steps": StepRun,
        "messages": OutboxMessage,
    }
    for start in range(0, n, BATCH):
        rows = _batch(tenant_id, workflows, min(BATCH, n - start), rnd, now)
        with db.begin() as conn:
            for key in ("events", "executions", "steps", "messages"):
                insert_statement(tables[key]).executemany(conn, rows[key])
    with db.begin() as conn:
        rollups.backfill(conn, tenant_id)
    return time.perf_counter() - t0


def timed(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm caches and statement compilation
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t0) * 1000)
    return statistics.median(runs)


def page_render(db, actor, p) -> None:
    """Every service call the Insights page makes for one render."""
    with unit_of_work(db, read_only=True) as uow:
        insights.kpis(uow=uow, actor=actor, period=p)
        insights.executions_by_day(uow=uow, actor=actor, p=p)
        insights.volume_by_trigger_channel(uow=uow, actor=actor, p=p)
        insights.inbound_heatmap(uow=uow, actor=actor, p=p)
        insights.intents_by_day(uow=uow, actor=actor, p=p)
        insights.action_failure_rates(uow=uow, actor=actor, p=p)
        insights.top_errors(uow=uow, actor=actor, p=p)
        insights.skip_reasons(uow=uow, actor=actor, p=p)
        insights.per_workflow(uow=uow, actor=actor, p=p)


def cursor_at(db, tenant_id: str, offset: int) -> str | None:
    """The cursor that starts page ``offset // page_size + 1`` (found once; paging itself never offsets)."""
    ex = Execution.__table__.c
    with db.connect() as conn:
        row = conn.execute(
            sa.select(ex.started_at, ex.id)
            .where(ex.tenant_id == tenant_id, ex.is_test == sa.false())
            .order_by(ex.started_at.desc(), ex.id.desc())
            .offset(offset - 1)
            .limit(1)
        ).first()
    return operations.encode_cursor(row.started_at.replace(tzinfo=None).astimezone(), row.id) if row else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="executions per studio (default 100,000)")
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--keep", action="store_true", help="leave the two studios in the database at the end")
    args = ap.parse_args(argv)
    url = args.database_url or f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench-insights.db'}"
    db = get_engine(url)
    migrate(db)
    ids = []
    with db.begin() as conn:
        for name in ("bench-a", "bench-b"):
            tid = new_id()
            conn.execute(
                sa.insert(Tenant.__table__),
                [
                    {
                        "id": tid,
                        "slug": f"{name}-{uuid.uuid4().hex[:6]}",
                        "name": name,
                        "timezone": "Europe/Berlin",
                        "settings": {},
                        "created_at": utcnow(),
                    }
                ],
            )
            ids.append(tid)
    try:
        for i, tid in enumerate(ids):
            secs = fill(db, tid, args.n, seed=i)
            print(f"filled studio {i + 1}: {args.n:,} executions (+ events, steps, messages) in {secs:.1f} s")
        if db.dialect.name == "postgresql":
            with db.connect() as conn:
                conn.execute(sa.text("ANALYZE"))
        else:
            with db.connect() as conn:
                conn.execute(sa.text("ANALYZE"))
        actor = system_actor(ids[0])
        p = insights.resolve_period("Europe/Berlin", "30d")
        deep = cursor_at(db, ids[0], 999 * 25)
        figures = {
            "insights numbers, 30 days (KPIs + previous period)": lambda: _read(
                db, insights.kpis, actor=actor, period=p
            ),
            "insights page, all service calls": lambda: page_render(db, actor, p),
            "executions page 1 (25 rows)": lambda: _read(db, operations.search_executions, actor=actor, page_size=25),
            "executions page 1,000 (keyset)": lambda: _read(
                db, operations.search_executions, actor=actor, after=deep, page_size=25
            ),
            "executions page 1, filter status=failed": lambda: _read(
                db,
                operations.search_executions,
                actor=actor,
                filters=operations.ExecutionFilter(status="failed"),
                page_size=25,
            ),
            "executions page 1, filter channel=sms": lambda: _read(
                db,
                operations.search_executions,
                actor=actor,
                filters=operations.ExecutionFilter(channel="sms"),
                page_size=25,
            ),
        }
        print(f"database: {db.dialect.name}; {args.n:,} executions per studio, 2 studios; median of {args.repeat}")
        for label, fn in figures.items():
            print(f"  {label:<50} {timed(fn, args.repeat):9.1f} ms")
    finally:
        if args.database_url and not args.keep:
            with db.begin() as conn:
                for table in (rollups.InsightRollup, OutboxMessage, StepRun, Execution, EventRecord, Workflow, Tenant):
                    col = Tenant.__table__.c.id if table is Tenant else table.__table__.c.tenant_id
                    conn.execute(sa.delete(table.__table__).where(col.in_(ids)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
