"""Pruning benchmark: ``python -m bench.prune --n 1000000``.

Fills a fresh database with ``--n`` executions older than the summary retention (each with
its event, one step and one outbox message: 4 rows per execution), then

1. measures ingest latency for ``--seconds`` with nothing else running (``--producers``
   threads calling ``Runner.ingest``, the path the REST API's ``POST /api/events`` takes);
2. starts the pruner (the worker's code, default batch and pause) and measures ingest
   latency again while it deletes every old execution (rolled up into daily counts first);
3. prints ingest p50/p99 without and during pruning, pruning time and rate, and the
   database size before and after (SQLite: file plus WAL; the file is incremental-vacuumed).

SQLite by default (a temporary file); ``--database-url postgresql://...`` uses a throw-away
database created next to it. Figures depend on the machine's load: say so when quoting them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from engine import services
from engine.auth import system_actor
from engine.retention import Pruner, execution_counts
from engine.runner import Runner
from engine.store.db import get_engine, migrate
from engine.store.models import (
    EventRecord,
    Execution,
    OutboxMessage,
    StepRun,
    new_id,
    utcnow,
)

WORKFLOW = {"name": "Bench reply", "trigger": {"type": "whatsapp_message", "config": {}}, "conditions": [],
            "actions": [{"id": "send-1", "type": "send_whatsapp", "config": {"message": "Hi {{trigger.content}}!"}}]}
BODY = "Hallo, ich habe eine Frage zu den Kurszeiten am Wochenende und zur 10er-Karte. " * 3


def fill(db, tenant_id: str, workflow_id: str, n: int, chunk: int = 5000) -> None:
    """``n`` finished executions 3 years old, each with its event, step and message."""
    base = utcnow() - timedelta(days=3 * 365)
    ev, ex, st, ob = (m.__table__ for m in (EventRecord, Execution, StepRun, OutboxMessage))
    for start in range(0, n, chunk):
        events, execs, steps, msgs = [], [], [], []
        for i in range(start, min(n, start + chunk)):
            at = base + timedelta(seconds=i * 20)
            phone = f"+49151{i % 10**8:08d}"
            e_id, x_id, s_id = new_id(), new_id(), new_id()
            events.append({"id": e_id, "tenant_id": tenant_id, "trigger_type": "whatsapp_message", "channel": "whatsapp",
                           "content": BODY, "sender": phone, "intent": None, "intent_confidence": None, "custom_fields": {},
                           "data": {"raw": BODY}, "received_at": at, "idempotency_key": None, "depth": 0,
                           "parent_execution_id": None})
            execs.append({"id": x_id, "tenant_id": tenant_id, "workflow_id": workflow_id, "workflow_name": "Bench reply",
                          "workflow_version": 1, "event_id": e_id, "status": "succeeded", "mode": "live",
                          "definition": WORKFLOW, "context": {"trigger": {"content": BODY, "from": phone}},
                          "explanation": [], "current_action_id": None, "lease_token": None, "heartbeat_at": at,
                          "depth": 0, "error": None, "started_at": at, "finished_at": at, "actions_executed": 1})
            steps.append({"id": s_id, "tenant_id": tenant_id, "execution_id": x_id, "action_id": "send-1",
                          "action_type": "send_whatsapp", "attempt": 1, "status": "succeeded", "input": {"message": BODY},
                          "output": {"recipient": phone}, "error": None, "started_at": at, "finished_at": at})
            msgs.append({"id": new_id(), "tenant_id": tenant_id, "execution_id": x_id, "step_run_id": s_id,
                         "channel": "whatsapp", "recipient": phone, "subject": None, "body": "Hi " + BODY,
                         "status": "recorded", "adapter": "outbox", "provider_message_id": None, "error": None,
                         "detail": {}, "created_at": at, "sent_at": None, "deliver_after": None})
        with db.begin() as conn:
            for table, rows in ((ev, events), (ex, execs), (st, steps), (ob, msgs)):
                conn.execute(table.insert(), rows)


def size(db) -> int:
    """Bytes the database takes (SQLite: the file plus its WAL)."""
    if db.dialect.name == "sqlite":
        with db.connect() as conn:  # the WAL's contents into the file first, so the file is the size
            conn.connection.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        path = Path(db.url.database)
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    with db.connect() as conn:
        return int(conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar())


class Ingest:
    """``producers`` threads ingesting events; latencies in ms of every call."""

    def __init__(self, runner: Runner, tenant_id: str, producers: int) -> None:
        self.runner, self.tenant_id, self.producers = runner, tenant_id, producers
        self.stop, self.latencies, self.errors = threading.Event(), [], []

    def run(self, until: threading.Event | float) -> list[float]:
        self.stop.clear()
        self.latencies = []
        threads = [threading.Thread(target=self._loop, args=(k,)) for k in range(self.producers)]
        for t in threads:
            t.start()
        if isinstance(until, threading.Event):
            until.wait()
        else:
            time.sleep(until)
        self.stop.set()
        for t in threads:
            t.join()
        if self.errors:
            raise self.errors[0]
        return self.latencies

    def _loop(self, k: int) -> None:
        i = 0
        while not self.stop.is_set():
            t0 = time.perf_counter()
            try:
                self.runner.ingest(self.tenant_id, {"triggerType": "whatsapp_message", "channel": "whatsapp",
                                                    "content": f"Hallo {k}-{i}", "from": f"+49170{k:02d}{i % 10**6:06d}"})
            except Exception as exc:  # noqa: BLE001 - reported by run()
                self.errors.append(exc)
                return
            self.latencies.append((time.perf_counter() - t0) * 1000)
            i += 1


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] if len(values) > 10 else float("nan")


def run(url: str, n: int, seconds: float, producers: int, batch: int | None, pause: float | None) -> dict:
    db = get_engine(url)
    migrate(db)
    tenant = services.create_tenant(db, slug=f"bench-{uuid.uuid4().hex[:6]}", name="Bench")
    actor = system_actor(tenant.id)
    wf = services.create_workflow(db, actor, WORKFLOW)
    t0 = time.perf_counter()
    fill(db, tenant.id, wf.id, n)
    print(f"  filled {n:,} old executions (x4 rows) in {time.perf_counter() - t0:.0f} s", flush=True)
    size_before = size(db)
    runner = Runner(db)
    ingest = Ingest(runner, tenant.id, producers)
    quiet = ingest.run(seconds)
    counts_before = execution_counts(db, actor)
    done = threading.Event()
    report: dict = {}

    def prune() -> None:
        start = time.perf_counter()
        result = Pruner(db, batch=batch, pause=pause).run()
        report.update(seconds=time.perf_counter() - start, deleted=dict(result.deleted), batches=result.batches,
                      vacuumed=result.vacuumed_pages)
        done.set()

    pruner = threading.Thread(target=prune)
    pruner.start()
    busy = ingest.run(done)
    pruner.join()
    counts_after = execution_counts(db, actor)
    assert sum(counts_after.values()) == sum(counts_before.values()) + len(busy), "counts must survive pruning"
    with db.connect() as conn:
        left = conn.execute(sa.select(sa.func.count()).select_from(Execution.__table__)
                            .where(Execution.__table__.c.started_at < utcnow() - timedelta(days=730))).scalar()
    assert left == 0, f"{left} old executions left"
    return {"quiet": quiet, "busy": busy, "prune": report, "size_before": size_before, "size_after": size(db), "n": n}


def print_result(label: str, r: dict, seconds: float) -> None:
    q, b, p = r["quiet"], r["busy"], r["prune"]
    print(f"{label}: {r['n']:,} old executions ({4 * r['n']:,} rows)")
    print(f"  ingest without pruning: {len(q) / seconds:,.0f} events/s, p50 {pct(q, .5):.1f} ms, p99 {pct(q, .99):.1f} ms")
    print(f"  ingest during pruning:  {len(b) / p['seconds']:,.0f} events/s, p50 {pct(b, .5):.1f} ms, p99 {pct(b, .99):.1f} ms")
    print(f"  pruning: {p['seconds']:.0f} s, {r['n'] / p['seconds']:,.0f} executions/s, {p['batches']:,} batches, deleted {p['deleted']}")
    print(f"  database size: {r['size_before'] / 1e6:,.1f} MB before, {r['size_after'] / 1e6:,.1f} MB after, "
          f"which includes the {len(q) + len(b):,} events ingested meanwhile"
          + (f"; incremental vacuum gave {p['vacuumed']:,} pages ({p['vacuumed'] * 4096 / 1e6:,.0f} MB) back" if p["vacuumed"] else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.prune", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="old executions to prune (the issue asks for 1,000,000)")
    parser.add_argument("--seconds", type=float, default=20, help="how long to measure ingest without pruning")
    parser.add_argument("--producers", type=int, default=4, help="concurrent ingest callers")
    parser.add_argument("--batch", type=int, default=None, help="rows per pruning transaction (default STUDIO_PRUNE_BATCH)")
    parser.add_argument("--pause", type=float, default=None, help="pause between batches in s (default STUDIO_PRUNE_PAUSE)")
    parser.add_argument("--database-url", default=None, help="a PostgreSQL server URL (a throw-away database is made there)")
    args = parser.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    if args.database_url:
        admin = sa.create_engine(args.database_url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
        name = f"sa_bench_prune_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = args.database_url.rsplit("/", 1)[0] + "/" + name
        try:
            print_result("PostgreSQL", run(url, args.n, args.seconds, args.producers, args.batch, args.pause), args.seconds)
        finally:
            get_engine(url).dispose()
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-prune-") as tmp:
        url = f"sqlite:///{tmp}/studio.db"
        try:
            print_result("SQLite", run(url, args.n, args.seconds, args.producers, args.batch, args.pause), args.seconds)
        finally:
            get_engine(url).dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
