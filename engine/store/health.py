"""Can the database take a write? ``/api/health`` asks :func:`write_problem`.

A read (``SELECT 1``) said "ok" while every write failed: a full disk, another process holding
the write lock. So the check writes: it rewrites the one row of ``storage_probe`` with the
time, waiting at most ``PROBE_SECONDS`` for a lock, and commits. On SQLite the commit appends
to the write-ahead log (a full disk fails it, and the failure starts the checkpointer's
full-disk recovery, engine/store/checkpoint.py); on PostgreSQL it writes WAL too. A good
answer is kept for ``CACHE_SECONDS`` per process, so a load balancer polling often costs one
small write a second at most; a bad one is asked again at the next check.

Imported at the end of ``engine.store.models`` so its table is part of ``SQLModel.metadata``.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Field

from engine.store.faults import LOCKED, failed_within, fault_kind
from engine.store.models import SQLModel, _created, utcnow

#: Longest the probe waits for a lock another connection holds.
PROBE_SECONDS = 1.0
#: How long a probe that committed is trusted.
CACHE_SECONDS = 1.0

_answers: dict[int, tuple[float, None]] = {}
#: Since when the probe has found the write lock held by another connection, per database.
_busy_since: dict[int, float] = {}
_lock = threading.Lock()


class StorageProbe(SQLModel, table=True):
    """One row per database, rewritten by the health check to prove that writes commit."""

    __tablename__ = "storage_probe"

    id: int = Field(primary_key=True)
    checked_at: datetime = _created()


def write_problem(db: Engine) -> str | None:
    """None when a write commits now, else why not (the driver's words, first line)."""
    key = id(db)
    now = time.monotonic()
    with _lock:
        cached = _answers.get(key)
    if cached is not None and now - cached[0] < CACHE_SECONDS:
        return None
    problem, kind = _probe(db)
    with _lock:
        if problem is None:
            _answers[key] = (time.monotonic(), None)
            _busy_since.pop(key, None)
        elif kind == LOCKED:
            since = _busy_since.setdefault(key, now)
            if _writes_only_wait(now - since):
                return None
    return problem


def _writes_only_wait(busy_for: float) -> bool:
    """Another writer holds the lock, but writes wait for it (up to the lock timeout) rather than
    fail: no write of this process failed lately and the lock has not been held that long."""
    from engine.settings import get_settings

    timeout = get_settings().db_lock_timeout
    return busy_for < timeout and not failed_within(2 * timeout + PROBE_SECONDS)


def _probe(db: Engine) -> tuple[str | None, str | None]:
    """Why a write does not commit now (the driver's words, first line) and the fault's kind."""
    try:
        with db.connect() as conn:
            if db.dialect.name == "sqlite":
                _probe_sqlite(conn)
            else:
                with conn.begin():
                    conn.exec_driver_sql(f"SET LOCAL lock_timeout = {int(PROBE_SECONDS * 1000)}")
                    conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(PROBE_SECONDS * 2000)}")
                    conn.execute(_upsert(db))
    except Exception as exc:  # noqa: BLE001 - whatever failed the write is the answer
        return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0], fault_kind(exc)
    return None, None


def _probe_sqlite(conn: sa.Connection) -> None:
    raw = conn.connection.driver_connection
    assert raw is not None
    waited = raw.execute("PRAGMA busy_timeout").fetchone()[0]
    raw.execute(f"PRAGMA busy_timeout={int(PROBE_SECONDS * 1000)}")  # before BEGIN IMMEDIATE waits
    try:
        with conn.begin():
            conn.execute(_upsert(conn.engine))
    finally:
        raw.execute(f"PRAGMA busy_timeout={waited}")


def _upsert(db: Engine) -> sa.Insert:
    if db.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
    table = StorageProbe.__table__
    stmt = insert(table).values(id=1, checked_at=utcnow())
    return stmt.on_conflict_do_update(index_elements=["id"], set_={"checked_at": stmt.excluded.checked_at})
