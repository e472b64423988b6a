"""The worker: claims due work (waits, retries, follow-ups, deliveries), fires cron triggers
and takes over executions whose runner died.

Claiming is a lease: ``status=claimed, locked_until=now+lease``. On PostgreSQL the claim
uses ``FOR UPDATE SKIP LOCKED`` so any number of workers share the table without running an
item twice; on SQLite every write transaction is ``BEGIN IMMEDIATE``, so claims serialise.
The lease is short (``STUDIO_CLAIM_LEASE_SECONDS``, 10 s) and a background thread renews the
leases of every item the worker still holds every third of it (:meth:`Worker.keeping_leases`),
so a batch whose items take long (slow provider sends) keeps them, while a worker that dies
loses all of them within one short lease and another worker claims them. The runner's per-step
commits (and lease tokens) make sure a completed step is not run again; a delivery begins only
while its item is still held and marks its message ``sending`` first (engine/messaging/delivery.py).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from engine.errors import EngineError, InvalidInput, PermanentError
from engine.messaging.delivery import queue_message
from engine.runner import Runner, builtin_classifier, tenant_context
from engine.settings import get_settings
from engine.store.faults import fault_kind
from engine.store.models import DueKind, DueStatus, DueWork, Tenant, utcnow
from engine.store.runs import (
    advance_cron,
    claim_due,
    close_due,
    due_cron,
    release_due,
    renew_due,
    reschedule_due,
    stale_executions,
)
from engine.uow import UnitOfWork, unit_of_work
from engine.worker import heap
from engine.workflow.schedule import next_fire_time

logger = logging.getLogger(__name__)

#: Attempts for a delivery or follow-up before it is marked failed.
MAX_ITEM_ATTEMPTS = 5
#: Deliveries a worker claims at once: per-item claims for what takes seconds.
SENDS_PER_CLAIM = 1


class Worker:
    """One worker loop. ``clock`` is injected so tests move time without sleeping."""

    def __init__(
        self,
        db,
        *,
        name: str | None = None,
        clock: Callable[[], datetime] = utcnow,
        lease_seconds: int | None = None,
        claim_lease_seconds: float | None = None,
        batch: int = 50,
        runner: Runner | None = None,
    ) -> None:
        settings = get_settings()
        self.db = db
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.clock = clock
        #: When a running execution without progress counts as abandoned (its runner died).
        self.lease = timedelta(seconds=lease_seconds or settings.lease_seconds)
        #: A claimed due item's lease (renewed while held; never longer than ``lease``).
        self.claim_lease = min(timedelta(seconds=claim_lease_seconds or settings.claim_lease_seconds), self.lease)
        #: Deliveries claimed at once (each is a provider call; see :meth:`claim`).
        self.sends_per_claim = SENDS_PER_CLAIM
        #: Ids of the claimed items not yet handled: their leases are renewed while the worker lives.
        self._held: set[str] = set()
        self._held_lock = threading.Lock()
        self.batch = batch
        self.stopping = threading.Event()
        self.runner = runner or Runner(db, clock=clock, classifier=builtin_classifier())
        self.runner.stop_requested = self.stopping.is_set
        self._postgres = db.dialect.name == "postgresql"
        self._last_purge: datetime | None = None
        #: Resume due ``resume`` items in batches (one transaction per claimed batch).
        self.batch_resumes = True
        self._next_prune: datetime | None = None

    # ------------------------------------------------------------------ one pass

    def run_once(self) -> int:
        """Do everything that is due now; returns how many items were handled."""
        handled = self.fire_cron()
        handled += self.recover_stale()
        self.purge_skipped()
        self.prune()
        try:
            while not self.stopping.is_set():
                items = self.claim()
                if not items:
                    break
                batched, rest = self._resume_batch(items)
                self._let_go({i.id for i in items} - {i.id for i in rest})
                handled += batched
                for item in rest:
                    if self.stopping.is_set():
                        break
                    self.handle(item)
                    handled += 1
        finally:
            self.release_unstarted()  # stopping (or a failed pass): the items not begun go back at once
        return handled

    def claim(self, limit: int | None = None, *, ids: list[str] | None = None) -> list[DueWork]:
        """Lease up to ``limit`` due items (pending and due, or claimed with an expired lease).

        ``ids``: only these items (the test console fast-forwards one conversation's items)."""
        sends, limit = [DueKind.DELIVER.value], limit or self.batch
        with self._uow() as uow:

            def lease(n: int, **kinds: Any) -> list[DueWork]:
                return claim_due(
                    uow.session,
                    now=uow.now(),
                    lease=self.claim_lease,
                    worker=self.name,
                    limit=n,
                    postgres=self._postgres,
                    ids=ids,
                    **kinds,
                )

            items = lease(limit, kinds=sends, other_kinds=True)
            # Provider sends take up to seconds each: claimed a few at a time, so idle workers
            # share them and a dead worker holds few (resumptions are claimed in batches).
            items += lease(min(limit, self.sends_per_claim), kinds=sends)
        with self._held_lock:
            self._held.update(i.id for i in items)
        return items

    # ------------------------------------------------------------------ leases

    def _let_go(self, ids: Iterable[str]) -> None:
        with self._held_lock:
            self._held.difference_update(ids)

    def renew_leases(self) -> int:
        """Extend the leases of every item this worker holds; how many it still held."""
        with self._held_lock:
            ids = list(self._held)
        if not ids:
            return 0
        with self._uow() as uow:
            return renew_due(uow.connection(), ids, self.name, uow.now() + self.claim_lease)

    def release_unstarted(self) -> int:
        """Give back the items claimed but not begun (pending again at once)."""
        with self._held_lock:
            ids, self._held = list(self._held), set()
        if not ids:
            return 0
        with self._uow() as uow:
            released = release_due(uow.connection(), ids, self.name)
        logger.info("released %d unstarted due item(s)", released)
        return released

    @contextmanager
    def keeping_leases(self) -> Iterator[None]:
        """While the block runs, a thread renews the held items' leases every third of a lease.

        A worker that dies stops renewing, so its items (begun or not) are claimed by another
        worker one short lease later rather than after the batch's whole run."""
        stop = threading.Event()
        every = self.claim_lease.total_seconds() / 3

        def renew() -> None:
            while not stop.wait(every):
                try:
                    self.renew_leases()
                except Exception:  # the database may be away; the next round tries again
                    logger.warning("renewing the leases of %s failed", self.name, exc_info=True)

        keeper = threading.Thread(target=renew, name=f"leases-{self.name}", daemon=True)
        keeper.start()
        try:
            yield
        finally:
            stop.set()
            keeper.join(timeout=every + 5)

    def _resume_batch(self, items: list[DueWork]) -> tuple[int, list[DueWork]]:
        """Resume the batch's ``resume`` items in one transaction (engine/worker/batch.py);
        returns how many it handled and the items left for :meth:`handle`."""
        if not self.batch_resumes or self.stopping.is_set():
            return 0, items
        from engine.worker.batch import resume_batch

        return resume_batch(self, items)

    def handle(self, item: DueWork) -> None:
        """Run one claimed item; failures are recorded on the item, never raised."""
        try:
            {DueKind.RESUME: self._resume, DueKind.FOLLOW_UP: self._follow_up, DueKind.DELIVER: self._deliver}[
                DueKind(item.kind)
            ](item)
        except Exception as exc:
            if fault_kind(exc) is not None:
                raise  # the database, not the item: its lease runs out and it is claimed again
            logger.exception("due item %s (%s) failed", item.id, item.kind)
            self._give_up_or_retry(item, exc)
        finally:
            self._let_go([item.id])

    # ------------------------------------------------------------------ kinds

    def _resume(self, item: DueWork) -> None:
        assert item.execution_id is not None  # a resume item always names its execution
        self.runner.resume(item.execution_id, stale_before=self.clock() - self.lease)
        self._done(item)

    def _follow_up(self, item: DueWork) -> None:
        """Write the follow-up message to the outbox and close the item in one transaction."""
        p = item.payload
        with self._uow() as uow:
            # Close the item first: when its execution was cancelled meanwhile, the conditional
            # update finds nothing (the cancel's row lock comes first) and nothing is sent.
            if not self._done(item, uow):
                logger.info("follow-up %s was cancelled before it fired", item.id)
                return
            tenant = tenant_context(uow.session.get(Tenant, item.tenant_id))
            queue_message(
                uow,
                tenant=tenant,
                execution_id=item.execution_id,
                step_id=f"follow-up:{item.id}",
                channel=p["channel"],
                recipient=p.get("recipient"),
                body=p["body"],
                subject=p.get("subject"),
                now=uow.now(),
                test=bool(p.get("test")),
            )

    def _deliver(self, item: DueWork) -> None:
        """Send one outbox message; the delivery ends (or reschedules) the item with its outcome."""
        from engine.messaging.delivery import Claim, deliver

        deliver(self.db, item.payload["outboxId"], clock=self.clock, claim=Claim(item.id, self.name, self.claim_lease))

    def _uow(self):
        """A unit of work on the worker's clock."""
        return unit_of_work(self.db, clock=self.clock)

    def _done(self, item: DueWork, uow: UnitOfWork | None = None) -> bool:
        """Close a claimed item; False when it is no longer ours (cancelled or taken over)."""
        if uow is not None:
            return close_due(uow.connection(), item.id, self.name, uow.now())
        with self._uow() as own:
            return close_due(own.connection(), item.id, self.name, own.now())

    def _give_up_or_retry(self, item: DueWork, exc: Exception) -> None:
        from engine.outbound.retry import backoff_delay

        message = exc.message if isinstance(exc, EngineError) else f"{exc.__class__.__name__}: {exc}"
        final = isinstance(exc, (PermanentError, InvalidInput)) or item.attempts >= MAX_ITEM_ATTEMPTS
        values = {"error": message, "locked_until": None}
        with self._uow() as uow:
            if final:
                values.update(status=DueStatus.FAILED, done_at=uow.now())
            else:
                delay = backoff_delay(
                    item.attempts, base=30.0, cap=3600.0, retry_after=getattr(exc, "retry_after", None)
                )
                values.update(status=DueStatus.PENDING, due_at=uow.now() + timedelta(seconds=delay))
            reschedule_due(uow.connection(), item.id, self.name, values)
            if DueKind(item.kind) == DueKind.DELIVER and final:
                from engine.messaging.delivery import gave_up

                gave_up(uow.connection(), item.payload.get("outboxId"), error=message, now=uow.now())

    # ------------------------------------------------------------------ cron

    def fire_cron(self) -> int:
        """Run every time_based workflow whose fire time has come, exactly once per fire time."""
        with self._uow() as uow:
            now = uow.now()
            due = due_cron(uow.session, now, self.batch, self._postgres)
        fired = 0
        for wf_id, tenant_id, definition, fire_at, tz in due:
            key = f"cron:{wf_id}:{fire_at.isoformat()}"
            try:
                self.runner.run_workflow(
                    tenant_id, wf_id, {"idempotencyKey": key, "scheduledFor": fire_at.isoformat()}, mode="live"
                )
                fired += 1
            except IntegrityError:
                logger.info("cron %s already fired for %s", wf_id, fire_at)
            nxt = next_fire_time(definition["trigger"]["config"]["schedule"], tz, max(now, fire_at))
            with self._uow() as uow:
                advance_cron(uow.connection(), wf_id, fire_at, nxt)
        return fired

    # ------------------------------------------------------------------ crashed runners

    def recover_stale(self) -> int:
        """Resume executions left ``running`` by a process that died (no progress for a lease)."""
        stale_before = self.clock() - self.lease
        with unit_of_work(self.db, clock=self.clock, read_only=True) as uow:
            ids = stale_executions(uow.session, stale_before, self.batch)
        for execution_id in ids:
            self.runner.resume(execution_id, stale_before=stale_before)
        return len(ids)

    # ------------------------------------------------------------------ retention

    def purge_skipped(self, *, force: bool = False) -> int:
        """Delete skipped executions older than the retention (at most once an hour)."""
        now = self.clock()
        if not force and self._last_purge and now - self._last_purge < timedelta(hours=1):
            return 0
        self._last_purge = now
        cutoff = now - timedelta(days=get_settings().skipped_retention_days)
        from engine.lifecycle.retention import Pruner

        # In small batches, counted in the rollups first (engine/lifecycle/retention.py).
        deleted = Pruner(self.db, clock=self.clock, stop=self.stopping.is_set, sleep=self.stopping.wait).delete_skipped(
            cutoff
        )
        if deleted:
            logger.info("purged %s skipped executions older than %s", deleted, cutoff.date())
        return deleted

    def prune(self, *, force: bool = False) -> int:
        """Apply the studios' retention (engine/lifecycle/retention.py) for at most ``STUDIO_PRUNE_BUDGET``
        seconds, in small batches; unfinished work continues at the next pass, else in 10 minutes."""
        from engine.lifecycle.retention import Pruner

        now = self.clock()
        if not force and self._next_prune is not None and now < self._next_prune:
            return 0
        report = Pruner(self.db, clock=self.clock, stop=self.stopping.is_set, sleep=self.stopping.wait).run(
            budget=get_settings().prune_budget
        )
        self._next_prune = now if not report.finished else now + timedelta(minutes=10)
        return report.total()

    # ------------------------------------------------------------------ loop

    def run_forever(self, poll_interval: float | None = None) -> None:
        interval = poll_interval if poll_interval is not None else get_settings().poll_interval
        logger.info("worker %s started", self.name)
        while not self.stopping.is_set():
            try:
                handled = self.run_once()
            except Exception as exc:
                if fault_kind(exc) is None:
                    logger.exception("worker pass failed")
                else:  # a lock held elsewhere, a full disk: no traceback each poll
                    logger.warning("worker pass stopped: the database is unavailable (%s)", fault_kind(exc))
                handled = 0
            if not handled:
                self.stopping.wait(interval)
        logger.info("worker %s stopped", self.name)


def run_worker(db, *, once: bool = False, name: str | None = None) -> int:
    """Entry point of ``python -m engine worker``. SIGTERM/SIGINT: finish the step, exit."""
    worker = Worker(db, name=name)
    if once:
        with worker.keeping_leases():
            worker.run_once()
        return 0

    def stop(signum, _frame):
        logger.info("signal %s: finishing the current step, then exiting", signum)
        worker.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    heap.tune()
    heap.freeze_startup_objects()
    with worker.keeping_leases():
        worker.run_forever()
    return 0
