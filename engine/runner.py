"""The execution state machine: ingest -> match -> conditions -> steps, with durable time.

Rules that make it safe to crash anywhere:

* A step's effects (outbox row, lead, due-work row) and the execution's move to the next
  action commit in **one transaction**; a completed step is therefore never run again.
* Each commit checks the execution's ``lease_token``; a worker whose lease was taken over
  cannot complete a step twice.
* External actions (HTTP, SMTP, AI) commit a ``running`` step first and do their I/O with
  no transaction open; a crash in between re-runs that one step as a new attempt.
* Waits, retries and follow-ups are ``due_work`` rows; nothing sleeps.

Time comes from ``clock`` so tests jump hours without sleeping.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from engine.actions import StepContext, StepResult, executor_for
from engine.ai.language import detect_language
from engine.conditions import EvalContext, evaluate
from engine.definitions import MESSAGE_TRIGGER_CHANNELS, Event, WorkflowDefinition
from engine.errors import (
    EngineError,
    InvalidInput,
    NotFound,
    PermanentError,
    RetryableError,
    TemplateError,
)
from engine.optout import note_opt_words
from engine.store.db import json_dumps, session_scope
from engine.store.fast import FastStatement, connection_of
from engine.store.models import (
    DueKind,
    DueWork,
    EventRecord,
    Execution,
    ExecutionStatus,
    StepRun,
    StepStatus,
    Tenant,
    Workflow,
    new_id,
    utcnow,
)

logger = logging.getLogger(__name__)

#: create_lead -> lead_created -> ... stops here, with the reason recorded.
MAX_CHAIN_DEPTH = 5
#: Retries for a retryable failure when the action has no ``retry`` policy of its own.
DEFAULT_RETRY_ATTEMPTS = 3
DEFAULT_BACKOFF = 30.0
MAX_BACKOFF = 3600.0
INTENT_MARKERS = ('"intent_match"', '"confidence_threshold"', '"intent":')

Clock = Callable[[], datetime]


class LeaseLost(EngineError):
    """Another worker took over this execution; this one stops without writing."""


@dataclass
class IngestResult:
    event_id: str
    execution_ids: list[str]
    duplicate: bool = False
    #: The event's intent as stored (given, or detected because a matching workflow asked for it).
    intent: str | None = None
    intent_confidence: float | None = None


@dataclass
class _Run:
    """An execution being driven (what the loop needs, loaded once)."""

    id: str
    tenant: dict[str, Any]
    workflow_id: str | None
    definition: WorkflowDefinition
    context: dict[str, Any]
    current: str | None
    token: str
    mode: str
    depth: int
    actions_executed: int = 0
    failed_steps: list[str] = field(default_factory=list)
    emitted: list[dict[str, Any]] = field(default_factory=list)
    #: The status its local steps stopped in (waiting, succeeded, ...); None: it goes on.
    stopped: str | None = None
    #: A test-console run: messages stay in the outbox, counters and caps are untouched,
    #: webhooks and remote AI are simulated unless ``real_calls``.
    test: bool = False
    real_calls: bool = False

    @property
    def dry_run(self) -> bool:
        return self.mode == "dry_run"


_definitions: dict[tuple[str | None, int], WorkflowDefinition] = {}


def parse_definition(workflow_id: str | None, version: int, raw: dict) -> WorkflowDefinition:
    """Parsed definition, cached per (workflow, version): a version's definition never changes."""
    key = (workflow_id, version)
    found = _definitions.get(key)
    if found is None:
        if len(_definitions) > 2048:
            _definitions.clear()
        found = _definitions[key] = WorkflowDefinition.model_validate(raw)
    return found


def trigger_data(event: dict[str, Any]) -> dict[str, Any]:
    """What ``{{trigger.*}}`` and conditions see: the event's fields plus its free data."""
    data = dict(event["data"] or {})
    data.update({
        "type": event["trigger_type"], "channel": event["channel"], "content": event["content"],
        "from": event["sender"], "intent": event["intent"], "intentConfidence": event["intent_confidence"],
        "customFields": event["custom_fields"] or {}, "receivedAt": event["received_at"].isoformat(),
        "eventId": event["id"],
    })
    data.setdefault("leadId", None)
    data.setdefault("bookingId", None)
    if "language" not in data:  # the member's language (de/en) for replies, None = the studio's
        data["language"] = detect_language(event["content"]) if event["content"] else None
    return data


def tenant_context(tenant: Any) -> dict[str, Any]:
    """The tenant as the runner and executors see it (a Tenant row or a mapping of its columns)."""
    get = tenant.__getitem__ if isinstance(tenant, Mapping) else lambda k: getattr(tenant, k)
    return {"id": get("id"), "slug": get("slug"), "name": get("name"), "timezone": get("timezone"),
            "settings": get("settings") or {}, "tz": ZoneInfo(get("timezone"))}


_PRIVATE_TENANT_KEYS = ("settings", "tz", "public")


def template_context(run_context: dict[str, Any], tenant: dict[str, Any], now: datetime) -> dict[str, Any]:
    """What templates see: the run's context, ``tenant`` without its settings, and ``now``."""
    public = tenant.get("public")
    if public is None:
        public = tenant["public"] = {k: v for k, v in tenant.items() if k not in _PRIVATE_TENANT_KEYS}
    return {**run_context, "tenant": public, "now": now.astimezone(tenant["tz"]).isoformat(timespec="seconds")}


def builtin_classifier() -> Callable[[str], Any] | None:
    """The built-in offline intent classifier (None if the AI package is unavailable)."""
    try:
        from engine.ai.intent import classify
    except ImportError:  # pragma: no cover
        return None
    return classify


class Runner:
    """Runs workflows for events, manual runs and resumptions. One per process is enough."""

    def __init__(self, db, *, clock: Clock = utcnow, classifier: Callable[[str], Any] | None = None,
                 max_depth: int = MAX_CHAIN_DEPTH) -> None:
        self.db = db
        self.clock = clock
        self.classifier = classifier
        self.max_depth = max_depth
        #: Set by the worker on SIGTERM: the loop parks the execution after the current step.
        self.stop_requested: Callable[[], bool] = lambda: False
        #: Ingest batches of this runner write one after the other (see _LazySession).
        self._write_lock = threading.Lock()
        self._group = _GroupCommit(self._prepare_batch, _LazySession.commit)
        #: Unsaved definitions by workflow id (test console scenarios against a builder draft):
        #: matching sees these instead of the stored ones. Only ever set on a runner of its own.
        self.drafts: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ ingest

    def ingest(self, tenant_id: str, event: dict[str, Any] | Event, *, depth: int = 0,
               parent_execution_id: str | None = None, defer_external: bool = False, test: bool = False,
               real_calls: bool = False) -> IngestResult:
        """Store the event, start every enabled workflow it matches, run them as far as they go.

        The event, its executions and their local steps (up to a wait, an external step or
        the end) commit in **one transaction**, shared with the other ingest calls that
        arrive meanwhile (group commit, see :class:`_GroupCommit`): a caller alone commits
        at once; callers that arrive while a commit is running share the next one.
        External steps then run in the caller's thread with no transaction open, or, with
        ``defer_external`` (provider webhooks that must answer fast), are handed to the worker.

        ``test``: a test-console event (stored with ``is_test``; see :class:`_Run`);
        ``real_calls``: a test event whose webhooks and remote AI are called for real.
        """
        req = _IngestRequest(tenant_id, _parse_event(event), depth, parent_execution_id, self.clock(),
                             test=test, real_calls=real_calls and test)
        if getattr(_batch_state, "depth", 0):  # a chained event from this thread: already counted
            return self._ingest(req, defer_external)
        self._group.enter()
        try:
            return self._ingest(req, defer_external)
        finally:
            self._group.leave()

    def _ingest(self, req: _IngestRequest, defer_external: bool = False) -> IngestResult:
        if getattr(_batch_state, "active", False):
            # It would wait for the write lock its own batch holds.
            raise RuntimeError("Runner.ingest called from inside an ingest batch: actions emit events with step.emit")
        while True:
            self._group.submit(req)
            if req.alone:  # its batch failed: try it again on its own
                req.alone = False
                self._ingest_alone(req)
            if req.ask_provider is None:
                break
            # Never call the provider with the database locked: ask, then ingest again.
            settings, req.ask_provider, req.asked_provider = req.ask_provider, None, True
            self._provider_intent(req.ev, settings)
        if req.error is not None:
            raise req.error
        if req.result is not None:
            return req.result
        for run in req.runs:
            if run.stopped is None and defer_external:
                self._park(run, reason="external step handed to the worker")
                self._process_emitted(run)
            elif run.stopped is None:
                self._drive(run)  # an external step is next
            else:
                self._process_emitted(run)
        return IngestResult(req.record["id"], [r.id for r in req.runs] + req.skipped, duplicate=False,
                            intent=req.ev.intent, intent_confidence=req.ev.intent_confidence)

    def _ingest_alone(self, req: _IngestRequest) -> None:
        """One request in its own transaction; a concurrent duplicate key answers with the first event."""
        try:
            self._prepare_batch([req]).commit()
        except IntegrityError:
            if not req.ev.idempotency_key:
                raise
            with self.db.connect() as conn:
                existing = _event_by_key(conn, req.tenant_id, req.ev.idempotency_key)
                if existing is None:
                    raise
                req.result = IngestResult(existing, _executions_of(conn, existing), duplicate=True)

    def _prepare_batch(self, batch: list[_IngestRequest]) -> _LazySession:
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
        candidates: dict[tuple[str, str], list[_Candidate]] = {}
        conn = self.db.connect()
        s = _LazySession(conn, lazy=True, lock=self._write_lock)
        _batch_state.active = True
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
            _batch_state.active = False
        return s

    def _ingest_in(self, s: _LazySession, reader: sa.Connection, req: _IngestRequest, tenants: dict,
                   candidates: dict) -> None:
        ev, tenant_id = req.ev, req.tenant_id
        # Once the transaction has begun, look things up inside it (it sees the buffer's rows).
        look = s if s.begun else reader
        if ev.idempotency_key:
            existing = _event_by_key(look, tenant_id, ev.idempotency_key)
            if existing:
                req.result = IngestResult(existing, _executions_of(look, existing), duplicate=True)
                return
        tenant = tenants.get(tenant_id)
        if tenant is None:
            try:
                tenant = tenants[tenant_id] = _tenant(look, tenant_id)
            except NotFound as exc:
                req.error = exc
                return
        if not req.asked_provider and (req.real_calls or not req.test) and self._wants_provider(ev, tenant["settings"]):
            req.ask_provider = tenant["settings"]
            return
        key = (tenant_id, str(ev.trigger_type))
        found = candidates.get(key)
        if found is None:
            found = candidates[key] = _candidates(look, tenant_id, ev)
            if self.drafts:
                found[:] = _with_drafts(ev, found, self.drafts)
        self._fill_intent(ev, found)
        req.record = _event_row(tenant_id, ev, req.now, req.depth, req.parent_execution_id, req.test)
        _insert(s, EventRecord, req.record)
        if req.record["content"] and req.record["sender"] and not req.test:
            note_opt_words(s, tenant, req.record, req.now)  # STOP / START on any channel (engine/optout.py)
        req.runs, req.skipped = self._start_matching(s, tenant, req.record, found, req.now, req.depth,
                                                     test=req.test, real_calls=req.real_calls)
        for run in req.runs:
            run.stopped = self._local_steps_in(s, run)

    def _fill_intent(self, ev: Event, candidates: list) -> None:
        """Classify message text when a matching workflow looks at the intent and none was given.

        The built-in classifier runs in-process; a tenant whose AI settings say
        ``"classify": true`` had its text classified by its provider before the transaction
        (see :meth:`_provider_intent`), so no HTTP call happens while the database is locked.
        """
        if ev.intent or not ev.content or self.classifier is None:
            return
        if any(w.trigger_type == "intent_detected" or any(m in w.definition_text for m in INTENT_MARKERS) for w in candidates):
            result = self.classifier(ev.content)
            ev.intent, ev.intent_confidence = result.intent, result.confidence

    @staticmethod
    def _wants_provider(ev: Event, settings: dict[str, Any] | None) -> bool:
        """A message without an intent, for a tenant whose AI provider classifies text."""
        if ev.intent or not ev.content or ev.trigger_type not in MESSAGE_TRIGGER_CHANNELS:
            return False
        return bool(((settings or {}).get("ai") or {}).get("classify"))

    def _provider_intent(self, ev: Event, settings: dict[str, Any]) -> None:
        """Ask the tenant's AI provider for the intent (called with no transaction open)."""
        from engine.ai import provider_for_tenant

        try:
            result = provider_for_tenant({"settings": settings}).classify(ev.content)
        except EngineError as exc:
            logger.warning("AI provider could not classify (%s); using the built-in classifier", exc.message)
            return
        ev.intent, ev.intent_confidence = result.intent, result.confidence

    def _start_matching(self, s: Session | sa.Connection, tenant: dict[str, Any], record: dict[str, Any], candidates: list,
                        now: datetime, depth: int, *, test: bool = False,
                        real_calls: bool = False) -> tuple[list[_Run], list[str]]:
        trigger = trigger_data(record)
        local_now = now.astimezone(tenant["tz"])
        runs, skipped, rows = [], [], []
        for wf in candidates:
            definition = parse_definition(wf.id, wf.version, wf.definition)
            if not _trigger_matches(definition, record):
                continue
            evaluation = evaluate(definition.conditions, EvalContext(trigger, local_now, None, _hours(tenant)))
            execution = _execution_row(tenant["id"], wf, record["id"], trigger, evaluation.explanation, now,
                                       "test" if test else "live", depth, test, real_calls)
            rows.append(execution)
            if not evaluation.passed:
                execution.update(status=ExecutionStatus.SKIPPED, finished_at=now)
                skipped.append(execution["id"])
                continue
            runs.append(_Run(execution["id"], tenant, wf.id, definition, execution["context"],
                             execution["current_action_id"], execution["lease_token"], execution["mode"], depth,
                             test=test, real_calls=real_calls))
        if rows:
            _insert(s, Execution, rows)
        return runs, skipped

    # ------------------------------------------------------------------ manual and dry runs

    def run_workflow(self, tenant_id: str, workflow_id: str, trigger_data_in: dict[str, Any] | None = None, *,
                     bypass_conditions: bool = False, dry_run: bool = False, mode: str = "manual",
                     test: bool = False, real_calls: bool = False) -> str:
        """Run one workflow now (the spec's /run; cron fires use mode="live"). Returns the execution id.

        ``test``: a test-console run (e.g. a scheduled workflow's tick fired from the console).

        An ``idempotencyKey`` in the trigger data that was already used raises IntegrityError.
        """
        now = self.clock()
        mode = "dry_run" if dry_run else ("test" if test else mode)
        test, real_calls = test and not dry_run, real_calls and test and not dry_run
        with session_scope(self.db) as s:
            wf = s.exec(select(Workflow).where(Workflow.id == workflow_id, Workflow.tenant_id == tenant_id)).first()
            if wf is None:
                raise NotFound(f"workflow {workflow_id} not found")
            tenant = _tenant(s, tenant_id)
            ev = _parse_event({"triggerType": wf.trigger_type, **_event_fields(trigger_data_in or {})})
            if ev.channel is None and wf.trigger_type in MESSAGE_TRIGGER_CHANNELS:
                ev.channel = MESSAGE_TRIGGER_CHANNELS[wf.trigger_type]
            candidate = _Candidate(wf.id, wf.name, wf.version, wf.definition, wf.trigger_type)
            self._fill_intent(ev, [candidate])
            record = _event_row(tenant_id, ev, now, 0, None, test)
            if not dry_run:
                _insert(s, EventRecord, record)
            definition = parse_definition(wf.id, wf.version, wf.definition)
            tctx = tenant
            trigger = trigger_data(record)
            evaluation = evaluate(definition.conditions, EvalContext(trigger, now.astimezone(tctx["tz"]), None, _hours(tctx)))
            passed = evaluation.passed or bypass_conditions
            explanation = evaluation.explanation + ([{"path": "conditions", "condition": "bypass", "passed": True,
                                                      "message": "conditions bypassed for this manual run"}]
                                                     if bypass_conditions and not evaluation.passed else [])
            execution = _execution_row(tenant_id, candidate, None if dry_run else record["id"], trigger, explanation,
                                       now, mode, 0, test, real_calls)
            if not passed:
                execution.update(status=ExecutionStatus.SKIPPED, finished_at=now)
            _insert(s, Execution, execution)
        if passed:
            self._drive(_Run(execution["id"], tctx, wf.id, definition, execution["context"],
                             execution["current_action_id"], execution["lease_token"], mode, 0,
                             test=test, real_calls=real_calls))
        return execution["id"]

    # ------------------------------------------------------------------ resume (worker)

    def resume(self, execution_id: str, *, stale_before: datetime | None = None) -> str | None:
        """Continue a waiting execution, or a running one whose runner made no progress since
        ``stale_before`` (it died). Returns the new status; does nothing to other executions."""
        now = self.clock()
        with session_scope(self.db) as s:
            stmt = select(Execution).where(Execution.id == execution_id)
            if s.bind.dialect.name == "postgresql":
                stmt = stmt.with_for_update()
            ex = s.exec(stmt).first()
            if ex is None:
                return None
            abandoned = ex.status == ExecutionStatus.RUNNING and (stale_before is None or ex.heartbeat_at < stale_before)
            if ex.status not in (ExecutionStatus.WAITING, ExecutionStatus.PENDING) and not abandoned:
                return ex.status
            tctx = _tenant(s, ex.tenant_id)
            ex.lease_token, ex.status, ex.heartbeat_at = new_id(), ExecutionStatus.RUNNING, now
            s.add(ex)
            run = _Run(ex.id, tctx, ex.workflow_id, parse_definition(ex.workflow_id, ex.workflow_version, ex.definition),
                       dict(ex.context), ex.current_action_id, ex.lease_token, ex.mode, ex.depth, ex.actions_executed,
                       list(ex.context.get("failedSteps", [])), test=bool(ex.is_test),
                       real_calls=bool((ex.context or {}).get("testRealCalls")))
        return self._drive(run)

    # ------------------------------------------------------------------ the loop

    def _drive(self, run: _Run) -> str:
        try:
            status = self._loop(run)
        except LeaseLost:
            logger.info("execution %s was taken over by another worker", run.id)
            return ExecutionStatus.RUNNING
        self._process_emitted(run)
        return status

    def _loop(self, run: _Run) -> str:
        while run.current is not None:
            action = run.definition.action(run.current)
            executor = executor_for(action.type)
            if executor.external and not run.dry_run:
                outcome = self._external_step(run, action, executor)
            else:
                outcome = self._local_steps(run)
            if outcome is not None:
                return outcome
            if run.current is not None and self.stop_requested():
                return self._park(run)
        return self._finish(run)

    def _park(self, run: _Run, reason: str = "worker stopped") -> str:
        """Shutting down (or deferring): hand the rest of the execution to the next worker, right away."""
        now = self.clock()
        with session_scope(self.db) as s:
            s.add(DueWork(tenant_id=run.tenant["id"], kind=DueKind.RESUME, due_at=now, execution_id=run.id,
                          workflow_id=run.workflow_id, payload={"actionId": run.current, "reason": reason}))
            self._save(s, run, now, status=ExecutionStatus.WAITING)
        return ExecutionStatus.WAITING

    def _attempt(self, run: _Run, action_id: str) -> int:
        attempts = run.context.setdefault("attempts", {})
        attempts[action_id] = attempts.get(action_id, 0) + 1
        return attempts[action_id]

    def _step_context(self, run: _Run, action, step_id: str, attempt: int, now: datetime, session) -> StepContext:
        return StepContext(tenant=run.tenant, execution_id=run.id, step_id=step_id, action=action,
                           context=template_context(run.context, run.tenant, now), now=now, dry_run=run.dry_run,
                           session=session, attempt=attempt, emit=lambda e: self._emit(run, e), db=self.db,
                           test=run.test, real_calls=run.real_calls)

    def _local_steps(self, run: _Run) -> str | None:
        with _local_transaction(self.db) as s:
            return self._local_steps_in(s, run)

    def _local_steps_in(self, s: _LazySession, run: _Run) -> str | None:
        """Run consecutive local steps in the open transaction (up to a wait, an external step or the end).

        Local steps only write rows, so committing them together is still exactly-once: a
        crash rolls all of them back and they run again, with nothing left behind.
        Returns the execution's new status when it stopped (waiting, failed, finished), None
        when it goes on (an external step is next, or the worker is stopping).
        """
        while run.current is not None:
            action = run.definition.action(run.current)
            executor = executor_for(action.type)
            if executor.external and not run.dry_run:
                break
            now = self.clock()
            attempt = self._attempt(run, action.id)
            step = _step_row(run, action, attempt, now)
            try:
                # A savepoint rolls back a failed action's partial writes alone.
                with nullcontext() if executor.atomic else s.begin_nested():
                    result = executor.fn(self._step_context(run, action, step["id"], attempt, now, s))
            except Exception as exc:  # noqa: BLE001 - any failure of an action is recorded on its step
                outcome = self._failed(s, run, action, step, exc, now)
            else:
                outcome = self._succeeded(s, run, action, step, result, now)
            if outcome is not None:
                return outcome
            if self.stop_requested():
                break
        if run.current is None:
            return self._finish_in(s, run)
        self._save(s, run, self.clock(), status=ExecutionStatus.RUNNING)
        return None

    def _external_step(self, run: _Run, action, executor) -> str | None:
        now = self.clock()
        attempt = self._attempt(run, action.id)
        step = _step_row(run, action, attempt, now)
        with session_scope(self.db) as s:
            _insert(s, StepRun, step)
            self._save(s, run, now, status=ExecutionStatus.RUNNING)
        step["persisted"] = True
        try:
            result, error = executor.fn(self._step_context(run, action, step["id"], attempt, now, None)), None
        except Exception as exc:  # noqa: BLE001
            result, error = None, exc
        done = self.clock()
        with session_scope(self.db) as s:
            if error is not None:
                outcome = self._failed(s, run, action, step, error, done)
            else:
                outcome = self._succeeded(s, run, action, step, result, done)
            if outcome is None:
                self._save(s, run, done, status=ExecutionStatus.RUNNING)
            return outcome

    def _write_step(self, s: Session, step: dict[str, Any]) -> None:
        if step.pop("persisted", False):
            s.connection().execute(sa.update(StepRun.__table__).where(StepRun.__table__.c.id == step["id"]).values(
                status=step["status"], input=step["input"], output=step["output"], error=step["error"],
                finished_at=step["finished_at"]))
        else:
            _insert(s, StepRun, step)

    def _succeeded(self, s: Session, run: _Run, action, step: dict, result: StepResult, now: datetime) -> str | None:
        output = _jsonable(result.output)
        step.update(status=StepStatus.SIMULATED if run.dry_run else StepStatus.SUCCEEDED, finished_at=now,
                    input=_jsonable(result.input), output=output)
        self._write_step(s, step)
        run.context.setdefault("results", {})[action.id] = output
        if result.lead is not None:
            run.context["lead"] = result.lead
        run.actions_executed += 1
        run.current = result.next_action_id if result.jump else _next_in_line(run.definition, action)
        if result.wait_until is not None:
            s.add(DueWork(tenant_id=run.tenant["id"], kind=DueKind.RESUME, due_at=result.wait_until,
                          execution_id=run.id, workflow_id=run.workflow_id, payload={"actionId": run.current}))
            self._save(s, run, now, status=ExecutionStatus.WAITING)
            return ExecutionStatus.WAITING
        return None

    def _failed(self, s: Session, run: _Run, action, step: dict, exc: Exception, now: datetime) -> str | None:
        message = exc.message if isinstance(exc, EngineError) else f"{exc.__class__.__name__}: {exc}"
        if not isinstance(exc, EngineError):
            # exc_info=exc: for external steps this runs after the except block has ended.
            logger.error("action %s of execution %s raised", action.id, run.id, exc_info=exc)
        step.update(status=StepStatus.FAILED, error=message, finished_at=now,
                    output=_jsonable(getattr(exc, "details", {}) or {}))
        self._write_step(s, step)
        delay = _retry_delay(action, exc, step["attempt"])
        if delay is not None and not run.dry_run:
            s.add(DueWork(tenant_id=run.tenant["id"], kind=DueKind.RESUME, due_at=now + timedelta(seconds=delay),
                          execution_id=run.id, workflow_id=run.workflow_id,
                          payload={"actionId": action.id, "retry": step["attempt"] + 1}))
            self._save(s, run, now, status=ExecutionStatus.WAITING)
            return ExecutionStatus.WAITING
        run.context.setdefault("results", {})[action.id] = {"error": message}
        run.failed_steps.append(action.id)
        run.actions_executed += 1
        if action.on_error == "stop":
            run.current = None
            self._save(s, run, now, status=ExecutionStatus.FAILED, error=f"step {action.id} failed: {message}", finished=True)
            return ExecutionStatus.FAILED
        run.current = _next_in_line(run.definition, action)
        return None

    def _finish(self, run: _Run) -> str:
        with session_scope(self.db) as s:
            return self._finish_in(s, run)

    def _finish_in(self, s: Session, run: _Run) -> str:
        status = ExecutionStatus.FAILED if run.failed_steps else ExecutionStatus.SUCCEEDED
        error = f"{len(run.failed_steps)} step(s) failed: {', '.join(run.failed_steps)}" if run.failed_steps else None
        self._save(s, run, self.clock(), status=status, error=error, finished=True)
        return status

    def _save(self, s: Session, run: _Run, now: datetime, *, status: str, error: str | None = None,
              finished: bool = False) -> None:
        """Write the execution's progress, only if this runner still holds its lease."""
        if run.failed_steps:
            run.context["failedSteps"] = run.failed_steps
        values: dict[str, Any] = {"b_id": run.id, "b_token": run.token, "status": status, "context": run.context,
                                  "current_action_id": run.current, "actions_executed": run.actions_executed,
                                  "heartbeat_at": now}
        if finished:
            values.update(finished_at=now, error=error)
        pending = s.pending_execution(run.id) if isinstance(s, _LazySession) else None
        if pending is not None:
            # Not written yet (same transaction, so the lease is ours): the row is written final.
            pending.update(values)
            del pending["b_id"], pending["b_token"]
        elif (_FAST_SAVE_FINISHED if finished else _FAST_SAVE).rowcount(s.connection(), values) != 1:
            raise LeaseLost()
        if finished and run.mode != "dry_run" and not run.test and run.workflow_id:
            ok = 1 if status == ExecutionStatus.SUCCEEDED else 0
            if not (isinstance(s, _LazySession) and s.count_run(run.workflow_id, ok, now)):
                _FAST_COUNT_RUN.rowcount(s.connection(), {"b_id": run.workflow_id, "b_n": 1, "b_ok": ok, "b_bad": 1 - ok,
                                                          "b_at": now})

    # ------------------------------------------------------------------ chains

    def _emit(self, run: _Run, event: dict[str, Any]) -> dict[str, Any]:
        """Queue an event (e.g. lead_created) to ingest once this execution's step has committed."""
        if run.dry_run:
            return {"emitted": False, "reason": "dry run: no events are emitted"}
        if run.depth + 1 > self.max_depth:
            reason = f"chain depth limit {self.max_depth} reached: {event.get('triggerType')} not emitted (a workflow loop?)"
            logger.warning("execution %s: %s", run.id, reason)
            return {"emitted": False, "reason": reason}
        run.emitted.append(event)
        return {"emitted": True, "depth": run.depth + 1}

    def _process_emitted(self, run: _Run) -> None:
        while run.emitted:
            event = run.emitted.pop(0)
            self.ingest(run.tenant["id"], event, depth=run.depth + 1, parent_execution_id=run.id, test=run.test,
                        real_calls=run.real_calls)


# ---------------------------------------------------------------------- group commit

#: Per thread: ``active`` while it prepares an ingest batch (an ingest from there would wait
#: for its own write lock); ``depth`` of nested ingest calls (chains), counted once.
_batch_state = threading.local()


@dataclass
class _IngestRequest:
    """One ``ingest`` call on its way through a batch."""

    tenant_id: str
    ev: Event
    depth: int
    parent_execution_id: str | None
    now: datetime
    test: bool = False
    real_calls: bool = False
    asked_provider: bool = False
    #: What the call returns or raises, once its batch has committed.
    result: IngestResult | None = None
    error: Exception | None = None
    #: The tenant's settings when its AI provider must classify first (no transaction open).
    ask_provider: dict[str, Any] | None = None
    #: Its batch failed as a whole: the caller runs it again on its own.
    alone: bool = False
    record: dict[str, Any] | None = None
    runs: list[_Run] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    #: Group commit: this caller's own lock, and whether it was woken to lead a batch.
    wake: Any = None
    lead: bool = False

    def reset(self) -> None:
        self.result = self.error = self.ask_provider = self.record = None
        self.runs, self.skipped = [], []


class _GroupCommit:
    """Leader/follower group commit for concurrent ingest calls (no timer, no extra thread).

    A caller that finds no batch running becomes the leader: it prepares its own request and
    every request queued so far (up to ``max_batch``) as one unit of work and commits it.
    Callers arriving meanwhile queue up, each waiting on its own lock; when the commit is
    done its callers are woken and the first queued caller leads the next batch. A caller
    alone therefore commits at once; under load one commit serves many events. If a batch
    fails, each of its requests is run again by its own caller, alone, so one bad request
    never fails the others.

    (Preparing the next batch while one commits was measured and dropped: the committing
    thread gives up the GIL for every row SQLite steps through and waits up to a switch
    interval to get it back from the preparing thread, which made it slower, not faster.)
    """

    def __init__(self, prepare: Callable[[list[_IngestRequest]], Any], commit: Callable[[Any], None],
                 max_batch: int = 64, gather_seconds: float = 0.001) -> None:
        self._prepare = prepare
        self._commit = commit
        self._max = max_batch
        self._gather = gather_seconds
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._queue: list[_IngestRequest] = []
        self._busy = False
        #: One entry per caller inside ``ingest`` (see :meth:`enter`); with siblings the leader gathers.
        self._inside: deque[None] = deque()

    def enter(self) -> None:
        """Count this thread among the callers (the outermost of its ingest calls does this).

        ``deque.append``/``pop`` are atomic in CPython: no lock for a number that only
        steers how long a leader gathers."""
        _batch_state.depth = 1
        self._inside.append(None)

    def leave(self) -> None:
        _batch_state.depth = 0
        self._inside.pop()

    def submit(self, req: _IngestRequest) -> None:
        req.lead, req.wake = False, None
        with self._lock:
            if self._busy:
                req.wake = threading.Lock()
                req.wake.acquire()
                self._queue.append(req)
                self._arrived.notify()
            else:
                self._busy = True
        if req.wake is not None:
            req.wake.acquire()  # released when its batch is done, or when it is to lead the next
            if not req.lead:
                return
        with self._lock:
            # Like PostgreSQL's commit_delay/commit_siblings: with other callers about to
            # arrive, wait up to ``gather_seconds`` for them so one commit serves them all.
            # A caller alone never waits.
            deadline = time.monotonic() + self._gather
            while len(self._queue) + 1 < min(len(self._inside), self._max):
                left = deadline - time.monotonic()
                if left <= 0 or not self._arrived.wait(left):
                    break
            batch = [req, *self._queue[:self._max - 1]]
            del self._queue[:self._max - 1]
        failure = None
        try:
            self._commit(self._prepare(batch))
        except BaseException as exc:  # each request is retried alone by its caller
            failure = exc
            logger.debug("ingest batch of %d failed; retrying each alone", len(batch), exc_info=exc)
            for r in batch:
                r.alone = True
        finally:
            self._hand_over()
            for r in batch:
                if r.wake is not None:
                    r.wake.release()
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


# ---------------------------------------------------------------------- helpers


@dataclass
class _Candidate:
    id: str
    name: str
    version: int
    definition: dict
    trigger_type: str

    @cached_property
    def definition_text(self) -> str:
        return json_dumps(self.definition)


def _parse_event(event: dict[str, Any] | Event) -> Event:
    if isinstance(event, Event):
        return event.model_copy()
    if not isinstance(event, dict):
        raise InvalidInput("an event must be a JSON object", field="event")
    try:
        return Event.model_validate(event)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        path = ".".join(str(p) for p in err["loc"]) or "event"
        raise InvalidInput(err["msg"], field=path) from exc


_EVENT_KEYS = {"channel", "content", "from", "intent", "intentConfidence", "leadId", "bookingId", "customFields",
               "receivedAt", "idempotencyKey"}


def _event_fields(data: dict[str, Any]) -> dict[str, Any]:
    """Split manual trigger data into event fields and free data (``{{trigger.anything}}``)."""
    fields = {k: v for k, v in data.items() if k in _EVENT_KEYS}
    extra = {k: v for k, v in data.items() if k not in _EVENT_KEYS and k not in ("triggerType", "type")}
    if extra:
        fields["data"] = {**extra, **(data.get("data") or {})}
    return fields


class _LazySession:
    """The ``session`` of a local-steps transaction: a write buffer, and an ORM Session on demand.

    * **Write buffer.** The runner's inserts (events, executions, steps, outbox rows) are
      kept in Python and written with one ``executemany`` per table when anything else uses
      the transaction or at its end, in foreign-key order. An execution still in the buffer
      is updated in place, so a run that finishes inside the transaction is written once, in
      its final state; run counters are added up per workflow and written once. Readers see
      no difference: every other use of the session or its connection writes the buffer
      first, and it is written before the commit (or dropped with a rollback).
    * **ORM on demand.** ``connection()`` returns the transaction's Connection as a Session
      would. Any other use (``add``, ``exec``, ``get`` ...) creates a real Session bound to
      that Connection: it joins the open transaction (SQLAlchemy's default
      ``join_transaction_mode``), so its writes commit or roll back with everything else.
      ``begin_nested`` (the savepoint around an action that writes several things) turns the
      buffer off for the rest of the transaction, so a rolled-back savepoint takes back
      everything written inside it.
    * **Transaction on demand** (ingest batches: ``lazy=True`` and the runner's write lock):
      the connection is not in a transaction until something needs one (an action using
      the session, or the final write-out); then ``lock`` is taken and the transaction
      begins (``BEGIN IMMEDIATE`` on SQLite), so SQLite's write lock is held only while it
      is needed. :meth:`commit` / :meth:`abort` end it, close the connection, release the lock.
    """

    __slots__ = ("_buffering", "_conn", "_counts", "_executions", "_idle", "_lock", "_rows", "_session", "_tx")

    def __init__(self, conn: sa.Connection, *, lazy: bool = False, lock: Any = None) -> None:
        #: ``_conn``: the connection once in a transaction. ``_idle``: with ``lazy``, the
        #: connection this unit of work owns (begun on demand, closed by commit/abort).
        self._conn: sa.Connection | None = None if lazy else conn
        self._idle: sa.Connection | None = conn if lazy else None
        self._lock, self._tx = lock, None
        self._session: Session | None = None
        self._rows: dict[FastStatement, list[dict[str, Any]]] = {}
        self._executions: dict[str, dict[str, Any]] = {}
        #: workflow id -> [runs, succeeded, failed, last run at]
        self._counts: dict[str, list] = {}
        self._buffering = True

    @property
    def begun(self) -> bool:
        return self._conn is not None

    def begin(self) -> sa.Connection:
        """The transaction's Connection, begun (under the write lock) if it was not yet."""
        if self._conn is None:
            self._lock.acquire()
            try:
                self._tx = self._idle.begin()
            except BaseException:
                self._lock.release()
                raise
            self._conn = self._idle
        return self._conn

    def buffer_insert(self, fast: FastStatement, rows: list[dict[str, Any]]) -> bool:
        """Keep rows for ``fast`` (an INSERT of every column, see engine.store.fast) until the
        next write-out; False when not buffering (the caller then runs it at once)."""
        if not self._buffering:
            return False
        self._rows.setdefault(fast, []).extend(rows)
        if fast is _FAST_INSERTS[Execution]:
            self._executions.update((row["id"], row) for row in rows)
        return True

    def pending_execution(self, execution_id: str) -> dict[str, Any] | None:
        """The execution's row if it is still in the buffer (to update in place)."""
        return self._executions.get(execution_id)

    def count_run(self, workflow_id: str, ok: int, at: datetime) -> bool:
        if not self._buffering:
            return False
        counts = self._counts.setdefault(workflow_id, [0, 0, 0, at])
        counts[0] += 1
        counts[1] += ok
        counts[2] += 1 - ok
        counts[3] = max(counts[3], at)
        return True

    def write_out(self) -> None:
        """Write the buffer: tables parents first, then the run counters."""
        if self._rows:
            conn = self.begin()
            rows, self._rows, self._executions = self._rows, {}, {}
            for fast in sorted(rows, key=lambda f: _TABLE_ORDER[f.stmt.table.name]):
                fast.executemany(conn, rows[fast])
        if self._counts:
            conn = self.begin()
            counts, self._counts = self._counts, {}
            for workflow_id, (n, ok, bad, at) in counts.items():
                _FAST_COUNT_RUN.rowcount(conn, {"b_id": workflow_id, "b_n": n, "b_ok": ok, "b_bad": bad, "b_at": at})

    def connection(self, *args: Any, **kwargs: Any) -> sa.Connection:
        self.write_out()
        conn = self.begin()
        return conn if self._session is None else self._session.connection(*args, **kwargs)

    def begin_nested(self) -> Any:
        self.write_out()
        self._buffering = False
        return self._orm().begin_nested()

    def _orm(self) -> Session:
        if self._session is None:
            self._session = Session(bind=self.begin(), expire_on_commit=False)
        return self._session

    def __getattr__(self, name: str) -> Any:
        self.write_out()
        return getattr(self._orm(), name)

    def flush_all(self) -> None:
        """Everything into the transaction (buffer, then the ORM session), ready to commit."""
        self.write_out()
        if self._session is not None:
            self._session.flush()

    def commit(self) -> None:
        """Write everything and commit (a transaction on demand that was never needed: nothing)."""
        try:
            self.flush_all()
            if self._tx is not None:
                self._tx.commit()
        finally:
            self.abort()

    def abort(self) -> None:
        """Roll back whatever was not committed, give the connection back, release the write lock."""
        self._rows, self._executions, self._counts = {}, {}, {}
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
def _local_transaction(db) -> Iterator[_LazySession]:
    """One transaction for consecutive local steps: commits on success, rolls back on any error."""
    with db.begin() as conn:
        lazy = _LazySession(conn)
        try:
            yield lazy
            lazy.flush_all()
        finally:
            if lazy._session is not None:
                lazy._session.close()


_FAST_INSERTS = {model: FastStatement(model.__table__.insert()) for model in (EventRecord, Execution, StepRun)}


def _insert(s: Session | sa.Connection | _LazySession, model: Any, rows: dict[str, Any] | list[dict[str, Any]]) -> None:
    """An insert of complete rows (every column given): buffered in a local transaction, else
    run on the transaction's DB-API connection."""
    fast = _FAST_INSERTS.get(model)
    rows = [rows] if isinstance(rows, dict) else rows
    if fast is None:
        connection_of(s).execute(model.__table__.insert(), rows)
    elif not (isinstance(s, _LazySession) and s.buffer_insert(fast, rows)):
        fast.executemany(s, rows)


_ex, _wf = Execution.__table__.c, Workflow.__table__.c
#: SET columns come from the parameters given; only the holder of the lease token may write.
_SAVE_EXECUTION = sa.update(Execution.__table__).where(_ex.id == sa.bindparam("b_id"),
                                                       _ex.lease_token == sa.bindparam("b_token"))
_COUNT_RUN = sa.update(Workflow.__table__).where(_wf.id == sa.bindparam("b_id")).values(
    run_count=_wf.run_count + sa.bindparam("b_n"), success_count=_wf.success_count + sa.bindparam("b_ok"),
    error_count=_wf.error_count + sa.bindparam("b_bad"), last_run_at=sa.bindparam("b_at"))
_SAVE_KEYS = ["status", "context", "current_action_id", "actions_executed", "heartbeat_at"]
_FAST_SAVE = FastStatement(_SAVE_EXECUTION, _SAVE_KEYS)
_FAST_SAVE_FINISHED = FastStatement(_SAVE_EXECUTION, _SAVE_KEYS + ["finished_at", "error"])
_FAST_COUNT_RUN = FastStatement(_COUNT_RUN)
#: The write buffer writes tables parents first (SQLAlchemy's foreign-key order).
_TABLE_ORDER = {t.name: i for i, t in enumerate(EventRecord.metadata.sorted_tables)}
_tc = Tenant.__table__.c
_TENANT_COLUMNS = ("id", "slug", "name", "timezone", "settings")
_FAST_TENANT = FastStatement(sa.select(*(_tc[k] for k in _TENANT_COLUMNS)).where(_tc.id == sa.bindparam("tenant_id")))
#: Two IN parameters (the same type twice when there is one): no expanding parameter, one SQL text.
_FAST_CANDIDATES = FastStatement(
    sa.select(_wf.id, _wf.name, _wf.version, _wf.definition, _wf.trigger_type)
    .where(_wf.tenant_id == sa.bindparam("tenant_id"), _wf.trigger_type.in_([sa.bindparam("t1"), sa.bindparam("t2")]),
           _wf.enabled == sa.true()))


def _event_row(tenant_id: str, ev: Event, now: datetime, depth: int, parent: str | None,
               is_test: bool = False) -> dict[str, Any]:
    data = dict(ev.data)
    if ev.lead_id:
        data["leadId"] = ev.lead_id
    if ev.booking_id:
        data["bookingId"] = ev.booking_id
    return {"id": new_id(), "tenant_id": tenant_id, "trigger_type": ev.trigger_type, "channel": ev.channel,
            "content": ev.content, "sender": ev.from_, "intent": ev.intent, "intent_confidence": ev.intent_confidence,
            "custom_fields": ev.custom_fields, "data": data, "received_at": ev.received_at or now,
            "idempotency_key": ev.idempotency_key, "depth": depth, "parent_execution_id": parent, "is_test": is_test}


def _step_row(run: _Run, action, attempt: int, now: datetime) -> dict[str, Any]:
    return {"id": new_id(), "tenant_id": run.tenant["id"], "execution_id": run.id, "action_id": action.id,
            "action_type": action.type, "attempt": attempt, "status": StepStatus.RUNNING, "input": {}, "output": {},
            "error": None, "started_at": now, "finished_at": None}


_ev, _exc = EventRecord.__table__.c, Execution.__table__.c
#: On the DB-API connection: on a plain (not begun) Connection they begin no transaction.
_FAST_EVENT_BY_KEY = FastStatement(sa.select(_ev.id).where(_ev.tenant_id == sa.bindparam("tenant_id"),
                                                           _ev.idempotency_key == sa.bindparam("key")))
_FAST_EXECUTIONS_OF = FastStatement(sa.select(_exc.id).where(_exc.event_id == sa.bindparam("event_id")))


def _event_by_key(s: Session | sa.Connection | _LazySession, tenant_id: str, key: str) -> str | None:
    row = _FAST_EVENT_BY_KEY.first(s, {"tenant_id": tenant_id, "key": key})
    return row[0] if row else None


def _executions_of(s: Session | sa.Connection | _LazySession, event_id: str) -> list[str]:
    return [row[0] for row in _FAST_EXECUTIONS_OF.all(s, {"event_id": event_id})]


def _tenant(s: Session | sa.Connection, tenant_id: str) -> dict[str, Any]:
    row = _FAST_TENANT.first(s, {"tenant_id": tenant_id})
    if row is None:
        raise NotFound("tenant not found")
    return tenant_context(dict(zip(_TENANT_COLUMNS, row)))


def _candidates(s: Session | sa.Connection, tenant_id: str, ev: Event) -> list[_Candidate]:
    """Enabled workflows of the event's trigger type (and intent_detected for messages with text)."""
    trigger_type = str(ev.trigger_type)
    other = "intent_detected" if ev.trigger_type in MESSAGE_TRIGGER_CHANNELS else trigger_type
    rows = _FAST_CANDIDATES.all(s, {"tenant_id": tenant_id, "t1": trigger_type, "t2": other})
    return [_Candidate(*row) for row in rows]


def _with_drafts(ev: Event, found: list[_Candidate], drafts: dict[str, dict[str, Any]]) -> list[_Candidate]:
    """The candidates with draft definitions in place of the stored ones (a draft may change
    the trigger type or be disabled). The caller checked that the drafts' workflows are the tenant's."""
    trigger_type = str(ev.trigger_type)
    wanted = {trigger_type} | ({"intent_detected"} if ev.trigger_type in MESSAGE_TRIGGER_CHANNELS else set())
    out = [c for c in found if c.id not in drafts]
    for workflow_id, definition in drafts.items():
        draft_type = (definition.get("trigger") or {}).get("type")
        if definition.get("enabled", True) is not False and draft_type in wanted:
            # A version of its own (negative, from the content) keeps the parse cache apart from saved versions.
            version = -(zlib.crc32(json_dumps(definition).encode()) % 2_000_000_000) - 1
            out.append(_Candidate(workflow_id, str(definition.get("name") or ""), version, definition, draft_type))
    return out


def _trigger_matches(definition: WorkflowDefinition, event: dict[str, Any]) -> bool:
    config = definition.trigger.config
    fields = config.__dict__  # declared fields (a missing attribute would raise inside pydantic)
    channel = fields.get("channel")
    if channel and event["channel"] and channel != event["channel"]:
        return False
    intent = fields.get("intent")
    return not (intent and event["intent"] != intent)


def _execution_row(tenant_id: str, wf, event_id: str | None, trigger: dict, explanation: list, now: datetime,
                   mode: str, depth: int, is_test: bool = False, real_calls: bool = False) -> dict[str, Any]:
    definition = wf.definition
    first = definition["actions"][0]["id"] if definition.get("actions") else None
    context = {"trigger": trigger, "results": {}, "lead": _lead_stub(trigger)}
    if real_calls:
        context["testRealCalls"] = True  # a resumed test run keeps calling for real
    return {"id": new_id(), "tenant_id": tenant_id, "workflow_id": wf.id, "workflow_name": wf.name,
            "workflow_version": wf.version, "event_id": event_id, "status": ExecutionStatus.RUNNING, "mode": mode,
            "definition": definition, "context": context,
            "explanation": explanation, "current_action_id": first, "lease_token": new_id(), "heartbeat_at": now,
            "depth": depth, "error": None, "started_at": now, "finished_at": None, "actions_executed": 0,
            "is_test": is_test, "replay_of": None}


def _hours(tenant: dict[str, Any]) -> dict[str, Any] | None:
    """The studio's business hours (for ``outside_business_hours`` conditions)."""
    return (tenant.get("settings") or {}).get("businessHours")


def _lead_stub(trigger: dict) -> dict:
    """Templates may use ``{{lead.*}}``; before a lead is loaded it holds what the trigger knows."""
    return {"id": trigger.get("leadId"), "name": trigger.get("name") or trigger.get("from"), "phone": None, "email": None,
            "customFields": trigger.get("customFields") or {}}


def _next_in_line(definition: WorkflowDefinition, action) -> str | None:
    if action.has_explicit_next:
        return action.next_action_id
    ids = [a.id for a in definition.actions]
    pos = ids.index(action.id)
    return ids[pos + 1] if pos + 1 < len(ids) else None


def _retry_delay(action, exc: Exception, attempt: int) -> float | None:
    """Seconds until the next attempt, or None when the failure is final."""
    if isinstance(exc, (PermanentError, TemplateError, InvalidInput)):
        return None
    policy = action.retry
    if policy is None and not isinstance(exc, RetryableError):
        return None
    max_attempts = policy.max_attempts if policy else DEFAULT_RETRY_ATTEMPTS
    if attempt >= max_attempts:
        return None
    base, cap = (policy.backoff, policy.max_backoff) if policy else (DEFAULT_BACKOFF, MAX_BACKOFF)
    from engine.retry import backoff_delay

    return backoff_delay(attempt, base=base, cap=cap, retry_after=getattr(exc, "retry_after", None))


def _jsonable(value: Any) -> Any:
    """Make step input/output safe for a JSON column (datetimes and odd types become text)."""
    import json

    try:
        json_dumps(value)
        return value
    except TypeError:
        return json.loads(json.dumps(value, default=str))

