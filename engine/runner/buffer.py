"""The buffered unit of work: the runner's transactions (ingest batches, local steps, resumptions).

It implements :class:`engine.uow.UnitOfWork` (read that contract first) and adds what only the
runner needs:

* **Write buffer.** :meth:`BufferedUnitOfWork.insert` keeps complete rows (events, executions,
  steps, outbox rows, due work) in Python; :meth:`write_out` writes them with one
  ``executemany`` per table, parents first. An execution still in the buffer is updated in
  place (:meth:`pending_execution`), so a run that finishes inside the transaction is written
  once, in its final state; run counters are added up per workflow (:meth:`count_run`) and
  written once. ``session``, ``connection()``, ``flush()`` and the commit write the buffer
  first, so readers see no difference. **Every finished or changed execution row of a
  buffered unit of work reaches the database in** :meth:`write_out`.
* **Insights rollups** (``engine.store.rollups``): the buffered rows' counts and the runner's
  finishes of executions written earlier (:meth:`add_rollups`) are added up in Python and
  written by :meth:`flush` (so at the commit) as one multi-row upsert, sorted by key.
* **Transaction on demand** (``lazy=True``, ingest batches): the connection begins no
  transaction until something needs one (an action using the session, or the final
  write-out); then ``lock`` is taken and the transaction begins (``BEGIN IMMEDIATE`` on
  SQLite), so SQLite's write lock is held only while it is needed.
* **Inside a caller's unit of work** (``outer=``, ``Runner.ingest(..., uow=)``): rows are
  buffered the same way and written into the caller's transaction by :meth:`flush`; the ORM
  session is the caller's; nothing commits or rolls back here.
* **Savepoints** (:meth:`savepoint`, around an action that writes several things): the buffer
  is written and turned off for the rest of the transaction, so a rolled-back savepoint takes
  back everything written inside it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from engine.runner.context import LeaseLost
from engine.store import rollups
from engine.store.fast import FastStatement
from engine.store.models import EventRecord, Execution, OutboxMessage
from engine.store.runs import FAST_INSERTS, TABLE_ORDER, count_runs, insert_statement, save_executions
from engine.uow import Clock, UnitOfWork

_INSERT_EXECUTION = FAST_INSERTS[Execution]
#: The inserts whose rows the Insights rollups count (steps are counted by the runner itself).
_COUNTED = frozenset(FAST_INSERTS[m] for m in (EventRecord, Execution, OutboxMessage))


class BufferedUnitOfWork:
    """A :class:`engine.uow.UnitOfWork` with a write buffer (see the module docstring)."""

    __slots__ = (
        "_buffering",
        "_clock",
        "_conn",
        "_counts",
        "_deltas",
        "_executions",
        "_idle",
        "_lock",
        "_outer",
        "_rows",
        "_session",
        "_tx",
        "_updates",
    )

    def __init__(
        self,
        conn: sa.Connection | None,
        *,
        clock: Clock,
        lazy: bool = False,
        lock: Any = None,
        outer: UnitOfWork | None = None,
    ) -> None:
        #: ``_conn``: the connection once in a transaction. ``_idle``: with ``lazy``, the
        #: connection this unit of work owns (begun on demand, closed by commit/abort).
        self._outer = outer
        if outer is not None:
            outer.flush()  # the caller's pending rows first (parents of ours, perhaps)
            conn = outer.connection()
        self._conn: sa.Connection | None = None if lazy else conn
        self._idle: sa.Connection | None = conn if lazy else None
        self._lock = lock
        self._tx: Any = None
        self._clock = clock
        self._session: Session | None = None
        self._rows: dict[FastStatement, list[dict[str, Any]]] = {}
        self._executions: dict[str, dict[str, Any]] = {}
        #: workflow id -> [runs, succeeded, failed, last run at]
        self._counts: dict[str, list] = {}
        self._buffering = True
        #: Insights rollup deltas of this transaction, written by :meth:`flush`.
        self._deltas = rollups.Deltas()
        #: With :meth:`defer_updates`: lease-checked execution UPDATEs kept for the write-out,
        #: by ``finished``.
        self._updates: dict[bool, list[dict[str, Any]]] | None = None

    # ------------------------------------------------------------------ the protocol

    @property
    def db(self) -> Engine:
        """The engine of this unit's connection (the caller's, inside a caller's unit of work)."""
        if self._outer is not None:
            return self._outer.db
        conn = self._conn if self._conn is not None else self._idle
        if conn is None:
            raise RuntimeError("this unit of work has ended")
        return conn.engine

    @property
    def clock(self) -> Clock:
        return self._clock

    def now(self) -> datetime:
        return self._clock()

    @property
    def session(self) -> Session:
        """The ORM session in this transaction (the buffer is written first)."""
        self.write_out()
        if self._session is None:
            self._session = (
                self._outer.session if self._outer is not None else Session(bind=self.begin(), expire_on_commit=False)
            )
        return self._session

    def connection(self) -> sa.Connection:
        """The transaction's Connection (the buffer is written first)."""
        self.write_out()
        conn = self.begin()
        return conn if self._session is None else self._session.connection()

    def insert(self, model: Any, rows: dict[str, Any] | list[dict[str, Any]]) -> None:
        """Complete rows: kept until the next write-out, or written at once after a savepoint."""
        rows = [rows] if isinstance(rows, dict) else rows
        fast = FAST_INSERTS.get(model) or insert_statement(model)
        if self._buffering:
            self._rows.setdefault(fast, []).extend(rows)
            if fast is _INSERT_EXECUTION:
                self._executions.update((row["id"], row) for row in rows)
        elif rows:
            conn = self.connection()
            deltas = rollups.Deltas()
            rollups.inserted(conn, {fast.stmt.table.name: rows}, deltas)
            fast.executemany(conn, rows)
            deltas.write(conn)

    def flush(self) -> None:
        """Everything into the transaction (buffer, then the ORM session, then the rollups)."""
        self.write_out()
        if self._session is not None:
            self._session.flush()
        if self._deltas:
            self._deltas.write(self.begin() if self._session is None else self._session.connection())

    # ------------------------------------------------------------------ the runner's own

    @property
    def begun(self) -> bool:
        return self._conn is not None

    def begin(self) -> sa.Connection:
        """The transaction's Connection, begun (under the write lock) if it was not yet."""
        if self._conn is None:
            idle = self._idle
            assert idle is not None  # a unit begun on demand owns its connection until it ends
            self._lock.acquire()
            try:
                self._tx = idle.begin()
            except BaseException:
                self._lock.release()
                raise
            self._conn = idle
        return self._conn

    def defer_updates(self) -> None:
        """Keep the executions' progress UPDATEs for the write-out too (one ``executemany``; the
        worker's batches, engine/worker/batch.py). Their lease check is then made there for all of
        them at once: fewer rows updated than kept raises LeaseLost, and the caller rolls the
        whole transaction back."""
        self._updates = {}

    def buffer_update(self, values: dict[str, Any], finished: bool) -> bool:
        """Keep a lease-checked execution UPDATE (see :meth:`defer_updates`); False: run it now."""
        if self._updates is None or not self._buffering:
            return False
        self._updates.setdefault(finished, []).append(values)
        return True

    def pending_execution(self, execution_id: str) -> dict[str, Any] | None:
        """The execution's row if it is still in the buffer (to update in place)."""
        return self._executions.get(execution_id)

    def count_run(self, workflow_id: str, ok: int, at: datetime) -> bool:
        """Add a finished run to the workflow's counters (False when not buffering: write it now)."""
        if not self._buffering:
            return False
        counts = self._counts.setdefault(workflow_id, [0, 0, 0, at])
        counts[0] += 1
        counts[1] += ok
        counts[2] += 1 - ok
        counts[3] = max(counts[3], at)
        return True

    def rollup_deltas(self) -> rollups.Deltas | None:
        """This unit's rollup deltas to add to (None after a savepoint: write yours at once)."""
        return self._deltas if self._buffering else None

    def add_rollups(self, deltas: rollups.Deltas) -> None:
        """Rollup deltas of rows changed in this transaction: kept for :meth:`flush`, or written
        now after a savepoint (so that rolling the savepoint back takes them back too)."""
        if self._buffering:
            self._deltas.merge(deltas)
        else:
            deltas.write(self.connection())

    def savepoint(self) -> Any:
        """A savepoint (context manager); the buffer is off from here on (see the module docstring)."""
        self.write_out()
        self._buffering = False
        return self.session.begin_nested()

    def write_out(self) -> None:
        """Write the buffer: tables parents first (new and finished executions among them), then
        the run counters. The one place where the buffered rows reach the database."""
        if self._rows:
            conn = self.begin()
            rows, self._rows, self._executions = self._rows, {}, {}
            rollups.inserted(conn, {f.stmt.table.name: r for f, r in rows.items() if f in _COUNTED}, self._deltas)
            for fast in sorted(rows, key=lambda f: TABLE_ORDER[f.stmt.table.name]):
                fast.executemany(conn, rows[fast])
        if self._updates:
            conn = self.begin()
            updates, self._updates = self._updates, {}
            for finished, values in updates.items():
                if not save_executions(conn, values, finished):
                    raise LeaseLost()
        if self._counts:
            conn = self.begin()
            counts, self._counts = self._counts, {}
            for workflow_id, (n, ok, bad, at) in counts.items():
                count_runs(conn, workflow_id, n, ok, bad, at)

    def commit(self) -> None:
        """Write everything and commit (a transaction on demand that was never needed: nothing).

        Unlike :class:`engine.uow.PlainUnitOfWork`, the unit ends here: connection, lock and buffer
        are given back (:meth:`abort`), since a runner unit is one transaction."""
        try:
            self.flush()
            if self._tx is not None:
                self._tx.commit()
        finally:
            self.abort()

    def abort(self) -> None:
        """Drop the buffer; roll back what this unit began, give the connection back, release the lock.

        Inside a caller's unit of work only the buffer is dropped: the caller rolls back."""
        self._rows, self._executions, self._counts = {}, {}, {}
        self._deltas.clear()
        if self._updates is not None:
            self._updates = {}
        if self._outer is not None:
            self._session = None
            return
        if self._session is not None:
            self._session.close()
            self._session = None
        conn, self._idle = self._idle, None
        if conn is not None:
            self._conn, tx, self._tx = None, self._tx, None
            try:
                conn.close()  # rolls back if still open
            finally:
                if tx is not None:
                    self._lock.release()


@contextmanager
def local_transaction(db: Any, clock: Clock) -> Iterator[BufferedUnitOfWork]:
    """One transaction for consecutive local steps: commits on success, rolls back on any error."""
    with db.begin() as conn:
        uow = BufferedUnitOfWork(conn, clock=clock)
        try:
            yield uow
            uow.flush()
        finally:
            uow.abort()  # closes its ORM session; the connection's transaction ends with the block
