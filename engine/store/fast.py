"""Hot-path statements executed on the DB-API connection, with SQL compiled once per dialect.

Why: running a Core statement through SQLAlchemy costs ~0.2 ms of Python per statement
(cache key, execution context, parameter processing, result set-up), more than SQLite
needs to run it. The runner's ingest-to-done path issues about eight statements per
execution; this module keeps their *meaning* in SQLAlchemy (the statements are ordinary
Core constructs over the model tables) and only skips the per-call machinery:

* :class:`FastStatement` wraps a Core statement. The first time it is used with a dialect it
  is compiled with ``stmt.compile(dialect=..., column_keys=...)``; the SQL text, the order of
  its parameters (``compiled.positiontup`` for positional paramstyles such as SQLite's
  ``qmark``, names for psycopg's ``pyformat``) and SQLAlchemy's own bind processors for each
  parameter (``type.dialect_impl(dialect).bind_processor(dialect)``) are kept. Values are
  therefore converted exactly as SQLAlchemy converts them: ``UTCDateTime`` -> naive UTC
  (then SQLite's ``DATETIME`` string format), JSON -> ``json.dumps`` on SQLite and
  ``psycopg.types.json.Jsonb`` on PostgreSQL (with the ``::JSONB`` cast the psycopg dialect
  renders), and so on. Result columns get SQLAlchemy's result processors the same way
  (JSON text -> ``json.loads`` on SQLite; nothing on psycopg, which decodes natively).
* Statements run on ``conn.connection.dbapi_connection`` of the SQLAlchemy ``Connection``
  (for a ``Session``: ``session.connection()``), i.e. **inside the same transaction** that
  SQLAlchemy began (``BEGIN IMMEDIATE`` on SQLite via the engine's ``begin`` listener) and
  will commit or roll back. Nothing here commits.
* Parameters are strict: an INSERT is compiled for *every* column of its table, and each
  call must supply every key (a missing key is a ``KeyError``, never a silently applied or
  skipped default). Compilation refuses statements that would need Python-side defaults.
* A DB-API error is re-raised as SQLAlchemy would raise it (``sqlalchemy.exc.IntegrityError``
  and friends, via ``DBAPIError.instance``), and a connection the dialect recognises as
  disconnected is invalidated, so callers' ``except IntegrityError`` and the pool behave as
  with ``Connection.execute``.

Only simple statements belong here: no ``IN`` lists with expanding parameters, no
``RETURNING``, no ORM entities. Everything else keeps using SQLAlchemy normally.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session


def connection_of(target: Session | Connection) -> Connection:
    """The SQLAlchemy Connection of a Session (beginning its transaction) or the Connection itself."""
    return target if isinstance(target, Connection) else target.connection()


class _Compiled:
    """One statement compiled for one dialect (see :class:`FastStatement`)."""

    __slots__ = ("_getter", "_procs", "binds", "dialect", "positional", "result_procs", "sql")

    def __init__(self, stmt: Any, dialect: Dialect, column_keys: Sequence[str] | None) -> None:
        compiled = stmt.compile(dialect=dialect, column_keys=list(column_keys) if column_keys is not None else None)
        if getattr(compiled, "insert_prefetch", None) or getattr(compiled, "update_prefetch", None):
            names = [c.key for c in (compiled.insert_prefetch or []) + (compiled.update_prefetch or [])]
            raise ValueError(f"fast statement needs Python-side defaults for {names}: pass every column")
        if any(bp.expanding for bp in compiled.binds.values()):
            raise ValueError("fast statements cannot use expanding IN parameters")
        self.dialect = dialect
        self.sql: str = compiled.string
        self.positional: bool = bool(compiled.positional)
        names = list(compiled.positiontup) if self.positional else list(compiled.bind_names.values())
        if not self.positional:
            names = list(dict.fromkeys(names))  # pyformat: each name once
        escaped = getattr(compiled, "escaped_bind_names", None) or {}
        #: (name callers pass, name in the SQL text, SQLAlchemy's bind processor or None);
        #: a parameter with a value in the statement itself (the ``1`` of ``run_count + 1``)
        #: is a constant, processed once here: its name is None.
        self.binds: list[tuple[str | None, str, Any]] = []
        for name in names:
            bp = compiled.binds[name]
            proc = _fast_processor(bp.type, dialect) or bp.type.dialect_impl(dialect).bind_processor(dialect)
            if bp.required:
                self.binds.append((name, escaped.get(name, name), proc))
            else:
                value = bp.effective_value
                self.binds.append((None, escaped.get(name, name), value if proc is None else proc(value)))
        #: Positional statements without constants: all values in one C call, then the
        #: processors of the few columns that have one (most rows have 10-20 columns).
        self._getter: Any = None
        if self.positional and self.binds and all(name is not None for name, _sql, _proc in self.binds):
            keys = [name for name, _sql, _proc in self.binds]
            self._getter = operator.itemgetter(*keys) if len(keys) > 1 else (lambda p, k=keys[0]: (p[k],))
            self._procs = [(i, proc) for i, (_name, _sql, proc) in enumerate(self.binds) if proc is not None]
        self.result_procs: list[Any] | None = None
        if isinstance(stmt, sa.Select):
            procs = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in stmt.selected_columns]
            self.result_procs = procs if any(procs) else None

    def args_many(self, rows: Iterable[Mapping[str, Any]]) -> list:
        """:meth:`args` for many rows (column by column: fewer Python calls per value)."""
        if self._getter is None:
            return [self.args(row) for row in rows]
        values = [list(t) for t in map(self._getter, rows)]
        for i, proc in self._procs:
            for v in values:
                v[i] = proc(v[i])
        return values

    def args(self, params: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        """The DB-API parameters for ``params`` (every required name must be present)."""
        if self._getter is not None:
            values = list(self._getter(params))
            for i, proc in self._procs:
                values[i] = proc(values[i])
            return values
        if self.positional:
            return [
                proc if name is None else params[name] if proc is None else proc(params[name])
                for name, _sql, proc in self.binds
            ]
        return {
            sqlname: proc if name is None else params[name] if proc is None else proc(params[name])
            for name, sqlname, proc in self.binds
        }


class FastStatement:
    """A Core statement run on the DB-API connection of a SQLAlchemy ``Connection``/``Session``.

    ``column_keys``: for INSERT/UPDATE, the columns given as parameters (the SET list of an
    UPDATE; for an INSERT, default: every column of the table). Bind parameters of WHERE
    clauses are passed by their ``bindparam`` names.
    """

    def __init__(self, stmt: Any, column_keys: Sequence[str] | None = None) -> None:
        if column_keys is None and isinstance(stmt, sa.Insert):
            column_keys = [c.key for c in stmt.table.columns]
        self.stmt = stmt
        self.column_keys = list(column_keys) if column_keys is not None else None
        self._by_dialect: dict[tuple, _Compiled] = {}
        self._lock = threading.Lock()

    def compiled(self, dialect: Dialect) -> _Compiled:
        key = (
            dialect.name,
            dialect.driver,
            dialect.paramstyle,
            getattr(dialect, "server_version_info", None),
            getattr(dialect, "_json_serializer", None),
        )
        found = self._by_dialect.get(key)
        if found is None:
            with self._lock:
                found = self._by_dialect.get(key)
                if found is None:
                    found = self._by_dialect[key] = _Compiled(self.stmt, dialect, self.column_keys)
        return found

    def execute(self, target: Session | Connection, params: Mapping[str, Any]) -> Any:
        """Run with one set of parameters; returns the DB-API cursor (``rowcount``, ``fetch*``)."""
        conn = connection_of(target)
        c = self.compiled(conn.dialect)
        args = c.args(params)
        dbapi_conn = conn.connection.dbapi_connection
        assert dbapi_conn is not None  # an open connection has one
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(c.sql, args)
        except conn.dialect.loaded_dbapi.Error as exc:
            _reraise(conn, c.sql, args, exc, cursor)
        return cursor

    def executemany(self, target: Session | Connection, rows: Iterable[Mapping[str, Any]]) -> None:
        """Run once per parameter set (INSERT of several rows)."""
        conn = connection_of(target)
        c = self.compiled(conn.dialect)
        args = c.args_many(rows)
        if not args:
            return
        dbapi_conn = conn.connection.dbapi_connection
        assert dbapi_conn is not None  # an open connection has one
        cursor = dbapi_conn.cursor()
        try:
            if len(args) == 1:
                cursor.execute(c.sql, args[0])
            else:
                cursor.executemany(c.sql, args)
        except conn.dialect.loaded_dbapi.Error as exc:
            _reraise(conn, c.sql, args, exc, cursor)
        finally:
            cursor.close()

    def rowcount_many(self, target: Session | Connection, rows: Sequence[Mapping[str, Any]]) -> int:
        """Run an UPDATE/DELETE once per parameter set; the number of rows matched in all.

        Counted per set (``execute`` in a loop on one cursor): what ``executemany`` reports as
        ``rowcount`` differs between drivers."""
        conn = connection_of(target)
        c = self.compiled(conn.dialect)
        args = c.args_many(rows)
        dbapi_conn = conn.connection.dbapi_connection
        assert dbapi_conn is not None  # an open connection has one
        cursor = dbapi_conn.cursor()
        total = 0
        try:
            for one in args:
                cursor.execute(c.sql, one)
                total += cursor.rowcount
        except conn.dialect.loaded_dbapi.Error as exc:
            _reraise(conn, c.sql, args, exc, cursor)
        finally:
            cursor.close()
        return total

    def rowcount(self, target: Session | Connection, params: Mapping[str, Any]) -> int:
        """Run an UPDATE/DELETE; the number of rows it matched."""
        cursor = self.execute(target, params)
        try:
            return cursor.rowcount
        finally:
            cursor.close()

    def all(self, target: Session | Connection, params: Mapping[str, Any]) -> list[tuple]:
        """Run a SELECT; every row as a tuple, result processors applied."""
        conn = connection_of(target)
        cursor = self.execute(conn, params)
        try:
            rows = cursor.fetchall()
        finally:
            cursor.close()
        procs = self.compiled(conn.dialect).result_procs
        if procs is None:
            return [tuple(r) for r in rows]
        return [tuple(v if p is None else p(v) for p, v in zip(procs, r)) for r in rows]

    def first(self, target: Session | Connection, params: Mapping[str, Any]) -> tuple | None:
        rows = self.all(target, params)
        return rows[0] if rows else None


_UTC = UTC
#: Checked against SQLAlchemy's own processor before the direct one is used.
_SAMPLES = (
    datetime(2026, 3, 29, 1, 30, 0, 0, tzinfo=_UTC),
    datetime(2026, 11, 25, 23, 59, 59, 999999, tzinfo=_UTC),
    datetime(2026, 7, 1, 12, 0, 0, 123, tzinfo=timezone(timedelta(hours=2))),
    datetime(2026, 1, 1, 8, 0),
    datetime(999, 1, 2, 3, 4, 5, 6),
    None,
)


#: Recently converted datetimes and their text: the same few ``now`` values fill several
#: columns of several rows (received, started, heartbeat, finished ...). Equal datetimes
#: (aware ones compare in UTC) have equal text, so any thread may use any entry.
_recent: dict[datetime, str] = {}
#: The very last one (an identity check is cheaper than hashing an aware datetime).
_last: tuple[Any, Any] = (None, None)


def _sqlite_utc_datetime(value: datetime | None) -> str | None:
    """SQLAlchemy's SQLite DATETIME text for an aware (or naive UTC) datetime, in one step."""
    global _last
    if value is None:
        return None
    last = _last
    if value is last[0]:
        return last[1]
    text = _recent.get(value)
    if text is None:
        if len(_recent) > 512:
            _recent.clear()
        text = _recent[value] = (
            value.astimezone(_UTC).replace(tzinfo=None) if value.tzinfo is not None else value
        ).isoformat(" ", "microseconds")
    _last = (value, text)
    return text


_JSON_SAMPLES: tuple[Any, ...] = ({"a": [1, 2.5, None, "ü"], "b": {"c": True}}, [], {}, None, "text", 3)


def _fast_processor(type_: Any, dialect: Dialect) -> Any:
    """A quicker bind processor where one exists, used only if it agrees with SQLAlchemy's own.

    ``UTCDateTime`` on SQLite goes through a TypeDecorator and then SQLAlchemy's DATETIME
    formatting (two calls and a ``replace``); :func:`_sqlite_utc_datetime` does both at once.
    JSON on SQLite is the engine's ``json_serializer`` called directly. Each is checked
    against SQLAlchemy's processor on sample values when the statement is compiled, so a
    different storage format in a future SQLAlchemy falls back to its own.
    """
    from engine.store.models import UTCDateTime

    if dialect.name != "sqlite":
        return None
    impl = type_.dialect_impl(dialect)
    reference = impl.bind_processor(dialect)
    if reference is None:
        return None
    fast: Any
    samples: tuple[Any, ...]
    if isinstance(type_, UTCDateTime):
        fast, samples = _sqlite_utc_datetime, _SAMPLES
    elif isinstance(impl, sa.JSON) and not impl.none_as_null:
        # SQLAlchemy's JSON text is the engine's json_serializer's (None is JSON null).
        fast, samples = getattr(dialect, "_json_serializer", None), _JSON_SAMPLES
        if fast is None:
            return None
    else:
        return None
    if any(reference(v) != fast(v) for v in samples):
        return None
    return fast


def _reraise(conn: Connection, sql: str, args: Any, exc: Exception, cursor: Any) -> None:
    """Raise ``exc`` as SQLAlchemy would: wrapped in its exception classes, pool informed."""
    dialect = conn.dialect
    invalidated = False
    try:
        invalidated = dialect.is_disconnect(exc, conn.connection.dbapi_connection, cursor)  # type: ignore[arg-type]  # any driver error
    except Exception:  # noqa: BLE001 - classification only
        invalidated = False
    if invalidated:
        conn.invalidate(exc)
    raise sa.exc.DBAPIError.instance(
        sql, args, exc, dialect.loaded_dbapi.Error, connection_invalidated=invalidated, dialect=dialect
    ) from exc
