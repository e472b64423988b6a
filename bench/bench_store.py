"""Store benchmark: list, search, deep page and stats over 10,000 workflows in one tenant.

    python -m bench.bench_store                          # a temporary SQLite file
    python -m bench.bench_store --database-url postgresql://postgres@127.0.0.1:5432/bench

The workflows are bulk-inserted straight into the table (valid definitions, the spec's four
examples with numbered names, about half enabled, random run counters), then each service
call is timed several times; the median is printed in milliseconds. On a given database the
benchmark tenant is deleted again at the end.
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from engine import services
from engine.demo.seed import spec_examples
from engine.security.auth import system_actor
from engine.store.db import get_engine, migrate
from engine.store.models import Tenant, Workflow, new_id, utcnow
from engine.uow import unit_of_work
from engine.workflow.validation import errors_only, validate

BATCH = 1000


def _read(db, service, **kwargs):
    """One read as a page or a GET route makes it: in a read-only unit of work of its own."""
    with unit_of_work(db, read_only=True) as uow:
        return service(uow=uow, **kwargs)


def workflow_rows(tenant_id: str, count: int, seed: int = 7) -> list[dict]:
    """``count`` rows for the workflows table, each with a valid definition."""
    rnd = random.Random(seed)
    templates = spec_examples()
    now = utcnow()
    rows = []
    for i in range(count):
        definition = copy.deepcopy(templates[i % len(templates)])
        definition["name"] = f"{definition['name']} #{i:05d}"
        definition["enabled"] = rnd.random() < 0.5
        ok, failed = rnd.randint(0, 50), rnd.randint(0, 5)
        rows.append(
            {
                "id": new_id(),
                "tenant_id": tenant_id,
                "name": definition["name"],
                "description": definition.get("description"),
                "enabled": definition["enabled"],
                "trigger_type": definition["trigger"]["type"],
                "definition": definition,
                "version": 1,
                "created_by": None,
                "created_at": now,
                "updated_at": now,
                "run_count": ok + failed,
                "success_count": ok,
                "error_count": failed,
                "last_run_at": None,
                "next_fire_at": None,
            }
        )
    assert not any(errors_only(validate(rows[i]["definition"])) for i in range(len(templates)))
    return rows


def seed_tenant(db, count: int) -> str:
    with unit_of_work(db) as uow:
        tenant = services.create_tenant(uow=uow, slug=f"bench-{uuid.uuid4().hex[:8]}", name="Bench Studio")
    rows = workflow_rows(tenant.id, count)
    with db.begin() as conn:
        for start in range(0, len(rows), BATCH):
            conn.execute(sa.insert(Workflow.__table__), rows[start : start + BATCH])
    if db.dialect.name == "postgresql":
        with db.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE workflows")
    return tenant.id


def median_ms(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm-up: caches, prepared statements
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        timings.append((time.perf_counter() - start) * 1000)
    return statistics.median(timings)


def measure(db, tenant_id: str, runs: int) -> dict[str, float]:
    actor = system_actor(tenant_id)
    cases: dict[str, Callable[[], object]] = {
        "list_workflows page 1 (50)": lambda: _read(db, services.list_workflows, actor=actor),
        "list_workflows search 'missed call' (page 1)": lambda: _read(
            db, services.list_workflows, actor=actor, search="missed call"
        ),
        "list_workflows search '#04242' (1 hit)": lambda: _read(
            db, services.list_workflows, actor=actor, search="#04242"
        ),
        "list_workflows page 100 (50)": lambda: _read(db, services.list_workflows, actor=actor, page=100),
        "list_workflows enabledOnly + includeStats": lambda: _read(
            db, services.list_workflows, actor=actor, enabled_only=True, include_stats=True
        ),
        "workflow_stats": lambda: _read(db, services.workflow_stats, actor=actor),
    }
    with unit_of_work(db, read_only=True) as uow:
        sanity = services.list_workflows(uow=uow, actor=actor, page=100)
    assert len(sanity.items) == 50, "page 100 must be full"
    return {label: median_ms(fn, runs) for label, fn in cases.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_store", description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    parser.add_argument("--workflows", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=9, help="timed runs per case (median printed)")
    args = parser.parse_args(argv)

    tmpdir = None
    url = args.database_url
    if url is None:
        tmpdir = tempfile.TemporaryDirectory(prefix="bench-store-")
        url = f"sqlite:///{Path(tmpdir.name) / 'bench.db'}"
    db = get_engine(url)
    migrate(db)
    start = time.perf_counter()
    tenant_id = seed_tenant(db, args.workflows)
    print(f"database: {db.dialect.name} ({db.url.render_as_string(hide_password=True)})")
    print(f"inserted {args.workflows:,} workflows in {time.perf_counter() - start:.1f} s")
    try:
        for label, ms in measure(db, tenant_id, args.runs).items():
            print(f"{label:<46} {ms:8.2f} ms (median of {args.runs})")
    finally:
        with db.begin() as conn:
            conn.execute(sa.delete(Tenant.__table__).where(Tenant.__table__.c.id == tenant_id))
        db.dispose()
        if tmpdir:
            tmpdir.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
