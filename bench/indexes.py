"""What the indexes written per event cost: ``python -m bench.indexes``.

Runs the engine bench's (a) workload (one keyword workflow with a WhatsApp reply; event,
execution, step and outbox row per event; ``--producers`` concurrent callers) on fresh SQLite
files, alternately with the schema before migration 0015 (issue 11's covering indexes) and
with the newest schema (plus ``--drop``: more indexes dropped after migrating, to try), and
prints executions/s and the process's CPU per event for each run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid

from bench.run import WORKFLOW, _ingest_rate
from engine import services
from engine.runner import Runner
from engine.security.auth import system_actor
from engine.store.db import alembic_config, get_engine, migrate
from engine.uow import unit_of_work

#: The schema with issue 11's covering indexes (before migration 0015).
BEFORE = "0006"


def one_run(revision: str, drop: list[str], n: int, producers: int) -> tuple[float, float]:
    """(executions/s, CPU ms per event) of ``n`` events on a fresh file at ``revision`` without the ``drop`` indexes."""
    from alembic import command

    with tempfile.TemporaryDirectory() as tmp:
        db = get_engine(f"sqlite:///{tmp}/bench.db")
        if revision == "head":
            migrate(db)
        else:
            cfg = alembic_config(db.url.render_as_string(hide_password=False))
            with db.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
        with db.begin() as conn:
            for name in drop:
                conn.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
        with unit_of_work(db) as uow:
            tenant = services.create_tenant(uow=uow, slug=f"bench-{uuid.uuid4().hex[:6]}", name="Bench")
            services.create_workflow(uow=uow, actor=system_actor(tenant.id), data=WORKFLOW)
        runner = Runner(db)
        _ingest_rate(runner, tenant.id, 200, producers)  # warm-up
        cpu = time.process_time()
        rate = _ingest_rate(runner, tenant.id, n, producers)
        cpu_ms = (time.process_time() - cpu) * 1000 / n
        db.dispose()
        return rate, cpu_ms


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--producers", type=int, default=40)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--drop", default="", help="comma-separated index names to drop from the newest schema too")
    args = p.parse_args(argv)
    drop = [d for d in args.drop.split(",") if d]
    newest = "newest" + (f" - {', '.join(drop)}" if drop else "")
    print(f"load average now {os.getloadavg()[0]:.1f}")
    results: dict[str, list[tuple[float, float]]] = {"before 0015": [], newest: []}
    for _ in range(args.rounds):
        results["before 0015"].append(one_run(BEFORE, [], args.n, args.producers))
        results[newest].append(one_run("head", drop, args.n, args.producers))
    for label, runs in results.items():
        print(
            f"{label:12} executions/s "
            + " ".join(f"{r:6.0f}" for r, _ in runs)
            + f"  median {statistics.median(r for r, _ in runs):6.0f};  CPU ms/event median "
            f"{statistics.median(c for _, c in runs):.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
