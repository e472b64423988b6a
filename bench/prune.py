"""Pruning benchmark over HTTP: ``python -m bench.prune --n 1000000``.

Fills a fresh database with ``--n`` executions older than the summary retention (each with
its event, one step and one outbox message: 4 rows per execution), starts the real API
server (``python -m engine api`` on loopback, its own process, ``STUDIO_API_RATE_LIMIT=0``:
one key sending as fast as it can) over the same database, then

1. drives ``POST /api/events`` from a separate process (``wrk`` when installed, else
   ``bench.loadgen``; one editor key, ``--connections`` keep-alive connections) for
   ``--seconds`` with nothing else running;
2. runs the pruner (the worker's own code, :class:`engine.lifecycle.retention.Pruner`, default batch
   and pause) in this process while the same load runs, until every old execution is
   rolled up into daily counts and deleted; the load is stopped when the pruner is done;
3. prints req/s, p50, p99 and errors without and during pruning, pruning time and rate,
   and the database size before and after (SQLite: file plus WAL, measured with the
   server stopped; the file is incremental-vacuumed by the pruner).

It checks that counts survive pruning (every acknowledged event is counted) and that no
old execution is left. SQLite by default (a temporary file); ``--database-url
postgresql://...`` uses a throw-away database created on that server. Figures depend on
the machine's load: say so when quoting them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench import http
from bench.run import _postgres_scratch
from engine.lifecycle.retention import Pruner, execution_counts
from engine.security.auth import system_actor
from engine.store.db import get_engine
from engine.store.models import (
    EventRecord,
    Execution,
    OutboxMessage,
    StepRun,
    new_id,
    utcnow,
)

#: The load runs at least this long (a load process stopped while it starts up would measure nothing).
MIN_BUSY_SECONDS = 1.5

WORKFLOW = {
    "name": "Bench reply",
    "trigger": {"type": "whatsapp_message", "config": {}},
    "conditions": [],
    "actions": [{"id": "send-1", "type": "send_whatsapp", "config": {"message": "Hi {{trigger.content}}!"}}],
}
BODY = "Hallo, ich habe eine Frage zu den Kurszeiten am Wochenende und zur 10er-Karte. " * 3


def fill(db, tenant_id: str, workflow_id: str, n: int, chunk: int = 5000) -> None:
    """``n`` finished executions 3 years old, each with its event, step and message."""
    base = utcnow() - timedelta(days=3 * 365)
    ev, ex, st, ob = (m.__table__ for m in (EventRecord, Execution, StepRun, OutboxMessage))
    for start in range(0, n, chunk):
        events: list[dict] = []
        execs: list[dict] = []
        steps: list[dict] = []
        msgs: list[dict] = []
        for i in range(start, min(n, start + chunk)):
            at = base + timedelta(seconds=i * 20)
            phone = f"+49151{i % 10**8:08d}"
            e_id, x_id, s_id = new_id(), new_id(), new_id()
            events.append(
                {
                    "id": e_id,
                    "tenant_id": tenant_id,
                    "trigger_type": "whatsapp_message",
                    "channel": "whatsapp",
                    "content": BODY,
                    "sender": phone,
                    "intent": None,
                    "intent_confidence": None,
                    "custom_fields": {},
                    "data": {"raw": BODY},
                    "received_at": at,
                    "idempotency_key": None,
                    "depth": 0,
                    "parent_execution_id": None,
                }
            )
            execs.append(
                {
                    "id": x_id,
                    "tenant_id": tenant_id,
                    "workflow_id": workflow_id,
                    "workflow_name": "Bench reply",
                    "workflow_version": 1,
                    "event_id": e_id,
                    "status": "succeeded",
                    "mode": "live",
                    "definition": WORKFLOW,
                    "context": {"trigger": {"content": BODY, "from": phone}},
                    "explanation": [],
                    "current_action_id": None,
                    "lease_token": None,
                    "heartbeat_at": at,
                    "depth": 0,
                    "error": None,
                    "started_at": at,
                    "finished_at": at,
                    "actions_executed": 1,
                }
            )
            steps.append(
                {
                    "id": s_id,
                    "tenant_id": tenant_id,
                    "execution_id": x_id,
                    "action_id": "send-1",
                    "action_type": "send_whatsapp",
                    "attempt": 1,
                    "status": "succeeded",
                    "input": {"message": BODY},
                    "output": {"recipient": phone},
                    "error": None,
                    "started_at": at,
                    "finished_at": at,
                }
            )
            msgs.append(
                {
                    "id": new_id(),
                    "tenant_id": tenant_id,
                    "execution_id": x_id,
                    "step_run_id": s_id,
                    "channel": "whatsapp",
                    "recipient": phone,
                    "subject": None,
                    "body": "Hi " + BODY,
                    "status": "recorded",
                    "adapter": "outbox",
                    "provider_message_id": None,
                    "error": None,
                    "detail": {},
                    "created_at": at,
                    "sent_at": None,
                    "deliver_after": None,
                }
            )
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


def _workflow_id(db, tenant_id: str) -> str:
    with db.connect() as conn:
        return conn.execute(sa.text("SELECT id FROM workflows WHERE tenant_id = :t"), {"t": tenant_id}).scalar_one()


def _old_left(db) -> int:
    with db.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count())
            .select_from(Execution.__table__)
            .where(Execution.__table__.c.started_at < utcnow() - timedelta(days=730))
        ).scalar()


def prune_under_load(
    db, server: http.Server, secret: str, *, connections: int, tool: str, batch: int | None, pause: float | None
) -> tuple[http.Result, dict]:
    """Run the pruner here while a separate process posts events to ``server``; stop the load when it is done."""
    done, report = threading.Event(), dict[str, Any]()

    def prune() -> None:
        start = time.perf_counter()
        try:
            result = Pruner(db, batch=batch, pause=pause).run()
            report.update(
                seconds=time.perf_counter() - start,
                deleted=dict(result.deleted),
                batches=result.batches,
                vacuumed=result.vacuumed_pages,
            )
        except Exception as exc:  # noqa: BLE001 - raised below, after the load is stopped
            report["error"] = exc
        finally:
            done.set()

    pruner = threading.Thread(target=prune, name="pruner")
    pruner.start()
    started = time.monotonic()
    load = http.start_load(server.base, secret, connections, 24 * 3600, tool)
    try:
        done.wait()
        time.sleep(max(0.0, MIN_BUSY_SECONDS - (time.monotonic() - started)))
    finally:
        load.stop()
        pruner.join()
    busy = load.result()
    if "error" in report:
        raise report["error"]
    return busy, report


def run(
    url: str,
    n: int,
    *,
    seconds: float,
    connections: int,
    tool: str,
    batch: int | None = None,
    pause: float | None = None,
    workers: int = 1,
) -> dict:
    """Fill, serve, measure ingest without and during pruning; the figures as a dict."""
    tenant_id, secret = http.prepare(url)  # migrates; tenant, the HTTP benchmark's workflow, an editor key
    db = get_engine(url)
    actor = system_actor(tenant_id)
    t0 = time.perf_counter()
    fill(db, tenant_id, _workflow_id(db, tenant_id), n)
    print(f"  filled {n:,} old executions (x4 rows) in {time.perf_counter() - t0:.0f} s", flush=True)
    size_before = size(db)
    server = http.Server(url, workers)  # the per-key rate limit off (STUDIO_API_RATE_LIMIT=0)
    try:
        http._warm_up(server.base, secret, workers)  # intent model trained, key cached
        quiet = http.load(server.base, secret, connections, seconds, tool)
        time.sleep(0.5)  # requests still in flight when the load stopped
        counts_before = sum(execution_counts(db, actor).values())
        print(f"  measured ingest without pruning ({quiet.requests:,} requests); pruning now", flush=True)
        busy, report = prune_under_load(
            db, server, secret, connections=connections, tool=tool, batch=batch, pause=pause
        )
        time.sleep(0.5)
        counts_after = sum(execution_counts(db, actor).values())
    finally:
        server.stop()
    assert counts_before >= n + quiet.ok, f"{counts_before} counted before pruning, expected at least {n + quiet.ok}"
    assert counts_after >= counts_before + busy.ok, (
        f"counts must survive pruning: {counts_after} after, {counts_before} + {busy.ok} acknowledged before"
    )
    left = _old_left(db)
    assert left == 0, f"{left} old executions left"
    return {
        "quiet": quiet,
        "busy": busy,
        "prune": report,
        "size_before": size_before,
        "size_after": size(db),
        "n": n,
        "tool": tool,
        "connections": connections,
        "workers": workers,
    }


def _line(r: http.Result) -> str:
    return (
        f"{r.rps:,.0f} req/s, p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms, errors {r.errors + r.non2xx:,} "
        f"({r.ok:,} acknowledged)"
    )


def print_result(label: str, r: dict) -> None:
    q, b, p = r["quiet"], r["busy"], r["prune"]
    print(
        f"{label}: {r['n']:,} old executions ({4 * r['n']:,} rows); POST /api/events over HTTP with {r['tool']}, "
        f"{r['connections']} connections, {r['workers']} server process{'es' if r['workers'] > 1 else ''}"
    )
    print(f"  ingest without pruning: {_line(q)}")
    print(f"  ingest during pruning:  {_line(b)}")
    print(
        f"  pruning: {p['seconds']:.0f} s, {r['n'] / p['seconds']:,.0f} executions/s, {p['batches']:,} batches, "
        f"deleted {p['deleted']}"
    )
    print(
        f"  database size: {r['size_before'] / 1e6:,.1f} MB before, {r['size_after'] / 1e6:,.1f} MB after, "
        f"which includes the {q.ok + b.ok:,} events ingested meanwhile"
        + (
            f"; incremental vacuum gave {p['vacuumed']:,} pages ({p['vacuumed'] * 4096 / 1e6:,.0f} MB) back"
            if p["vacuumed"]
            else ""
        ),
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.prune", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="old executions to prune (the issue asks for 1,000,000)")
    parser.add_argument("--seconds", type=float, default=20, help="how long to measure ingest without pruning")
    parser.add_argument("--connections", type=int, default=16, help="concurrent HTTP connections of the load")
    parser.add_argument("--python-load", action="store_true", help="use bench.loadgen even when wrk is installed")
    parser.add_argument("--workers", type=int, default=1, help="API server processes (PostgreSQL only)")
    parser.add_argument(
        "--batch", type=int, default=None, help="rows per pruning transaction (default STUDIO_PRUNE_BATCH)"
    )
    parser.add_argument(
        "--pause", type=float, default=None, help="pause between batches in s (default STUDIO_PRUNE_PAUSE)"
    )
    parser.add_argument(
        "--database-url", default=None, help="a PostgreSQL server URL (a throw-away database is made there)"
    )
    args = parser.parse_args(argv)
    tool = "wrk" if shutil.which("wrk") and not args.python_load else "python"
    options = {
        "seconds": args.seconds,
        "connections": args.connections,
        "tool": tool,
        "batch": args.batch,
        "pause": args.pause,
        "workers": args.workers,
    }
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    if args.database_url:
        admin, name, url = _postgres_scratch(args.database_url)
        try:
            print_result("PostgreSQL", run(url, args.n, **options))
        finally:
            get_engine(url).dispose()
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.dispose()
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-prune-") as tmp:
        url = f"sqlite:///{tmp}/studio.db"
        try:
            print_result("SQLite", run(url, args.n, **options))
        finally:
            get_engine(url).dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
