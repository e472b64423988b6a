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
  own columns and defaults, see :mod:`engine.store.runs`). A buffered unit of work (the runner's
  transactions, :mod:`engine.runner.buffer`) keeps them in memory and writes them with one ``executemany``
  per table, parents first, at the next flush; a plain one writes them at once. Either way
  they are inside the transaction and commit or roll back with it.
* **Flush points.** :meth:`UnitOfWork.flush`, any use of ``session`` or ``connection()``, and
  the commit. Nothing is written outside the transaction, ever.
* **One clock.** :meth:`UnitOfWork.now` is the time of the use case; engine code reads no other
  clock (tests inject one and move time without sleeping).
* **Insights rollups** (:mod:`engine.store.rollups`) change in the same transaction as the rows
  they count: :meth:`UnitOfWork.insert` counts the rows it inserts; other changes hand their
  deltas to :meth:`UnitOfWork.add_rollups`, which a plain unit writes at once and a buffered one
  adds up for one upsert at its flush.
* **Read-only units** (``unit_of_work(db, read_only=True)``) never take SQLite's write lock;
  flushing a write through them raises ``RuntimeError``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from engine.store import rollups
from engine.store.db import read_session, session_scope
from engine.store.models import utcnow
from engine.store.runs import FAST_INSERTS

Clock = Callable[[], datetime]


@runtime_checkable
class UnitOfWork(Protocol):
    """What services, executors and delivery may use of the transaction they run in."""

    @property
    def session(self) -> Session:
        """An ORM session inside the unit's transaction (buffered rows are written first)."""

    @property
    def clock(self) -> Clock: ...

    @property
    def db(self) -> Engine:
        """The engine the unit runs on, for work that commits on its own (the runner's
        external steps, a manual run) and for keys of per-database caches."""

    def now(self) -> datetime:
        """The unit's time (its clock, read now)."""

    def connection(self) -> sa.Connection:
        """The transaction's Connection, for Core statements (buffered rows are written first)."""

    def insert(self, model: Any, rows: dict[str, Any] | list[dict[str, Any]]) -> None:
        """Complete rows for ``model``'s table: buffered or written at once, always in the transaction."""

    def flush(self) -> None:
        """Write everything buffered, and pending ORM changes, into the transaction now."""

    def add_rollups(self, deltas: rollups.Deltas) -> None:
        """Insights rollup deltas of rows changed in this transaction (written now or at the flush)."""

    def rollup_deltas(self) -> rollups.Deltas | None:
        """The unit's own pending deltas to add to directly (the runner's hot path), or None:
        then build a :class:`rollups.Deltas` and hand it to :meth:`add_rollups`."""

    def commit(self) -> None:
        """Commit what was done so far. A plain unit goes on in a new transaction (only for use
        cases that hand work to the runner, which commits on its own: a manual run, a replay; and for
        an erasure, which must be durable before it wipes the old copies from the files);
        the runner's buffered unit is one transaction, so its commit also ends it."""


class PlainUnitOfWork:
    """A unit of work over one ORM session: nothing buffered, inserts are written at once.

    ``session`` may be a function that opens it: then the session (and a connection) is only
    opened on first use, so a unit nobody reads through costs nothing (the events hot path).
    """

    def __init__(
        self, session: Session | Callable[[], Session], *, clock: Clock = utcnow, db: Engine | None = None
    ) -> None:
        self._session: Session | None = session if isinstance(session, Session) else None
        self._open: Callable[[], Session] | None = None if isinstance(session, Session) else session
        self._clock = clock
        self._db = db

    @property
    def db(self) -> Engine:
        if self._db is None:
            raise RuntimeError("this unit of work was opened without its engine")
        return self._db

    @property
    def session(self) -> Session:
        if self._session is None:
            assert self._open is not None  # one of the two is always given
            self._session = self._open()
        return self._session

    @property
    def clock(self) -> Clock:
        return self._clock

    def now(self) -> datetime:
        return self._clock()

    def connection(self) -> sa.Connection:
        return self.session.connection()

    def insert(self, model: Any, rows: dict[str, Any] | list[dict[str, Any]]) -> None:
        rows = [rows] if isinstance(rows, dict) else rows
        if rows:
            self.session.flush()
            conn = self.session.connection()
            fast = FAST_INSERTS.get(model)
            if (
                fast is not None and fast.column_keys is not None and len(rows[0]) >= len(fast.column_keys)
            ):  # complete rows: the fast path
                fast.executemany(conn, rows)
            else:
                conn.execute(model.__table__.insert(), rows)
            rollups.apply(conn, rollups.inserted_deltas(conn, model.__table__.name, rows))

    def flush(self) -> None:
        if self._session is not None:
            self._session.flush()

    def add_rollups(self, deltas: rollups.Deltas) -> None:
        if deltas:
            rollups.apply(self.connection(), deltas)

    def rollup_deltas(self) -> rollups.Deltas | None:
        return None

    def commit(self) -> None:
        if self._session is not None and self._session.in_transaction():
            self._session.commit()


@contextmanager
def unit_of_work(db: Engine, *, clock: Clock = utcnow, read_only: bool = False) -> Iterator[PlainUnitOfWork]:
    """One use case, one transaction: commits when the block ends, rolls back on any error.

    The session is opened on first use (a unit that reads nothing opens no connection)."""
    with ExitStack() as scopes:
        yield PlainUnitOfWork(
            lambda: scopes.enter_context(read_session(db) if read_only else session_scope(db)), clock=clock, db=db
        )
