"""Group commit: concurrent callers share one transaction and one commit (leader/follower).

A caller that finds no batch running becomes the leader: it prepares its own request and
every request queued so far (up to ``max_batch``) as one unit of work and commits it.
Callers arriving meanwhile queue up, each waiting on its own lock; when the commit is done
its callers are woken and the first queued caller leads the next batch. A caller alone
therefore commits at once; under load one commit serves many. If a batch fails, each of its
requests is marked ``alone`` and its own caller runs it again by itself, so one bad request
never fails the others. No timer, no extra thread.

A failure that ``give_up`` recognises (a storage fault: the write lock held elsewhere past the
lock timeout, a full disk) is not one bad request: running each alone would only wait for the
lock again, one after the other. It is handed to every request of the batch *and* every
request queued meanwhile, so no caller waits more than about one lock timeout for its answer.

(Preparing the next batch while one commits was measured and dropped: the committing thread
gives up the GIL for every row SQLite steps through and waits up to a switch interval to get
it back from the preparing thread, which made it slower, not faster.)

The component knows nothing of events or databases: ``prepare(batch)`` returns something
``commit`` finishes. The runner's ingest (``engine/runner/ingest.py``) is its one user.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

logger = logging.getLogger(__name__)

#: Per thread: ``depth`` of nested calls inside a group (chained ingests), counted once.
_state = threading.local()


class Ticket:
    """A request's place in a group commit (requests subclass it)."""

    #: Its batch failed as a whole: the caller runs it again on its own.
    alone: bool = False
    #: Its batch failed for a reason no request can avoid (``give_up``): the caller raises it.
    failure: BaseException | None = None
    #: This caller's own lock, and whether it was woken to lead a batch.
    wake: Any = None
    lead: bool = False


T = TypeVar("T", bound=Ticket)


class GroupCommit(Generic[T]):
    """Leader/follower group commit (see the module docstring)."""

    def __init__(
        self,
        prepare: Callable[[list[T]], Any],
        commit: Callable[[Any], None],
        *,
        max_batch: int = 64,
        gather_seconds: float = 0.001,
        give_up: Callable[[BaseException], bool] | None = None,
    ) -> None:
        #: Public so a test can watch batches go by (wrap it); called by the leader, outside the lock.
        self.prepare = prepare
        self._commit = commit
        self._max = max_batch
        self._gather = gather_seconds
        self._give_up = give_up
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._queue: list[T] = []
        self._busy = False
        #: One entry per caller inside (see :meth:`enter`); with siblings the leader gathers.
        self._inside: deque[None] = deque()
        #: Callers blocked in :meth:`wait_queued` (every arrival wakes them).
        self._waiters = 0

    # ------------------------------------------------------------------ callers

    @staticmethod
    def nested() -> bool:
        """This thread is already inside (a chained call made while its own call runs)."""
        return bool(getattr(_state, "depth", 0))

    def enter(self) -> None:
        """Count this thread among the callers (the outermost of its calls does this).

        ``deque.append``/``pop`` are atomic in CPython: no lock for a number that only
        steers how long a leader gathers."""
        _state.depth = 1
        self._inside.append(None)

    def leave(self) -> None:
        _state.depth = 0
        self._inside.pop()

    @property
    def queued(self) -> int:
        """Requests waiting for the next batch."""
        return len(self._queue)

    def wait_queued(self, n: int, timeout: float | None = None) -> bool:
        """Block until at least ``n`` requests are queued (tests order threads with it); False on timeout."""
        with self._arrived:
            self._waiters += 1
            try:
                return self._arrived.wait_for(lambda: len(self._queue) >= n, timeout)
            finally:
                self._waiters -= 1

    def submit(self, req: T) -> None:
        """Commit ``req`` in a batch; returns when that batch is done (``req.alone``: it failed;
        ``req.failure``: it failed for a reason that fails every request)."""
        req.lead, req.wake, req.failure = False, None, None
        with self._lock:
            if self._busy:
                req.wake = threading.Lock()
                req.wake.acquire()
                self._queue.append(req)
                # Wake a gathering leader only when its batch is full (its loop below) or a test
                # waits for a count: a wake per arrival cost the leader up to 40 GIL round trips
                # per batch (py-spy: ~7 % of ingest).
                if self._waiters or len(self._queue) + 1 >= min(len(self._inside), self._max):
                    self._arrived.notify_all()
            else:
                self._busy = True
        if req.wake is not None:
            req.wake.acquire()  # released when its batch is done, or when it is to lead the next
            if not req.lead:
                return
        self._lead(req)

    # ------------------------------------------------------------------ the leader

    def _gather_batch(self, req: T) -> list[T]:
        with self._lock:
            # Like PostgreSQL's commit_delay/commit_siblings: with other callers about to
            # arrive, wait up to ``gather_seconds`` for them so one commit serves them all.
            # A caller alone never waits. (A monotonic timer: it measures, it does not date.)
            deadline = time.monotonic() + self._gather
            while len(self._queue) + 1 < min(len(self._inside), self._max):
                left = deadline - time.monotonic()
                if left <= 0 or not self._arrived.wait(left):
                    break
            batch = [req, *self._queue[: self._max - 1]]
            del self._queue[: self._max - 1]
        return batch

    def _lead(self, req: T) -> None:
        batch = self._gather_batch(req)
        failure = None
        try:
            self._commit(self.prepare(batch))
        except BaseException as exc:  # each request is retried alone by its caller
            failure = exc
            if isinstance(exc, Exception) and self._give_up is not None and self._give_up(exc):
                with self._lock:  # the queue would wait for the same lock: it gets the answer now
                    batch += self._queue
                    self._queue.clear()
                logger.debug("batch failed (%s); failing %d requests", exc.__class__.__name__, len(batch))
                for r in batch:
                    r.failure = exc
            else:
                logger.debug("batch of %d failed; retrying each alone", len(batch), exc_info=exc)
                for r in batch:
                    r.alone = True
        finally:
            self._hand_over()
            _wake(batch)
        if failure is not None and not isinstance(failure, Exception):
            raise failure

    def _hand_over(self) -> None:
        """Let the first queued caller lead the next batch (or mark the group idle)."""
        with self._lock:
            successor = self._queue.pop(0) if self._queue else None
            if successor is None:
                self._busy = False
            else:
                successor.lead = True
        if successor is not None:
            successor.wake.release()


def _wake(batch: Sequence[Ticket]) -> None:
    for r in batch:
        if r.wake is not None:
            r.wake.release()
