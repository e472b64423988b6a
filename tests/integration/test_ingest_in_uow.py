"""``Runner.ingest(..., uow=)`` on a real file-backed SQLite and on PostgreSQL: the event and its
executions are written in the caller's transaction, invisible to others until the caller
commits, and gone when it rolls back."""

from __future__ import annotations

import pytest
from sqlmodel import Session, func, select

from engine.runner import Runner
from engine.store.db import read_session
from engine.store.models import EventRecord, Execution, Lead, OutboxMessage, StepRun, Workflow
from engine.uow import unit_of_work

CALLER = "+4915112345678"
DEFINITION = {
    "name": "Missed call",
    "trigger": {"type": "missed_call", "config": {}},
    "conditions": [],
    "actions": [
        {"id": "lead-1", "type": "create_lead", "config": {"name": "Caller", "phone": "{{trigger.from}}"}},
        {"id": "sms-1", "type": "send_sms", "config": {"message": "We call you back"}},
    ],
}


@pytest.fixture
def workflow(db, tenant) -> str:
    with unit_of_work(db) as uow:
        wf = Workflow(
            tenant_id=tenant.id,
            name=DEFINITION["name"],
            trigger_type="missed_call",
            definition=DEFINITION,
            created_at=uow.now(),
            updated_at=uow.now(),
        )
        uow.session.add(wf)
    return wf.id


def count(db, model) -> int:
    with read_session(db) as s:  # a reader: on SQLite it does not queue behind the open writer
        return s.exec(select(func.count()).select_from(model)).one()


def test_others_see_the_ingest_only_when_the_caller_commits(db, tenant, workflow):
    runner = Runner(db)
    with unit_of_work(db) as uow:
        result = runner.ingest(tenant.id, {"triggerType": "missed_call", "from": CALLER}, uow=uow)
        uow.flush()
        assert uow.session.get(Execution, result.execution_ids[0]).status == "succeeded"
        assert count(db, EventRecord) == 0 and count(db, Execution) == 0  # another connection: nothing yet
    # The event and its chained lead_created event, one message, one lead.
    assert count(db, EventRecord) == 2 and count(db, OutboxMessage) == 1 and count(db, Lead) == 1
    with Session(db) as s:
        assert s.get(Workflow, workflow).run_count == 1


def test_a_rolled_back_unit_of_work_takes_the_ingest_with_it(db, tenant, workflow):
    runner = Runner(db)
    with pytest.raises(RuntimeError):
        with unit_of_work(db) as uow:
            runner.ingest(tenant.id, {"triggerType": "missed_call", "from": CALLER}, uow=uow)
            raise RuntimeError("the booking failed after its event was ingested")
    for model in (EventRecord, Execution, StepRun, OutboxMessage, Lead):
        assert count(db, model) == 0, model.__name__
    with Session(db) as s:
        assert s.get(Workflow, workflow).run_count == 0
