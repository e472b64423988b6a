"""What erasing from the files costs, on SQLite: ``python -m bench.erasure --n 20000``.

1. **secure_delete.** Every SQLite connection zeroes what it frees (``engine/store/db.py``), so
   an erased row leaves no bytes behind. Deleting is where that costs: the pruner (the worker's
   own code, :class:`engine.lifecycle.retention.Pruner`, ``--batch`` rows per transaction, no pause) deletes
   ``--n`` old executions (4 rows each) on copies of one database, ``--rounds`` times with
   ``secure_delete`` on and as often with it off, in alternating order; printed: seconds and rows
   deleted per second of each prune, and the median of each setting.
2. **An erasure.** One member with ``--messages`` messages (each: event, execution, step, outbox
   message) among the ``--n`` executions; ``erase_contact`` is timed as a whole and the WAL
   checkpoint + truncation (``engine.store.db.truncate_wal``) on its own, with the WAL's size
   before it.

A temporary SQLite file; figures depend on the machine's load: say so when quoting them.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bench import http
from bench.prune import _workflow_id, fill
from engine.lifecycle import privacy
from engine.lifecycle.retention import Pruner
from engine.runner import Runner
from engine.security.auth import system_actor
from engine.store.db import get_engine, truncate_wal
from engine.uow import unit_of_work

MEMBER = "+4915112345678"


def _filled(folder: Path, n: int) -> tuple[str, str]:
    url = f"sqlite:///{folder / 'bench.db'}"
    tenant_id, _ = http.prepare(url)
    db = get_engine(url)
    fill(db, tenant_id, _workflow_id(db, tenant_id), n)
    db.dispose()
    return url, tenant_id


def _prune(url: str, *, secure: bool, batch: int) -> tuple[float, int]:
    db = get_engine(url)
    db.dispose()
    if not secure:  # after the engine's own pragmas: this engine's connections keep freed bytes
        sa.event.listen(db, "connect", lambda conn, _r: conn.execute("PRAGMA secure_delete=OFF").fetchall())
    start = time.perf_counter()
    report = Pruner(db, batch=batch, pause=0).run()
    seconds = time.perf_counter() - start
    db.dispose()
    return seconds, sum(report.deleted.values())


def _erasure(url: str, tenant_id: str, messages: int) -> dict[str, float]:
    db = get_engine(url)
    runner = Runner(db)
    for i in range(messages):
        runner.ingest(
            tenant_id, {"triggerType": "whatsapp_message", "channel": "whatsapp", "from": MEMBER, "content": f"m{i}"}
        )
    wal = Path(f"{db.url.database}-wal")
    timed: dict[str, float] = {}
    original = privacy.truncate_wal

    def measured(engine: Engine, *, timeout: float = 15.0) -> bool:
        timed["wal_bytes"] = wal.stat().st_size if wal.exists() else 0
        start = time.perf_counter()
        try:
            return original(engine, timeout=timeout)
        finally:
            timed["truncate"] = time.perf_counter() - start

    privacy.truncate_wal = measured
    try:
        start = time.perf_counter()
        with unit_of_work(db) as uow:
            erased = privacy.erase_contact(uow=uow, actor=system_actor(tenant_id), phone=MEMBER)
        timed["total"] = time.perf_counter() - start
    finally:
        privacy.truncate_wal = original
    timed["rows"] = sum(erased.counts.values())
    assert truncate_wal(db) and (not wal.exists() or wal.stat().st_size == 0)
    db.dispose()
    return timed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.erasure", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="old executions (4 rows each)")
    parser.add_argument("--batch", type=int, default=2_000, help="pruner rows per transaction")
    parser.add_argument("--messages", type=int, default=200, help="the erased member's messages")
    parser.add_argument("--rounds", type=int, default=2, help="prunes per setting, in alternating order")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-erasure-") as tmp:
        template = Path(tmp, "template")
        template.mkdir()
        url, tenant_id = _filled(template, args.n)
        print(f"SQLite, {args.n:,} old executions (x4 rows), pruner batch {args.batch}, no pause")
        seconds: dict[bool, list[float]] = {True: [], False: []}
        for round_ in range(args.rounds):
            for secure in (True, False) if round_ % 2 == 0 else (False, True):  # neither always goes first
                copy = Path(tmp, f"r{round_}-{secure}")
                shutil.copytree(template, copy)
                took, rows = _prune(f"sqlite:///{copy / 'bench.db'}", secure=secure, batch=args.batch)
                seconds[secure].append(took)
                label = "on " if secure else "off"
                print(f"  round {round_ + 1}, secure_delete {label}: {took:6.2f} s  {rows / took:9,.0f} rows deleted/s")
        for secure in (True, False):
            middle = statistics.median(seconds[secure])
            label = "on " if secure else "off"
            print(f"  median, secure_delete {label}: {middle:6.2f} s  {rows / middle:9,.0f} rows deleted/s")
        timed = _erasure(url, tenant_id, args.messages)
        total, truncate, wal = timed["total"] * 1000, timed["truncate"] * 1000, timed["wal_bytes"] / 1e6
        print(
            f"erasure of one member ({args.messages} messages, {timed['rows']:.0f} rows): {total:.0f} ms, "
            f"of which WAL checkpoint + truncate {truncate:.0f} ms (WAL {wal:.1f} MB)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
