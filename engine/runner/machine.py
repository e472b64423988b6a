"""The execution state machine: an execution's steps, one after the other, with durable time.

Rules that make it safe to crash anywhere:

* A step's effects (outbox row, lead, due-work row) and the execution's move to the next
  action commit in **one transaction**; a completed step is therefore never run again.
* Each commit checks the execution's ``lease_token``; a worker whose lease was taken over
  cannot complete a step twice.
* External actions (HTTP, SMTP, AI) commit a ``running`` step first and do their I/O with
  no transaction open; a crash in between re-runs that one step as a new attempt.
* Waits, retries and follow-ups are ``due_work`` rows; nothing sleeps.

Every write goes through a unit of work (:mod:`engine.uow`): consecutive local steps share a
buffered one (:mod:`engine.runner.buffer`), everything else a plain one. Time comes from
``clock`` (the unit of work's clock) so tests jump hours without sleeping.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import nullcontext
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from engine.actions import StepContext, StepResult, executor_for
from engine.errors import EngineError
from engine.runner.buffer import BufferedUnitOfWork, local_transaction
from engine.runner.context import (
    MAX_CHAIN_DEPTH,
    LeaseLost,
    Run,
    jsonable,
    load_tenant,
    next_in_line,
    resumed_run,
    retry_delay,
    template_context,
)
from engine.store import rollups
from engine.store.models import DueKind, DueWork, Execution, ExecutionStatus, StepRun, StepStatus, new_id, utcnow
from engine.store.runs import (
    count_runs,
    due_row,
    execution_for_resume,
    finish_step,
    save_execution,
    step_row,
)
from engine.uow import Clock, UnitOfWork, unit_of_work

_ex = Execution.__table__.c
logger = logging.getLogger(__name__)


class ExecutionMachine:
    """Drives executions: local steps in one transaction, external steps with none open."""

    def __init__(self, db: Any, *, clock: Clock = utcnow, max_depth: int = MAX_CHAIN_DEPTH) -> None:
        self.db = db
        self.clock = clock
        self.max_depth = max_depth
        #: Set by the worker on SIGTERM: the loop parks the execution after the current step.
        self.stop_requested: Callable[[], bool] = lambda: False

    def process_emitted(self, run: Run, uow: UnitOfWork | None = None) -> None:  # pragma: no cover - Runner's
        """Ingest the events ``run`` emitted: a chain starts new executions (see ``Runner``)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ resume (worker)

    def resume(self, execution_id: str, *, stale_before: datetime | None = None) -> str | None:
        """Continue a waiting execution, or a running one whose runner made no progress since
        ``stale_before`` (it died). Returns the new status; does nothing to other executions."""
        with unit_of_work(self.db, clock=self.clock) as uow:
            now, s = uow.now(), uow.session
            ex = execution_for_resume(s, execution_id)
            if ex is None:
                return None
            abandoned = ex.status == ExecutionStatus.RUNNING and (
                stale_before is None or ex.heartbeat_at is None or ex.heartbeat_at < stale_before
            )
            if ex.status not in (ExecutionStatus.WAITING, ExecutionStatus.PENDING) and not abandoned:
                return ex.status
            tctx = load_tenant(uow.connection(), ex.tenant_id)
            ex.lease_token, ex.status, ex.heartbeat_at = new_id(), ExecutionStatus.RUNNING, now
            s.add(ex)
            run = resumed_run(ex.model_dump(), tctx, ex.lease_token)
        return self.drive(run)

    # ------------------------------------------------------------------ the loop

    def drive(self, run: Run) -> str:
        """Run the execution as far as it goes (each step committed), then ingest what it emitted."""
        try:
            status = self._loop(run)
        except LeaseLost:
            logger.info("execution %s was taken over by another worker", run.id)
            return ExecutionStatus.RUNNING
        self.process_emitted(run)
        return status

    def _loop(self, run: Run) -> str:
        while run.current is not None:
            action = run.definition.action(run.current)
            executor = executor_for(action.type)
            if executor.external and not run.dry_run:
                outcome = self._external_step(run, action, executor)
            else:
                with local_transaction(self.db, self.clock) as uow:
                    outcome = self.local_steps_in(uow, run)
            if outcome is not None:
                return outcome
            if run.current is not None and self.stop_requested():
                return self.park(run)
        with unit_of_work(self.db, clock=self.clock) as uow:
            return self._finish_in(uow, run)

    def park(self, run: Run, reason: str = "worker stopped", uow: UnitOfWork | None = None) -> str:
        """Shutting down (or deferring): hand the rest of the execution to the next worker, right away.

        In ``uow`` when given (an ingest inside a caller's unit of work), else in a transaction of its own."""
        if uow is None:
            with unit_of_work(self.db, clock=self.clock) as own:
                return self.park(run, reason, own)
        now = uow.now()
        uow.insert(
            DueWork,
            due_row(
                now,
                tenant_id=run.tenant["id"],
                kind=DueKind.RESUME,
                due_at=now,
                execution_id=run.id,
                workflow_id=run.workflow_id,
                payload={"actionId": run.current, "reason": reason},
            ),
        )
        self._save(uow, run, now, status=ExecutionStatus.WAITING)
        return ExecutionStatus.WAITING

    def _attempt(self, run: Run, action_id: str) -> int:
        attempts = run.context.setdefault("attempts", {})
        attempts[action_id] = attempts.get(action_id, 0) + 1
        return attempts[action_id]

    def _step_context(
        self, run: Run, action, step_id: str, attempt: int, now: datetime, uow: UnitOfWork | None
    ) -> StepContext:
        return StepContext(
            tenant=run.tenant,
            execution_id=run.id,
            step_id=step_id,
            action=action,
            context=template_context(run.context, run.tenant, now),
            now=now,
            dry_run=run.dry_run,
            uow=uow,
            attempt=attempt,
            emit=lambda e: self._emit(run, e),
            db=self.db,
            test=run.test,
            real_calls=run.real_calls,
        )

    def local_steps_in(self, s: BufferedUnitOfWork, run: Run) -> str | None:
        """Run consecutive local steps in the open unit of work (up to a wait, an external step or the end).

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
            now = s.now()
            attempt = self._attempt(run, action.id)
            step = _step_row(run, action, attempt, now)
            try:
                # A savepoint rolls back a failed action's partial writes alone.
                with nullcontext() if executor.atomic else s.savepoint():
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
        self._save(s, run, s.now(), status=ExecutionStatus.RUNNING)
        return None

    def _external_step(self, run: Run, action, executor) -> str | None:
        now = self.clock()
        attempt = self._attempt(run, action.id)
        step = _step_row(run, action, attempt, now)
        with unit_of_work(self.db, clock=self.clock) as uow:
            uow.insert(StepRun, step)
            if run.mode != "dry_run" and not run.test:
                deltas = rollups.Deltas()
                deltas.step(step)
                uow.add_rollups(deltas)
            self._save(uow, run, now, status=ExecutionStatus.RUNNING)
        step["persisted"] = True
        try:
            result, error = executor.fn(self._step_context(run, action, step["id"], attempt, now, None)), None
        except Exception as exc:  # noqa: BLE001
            result, error = None, exc
        done = self.clock()
        with unit_of_work(self.db, clock=self.clock) as uow:
            if error is not None:
                outcome = self._failed(uow, run, action, step, error, done)
            else:
                outcome = self._succeeded(uow, run, action, step, result, done)
            if outcome is None:
                self._save(uow, run, done, status=ExecutionStatus.RUNNING)
            return outcome

    def _write_step(self, uow: UnitOfWork, run: Run, step: dict[str, Any]) -> None:
        persisted = step.pop("persisted", False)
        if persisted:
            finish_step(uow.connection(), step)
        else:
            uow.insert(StepRun, step)
        if run.mode == "dry_run" or run.test:
            return
        kept = uow.rollup_deltas()  # straight into a buffering unit's own deltas: the hot path
        deltas = kept if kept is not None else rollups.Deltas()
        if persisted:
            deltas.step_status(step, StepStatus.RUNNING)
        else:
            deltas.step(step)
        if kept is None:
            uow.add_rollups(deltas)

    def _succeeded(
        self, uow: UnitOfWork, run: Run, action, step: dict, result: StepResult, now: datetime
    ) -> str | None:
        output = jsonable(result.output)
        step.update(
            status=StepStatus.SIMULATED if run.dry_run else StepStatus.SUCCEEDED,
            finished_at=now,
            input=jsonable(result.input),
            output=output,
        )
        self._write_step(uow, run, step)
        run.context.setdefault("results", {})[action.id] = output
        if result.lead is not None:
            run.context["lead"] = result.lead
        run.actions_executed += 1
        run.current = result.next_action_id if result.jump else next_in_line(run.definition, action)
        if result.wait_until is not None:
            uow.insert(
                DueWork,
                due_row(
                    now,
                    tenant_id=run.tenant["id"],
                    kind=DueKind.RESUME,
                    due_at=result.wait_until,
                    execution_id=run.id,
                    workflow_id=run.workflow_id,
                    payload={"actionId": run.current},
                ),
            )
            self._save(uow, run, now, status=ExecutionStatus.WAITING)
            return ExecutionStatus.WAITING
        return None

    def _failed(self, uow: UnitOfWork, run: Run, action, step: dict, exc: Exception, now: datetime) -> str | None:
        message = exc.message if isinstance(exc, EngineError) else f"{exc.__class__.__name__}: {exc}"
        if not isinstance(exc, EngineError):
            # exc_info=exc: for external steps this runs after the except block has ended.
            logger.error("action %s of execution %s raised", action.id, run.id, exc_info=exc)
        step.update(
            status=StepStatus.FAILED, error=message, finished_at=now, output=jsonable(getattr(exc, "details", {}) or {})
        )
        self._write_step(uow, run, step)
        delay = retry_delay(action, exc, step["attempt"])
        if delay is not None and not run.dry_run:
            uow.insert(
                DueWork,
                due_row(
                    now,
                    tenant_id=run.tenant["id"],
                    kind=DueKind.RESUME,
                    due_at=now + timedelta(seconds=delay),
                    execution_id=run.id,
                    workflow_id=run.workflow_id,
                    payload={"actionId": action.id, "retry": step["attempt"] + 1},
                ),
            )
            self._save(uow, run, now, status=ExecutionStatus.WAITING)
            return ExecutionStatus.WAITING
        run.context.setdefault("results", {})[action.id] = {"error": message}
        run.failed_steps.append(action.id)
        run.actions_executed += 1
        if action.on_error == "stop":
            run.current = None
            self._save(
                uow, run, now, status=ExecutionStatus.FAILED, error=f"step {action.id} failed: {message}", finished=True
            )
            return ExecutionStatus.FAILED
        run.current = next_in_line(run.definition, action)
        return None

    def _finish_in(self, uow: UnitOfWork, run: Run) -> str:
        status = ExecutionStatus.FAILED if run.failed_steps else ExecutionStatus.SUCCEEDED
        error = f"{len(run.failed_steps)} step(s) failed: {', '.join(run.failed_steps)}" if run.failed_steps else None
        self._save(uow, run, uow.now(), status=status, error=error, finished=True)
        return status

    def _save(
        self, uow: UnitOfWork, run: Run, now: datetime, *, status: str, error: str | None = None, finished: bool = False
    ) -> None:
        """Write the execution's progress, only if this runner still holds its lease."""
        if run.failed_steps:
            run.context["failedSteps"] = run.failed_steps
        values: dict[str, Any] = {
            "b_id": run.id,
            "b_token": run.token,
            "status": status,
            "context": run.context,
            "current_action_id": run.current,
            "actions_executed": run.actions_executed,
            "heartbeat_at": now,
        }
        if finished:
            values.update(finished_at=now, error=error)
        buf = uow if isinstance(uow, BufferedUnitOfWork) else None
        pending = buf.pending_execution(run.id) if buf is not None else None
        if pending is not None:
            # Not written yet (same transaction, so the lease is ours): the row is written final.
            pending.update(values)
            del pending["b_id"], pending["b_token"]
        elif buf is not None and buf.buffer_update(values, finished):
            pass  # written and lease-checked at the write-out (worker batches)
        elif not save_execution(uow.connection(), values, finished):
            raise LeaseLost()
        if finished and pending is None and run.mode != "dry_run" and not run.test:
            self._count_finish(uow, run, status, now)
        if finished and run.mode != "dry_run" and not run.test and run.workflow_id:
            ok = 1 if status == ExecutionStatus.SUCCEEDED else 0
            if not (buf is not None and buf.count_run(run.workflow_id, ok, now)):
                count_runs(uow.connection(), run.workflow_id, 1, ok, 1 - ok, now)

    @staticmethod
    def _count_finish(uow: UnitOfWork, run: Run, status: str, now: datetime) -> None:
        """The Insights rollups of an execution written earlier as in progress that ended now."""
        started = run.started_at
        if started is None:  # not known to this Run: read it (rare: only callers that build a Run by hand)
            started = uow.connection().execute(sa.select(_ex.started_at).where(_ex.id == run.id)).scalar_one()
        deltas = rollups.Deltas()
        deltas.finish(run.tenant["id"], run.workflow_id, started, status, now)
        uow.add_rollups(deltas)

    # ------------------------------------------------------------------ chains

    def _emit(self, run: Run, event: dict[str, Any]) -> dict[str, Any]:
        """Queue an event (e.g. lead_created) to ingest once this execution's step has committed."""
        if run.dry_run:
            return {"emitted": False, "reason": "dry run: no events are emitted"}
        if run.depth + 1 > self.max_depth:
            reason = (
                f"chain depth limit {self.max_depth} reached: {event.get('triggerType')} not emitted (a workflow loop?)"
            )
            logger.warning("execution %s: %s", run.id, reason)
            return {"emitted": False, "reason": reason}
        run.emitted.append(event)
        return {"emitted": True, "depth": run.depth + 1}


def _step_row(run: Run, action, attempt: int, now: datetime) -> dict[str, Any]:
    return step_row(run.tenant["id"], run.id, action, attempt, now)
