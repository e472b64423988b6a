"""Starting executions: an event's candidate workflows, their execution rows, manual and dry runs.

:func:`start_matching` turns the candidates an event matches into execution rows in the
caller's unit of work (skipped ones finished at once, the others as :class:`Run` to drive);
:func:`run_workflow` is the spec's manual run (and cron fires, dry runs, console ticks).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlmodel import select

from engine.errors import NotFound
from engine.runner.context import (
    Candidate,
    Run,
    event_fields,
    hours,
    load_tenant,
    parse_definition,
    parse_event,
    run_context,
    trigger_data,
    trigger_matches,
)
from engine.runner.intent import fill_intent
from engine.store.models import EventRecord, Execution, ExecutionStatus, Workflow
from engine.store.runs import candidate_rows, event_row, execution_row
from engine.uow import UnitOfWork, unit_of_work
from engine.workflow.conditions import EvalContext, evaluate
from engine.workflow.definitions import MESSAGE_TRIGGER_CHANNELS, Event

if TYPE_CHECKING:
    from engine.runner.ingest import Runner


def candidates_for(target: Any, tenant_id: str, ev: Event) -> list[Candidate]:
    """Enabled workflows of the event's trigger type (and intent_detected for messages with text)."""
    trigger_type = str(ev.trigger_type)
    other = "intent_detected" if ev.trigger_type in MESSAGE_TRIGGER_CHANNELS else trigger_type
    return [Candidate(*row) for row in candidate_rows(target, tenant_id, trigger_type, other)]


def start_matching(
    s: UnitOfWork,
    tenant: dict[str, Any],
    record: dict[str, Any],
    candidates: list,
    now: datetime,
    depth: int,
    *,
    test: bool = False,
    real_calls: bool = False,
) -> tuple[list[Run], list[str]]:
    trigger = trigger_data(record)
    local_now = now.astimezone(tenant["tz"])
    runs, skipped, rows = [], [], []
    for wf in candidates:
        definition = parse_definition(wf.id, wf.version, wf.definition)
        if not trigger_matches(definition, record):
            continue
        evaluation = evaluate(definition.conditions, EvalContext(trigger, local_now, None, hours(tenant)))
        execution = execution_row(
            tenant["id"],
            wf,
            record["id"],
            run_context(trigger, real_calls),
            evaluation.explanation,
            now,
            "test" if test else "live",
            depth,
            test,
        )
        rows.append(execution)
        if not evaluation.passed:
            execution.update(status=ExecutionStatus.SKIPPED, finished_at=now)
            skipped.append(execution["id"])
            continue
        runs.append(_new_run(execution, tenant, definition, test=test, real_calls=real_calls))
    if rows:
        s.insert(Execution, rows)
    return runs, skipped


def run_workflow(
    runner: Runner,
    tenant_id: str,
    workflow_id: str,
    trigger_data_in: dict[str, Any] | None = None,
    *,
    bypass_conditions: bool = False,
    dry_run: bool = False,
    mode: str = "manual",
    test: bool = False,
    real_calls: bool = False,
) -> str:
    """Run one workflow now (the spec's /run; cron fires use mode="live"). Returns the execution id.

    ``test``: a test-console run (e.g. a scheduled workflow's tick fired from the console).

    An ``idempotencyKey`` in the trigger data that was already used raises IntegrityError.
    """
    mode = "dry_run" if dry_run else ("test" if test else mode)
    test, real_calls = test and not dry_run, real_calls and test and not dry_run
    with unit_of_work(runner.db, clock=runner.clock) as uow:
        now = uow.now()
        wf = uow.session.exec(
            select(Workflow).where(Workflow.id == workflow_id, Workflow.tenant_id == tenant_id)
        ).first()
        if wf is None:
            raise NotFound(f"workflow {workflow_id} not found")
        tenant = load_tenant(uow.connection(), tenant_id)
        ev = parse_event({"triggerType": wf.trigger_type, **event_fields(trigger_data_in or {})})
        if ev.channel is None and wf.trigger_type in MESSAGE_TRIGGER_CHANNELS:
            ev.channel = MESSAGE_TRIGGER_CHANNELS[wf.trigger_type]
        candidate = Candidate(wf.id, wf.name, wf.version, wf.definition, wf.trigger_type)
        fill_intent(runner.classifier, ev, [candidate])
        record = event_row(tenant_id, ev, now, 0, None, test)
        if not dry_run:
            uow.insert(EventRecord, record)
        definition = parse_definition(wf.id, wf.version, wf.definition)
        trigger = trigger_data(record)
        evaluation = evaluate(
            definition.conditions, EvalContext(trigger, now.astimezone(tenant["tz"]), None, hours(tenant))
        )
        passed = evaluation.passed or bypass_conditions
        explanation = evaluation.explanation + (
            [
                {
                    "path": "conditions",
                    "condition": "bypass",
                    "passed": True,
                    "message": "conditions bypassed for this manual run",
                }
            ]
            if bypass_conditions and not evaluation.passed
            else []
        )
        execution = execution_row(
            tenant_id,
            candidate,
            None if dry_run else record["id"],
            run_context(trigger, real_calls),
            explanation,
            now,
            mode,
            0,
            test,
        )
        if not passed:
            execution.update(status=ExecutionStatus.SKIPPED, finished_at=now)
        uow.insert(Execution, execution)
    if passed:
        runner.drive(_new_run(execution, tenant, definition, test=test, real_calls=real_calls))
    return execution["id"]


def _new_run(
    execution: dict[str, Any], tenant: dict[str, Any], definition: Any, *, test: bool, real_calls: bool
) -> Run:
    """The :class:`Run` of a just-built execution row (see :func:`execution_row`)."""
    return Run(
        execution["id"],
        tenant,
        execution["workflow_id"],
        definition,
        execution["context"],
        execution["current_action_id"],
        execution["lease_token"],
        execution["mode"],
        execution["depth"],
        test=test,
        real_calls=real_calls,
        started_at=execution["started_at"],
    )
