"""The runner: events in (ingest, with group commit), manual and cron runs, chains.

:class:`Runner` adds to the state machine (:mod:`engine.runner.machine`) what starts
executions: store the event, match it to workflows, evaluate their conditions, start the
matching executions and run their local steps, all in one unit of work. Matching an event's
candidates into execution rows, and manual runs, are in :mod:`engine.runner.start`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from engine.errors import NotFound
from engine.messaging.optout import note_opt_words
from engine.runner.buffer import BufferedUnitOfWork
from engine.runner.context import (
    MAX_CHAIN_DEPTH,
    Candidate,
    IngestResult,
    Run,
    load_tenant,
    parse_event,
    with_drafts,
)
from engine.runner.group_commit import GroupCommit, Ticket
from engine.runner.intent import fill_intent, provider_intent, wants_provider
from engine.runner.machine import ExecutionMachine
from engine.runner.start import candidates_for, start_matching
from engine.runner.start import run_workflow as _run_workflow
from engine.store.faults import fault_kind, storage_fault
from engine.store.models import EventRecord, utcnow
from engine.store.runs import event_by_key, event_row, executions_of
from engine.uow import Clock, UnitOfWork
from engine.workflow.definitions import Event

#: Per thread: ``active`` while it prepares an ingest batch (an ingest from there would wait
#: for its own write lock).
_preparing = threading.local()


@dataclass
class IngestRequest(Ticket):
    """One ``ingest`` call on its way through a batch."""

    tenant_id: str = ""
    #: Always given by the caller (a default only because the base dataclass has defaults).
    ev: Event = None  # type: ignore[assignment]
    depth: int = 0
    parent_execution_id: str | None = None
    now: datetime = None  # type: ignore[assignment]  # always given, like ev
    test: bool = False
    real_calls: bool = False
    asked_provider: bool = False
    #: What the call returns or raises, once its batch has committed.
    result: IngestResult | None = None
    error: Exception | None = None
    #: The tenant's settings when its AI provider must classify first (no transaction open).
    ask_provider: dict[str, Any] | None = None
    record: dict[str, Any] | None = None
    runs: list[Run] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def reset(self) -> None:
        self.result = self.error = self.ask_provider = self.record = None
        self.runs, self.skipped = [], []


class Runner(ExecutionMachine):
    """Runs workflows for events, manual runs and resumptions. One per process is enough."""

    def __init__(
        self,
        db,
        *,
        clock: Clock = utcnow,
        classifier: Callable[[str], Any] | None = None,
        max_depth: int = MAX_CHAIN_DEPTH,
    ) -> None:
        super().__init__(db, clock=clock, max_depth=max_depth)
        self.classifier = classifier
        #: Ingest batches of this runner write one after the other (see BufferedUnitOfWork).
        self._write_lock = threading.Lock()
        self.group_commit: GroupCommit[IngestRequest] = GroupCommit(
            self._prepare_batch, BufferedUnitOfWork.commit, give_up=lambda exc: fault_kind(exc) is not None
        )
        #: Unsaved definitions by workflow id (test console scenarios against a builder draft):
        #: matching sees these instead of the stored ones. Only ever set on a runner of its own.
        self.drafts: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ ingest

    def ingest(
        self,
        tenant_id: str,
        event: dict[str, Any] | Event,
        *,
        depth: int = 0,
        parent_execution_id: str | None = None,
        defer_external: bool = False,
        test: bool = False,
        real_calls: bool = False,
        uow: UnitOfWork | None = None,
    ) -> IngestResult:
        """Store the event, start every enabled workflow it matches, run them as far as they go.

        The event, its executions and their local steps (up to a wait, an external step or
        the end) commit in **one transaction**, shared with the other ingest calls that
        arrive meanwhile (group commit, :mod:`engine.runner.group_commit`): a caller alone
        commits at once; callers that arrive while a commit is running share the next one.
        External steps then run in the caller's thread with no transaction open, or, with
        ``defer_external`` (provider webhooks that must answer fast), are handed to the worker.

        ``uow``: write everything in the caller's unit of work instead (no group commit, no
        commit here: the caller commits, or rolls back and nothing is left). External steps
        and chained events' external steps are handed to the worker, since nothing is
        committed yet; chained events are ingested in the same unit of work.

        ``test``: a test-console event (stored with ``is_test``; see :class:`Run`);
        ``real_calls``: a test event whose webhooks and remote AI are called for real.
        """
        req = IngestRequest(
            tenant_id=tenant_id,
            ev=parse_event(event),
            depth=depth,
            parent_execution_id=parent_execution_id,
            now=self.clock() if uow is None else uow.now(),
            test=test,
            real_calls=real_calls and test,
        )
        if uow is not None:
            return self._ingest_within(req, uow)
        if self.group_commit.nested():  # a chained event from this thread: already counted
            return self._ingest(req, defer_external)
        self.group_commit.enter()
        try:
            return self._ingest(req, defer_external)
        finally:
            self.group_commit.leave()

    def _ingest(self, req: IngestRequest, defer_external: bool = False) -> IngestResult:
        if getattr(_preparing, "active", False):
            # It would wait for the write lock its own batch holds.
            raise RuntimeError("Runner.ingest called from inside an ingest batch: actions emit events with step.emit")
        while True:
            self.group_commit.submit(req)
            if req.failure is not None:  # a storage fault: each caller raises an error of its own
                fault = storage_fault(req.failure)
                assert fault is not None  # give_up only hands storage faults on
                raise fault from req.failure
            if req.alone:  # its batch failed: try it again on its own
                req.alone = False
                self._ingest_alone(req)
            if req.ask_provider is None:
                break
            # Never call the provider with the database locked: ask, then ingest again.
            settings, req.ask_provider, req.asked_provider = req.ask_provider, None, True
            provider_intent(req.ev, settings)
        if req.error is not None:
            raise req.error
        if req.result is not None:
            return req.result
        for run in req.runs:
            if run.stopped is None and defer_external:
                self.park(run, reason="external step handed to the worker")
                self.process_emitted(run)
            elif run.stopped is None:
                self.drive(run)  # an external step is next
            else:
                self.process_emitted(run)
        return self._result(req)

    def _ingest_within(self, req: IngestRequest, uow: UnitOfWork) -> IngestResult:
        """``ingest(..., uow=)``: everything in the caller's unit of work (see :meth:`ingest`)."""
        own = not isinstance(uow, BufferedUnitOfWork)  # a chained event of such an ingest reuses its buffer
        buf = uow if isinstance(uow, BufferedUnitOfWork) else BufferedUnitOfWork(None, clock=uow.clock, outer=uow)
        try:
            while True:
                req.reset()
                self._ingest_in(buf, None, req, {}, {})
                if req.ask_provider is None:
                    break
                settings, req.ask_provider, req.asked_provider = req.ask_provider, None, True
                provider_intent(req.ev, settings)  # (the caller's transaction is open meanwhile)
            if req.error is not None:
                raise req.error
            if req.result is not None:
                return req.result
            for run in req.runs:
                if run.stopped is None:
                    self.park(run, reason="external step handed to the worker", uow=buf)
                self.process_emitted(run, uow=buf)
            if own:
                buf.flush()
        except BaseException:
            if own:
                buf.abort()
            raise
        return self._result(req)

    @staticmethod
    def _result(req: IngestRequest) -> IngestResult:
        assert req.record is not None  # the event was stored
        return IngestResult(
            req.record["id"],
            [r.id for r in req.runs] + req.skipped,
            duplicate=False,
            intent=req.ev.intent,
            intent_confidence=req.ev.intent_confidence,
        )

    def _ingest_alone(self, req: IngestRequest) -> None:
        """One request in its own transaction; a concurrent duplicate key answers with the first event."""
        try:
            self._prepare_batch([req]).commit()
        except IntegrityError:
            if not req.ev.idempotency_key:
                raise
            with self.db.connect() as conn:
                existing = event_by_key(conn, req.tenant_id, req.ev.idempotency_key)
                if existing is None:
                    raise
                req.result = IngestResult(existing, executions_of(conn, existing), duplicate=True)

    def _prepare_batch(self, batch: list[IngestRequest]) -> BufferedUnitOfWork:
        """Run every request of ``batch`` as far as it goes, its writes kept in one unit of work.

        Returns the unit of work; its ``commit()`` writes and commits it. Lookups that
        need no transaction (tenant, candidate workflows, idempotency keys) run on its
        connection before a transaction is begun, so SQLite's write lock is held only while
        the batch is written; the transaction begins earlier when something needs it (an
        action reading the database sees the batch's own writes). A request that fails before
        writing anything (unknown tenant, provider needed) keeps its error or question on the
        request and does not disturb the others. Raises if the batch as a whole fails.
        """
        tenants: dict[str, dict[str, Any]] = {}
        candidates: dict[tuple[str, str], list[Candidate]] = {}
        conn = self.db.connect()
        s = BufferedUnitOfWork(conn, clock=self.clock, lazy=True, lock=self._write_lock)
        _preparing.active = True
        try:
            for req in batch:
                req.reset()
                self._ingest_in(s, conn, req, tenants, candidates)
        except BaseException:
            s.abort()
            for req in batch:
                req.reset()
            raise
        finally:
            _preparing.active = False
        return s

    def _ingest_in(
        self, s: BufferedUnitOfWork, reader: sa.Connection | None, req: IngestRequest, tenants: dict, candidates: dict
    ) -> None:
        ev, tenant_id = req.ev, req.tenant_id
        # Once the transaction has begun, look things up inside it (it sees the buffer's rows).
        look = s if s.begun else reader
        if ev.idempotency_key:
            existing = event_by_key(look, tenant_id, ev.idempotency_key)
            if existing:
                req.result = IngestResult(existing, executions_of(look, existing), duplicate=True)
                return
        tenant = tenants.get(tenant_id)
        if tenant is None:
            try:
                tenant = tenants[tenant_id] = load_tenant(look, tenant_id)
            except NotFound as exc:
                req.error = exc
                return
        if not req.asked_provider and (req.real_calls or not req.test) and wants_provider(ev, tenant["settings"]):
            req.ask_provider = tenant["settings"]
            return
        key = (tenant_id, str(ev.trigger_type))
        found = candidates.get(key)
        if found is None:
            found = candidates[key] = candidates_for(look, tenant_id, ev)
            if self.drafts:
                found[:] = with_drafts(ev, found, self.drafts)
        fill_intent(self.classifier, ev, found)
        req.record = event_row(tenant_id, ev, req.now, req.depth, req.parent_execution_id, req.test)
        s.insert(EventRecord, req.record)
        # STOP / START on any channel (engine/messaging/optout.py); a test conversation's words are read back
        # from its own test events by delivery, so they never touch real members' opt-outs.
        if req.record["content"] and req.record["sender"] and not req.test:
            note_opt_words(s, tenant, req.record, req.now)
        req.runs, req.skipped = start_matching(
            s, tenant, req.record, found, req.now, req.depth, test=req.test, real_calls=req.real_calls
        )
        for run in req.runs:
            run.stopped = self.local_steps_in(s, run)

    # ------------------------------------------------------------------ chains

    def process_emitted(self, run: Run, uow: UnitOfWork | None = None) -> None:
        """Ingest the events the execution emitted (in ``uow`` when given, else each on its own)."""
        while run.emitted:
            event = run.emitted.pop(0)
            self.ingest(
                run.tenant["id"],
                event,
                depth=run.depth + 1,
                parent_execution_id=run.id,
                test=run.test,
                real_calls=run.real_calls,
                uow=uow,
            )

    # ------------------------------------------------------------------ manual and dry runs

    #: Run one workflow now (manual, dry and cron runs, console ticks): see :func:`engine.runner.start.run_workflow`.
    run_workflow = _run_workflow
