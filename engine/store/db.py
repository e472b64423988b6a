"""One SQLAlchemy engine per process and URL; sessions per unit of work; migrations."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from engine.settings import get_settings, normalize_url

logger = logging.getLogger(__name__)

_engines: dict[str, Engine] = {}
_readers: dict[int, tuple[Engine, Engine]] = {}
#: Connections kept per process: the API's thread pool (anyio's default of 40 threads).
POOL_SIZE = 40
POOL_OVERFLOW = 10
PG_POOL_SIZE = 20
PG_POOL_OVERFLOW = 20
#: Execution option that marks a connection's transactions as read-only (see read_session).
READ_ONLY = "studio_read_only"
_lock = threading.Lock()
MIGRATIONS = Path(__file__).parent / "migrations"


def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine for ``url`` (default: ``DATABASE_URL`` or the SQLite file).

    ``sqlite://`` (or ``sqlite:///:memory:``) is one in-memory database per process, on a single
    shared connection; :func:`new_engine` gives a fresh one (tests)."""
    url = normalize_url(url) if url else get_settings().resolved_database_url()
    with _lock:
        if url not in _engines:
            _engines[url] = _create_engine(url)
        return _engines[url]


def new_engine(url: str) -> Engine:
    """An engine of its own for ``url``, not shared with the process (``sqlite://``: a fresh, empty
    in-memory database; call :func:`migrate` on it). The caller disposes of it."""
    return _create_engine(normalize_url(url))


def is_memory_sqlite(url: str) -> bool:
    database = sa.engine.make_url(url).database
    return not database or database == ":memory:" or "mode=memory" in url


def _create_engine(url: str) -> Engine:
    if url.startswith("sqlite") and is_memory_sqlite(url):
        # One in-memory database lives as long as its one connection: every checkout gets that
        # connection (StaticPool), from any thread. The engine's units of work take turns on it
        # (the runner, the worker and services open them one after the other).
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False},
            poolclass=sa.pool.StaticPool,
            json_serializer=json_dumps,
            json_deserializer=orjson.loads,
        )
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database or ""
        _private_sqlite_files(path)
        settings = get_settings()
        # The pool holds as many connections as the API has threads, so a busy server never
        # opens (and re-PRAGMAs) overflow connections per request.
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": settings.db_lock_timeout},
            pool_size=POOL_SIZE,
            max_overflow=POOL_OVERFLOW,
            json_serializer=json_dumps,
            json_deserializer=orjson.loads,
        )
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "connect", _sqlite_limits(settings.db_lock_timeout, settings.sqlite_wal_limit_mb))
        sa.event.listen(engine, "begin", _sqlite_begin_immediate)
        if not path.startswith("file:"):
            _guard_sqlite_file(engine, path, settings.sqlite_wal_limit_mb, settings.sqlite_reserve_mb)
        return engine
    # No pre-ping (a round trip per checkout on the hot path): connections are recycled every
    # 30 minutes, and a connection the server dropped fails one unit of work, which the
    # worker's loop retries and the UI reports.
    # Half the SQLite pool kept open: each server process may hold up to 40, and PostgreSQL's
    # default max_connections is 100 for every process and tool together. Few are busy at
    # once (the group-commit leader, cache misses), so overflow connections are rare.
    return sa.create_engine(
        url,
        pool_recycle=1800,
        pool_size=PG_POOL_SIZE,
        max_overflow=PG_POOL_OVERFLOW,
        json_serializer=json_dumps,
        json_deserializer=orjson.loads,
        connect_args=_postgres_timeouts(url, get_settings().db_lock_timeout),
    )


def _private_sqlite_files(path: str) -> None:
    """The database file exists with mode 0600 before SQLite opens it (SQLite gives its ``-wal``
    and ``-shm`` files the database file's mode), in a folder made 0700; files an older version
    left readable by others are tightened."""
    from engine.files import private_file, tighten

    if path.startswith("file:"):
        return
    private_file(path)
    tighten(f"{path}-wal", f"{path}-shm", f"{path}-journal")


def truncate_wal(engine: Engine, *, timeout: float = 15.0) -> bool:
    """Copy the whole write-ahead log into the database file and cut the log to zero bytes.

    After an erasure commits, the pages it overwrote are still in the ``-wal`` file (and in the
    database file until a checkpoint copies the new pages over them). With ``secure_delete``
    on, the checkpoint leaves zeros where the erased bytes were, and ``TRUNCATE`` removes the
    log itself. SQLite waits (the busy handler) for readers that still use the log and for a
    writer, but answers "busy" at once while another connection checkpoints (the background
    checkpointer of any process): that is retried. False when it did not succeed within
    ``timeout`` seconds. No-op on PostgreSQL and for in-memory SQLite (True).
    """
    if not is_sqlite(engine) or is_memory_sqlite(engine.url.render_as_string()):
        return True
    deadline = time.monotonic() + timeout
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        assert conn is not None  # a checked-out connection always has its driver connection
        (usual,) = conn.execute("PRAGMA busy_timeout").fetchone()
        try:
            while True:
                left = deadline - time.monotonic()
                conn.execute(f"PRAGMA busy_timeout={max(1, int(left * 1000))}")
                busy, _log, _copied = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if not busy or left <= 0:
                    break
                time.sleep(0.02)
        finally:
            conn.execute(f"PRAGMA busy_timeout={int(usual)}")
    finally:
        raw.close()
    if busy:
        logger.warning("the WAL of %s could not be truncated: a reader or writer held on", engine.url.database)
    return not busy
def _guard_sqlite_file(engine: Engine, path: str, wal_limit_mb: int, reserve_mb: int) -> None:
    """Checkpoints in the background, a bounded WAL and a reserve for a full disk (engine/store/checkpoint.py)."""
    from engine.store.checkpoint import CHECKPOINTER
    from engine.store.faults import is_disk_full

    real = str(Path(path).resolve())
    CHECKPOINTER.watch(real, wal_limit=wal_limit_mb << 20, reserve=reserve_mb << 20)
    # WAL checkpoints in the background, not inside a commit.
    sa.event.listen(engine, "commit", lambda _conn: CHECKPOINTER.mark(real))

    def on_error(context) -> None:
        if is_disk_full(context.original_exception):
            CHECKPOINTER.disk_full(real)

    sa.event.listen(engine, "handle_error", on_error)


def _sqlite_limits(lock_timeout: float, wal_limit_mb: int):
    """A connect hook: how long a write waits for the lock, and how large the WAL may grow."""
    busy_ms, wal_bytes = int(lock_timeout * 1000), wal_limit_mb << 20

    def apply(dbapi_conn, _record) -> None:
        cur = dbapi_conn.cursor()
        # A write waits this long for another process's write lock, then fails (answered 503
        # with Retry-After, engine/store/faults.py) instead of holding the request for 30 s.
        cur.execute(f"PRAGMA busy_timeout={busy_ms}")
        # Checkpoints run in a background thread that also bounds the WAL (engine/store/checkpoint.py);
        # a commit checkpoints by itself only past twice the limit, as a backstop should that
        # thread fall behind, and the file is cut back to the limit when the log starts over.
        page = cur.execute("PRAGMA page_size").fetchone()[0]
        cur.execute(f"PRAGMA wal_autocheckpoint={2 * wal_bytes // page}")
        cur.execute(f"PRAGMA journal_size_limit={wal_bytes}")
        cur.close()

    return apply


def _postgres_timeouts(url: str, lock_timeout: float) -> dict[str, str]:
    """``lock_timeout`` for every session: a statement that waits longer for a lock another
    session holds fails (answered 503 with Retry-After) instead of hanging the request."""
    given = sa.engine.make_url(url).query.get("options") or ""
    given = given if isinstance(given, str) else " ".join(given)
    return {"options": f"{given} -c lock_timeout={int(lock_timeout * 1000)}".strip()}


def json_dumps(value) -> str:
    """JSON for JSON columns: orjson (about 5x faster than the standard library on the hot path).

    Anything orjson refuses (integers beyond 64 bits, odd key types) goes through the
    standard library, which then accepts it or raises TypeError as before. NUL characters
    (which PostgreSQL cannot store; the API refuses them, but a webhook's or an AI provider's
    answer may carry one) are stripped, on every backend alike.
    """
    try:
        text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        text = json.dumps(value)
    return _NUL_ESCAPE.sub(r"\1", text) if "\\u0000" in text else text


#: A ``\u0000`` escape in JSON text (not an escaped backslash followed by "u0000").
_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # pysqlite's own transaction handling is off so BEGIN IMMEDIATE below takes effect.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    # Only on a new, empty file (an existing one keeps its mode until a VACUUM): pruning then
    # gives freed pages back with PRAGMA incremental_vacuum (engine/lifecycle/retention.py). Setting it
    # on an existing file would wait for the write lock, so a reader would queue behind a writer.
    if cur.execute("PRAGMA page_count").fetchone()[0] == 0:
        cur.execute("PRAGMA auto_vacuum=INCREMENTAL")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    # busy_timeout and the WAL's limits: _sqlite_limits.
    # Freed space (an erased or pruned row, a dropped index entry, a page put on the free list) is
    # overwritten with zeros, so erased data does not linger in the file (engine/lifecycle/privacy.py).
    # Many builds default to it (Debian's does); others do not.
    cur.execute("PRAGMA secure_delete=ON")
    cur.close()


def _sqlite_begin_immediate(conn) -> None:
    # Writers take the write lock at BEGIN: two writers then queue on busy_timeout instead of
    # failing with "database is locked" when a read transaction tries to upgrade.
    # Readers (read_session, reader(engine)) begin deferred: in WAL mode they read the last
    # committed snapshot and never wait for the writer.
    # Straight on the driver connection: SQLAlchemy's statement machinery would cost more than
    # the BEGIN itself on the ingest path (pysqlite's own transaction handling is off).
    read_only = conn.get_execution_options().get(READ_ONLY, False)
    conn.connection.driver_connection.execute("BEGIN" if read_only else "BEGIN IMMEDIATE")


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def reader(engine: Engine) -> Engine:
    """``engine`` for readers: same pool, but transactions begin deferred on SQLite.

    Writing through it is refused by :func:`read_session` (ORM flushes); a Core write on a
    reader connection would upgrade a deferred transaction and may fail with "database is
    locked", so readers must only read.
    """
    found = _readers.get(id(engine))
    if found is None or found[0] is not engine:
        found = _readers[id(engine)] = (engine, engine.execution_options(**{READ_ONLY: True}))
    return found[1]


@contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    """A session that only reads (auth, lookups, lists, pages).

    On SQLite its transaction begins deferred (``BEGIN``, not ``BEGIN IMMEDIATE``), so it reads
    the last committed state while a writer holds the write lock instead of queueing behind
    it. On PostgreSQL it is an ordinary session. Flushing anything raises ``RuntimeError``.
    """
    with Session(reader(engine), expire_on_commit=False) as session:
        sa.event.listen(session, "before_flush", _refuse_flush)
        yield session


def _refuse_flush(_session, _ctx, _instances) -> None:
    raise RuntimeError("read_session is read-only: write in session_scope")


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(engine: Engine) -> None:
    """Create or upgrade the schema to the newest migration."""
    from alembic import command

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    logger.info("database at %s is up to date", engine.url.render_as_string(hide_password=True))
