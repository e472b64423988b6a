"""Storage faults: the database exists but cannot take a write right now.

Another process holds the write lock past the lock timeout, the disk is full, the storage
failed a write, or the server is unreachable. None of these is a bug in the request, and each
may go away by itself, so the doors answer them as "try again" (HTTP 503 with ``Retry-After``,
see ``engine/api/errors.py``) instead of 500 "internal", and the worker waits and tries again.

:func:`fault_kind` recognises them on every layer they surface on: the driver's own
exceptions (``sqlite3``, ``psycopg``), SQLAlchemy's wrappers (``DBAPIError.orig``), and
exceptions raised from them (``__cause__``/``__context__``).
"""

from __future__ import annotations

import math
import sqlite3
import time

import sqlalchemy as sa

from engine.errors import StorageUnavailable

LOCKED, FULL, IO, UNREACHABLE = "locked", "full", "io", "unreachable"

#: SQLite primary result codes (the extended code's low byte).
_SQLITE_KINDS = {5: LOCKED, 6: LOCKED, 10: IO, 13: FULL, 14: UNREACHABLE, 15: LOCKED}
#: Words of SQLite's messages, for errors raised without a result code.
_SQLITE_WORDS = (("database is locked", LOCKED), ("database or disk is full", FULL), ("disk i/o error", IO))
#: PostgreSQL SQLSTATEs: lock_timeout, statement_timeout, deadlock, serialization failure,
#: disk full, server shutting down or starting.
_PG_STATES = {
    "55P03": LOCKED,
    "57014": LOCKED,
    "40P01": LOCKED,
    "40001": LOCKED,
    "53100": FULL,
    "57P01": UNREACHABLE,
    "57P02": UNREACHABLE,
    "57P03": UNREACHABLE,
}
#: PostgreSQL SQLSTATE classes: connection exceptions, insufficient resources, system errors.
_PG_CLASSES = {"08": UNREACHABLE, "53": FULL, "58": IO}

_MESSAGES = {
    LOCKED: "the database is busy: another process holds a lock it needs",
    FULL: "the database cannot store anything now: its disk is full",
    IO: "the database's storage failed to write",
    UNREACHABLE: "the database cannot be reached",
}


def fault_kind(exc: BaseException | None) -> str | None:
    """``locked``, ``full``, ``io`` or ``unreachable`` when ``exc`` (or what it wraps) is a
    storage fault, else None (a bug, a constraint, bad SQL...)."""
    seen = 0
    while exc is not None and seen < 8:
        kind = _kind_of(exc)
        if kind is not None:
            return kind
        seen += 1
        exc = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__
    return None


def _kind_of(exc: BaseException) -> str | None:
    if isinstance(exc, StorageUnavailable):
        return exc.kind
    if isinstance(exc, sa.exc.TimeoutError):  # no pooled connection came free in time
        return LOCKED
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and (code & 0xFF) in _SQLITE_KINDS:
            return _SQLITE_KINDS[code & 0xFF]
        text = str(exc).lower()
        return next((kind for words, kind in _SQLITE_WORDS if words in text), None)
    return _pg_kind(exc)


def _pg_kind(exc: BaseException) -> str | None:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - PostgreSQL support not installed
        return None
    if not isinstance(exc, psycopg.Error):
        return None
    state = exc.sqlstate or ""
    if state in _PG_STATES:
        return _PG_STATES[state]
    if state[:2] in _PG_CLASSES:
        return _PG_CLASSES[state[:2]]
    # No SQLSTATE: the connection itself failed (refused, reset, closed by the server).
    return UNREACHABLE if not state and isinstance(exc, psycopg.OperationalError) else None


def retry_after(kind: str) -> int:
    """Seconds a client should wait: a lock is gone within about one lock timeout; a full disk
    or failing storage needs someone to act."""
    if kind == LOCKED:
        from engine.settings import get_settings

        return max(1, math.ceil(get_settings().db_lock_timeout))
    return 30 if kind in (FULL, IO) else 5


#: When this process last saw a write fail for a storage fault (monotonic seconds).
_last_fault: list[float] = []


def storage_fault(exc: BaseException | None) -> StorageUnavailable | None:
    """A new engine error for a storage fault (with its ``Retry-After``), or None. The time is
    remembered: the health check tells a lock that writes wait for from one they fail on."""
    if isinstance(exc, StorageUnavailable):
        _last_fault[:] = [time.monotonic()]
        return StorageUnavailable(exc.message, kind=exc.kind, retry_after=exc.retry_after)
    kind = fault_kind(exc)
    if kind is None:
        return None
    _last_fault[:] = [time.monotonic()]
    return StorageUnavailable(f"{_MESSAGES[kind]}; try again later", kind=kind, retry_after=retry_after(kind))


def failed_within(seconds: float) -> bool:
    """Did a write of this process fail for a storage fault in the last ``seconds``?"""
    return bool(_last_fault) and time.monotonic() - _last_fault[0] < seconds


def is_disk_full(exc: BaseException | None) -> bool:
    """A write failed for lack of space (or the storage failed it): the SQLite checkpointer
    then gives up its reserve so the write-ahead log can be emptied (engine/store/checkpoint.py)."""
    return fault_kind(exc) in (FULL, IO)
