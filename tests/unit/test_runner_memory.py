"""The runner and the worker on an in-memory SQLite store (``sqlite://``) with an injected clock.

No file, no sleep: time moves by setting the clock. Covers wait and resume, a durable retry,
a cron fire, and an ingest inside a caller's unit of work (committed together with the
caller's own writes, or rolled back leaving nothing behind). Tenants and workflows are written
as rows here (not through the services), so these tests depend on the runtime alone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import Session, func, select

from engine.runner import Runner
from engine.store.db import migrate, new_engine
from engine.store.models import (
    DueKind,
    DueWork,
    EventRecord,
    Execution,
    Lead,
    OutboxMessage,
    StepRun,
    Tenant,
    Workflow,
    new_id,
)
from engine.uow import unit_of_work
from engine.worker import Worker
from engine.workflow.definitions import WorkflowDefinition

START = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)
CALLER = "+4915112345678"


class Clock:
    def __init__(self, at: datetime = START) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> datetime:
        self.at += timedelta(**delta)
        return self.at


@pytest.fixture
def store():
    db = new_engine("sqlite://")
    migrate(db)
    yield db
    db.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def add_tenant(db, clock: Clock, **settings) -> str:
    with unit_of_work(db, clock=clock) as uow:
        tenant = Tenant(
            slug=f"studio-{new_id()[-8:]}",
            name="Studio",
            timezone="Europe/Berlin",
            settings=settings,
            created_at=uow.now(),
        )
        uow.session.add(tenant)
    return tenant.id


def add_workflow(db, clock: Clock, tenant_id: str, definition: dict, **columns) -> str:
    WorkflowDefinition.model_validate(definition)  # a definition the services would accept
    with unit_of_work(db, clock=clock) as uow:
        wf = Workflow(
            tenant_id=tenant_id,
            name=definition["name"],
            trigger_type=definition["trigger"]["type"],
            definition=definition,
            created_at=uow.now(),
            updated_at=uow.now(),
            **columns,
        )
        uow.session.add(wf)
    return wf.id


def missed_call(actions: list[dict], name: str = "Missed call") -> dict:
    return {"name": name, "trigger": {"type": "missed_call", "config": {}}, "conditions": [], "actions": actions}


def sms(action_id: str, text: str) -> dict:
    return {"id": action_id, "type": "send_sms", "config": {"message": text}}


def count(db, model, *where) -> int:
    with Session(db) as s:
        return s.exec(select(func.count()).select_from(model).where(*where)).one()


def execution(db, execution_id: str) -> Execution:
    with Session(db) as s:
        return s.get(Execution, execution_id)


def test_the_store_is_in_memory_and_one_database_for_every_checkout(store):
    assert store.url.database is None
    assert isinstance(store.pool, sa.pool.StaticPool)
    with store.connect() as a, store.connect() as b:
        assert a.connection.dbapi_connection is b.connection.dbapi_connection


def test_wait_then_resume_on_the_injected_clock(store, clock):
    tenant_id = add_tenant(store, clock)
    add_workflow(
        store,
        clock,
        tenant_id,
        missed_call(
            [
                {"id": "wait-1", "type": "wait", "config": {"delay": 3_600_000}},
                sms("sms-1", "Sorry, we missed you at {{now}}"),
            ]
        ),
    )
    runner = Runner(store, clock=clock)
    worker = Worker(store, clock=clock, runner=runner, name="memory-worker")

    [execution_id] = runner.ingest(tenant_id, {"triggerType": "missed_call", "from": CALLER}).execution_ids
    ex = execution(store, execution_id)
    assert (ex.status, ex.current_action_id, ex.started_at) == ("waiting", "sms-1", START)
    with Session(store) as s:
        due = s.exec(select(DueWork).where(DueWork.execution_id == execution_id)).one()
    assert (due.kind, due.due_at, due.created_at) == (DueKind.RESUME, START + timedelta(hours=1), START)

    clock.advance(minutes=59)
    worker.run_once()
    assert execution(store, execution_id).status == "waiting"  # not due yet

    resumed_at = clock.advance(minutes=2)
    worker.run_once()
    ex = execution(store, execution_id)
    assert (ex.status, ex.finished_at) == ("succeeded", resumed_at)
    with Session(store) as s:
        [message] = s.exec(select(OutboxMessage).where(OutboxMessage.execution_id == execution_id)).all()
        steps = {st.action_id: st for st in s.exec(select(StepRun).where(StepRun.execution_id == execution_id))}
    assert message.recipient == CALLER and message.created_at == resumed_at
    assert "2026-05-04T11:01:00+02:00" in message.body  # {{now}} is the clock's time, in the studio's zone
    assert steps["wait-1"].started_at == START and steps["sms-1"].started_at == resumed_at


def test_a_failed_step_is_retried_durably_until_it_succeeds(store, clock):
    tenant_id = add_tenant(store, clock)
    lead_id = new_id()
    add_workflow(
        store,
        clock,
        tenant_id,
        missed_call(
            [
                {
                    "id": "lead-1",
                    "type": "update_lead",
                    "config": {"leadId": lead_id, "updates": {"status": "contacted"}},
                    "retry": {"maxAttempts": 3, "backoff": 60, "maxBackoff": 60},
                }
            ]
        ),
    )
    runner = Runner(store, clock=clock)
    worker = Worker(store, clock=clock, runner=runner, name="memory-worker")

    [execution_id] = runner.ingest(tenant_id, {"triggerType": "missed_call", "from": CALLER}).execution_ids
    assert execution(store, execution_id).status == "waiting"  # the lead does not exist yet
    with Session(store) as s:
        due = s.exec(select(DueWork).where(DueWork.execution_id == execution_id)).one()
        [failed] = s.exec(select(StepRun).where(StepRun.execution_id == execution_id)).all()
    assert due.payload == {"actionId": "lead-1", "retry": 2} and START <= due.due_at <= START + timedelta(seconds=60)
    assert failed.status == "failed" and "not found" in failed.error

    with unit_of_work(store, clock=clock) as uow:  # the lead arrives meanwhile
        uow.session.add(
            Lead(id=lead_id, tenant_id=tenant_id, name="Mia", phone=CALLER, created_at=uow.now(), updated_at=uow.now())
        )
    retried_at = clock.advance(minutes=2)
    worker.run_once()
    ex = execution(store, execution_id)
    assert ex.status == "succeeded" and ex.context["attempts"] == {"lead-1": 2}
    with Session(store) as s:
        lead = s.get(Lead, lead_id)
    assert lead.status == "contacted" and lead.updated_at == retried_at  # the step's time, not the wall clock


def test_cron_fires_once_at_its_time(store, clock):
    tenant_id = add_tenant(store, clock)
    fire_at = START + timedelta(hours=1)
    wf_id = add_workflow(
        store,
        clock,
        tenant_id,
        {
            "name": "Morning",
            "trigger": {"type": "time_based", "config": {"schedule": "0 11 * * *"}},  # 11:00 Berlin
            "conditions": [],
            "actions": [
                {
                    "id": "mail-1",
                    "type": "send_email",
                    "config": {"message": "Guten Morgen", "recipient": "owner@studio.de"},
                }
            ],
        },
        next_fire_at=fire_at,
    )
    worker = Worker(store, clock=clock, runner=Runner(store, clock=clock), name="memory-worker")

    clock.advance(minutes=59)
    assert worker.fire_cron() == 0
    clock.advance(minutes=1)
    assert worker.fire_cron() == 1
    assert worker.fire_cron() == 0  # the same fire time never fires twice
    with Session(store) as s:
        [ex] = s.exec(select(Execution).where(Execution.workflow_id == wf_id)).all()
        wf = s.get(Workflow, wf_id)
    assert (ex.status, ex.mode, ex.started_at) == ("succeeded", "live", fire_at)
    assert ex.context["trigger"]["scheduledFor"] == fire_at.isoformat()
    assert wf.next_fire_at == fire_at + timedelta(days=1) and wf.run_count == 1


# --------------------------------------------------------------------------- ingest in a caller's unit of work


def chained_workflows(db, clock: Clock, tenant_id: str) -> None:
    """missed_call -> create_lead (emits lead_created) -> sms; lead_created -> a webhook (external)."""
    add_workflow(
        db,
        clock,
        tenant_id,
        missed_call(
            [
                {"id": "lead-1", "type": "create_lead", "config": {"name": "Caller", "phone": "{{trigger.from}}"}},
                sms("sms-1", "We call you back"),
            ]
        ),
    )
    add_workflow(
        db,
        clock,
        tenant_id,
        {
            "name": "To the CRM",
            "trigger": {"type": "lead_created", "config": {}},
            "conditions": [],
            "actions": [{"id": "hook-1", "type": "call_webhook", "config": {"webhookUrl": "https://crm.example/hook"}}],
        },
    )


def test_an_ingest_in_a_callers_unit_of_work_commits_with_the_callers_writes(store, clock):
    tenant_id = add_tenant(store, clock)
    chained_workflows(store, clock, tenant_id)
    runner = Runner(store, clock=clock)

    with unit_of_work(store, clock=clock) as uow:
        uow.session.add(
            Lead(tenant_id=tenant_id, name="Walk-in", email="walk@in.de", created_at=uow.now(), updated_at=uow.now())
        )
        result = runner.ingest(tenant_id, {"triggerType": "missed_call", "from": CALLER}, uow=uow)
        # Inside the caller's transaction the ingest's rows are visible (written at the first read).
        assert uow.session.get(EventRecord, result.event_id) is not None

    ex = execution(store, result.execution_ids[0])
    assert ex.status == "succeeded"
    assert count(store, Lead, Lead.tenant_id == tenant_id) == 2
    assert count(store, OutboxMessage, OutboxMessage.execution_id == ex.id) == 1
    # The chained lead_created event was ingested in the same unit of work; its webhook (an
    # external step) was handed to the worker, since nothing was committed when it came up.
    with Session(store) as s:
        chained = s.exec(select(EventRecord).where(EventRecord.trigger_type == "lead_created")).one()
        crm = s.exec(select(Execution).where(Execution.event_id == chained.id)).one()
        due = s.exec(select(DueWork).where(DueWork.execution_id == crm.id)).one()
    assert chained.parent_execution_id == ex.id and chained.received_at == START
    assert crm.status == "waiting" and crm.current_action_id == "hook-1"
    assert (due.kind, due.due_at) == (DueKind.RESUME, START)
    assert due.payload["reason"] == "external step handed to the worker"


def test_an_ingest_in_a_unit_of_work_that_then_fails_leaves_nothing_behind(store, clock):
    tenant_id = add_tenant(store, clock)
    chained_workflows(store, clock, tenant_id)
    runner = Runner(store, clock=clock)

    with pytest.raises(RuntimeError, match="the booking could not be saved"):
        with unit_of_work(store, clock=clock) as uow:
            result = runner.ingest(tenant_id, {"triggerType": "missed_call", "from": CALLER}, uow=uow)
            uow.flush()
            assert uow.session.get(Execution, result.execution_ids[0]).status == "succeeded"
            raise RuntimeError("the booking could not be saved")

    for model in (EventRecord, Execution, StepRun, OutboxMessage, DueWork, Lead):
        assert count(store, model) == 0, model.__name__
    with Session(store) as s:
        assert {wf.run_count for wf in s.exec(select(Workflow))} == {0}

    # The runner is unharmed: the same event on its own commits as usual.
    [execution_id] = runner.ingest(tenant_id, {"triggerType": "missed_call", "from": CALLER}).execution_ids
    assert execution(store, execution_id).status == "succeeded"


def test_an_unknown_tenant_in_a_unit_of_work_raises_and_writes_nothing(store, clock):
    from engine.errors import NotFound

    runner = Runner(store, clock=clock)
    with unit_of_work(store, clock=clock) as uow:
        with pytest.raises(NotFound):
            runner.ingest("no-such-tenant", {"triggerType": "missed_call", "from": CALLER}, uow=uow)
    assert count(store, EventRecord) == 0
