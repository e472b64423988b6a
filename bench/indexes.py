"""What the insights' covering indexes cost per ingested event: ``python -m bench.indexes``.

Runs the engine bench's (a) workload (one keyword workflow with a WhatsApp reply; event,
execution, step and outbox row per event; ``--producers`` concurrent callers) on fresh SQLite
files, alternately with every index and with the indexes named by ``--drop`` dropped after
migrating, and prints executions/s and process CPU per event for each run.
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
from engine.auth import system_actor
from engine.runner import Runner
from engine.store.db import get_engine, migrate

#: The covering indexes of issue 11 (migration 0006) that ingest writes on every event.
COVERING = ["ix_executions_tenant_started_id", "ix_events_tenant_received_cover", "ix_outbox_tenant_created_cover",
            "ix_outbox_execution_created"]


def one_run(drop: list[str], n: int, producers: int) -> tuple[float, float]:
    """(executions/s, CPU ms per event) of ``n`` events on a fresh file without the ``drop`` indexes."""
    with tempfile.TemporaryDirectory() as tmp:
        db = get_engine(f"sqlite:///{tmp}/bench.db")
        migrate(db)
        with db.begin() as conn:
            for name in drop:
                conn.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
        tenant = services.create_tenant(db, slug=f"bench-{uuid.uuid4().hex[:6]}", name="Bench")
        services.create_workflow(db, system_actor(tenant.id), WORKFLOW)
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
    p.add_argument("--drop", default=",".join(COVERING), help="comma-separated index names")
    args = p.parse_args(argv)
    drop = [d for d in args.drop.split(",") if d]
    print(f"load average now {os.getloadavg()[0]:.1f}; dropping {', '.join(drop)}")
    results: dict[str, list[tuple[float, float]]] = {"all indexes": [], "dropped": []}
    for _ in range(args.rounds):
        results["all indexes"].append(one_run([], args.n, args.producers))
        results["dropped"].append(one_run(drop, args.n, args.producers))
    for label, runs in results.items():
        print(f"{label:12} executions/s " + " ".join(f"{r:6.0f}" for r, _ in runs)
              + f"  median {statistics.median(r for r, _ in runs):6.0f};  CPU ms/event median "
              f"{statistics.median(c for _, c in runs):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
