"""WAL checkpoints for SQLite files in a background thread, off the commit path.

SQLite copies the write-ahead log back into the database file ("checkpoint") from inside the
commit that pushes the WAL past ``wal_autocheckpoint`` pages: that commit then does the
copying and an fsync, which here took 120-170 ms. An ingest batch (and every caller waiting
on it) stalled for that long every few thousand events.

Instead, every engine on a SQLite file marks the file when it commits, and one daemon
thread per process runs ``PRAGMA wal_checkpoint(PASSIVE)`` on each marked file every
``INTERVAL`` seconds, on a connection of its own. A passive checkpoint never waits for
readers or writers, so commits go on meanwhile; the work is I/O in SQLite's C code, which
runs without the GIL, on the other core. ``wal_autocheckpoint`` stays set (10,000 pages) as
the backstop should this thread ever fall behind. Several processes on one file may each
checkpoint: SQLite lets one at a time do it, the others skip.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from contextlib import closing
from urllib.parse import quote

logger = logging.getLogger(__name__)

#: Seconds between checkpoints of a file that was written to.
INTERVAL = 0.5


class Checkpointer:
    """Checkpoints the SQLite files :meth:`mark` names, in one daemon thread."""

    def __init__(self, interval: float = INTERVAL) -> None:
        self.interval = interval
        self._dirty: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def mark(self, path: str) -> None:
        """``path`` was committed to: checkpoint it within ``interval`` seconds."""
        if path in self._dirty:
            return
        with self._lock:
            self._dirty.add(path)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="sqlite-checkpointer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            with self._lock:
                paths, self._dirty = self._dirty, set()
            for path in paths:
                checkpoint(path)


def checkpoint(path: str) -> tuple[int, int, int] | None:
    """``PRAGMA wal_checkpoint(PASSIVE)`` on ``path``: (busy, frames in the WAL, frames copied).

    Never creates a file (a test's database may be gone already) and never waits for a lock.
    """
    if not os.path.exists(path):
        return None
    try:
        with closing(sqlite3.connect(f"file:{quote(path)}?mode=rw", uri=True, timeout=0)) as conn:
            return conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    except sqlite3.Error as exc:  # busy, or the file went away: the next round tries again
        logger.debug("checkpoint of %s skipped: %s", path, exc)
        return None


CHECKPOINTER = Checkpointer()
