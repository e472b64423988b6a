"""The worker: claims due work (waits, retries, follow-ups, deliveries), fires cron triggers
and takes over executions whose runner died.

Claiming is a lease: ``status=claimed, locked_until=now+lease``. On PostgreSQL the claim
uses ``FOR UPDATE SKIP LOCKED`` so any number of workers share the table without running an
item twice; on SQLite every write transaction is ``BEGIN IMMEDIATE``, so claims serialise.
A worker that dies loses its lease and the item is claimed again; the runner's per-step
commits (and lease tokens) make sure a completed step is not run again.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

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
    reschedule_due,
    stale_executions,
)
from engine.uow import UnitOfWork, unit_of_work
from engine.worker import heap
from engine.workflow.schedule import next_fire_time

logger = logging.getLogger(__name__)

#: Attempts for a delivery or follow-up before it is marked failed.
MAX_ITEM_ATTEMPTS = 5


class Worker:
    """One worker loop. ``clock`` is injected so tests move time without sleeping."""

    def __init__(
        self,
        db,
        *,
        name: str | None = None,
        clock: Callable[[], datetime] = utcnow,
        lease_seconds: int | None = None,
        batch: int = 50,
        runner: Runner | None = None,
    ) -> None:
        self.db = db
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.clock = clock
        self.lease = timedelta(seconds=lease_seconds or get_settings().lease_seconds)
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
        while not self.stopping.is_set():
            items = self.claim()
            if not items:
                break
            batched, items = self._resume_batch(items)
            handled += batched
            for item in items:
                if self.stopping.is_set():
                    break  # unclaimed leases expire; the next worker takes them
                self.handle(item)
                handled += 1
        return handled

    def claim(self, limit: int | None = None, *, ids: list[str] | None = None) -> list[DueWork]:
        """Lease up to ``limit`` due items (pending and due, or claimed with an expired lease).

        ``ids``: only these items (the test console fast-forwards one conversation's items)."""
        with self._uow() as uow:
            return claim_due(
                uow.session,
                now=uow.now(),
                lease=self.lease,
                worker=self.name,
                limit=limit or self.batch,
                postgres=self._postgres,
                ids=ids,
            )

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
        from engine.messaging.delivery import deliver

        deliver(self.db, item.payload["outboxId"], now=self.clock())
        self._done(item)

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
        worker.run_once()
        return 0

    def stop(signum, _frame):
        logger.info("signal %s: finishing the current step, then exiting", signum)
        worker.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    heap.tune()
    heap.freeze_startup_objects()
    worker.run_forever()
    return 0
