"""The unit of work: one transaction, the clock it runs on, and a write buffer where there is one.

Every entry point (a page, an API route, a CLI command, the worker, the runner) opens one unit
of work per use case and hands it to services, executors and delivery, which use only this
protocol. The contract:

* **Atomic.** A unit of work is one database transaction. Everything done through it commits
  together when its ``with`` block ends, or nothing does: any exception rolls back, and so
  does :meth:`UnitOfWork.rollback`.
* **Reads see the unit's own writes.** ``session`` and ``connection()`` work inside the same
  transaction; anything buffered is written into the transaction before either is used.
* **Buffered inserts.** :meth:`UnitOfWork.insert` takes complete rows (built from the table's
  own columns and defaults, see ``engine.store``). A buffered unit of work (the runner's
  ingest, :mod:`engine.runner`) keeps them in memory and writes them with one ``executemany``
  per table, parents first, at the next flush; a plain one writes them at once. Either way
  they are inside the transaction and commit or roll back with it.
* **Flush points.** :meth:`UnitOfWork.flush`, any use of ``session`` or ``connection()``, and
  the commit. Nothing is written outside the transaction, ever.
* **One clock.** :meth:`UnitOfWork.now` is the time of the use case; engine code reads no other
  clock (tests inject one and move time without sleeping).
* **Read-only units** (``unit_of_work(db, read_only=True)``) never take SQLite's write lock;
  flushing a write through them raises ``RuntimeError``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from engine.store.db import read_session, session_scope
from engine.store.models import utcnow

Clock = Callable[[], datetime]


@runtime_checkable
class UnitOfWork(Protocol):
    """What services, executors and delivery may use of the transaction they run in."""

    @property
    def session(self) -> Session:
        """An ORM session inside the unit's transaction (buffered rows are written first)."""

    @property
    def clock(self) -> Clock: ...

    def now(self) -> datetime:
        """The unit's time (its clock, read now)."""

    def connection(self) -> sa.Connection:
        """The transaction's Connection, for Core statements (buffered rows are written first)."""

    def insert(self, model: Any, rows: dict[str, Any] | list[dict[str, Any]]) -> None:
        """Complete rows for ``model``'s table: buffered or written at once, always in the transaction."""

    def flush(self) -> None:
        """Write everything buffered, and pending ORM changes, into the transaction now."""


class PlainUnitOfWork:
    """A unit of work over one ORM session: nothing buffered, inserts are written at once."""

    def __init__(self, session: Session, *, clock: Clock = utcnow) -> None:
        self._session = session
        self._clock = clock

    @property
    def session(self) -> Session:
        return self._session

    @property
    def clock(self) -> Clock:
        return self._clock

    def now(self) -> datetime:
        return self._clock()

    def connection(self) -> sa.Connection:
        return self._session.connection()

    def insert(self, model: Any, rows: dict[str, Any] | list[dict[str, Any]]) -> None:
        rows = [rows] if isinstance(rows, dict) else rows
        if rows:
            self._session.flush()
            self._session.connection().execute(model.__table__.insert(), rows)

    def flush(self) -> None:
        self._session.flush()


@contextmanager
def unit_of_work(db: Engine, *, clock: Clock = utcnow, read_only: bool = False) -> Iterator[PlainUnitOfWork]:
    """One use case, one transaction: commits when the block ends, rolls back on any error."""
    scope = read_session(db) if read_only else session_scope(db)
    with scope as session:
        yield PlainUnitOfWork(session, clock=clock)
