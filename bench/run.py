"""Engine benchmark: ``python -m engine bench``.

(a) executions per second, ingest to done: one workflow (keyword_match + send_whatsapp to
    the outbox), every event, execution, step and outbox row persisted. Events come from
    ``--producers`` concurrent callers (threads calling ``Runner.ingest`` one event at a
    time, as the REST API's worker threads do), and also from one caller alone;
(b) the same with 1,000 other enabled workflows of other trigger types in the tenant;
(c) due items resumed per second by one worker with 100,000 waiting executions of which
    1,000 are due.

Runs on a fresh SQLite file, and also on PostgreSQL when DATABASE_URL points there (a
throw-away database is created next to it and dropped afterwards). The last line is
``executions/s: N`` for (a) on SQLite.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
import uuid
from datetime import timedelta

import sqlalchemy as sa

from engine import services
from engine.runner import Runner
from engine.security.auth import system_actor
from engine.store.db import get_engine, migrate
from engine.store.models import DueWork, Execution, Workflow, new_id, utcnow
from engine.uow import unit_of_work
from engine.worker import Worker

WORKFLOW = {
    "name": "Bench reply",
    "enabled": True,
    "trigger": {"type": "whatsapp_message", "config": {}},
    "conditions": [{"type": "keyword_match", "operator": "contains", "value": "hallo"}],
    "actions": [
        {"id": "send-1", "type": "send_whatsapp", "config": {"message": "Hi {{trigger.from}}!"}, "nextActionId": None}
    ],
}
OTHER_TYPES = [
    "missed_call",
    "lead_created",
    "booking_created",
    "email_received",
    "sms_received",
    "web_chat",
    "voice_call",
]


def _event(i: int) -> dict:
    return {"triggerType": "whatsapp_message", "channel": "whatsapp", "content": f"Hallo {i}", "from": f"+49151{i:08d}"}


def _ingest_rate(runner: Runner, tenant_id: str, n: int, producers: int = 1) -> float:
    """Events per second from ``producers`` callers; checks every event ran to ``succeeded``."""
    before = _succeeded(runner.db, tenant_id)
    if producers <= 1:
        start = time.perf_counter()
        for i in range(n):
            runner.ingest(tenant_id, _event(i))
        elapsed = time.perf_counter() - start
    else:
        share = [n // producers + (1 if k < n % producers else 0) for k in range(producers)]
        gate = threading.Barrier(producers + 1)
        errors: list[BaseException] = []

        def produce(k: int) -> None:
            gate.wait()
            try:
                for i in range(share[k]):
                    runner.ingest(tenant_id, _event(k * 1_000_000 + i))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=produce, args=(k,)) for k in range(producers)]
        for t in threads:
            t.start()
        gate.wait()
        start = time.perf_counter()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        if errors:
            raise errors[0]
    done = _succeeded(runner.db, tenant_id) - before
    if done != n:
        raise RuntimeError(f"{n} events ingested but {done} executions succeeded")
    return n / elapsed


def _succeeded(db, tenant_id: str) -> int:
    x = Execution.__table__.c
    with db.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count()).where(x.tenant_id == tenant_id, x.status == "succeeded")
        ).scalar()


def _add_other_workflows(db, tenant_id: str, count: int) -> None:
    now = utcnow()
    rows = []
    for i in range(count):
        ttype = OTHER_TYPES[i % len(OTHER_TYPES)]
        definition = {**WORKFLOW, "name": f"Other {i}", "trigger": {"type": ttype, "config": {}}}
        rows.append(
            {
                "id": new_id(),
                "tenant_id": tenant_id,
                "name": definition["name"],
                "enabled": True,
                "trigger_type": ttype,
                "definition": definition,
                "version": 1,
                "created_at": now,
                "updated_at": now,
                "run_count": 0,
                "success_count": 0,
                "error_count": 0,
            }
        )
    with db.begin() as conn:
        conn.execute(sa.insert(Workflow), rows)


def _resume_rate(
    db, tenant_id: str, waiting: int, due: int, *, batch: int = 100, profile=None, timings: dict | None = None
) -> float:
    """Park ``waiting`` executions on a wait; make ``due`` of them due; time one worker (``batch`` per claim)."""
    with unit_of_work(db) as uow:
        wf = services.create_workflow(
            uow=uow,
            actor=system_actor(tenant_id),
            data={
                "name": "Bench wait",
                "trigger": {"type": "missed_call", "config": {}},
                "actions": [
                    {"id": "wait-1", "type": "wait", "config": {"delay": 3_600_000}},
                    {"id": "send-1", "type": "send_whatsapp", "config": {"message": "Hallo!"}, "nextActionId": None},
                ],
            },
        )
    now = utcnow()
    definition = wf.definition

    # Every member has a number of their own (valid, so the reminder is really queued; a
    # shared invalid number made every send fail, cheaply, and cached nothing either).
    def context(i: int) -> dict:
        return {"trigger": {"type": "missed_call", "from": f"+49151{i:08d}"}, "results": {"wait-1": {}}, "lead": {}}

    chunk = 10_000
    for start in range(0, waiting, chunk):
        executions, items = [], []
        for i in range(start, min(start + chunk, waiting)):
            ex_id = new_id()
            due_at = now - timedelta(seconds=1) if i < due else now + timedelta(hours=1 + i % 48)
            executions.append(
                {
                    "id": ex_id,
                    "tenant_id": tenant_id,
                    "workflow_id": wf.id,
                    "workflow_name": wf.name,
                    "workflow_version": 1,
                    "status": "waiting",
                    "mode": "live",
                    "definition": definition,
                    "context": context(i),
                    "explanation": [],
                    "current_action_id": "send-1",
                    "lease_token": new_id(),
                    "depth": 0,
                    "started_at": now,
                    "heartbeat_at": now,
                    "actions_executed": 1,
                }
            )
            items.append(
                {
                    "id": new_id(),
                    "tenant_id": tenant_id,
                    "kind": "resume",
                    "due_at": due_at,
                    "status": "pending",
                    "execution_id": ex_id,
                    "workflow_id": wf.id,
                    "payload": {"actionId": "send-1"},
                    "attempts": 0,
                    "created_at": now,
                }
            )
        with db.begin() as conn:
            conn.execute(sa.insert(Execution), executions)
            conn.execute(sa.insert(DueWork), items)
    worker = Worker(db, name="bench", batch=batch)
    if profile is not None:
        profile.enable()
    began, cpu = time.perf_counter(), time.process_time()
    handled = worker.run_once()
    elapsed = time.perf_counter() - began
    if timings is not None:
        timings.update(wall=elapsed, cpu=time.process_time() - cpu)
    if profile is not None:
        profile.disable()
    if handled < due:
        raise RuntimeError(f"worker handled {handled} items, expected {due}")
    x = Execution.__table__.c
    with db.connect() as conn:
        sent = conn.execute(
            sa.select(sa.func.count()).where(x.tenant_id == tenant_id, x.status == "succeeded")
        ).scalar()
    if sent != due:
        raise RuntimeError(f"{due} due reminders resumed but {sent} executions succeeded")
    return due / elapsed


def measure(url: str, n: int, waiting: int, producers: int) -> dict[str, float]:
    db = get_engine(url)
    migrate(db)
    with unit_of_work(db) as uow:
        tenant = services.create_tenant(uow=uow, slug=f"bench-{uuid.uuid4().hex[:6]}", name="Bench")
        services.create_workflow(uow=uow, actor=system_actor(tenant.id), data=WORKFLOW)
    runner = Runner(db)
    _ingest_rate(runner, tenant.id, min(200, n), producers)  # warm-up: imports, caches, cold pages
    a = statistics.median(_ingest_rate(runner, tenant.id, n, producers) for _ in range(3))
    alone = statistics.median(_ingest_rate(runner, tenant.id, n) for _ in range(3))
    _add_other_workflows(db, tenant.id, 1000)
    b = statistics.median(_ingest_rate(runner, tenant.id, n, producers) for _ in range(3))
    with unit_of_work(db) as uow:
        other = services.create_tenant(uow=uow, slug=f"bench-wait-{uuid.uuid4().hex[:6]}", name="Bench wait")
    c = _resume_rate(db, other.id, waiting, min(1000, waiting))
    return {"a": a, "alone": alone, "b": b, "c": c}


def _report(label: str, r: dict[str, float], waiting: int, producers: int) -> None:
    print(f"[{label}] (a) executions/s, 1 workflow, {producers} concurrent callers:   {r['a']:8.0f}")
    print(f"[{label}]     the same, one caller at a time:                {r['alone']:8.0f}")
    print(
        f"[{label}] (b) executions/s, + 1,000 other workflows:         {r['b']:8.0f}  "
        f"({(r['b'] / r['a'] - 1) * 100:+.1f}% vs a)"
    )
    print(f"[{label}] (c) due items resumed/s, {waiting:,} waiting, {min(1000, waiting):,} due: {r['c']:8.0f}")


def _postgres_scratch(url: str):
    admin = sa.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://", 1) if url.startswith("postgresql://") else url,
        isolation_level="AUTOCOMMIT",
    )
    name = f"sa_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    return admin, name, url.rsplit("/", 1)[0] + "/" + name


def main(args) -> int:
    n, waiting, producers = args.n, args.waiting, args.producers
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = measure(f"sqlite:///{tmp}/bench.db", n, waiting, producers)
        _report("sqlite", sqlite, waiting, producers)
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql")):
        admin, name, scratch = _postgres_scratch(url)
        try:
            _report("postgresql", measure(scratch, n, waiting, producers), waiting, producers)
        finally:
            get_engine(scratch).dispose()
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"executions/s: {sqlite['a']:.0f}")
    return 0
