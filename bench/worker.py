"""Worker (c) at scale: ``python -m bench.worker --waiting 100000 --due 100000``.

Parks ``--waiting`` executions of a wait-then-WhatsApp workflow on a fresh SQLite file (or a
throw-away PostgreSQL database with ``--database-url``), makes ``--due`` of them due, and
times one worker (``--batch`` items per claim) resuming them all; checks that every due
reminder ended ``succeeded`` with its outbox row (bench/run.py's (c) with a larger due set).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
import uuid

from bench.run import _postgres_scratch, _resume_rate
from engine import services
from engine.store.db import get_engine, migrate
from engine.uow import unit_of_work


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--waiting", type=int, default=100_000)
    p.add_argument("--due", type=int, default=100_000)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--database-url", default="")
    p.add_argument("--profile", action="store_true", help="print the top of a cProfile of the worker")
    args = p.parse_args(argv)
    print(f"load average now {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        admin = name = None
        url = f"sqlite:///{tmp}/bench.db"
        if args.database_url.startswith("postgresql"):
            admin, name, url = _postgres_scratch(args.database_url)
        try:
            db = get_engine(url)
            migrate(db)
            with unit_of_work(db) as uow:
                tenant = services.create_tenant(uow=uow, slug=f"bench-{uuid.uuid4().hex[:6]}", name="Bench")
            profile = cProfile.Profile() if args.profile else None
            timings: dict = {}
            rate = _resume_rate(
                db, tenant.id, args.waiting, args.due, batch=args.batch, profile=profile, timings=timings
            )
            # The worker's own CPU per item is the steady figure on a shared machine; the rate
            # follows how much of a core the process gets (items / CPU seconds is the rate on a free core).
            print(
                f"[{db.dialect.name}] due items resumed/s, {args.waiting:,} waiting, {args.due:,} due, batch "
                f"{args.batch}: {rate:.0f}  (worker CPU {timings['cpu'] * 1000 / args.due:.3f} ms per item, "
                f"{timings['cpu'] / timings['wall']:.0%} of a core; "
                f"{args.due / timings['cpu']:.0f} items per CPU second); "
                f"load average now {os.getloadavg()[0]:.1f}"
            )
            if profile:
                pstats.Stats(profile).sort_stats("tottime").print_stats(25)
            db.dispose()
        finally:
            if admin is not None:
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
