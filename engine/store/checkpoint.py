"""WAL checkpoints for SQLite files in a background thread, off the commit path; a bounded WAL;
a disk-space reserve that lets a checkpoint complete on a full disk.

SQLite copies the write-ahead log back into the database file ("checkpoint") from inside the
commit that pushes the WAL past ``wal_autocheckpoint`` pages: that commit then does the
copying and an fsync, which here took 120-170 ms. An ingest batch (and every caller waiting
on it) stalled for that long every few thousand events.

Instead, every engine on a SQLite file marks the file when it commits, and one daemon
thread per process runs ``PRAGMA wal_checkpoint(PASSIVE)`` on each marked file every
``INTERVAL`` seconds, on a connection of its own (and looks at the log's size every
``POLL``). A passive checkpoint never waits for readers or writers, so commits go on
meanwhile; the work is I/O in SQLite's C code, which runs without the GIL, on the other core.
Several processes on one file may each checkpoint: SQLite lets one at a time do it, the
others skip.

**The WAL is bounded.** A passive checkpoint copies pages back but cannot start the log over
while a reader still uses it, and under steady load there nearly always is one: the log grew
to ~40 MB (the ``wal_autocheckpoint`` backstop) and kept that size on disk. Once the ``-wal``
file passes the file's limit (``STUDIO_SQLITE_WAL_LIMIT_MB``), the round runs a ``TRUNCATE``
checkpoint instead: it waits (at most ``BLOCK_SECONDS``, holding new writers back) for the
readers of the log to finish, copies the rest, and cuts the file to zero bytes;
``journal_size_limit`` cuts it back to the limit whenever SQLite starts the log over itself.

**A reserve for a full disk.** Emptying the log needs room: its new pages are copied into the
database file, which grows, before the log is cut. On a full disk that copy fails, and the
log — the only thing that could be freed — stays: the database was wedged until more space
came back than the log had taken. So each file keeps ``<file>-reserve``
(``STUDIO_SQLITE_RESERVE_MB``, allocated blocks of zeros, 0600). When a write fails for lack
of space (:meth:`Checkpointer.disk_full`, called from the engine's error hook) the thread
deletes the reserve, checkpoints with ``TRUNCATE`` into the room it freed, and takes the
reserve back from what is free then (all of it, or what it can, topping up each round as
space returns). While the disk stays full writes keep failing (answered 503), but the log is
empty, and the first write after space returns succeeds.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time
from contextlib import closing
from dataclasses import dataclass
from urllib.parse import quote

logger = logging.getLogger(__name__)

#: Seconds between checkpoints of a file that was written to.
INTERVAL = 0.5
#: Seconds between looks at the size of a written file's log.
POLL = 0.05
#: Longest a TRUNCATE checkpoint waits for the log's readers (new writers wait meanwhile).
BLOCK_SECONDS = 1.0
#: Seconds between two log lines about a file's full disk.
WARN_EVERY = 60.0
#: The reserve is allocated in steps of this size (a full disk gets what is free).
_STEP = 1 << 20


@dataclass
class Guard:
    """What the checkpointer keeps for one SQLite file."""

    path: str
    #: Bytes of ``-wal`` above which a round truncates the log.
    wal_limit: int
    #: Bytes of ``-reserve`` to keep (0: none).
    reserve: int
    #: A write found the disk full: release the reserve and empty the log at the next round.
    full: bool = False
    #: The reserve is smaller than it should be: top it up when space allows.
    short: bool = True
    #: When the last full-disk recovery ran, and when a full disk was last logged (monotonic).
    recovered_at: float = float("-inf")
    warned_at: float = float("-inf")

    @property
    def reserve_path(self) -> str:
        return self.path + "-reserve"


class Checkpointer:
    """Checkpoints the SQLite files :meth:`mark` names, in one daemon thread."""

    def __init__(self, interval: float = INTERVAL) -> None:
        self.interval = interval
        self._dirty: set[str] = set()
        self._guards: dict[str, Guard] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, path: str, *, wal_limit: int, reserve: int) -> None:
        """Bound ``path``'s log at ``wal_limit`` bytes and keep ``reserve`` bytes for a full disk
        (taken now, best effort)."""
        guard = Guard(path, wal_limit, reserve)
        with self._lock:
            known = self._guards.setdefault(path, guard)
            known.wal_limit, known.reserve = wal_limit, reserve
        if reserve:
            top_up(known)

    def guard(self, path: str) -> Guard | None:
        return self._guards.get(path)

    def mark(self, path: str) -> None:
        """``path`` was committed to: checkpoint it within ``interval`` seconds."""
        if path in self._dirty:
            return
        with self._lock:
            self._dirty.add(path)
            self._start()

    def disk_full(self, path: str) -> None:
        """A write to ``path`` failed for lack of space: free the log now (see the module docstring).

        At most once an ``interval``: while the disk stays full every write fails again, and
        each recovery gives up and takes back the whole reserve."""
        guard = self._guards.get(path)
        if guard is None or guard.full:
            return
        now = time.monotonic()
        if now - guard.warned_at > WARN_EVERY:
            guard.warned_at = now
            logger.warning("%s: the disk is full; giving up the reserve to empty the write-ahead log", path)
        with self._lock:
            guard.full = True
            self._dirty.add(path)
            self._start()
        if now - guard.recovered_at >= self.interval:
            self._wake.set()

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="sqlite-checkpointer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        next_round = time.monotonic() + self.interval
        while True:
            woken = self._wake.wait(min(POLL, self.interval))
            self._wake.clear()
            if woken or time.monotonic() >= next_round:
                next_round = time.monotonic() + self.interval
                self._rounds()
                continue
            # Between rounds only a look at the log's size (a stat): at tens of MB a second
            # under load, half a second is long enough for it to pass its limit twice.
            for path in list(self._dirty):
                self._safely(self._bound, path)

    def _rounds(self) -> None:
        with self._lock:
            paths, self._dirty = self._dirty, set()
            guards = list(self._guards.values())
        for path in paths:
            self._safely(self.round, path)
        for guard in guards:
            if guard.short and guard.reserve and not guard.full:
                self._safely(top_up, guard)

    @staticmethod
    def _safely(fn, arg) -> None:
        try:
            fn(arg)
        except Exception:  # never let the thread die: the next round tries again
            logger.exception("checkpointer: %s failed", getattr(fn, "__name__", fn))

    def round(self, path: str) -> None:
        """One checkpoint of ``path``: passive, truncating when the log is too large, and the
        full-disk recovery when a write found no space."""
        guard = self._guards.get(path)
        if guard is not None and guard.full:
            self._recover(guard)
            return
        checkpoint(path)
        self._bound(path)

    def _bound(self, path: str) -> None:
        """Cut the log back when it passed the file's limit."""
        guard = self._guards.get(path)
        if guard is not None and not guard.full and _size(path + "-wal") > guard.wal_limit:
            result = checkpoint(path, "TRUNCATE", wait=BLOCK_SECONDS)
            if result is None or result[0]:  # busy: the log's readers did not finish in time
                with self._lock:
                    self._dirty.add(path)

    def _recover(self, guard: Guard) -> None:
        guard.recovered_at = time.monotonic()
        release(guard)
        result = checkpoint(guard.path, "TRUNCATE", wait=BLOCK_SECONDS, guard=guard)
        if result is not None and not result[0]:
            guard.full = False
            logger.info("%s: write-ahead log emptied after a full disk", guard.path)
        else:  # still no room (the reserve was spent already) or busy: next round
            with self._lock:
                self._dirty.add(guard.path)
        if guard.reserve:
            top_up(guard)


def checkpoint(
    path: str, mode: str = "PASSIVE", *, wait: float = 0.0, guard: Guard | None = None
) -> tuple[int, int, int] | None:
    """``PRAGMA wal_checkpoint(<mode>)`` on ``path``: (busy, frames in the WAL, frames copied).

    Never creates a file (a test's database may be gone already). ``wait``: seconds to wait
    for other connections (0 for PASSIVE, which never waits). A checkpoint that finds the disk
    full marks ``path``'s guard for recovery.
    """
    if not os.path.exists(path):
        return None
    try:
        with closing(sqlite3.connect(f"file:{quote(path)}?mode=rw", uri=True, timeout=wait)) as conn:
            return conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    except sqlite3.Error as exc:  # busy, no space, or the file went away: the next round tries again
        from engine.store.faults import is_disk_full

        if is_disk_full(exc):
            known = guard or CHECKPOINTER.guard(path)
            if known is not None:
                known.full = True
        logger.debug("checkpoint (%s) of %s skipped: %s", mode, path, exc)
        return None


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _allocated(path: str) -> int:
    """Bytes of disk the file holds (a sparse file's holes hold none)."""
    try:
        return os.stat(path).st_blocks * 512
    except OSError:
        return 0


def release(guard: Guard) -> None:
    """Give the reserve's space back to the filesystem."""
    try:
        os.unlink(guard.reserve_path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning("could not delete %s: %s", guard.reserve_path, exc)
    guard.short = bool(guard.reserve)


def top_up(guard: Guard) -> int:
    """Allocate the reserve up to its size, as far as free space allows; returns its bytes now."""
    have = min(_allocated(guard.reserve_path), _size(guard.reserve_path))
    if have >= guard.reserve:
        guard.short = False
        return have
    try:
        fd = os.open(guard.reserve_path, os.O_WRONLY | os.O_CREAT, 0o600)
    except OSError as exc:
        logger.debug("no reserve for %s: %s", guard.path, exc)
        return have
    try:
        while have < guard.reserve:
            step = min(_STEP, guard.reserve - have)
            try:
                _allocate(fd, have, step)
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                    logger.warning("could not allocate %s: %s", guard.reserve_path, exc)
                os.ftruncate(fd, have)  # drop a partly allocated step
                break
            have += step
    finally:
        os.close(fd)
    guard.short = have < guard.reserve
    if not guard.short:
        logger.debug("reserve %s holds %d bytes", guard.reserve_path, have)
    return have


def _allocate(fd: int, offset: int, length: int) -> None:
    """Real blocks for ``length`` bytes at ``offset`` (zeros written where fallocate is missing)."""
    try:
        os.posix_fallocate(fd, offset, length)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
        os.pwrite(fd, b"\0" * length, offset)
        os.fsync(fd)


CHECKPOINTER = Checkpointer()
