"""Backups while the product runs: ``python -m engine backup PATH``.

* **SQLite:** ``VACUUM INTO`` writes a consistent, compacted copy of the database from one
  read transaction. In WAL mode readers never block writers, so ingest goes on meanwhile
  (the copy holds every transaction committed before it started, and none after). The copy
  is written next to the target under a temporary name and renamed when complete, so a
  crash never leaves a half-written file under the backup's name. (SQLite's online backup
  API would restart whenever another connection writes; under steady ingest it may never
  finish.) Restore: stop the app and workers, move the copy over the database file (remove
  any ``-wal``/``-shm`` files next to it), start again.
* **PostgreSQL:** ``pg_dump --format=custom`` (a consistent snapshot as well, taken in a
  repeatable-read transaction; writers are not blocked). Restore with ``pg_restore --clean
  --if-exists -d DATABASE_URL PATH``. ``pg_dump`` must be on the PATH and of the server's
  major version or newer.

The backup file is created with mode 0600 before anything is written into it (it holds every
member's data). A backup taken after an erasure holds none of the erased data: both methods
copy live rows only.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine

from engine.errors import EngineError
from engine.files import private_file

logger = logging.getLogger(__name__)


class BackupFailed(EngineError):
    """The backup could not be written."""


@dataclass
class BackupResult:
    path: Path
    bytes: int
    seconds: float
    method: str


def backup(db: Engine, target: str | os.PathLike, *, overwrite: bool = False) -> BackupResult:
    """Write a consistent copy of the database ``db`` to ``target`` while it stays in use."""
    target = Path(target).expanduser().resolve()
    if target.exists() and not overwrite:
        raise BackupFailed(f"{target} exists already (choose another name, or overwrite on purpose)")
    if not target.parent.is_dir():
        raise BackupFailed(f"{target.parent} is not a directory")
    started = time.monotonic()
    if db.dialect.name == "sqlite":
        method = _sqlite(db, target)
    elif db.dialect.name == "postgresql":
        method = _postgres(db, target)
    else:  # pragma: no cover - only the two supported databases
        raise BackupFailed(f"no backup for {db.dialect.name}")
    result = BackupResult(target, target.stat().st_size, time.monotonic() - started, method)
    logger.info("backup written to %s (%s bytes, %.1f s, %s)", target, result.bytes, result.seconds, method)
    return result


def _sqlite(db: Engine, target: Path) -> str:
    source = db.url.database
    if not source or source == ":memory:":
        raise BackupFailed("an in-memory database cannot be backed up")
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    private_file(partial)  # VACUUM INTO writes into an empty file and keeps its mode
    # A connection of its own (not the pool's): VACUUM cannot run inside a transaction and the
    # engine's connections begin one (BEGIN IMMEDIATE) for every statement.
    conn = sqlite3.connect(source, timeout=30, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("VACUUM INTO ?", (str(partial),))
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise BackupFailed(f"SQLite could not write the backup: {exc}") from exc
    finally:
        conn.close()
    os.replace(partial, target)
    return "sqlite VACUUM INTO"


def _postgres(db: Engine, target: Path) -> str:
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        raise BackupFailed("pg_dump is not installed (apt-get install postgresql-client)")
    url = db.url.set(drivername="postgresql").render_as_string(hide_password=False)
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    private_file(partial)  # pg_dump truncates the file and keeps its mode
    proc = subprocess.run(
        [pg_dump, "--format=custom", "--no-owner", f"--file={partial}", f"--dbname={url}"],
        capture_output=True,
        text=True,
        timeout=6 * 3600,
        check=False,
    )
    if proc.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BackupFailed(
            f"pg_dump failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}"
        )
    os.replace(partial, target)
    return "pg_dump --format=custom"


def restore_postgres(target_url: str, path: str | os.PathLike) -> None:
    """Load a ``pg_dump --format=custom`` file into the (empty or to-be-replaced) database at ``target_url``."""
    pg_restore = shutil.which("pg_restore")
    if pg_restore is None:
        raise BackupFailed("pg_restore is not installed (apt-get install postgresql-client)")
    url = target_url.replace("postgresql+psycopg://", "postgresql://", 1)
    proc = subprocess.run(
        [pg_restore, "--clean", "--if-exists", "--no-owner", f"--dbname={url}", str(path)],
        capture_output=True,
        text=True,
        timeout=6 * 3600,
        check=False,
    )
    if proc.returncode != 0:
        raise BackupFailed(f"pg_restore failed: {proc.stderr.strip()[-500:]}")
