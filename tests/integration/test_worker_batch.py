"""The worker resumes due waits in batches (engine/worker/batch.py) with the same
exactly-once guarantees: every execution once, every step once, leases respected."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import Session, func, select

from engine import services
from engine.runner import Runner
from engine.security import auth
from engine.store.models import DueWork, Execution, OutboxMessage, StepRun
from engine.uow import unit_of_work
from engine.worker import Worker
from engine.worker.batch import resume_batch
from tests.servers import Receiver

T0 = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)
PHONE = "+4915112345678"


def _wait_then(actions_after: list[dict]) -> dict:
    return {
        "name": "Reminder",
        "trigger": {"type": "missed_call", "config": {}},
        "actions": [{"id": "wait-1", "type": "wait", "config": {"delay": 3_600_000}}, *actions_after],
    }


def _send(action_id: str, text: str) -> dict:
    return {"id": action_id, "type": "send_whatsapp", "config": {"message": text}}


def _park(db, tenant_id: str, n: int, now: list[datetime]) -> list[str]:
    runner = Runner(db, clock=lambda: now[0])
    ids = []
    for i in range(n):
        ids += runner.ingest(
            tenant_id, {"triggerType": "missed_call", "channel": "voice", "from": f"+49151{i:08d}"}
        ).execution_ids
    return ids


def _counts(db, tenant_id: str) -> dict[str, int]:
    with Session(db) as s:
        return {
            "steps": s.exec(select(func.count()).select_from(StepRun).where(StepRun.action_id == "send-1")).one(),
            "outbox": s.exec(
                select(func.count()).select_from(OutboxMessage).where(OutboxMessage.tenant_id == tenant_id)
            ).one(),
            "succeeded": s.exec(
                select(func.count())
                .select_from(Execution)
                .where(Execution.tenant_id == tenant_id, Execution.status == "succeeded")
            ).one(),
            "due_done": s.exec(
                select(func.count())
                .select_from(DueWork)
                .where(DueWork.tenant_id == tenant_id, DueWork.status == "done")
            ).one(),
        }


@pytest.fixture
def parked(db, tenant, actor):
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow, actor=actor, data=_wait_then([_send("send-1", "Bis gleich, {{trigger.from}}!")])
        )
    now = [T0]
    ids = _park(db, tenant.id, 120, now)
    now[0] += timedelta(hours=2)
    return now, ids


def test_one_pass_resumes_every_due_wait_exactly_once(db, tenant, actor, parked):
    now, ids = parked
    worker = Worker(db, clock=lambda: now[0], name="w1", batch=50)
    assert worker.run_once() == 120
    assert _counts(db, tenant.id) == {"steps": 120, "outbox": 120, "succeeded": 120, "due_done": 120}
    with unit_of_work(db, read_only=True) as uow:
        ex = services.get_execution(uow=uow, actor=actor, execution_id=ids[7])
    assert [s.action_id for s in ex.steps] == ["wait-1", "send-1"]
    assert worker.run_once() == 0  # nothing left, nothing resumed twice
    assert _counts(db, tenant.id)["outbox"] == 120


def test_two_workers_at_once_resume_each_execution_once(db, tenant, parked):
    now, _ = parked
    workers = [Worker(db, clock=lambda: now[0], name=f"w{k}", batch=20) for k in range(3)]
    errors: list[BaseException] = []

    def run(w: Worker) -> None:
        try:
            w.run_once()
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert _counts(db, tenant.id) == {"steps": 120, "outbox": 120, "succeeded": 120, "due_done": 120}


def test_a_batch_whose_lease_was_taken_rolls_back_and_nothing_runs_twice(db, tenant, parked):
    now, _ = parked
    a = Worker(db, clock=lambda: now[0], name="a", batch=10)
    items = a.claim()
    assert len(items) == 10
    # Worker a stalls past its lease; worker b claims one of its items and resumes it.
    with Session(db) as s:
        s.execute(sa.update(DueWork).where(DueWork.id == items[3].id).values(locked_by="b"))
        s.commit()
    b = Worker(db, clock=lambda: now[0], name="b")
    b.handle(items[3].model_copy(update={"locked_by": "b"}))
    assert _counts(db, tenant.id)["outbox"] == 1
    handled, rest = resume_batch(a, items)
    assert handled == 0 and rest == items  # rolled back as a whole: nothing of the batch was written
    assert _counts(db, tenant.id)["outbox"] == 1
    for item in rest:  # the one-by-one way: lease tokens keep b's execution from running again
        a.handle(item)
    assert _counts(db, tenant.id)["outbox"] == 10
    assert _counts(db, tenant.id)["steps"] == 10


def test_a_batch_drives_external_steps_after_its_commit(db, tenant_factory):
    tenant = tenant_factory("hooks", webhookAllowList=["127.0.0.1"])
    actor = auth.system_actor(tenant.id)
    receiver = Receiver()
    try:
        hook = {
            "id": "hook-1",
            "type": "call_webhook",
            "config": {"webhookUrl": receiver.hook_url, "method": "POST", "body": {"from": "{{trigger.from}}"}},
        }
        with unit_of_work(db) as uow:
            services.create_workflow(uow=uow, actor=actor, data=_wait_then([hook, _send("send-1", "fertig")]))
        now = [T0]
        _park(db, tenant.id, 5, now)
        now[0] += timedelta(hours=2)
        assert Worker(db, clock=lambda: now[0], name="w").run_once() == 5
        assert len(receiver.requests) == 5
        assert _counts(db, tenant.id) == {"steps": 5, "outbox": 5, "succeeded": 5, "due_done": 5}
    finally:
        receiver.close()


@pytest.mark.rollups_unchecked  # the test cancels with a raw UPDATE, below the writers
def test_executions_not_waiting_any_more_are_closed_without_running(db, tenant, parked):
    now, ids = parked
    with Session(db) as s:
        s.execute(sa.update(Execution).where(Execution.id.in_(ids[:30])).values(status="cancelled"))
        s.commit()
    Worker(db, clock=lambda: now[0], name="w").run_once()
    c = _counts(db, tenant.id)
    assert c["outbox"] == 90 and c["due_done"] == 120


def test_resumptions_of_a_claimed_batch_commit_in_one_transaction(db, tenant, parked):
    now, _ = parked
    worker = Worker(db, clock=lambda: now[0], name="w", batch=50)
    items = worker.claim()
    commits: list[int] = []

    def count(_conn) -> None:
        commits.append(1)

    sa.event.listen(db, "commit", count)
    try:
        handled, rest = resume_batch(worker, items)
    finally:
        sa.event.remove(db, "commit", count)
    assert (handled, rest) == (50, [])
    assert len(commits) == 1
    assert _counts(db, tenant.id)["outbox"] == 50
