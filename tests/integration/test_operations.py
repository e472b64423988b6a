"""Replay and cancel, exactly once, on SQLite and PostgreSQL; filtered keyset pages and the
streamed CSV of the executions list; tenant isolation and roles."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlmodel import Session, select

from engine import services
from engine.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from engine.security import auth
from engine.services import operations as ops
from engine.store.models import DueWork, Execution, OutboxMessage, Role, utcnow
from engine.uow import unit_of_work
from engine.worker import Worker
from tests.servers import Receiver

PHONE = "+4915112345678"


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make(statuses=(200,)):
        made.append(Receiver(statuses=statuses))
        return made[-1]

    yield make
    for r in made:
        r.close()


@pytest.fixture
def studio(db, tenant_factory):
    tenant = tenant_factory(webhookAllowList=["127.0.0.1"])
    return auth.system_actor(tenant.id)


def _hook_workflow(url: str) -> dict:
    return {
        "name": "Lead to CRM",
        "trigger": {"type": "whatsapp_message", "config": {}},
        "conditions": [],
        "actions": [
            {
                "id": "hook-1",
                "type": "call_webhook",
                "onError": "stop",
                "retry": {"maxAttempts": 1, "backoff": 1},
                "config": {"webhookUrl": url, "method": "POST", "body": {"from": "{{trigger.from}}"}},
            },
            {"id": "send-1", "type": "send_whatsapp", "config": {"message": "Danke!"}},
        ],
    }


def _message(sender: str = PHONE, content: str = "Hallo") -> dict:
    return {"triggerType": "whatsapp_message", "channel": "whatsapp", "from": sender, "content": content}


def _failed_execution(db, actor, receiver) -> tuple[str, str]:
    with unit_of_work(db) as uow:
        wf = services.create_workflow(uow=uow, actor=actor, data=_hook_workflow(receiver.hook_url))
    with unit_of_work(db) as uow:
        [execution_id] = services.ingest_event(uow=uow, actor=actor, event=_message()).execution_ids
    with unit_of_work(db, read_only=True) as uow:
        ex = services.get_execution(uow=uow, actor=actor, execution_id=execution_id)
    assert ex.status == "failed", ex.error
    return wf.id, execution_id


def _bodies(db, tenant_id: str) -> list[str]:
    with Session(db) as s:
        return [m.body for m in s.exec(select(OutboxMessage).where(OutboxMessage.tenant_id == tenant_id))]


def test_replay_from_the_failed_step_succeeds_once_the_receiver_is_back(db, studio, receivers):
    receiver = receivers([404, 200])
    _, failed = _failed_execution(db, studio, receiver)
    with unit_of_work(db) as uow:
        out = ops.replay_execution(uow=uow, actor=studio, execution_id=failed, from_step="failed")
    assert out.execution.status == "succeeded" and out.original_id == failed and out.execution.replay_of == failed
    assert [s.action_id for s in out.execution.steps] == ["hook-1", "send-1"]
    assert len(receiver.requests) == 2 and _bodies(db, studio.tenant_id) == ["Danke!"]
    with pytest.raises(Conflict):
        with unit_of_work(db) as uow:
            ops.replay_execution(uow=uow, actor=studio, execution_id=failed)
    with pytest.raises(Conflict):  # only failed executions
        with unit_of_work(db) as uow:
            ops.replay_execution(uow=uow, actor=studio, execution_id=out.execution.id)


def test_a_replayed_execution_names_its_replay_and_refuses_a_second_one(db, studio, other_actor, receivers):
    """Issue 21: the detail knows the replay (so the page offers no second one); the API's 409 says which."""
    _, failed = _failed_execution(db, studio, receivers([404, 200]))
    with unit_of_work(db, read_only=True) as uow:
        assert services.get_execution(uow=uow, actor=studio, execution_id=failed).replayed_by is None
    with unit_of_work(db) as uow:
        replay = ops.replay_execution(uow=uow, actor=studio, execution_id=failed).execution
    with unit_of_work(db, read_only=True) as uow:
        assert services.get_execution(uow=uow, actor=studio, execution_id=failed).replayed_by == replay.id
        assert services.get_execution(uow=uow, actor=studio, execution_id=replay.id).replayed_by is None
    with pytest.raises(Conflict) as exc:
        with unit_of_work(db) as uow:
            ops.replay_execution(uow=uow, actor=studio, execution_id=failed)
    assert exc.value.message == f"execution {failed} was already replayed as {replay.id}"
    with pytest.raises(NotFound):  # another studio learns nothing about it
        with unit_of_work(db, read_only=True) as uow:
            services.get_execution(uow=uow, actor=other_actor, execution_id=failed)


def test_replay_from_the_start_with_the_fixed_url(db, studio, receivers):
    broken, fixed = receivers([500]), receivers([200])
    wf_id, failed = _failed_execution(db, studio, broken)
    with unit_of_work(db) as uow:
        services.update_workflow(
            uow=uow, actor=studio, workflow_id=wf_id, changes={"actions": _hook_workflow(fixed.hook_url)["actions"]}
        )
    with pytest.raises(InvalidInput):
        with unit_of_work(db) as uow:
            ops.replay_execution(uow=uow, actor=studio, execution_id=failed, version="newest")
    with unit_of_work(db) as uow:
        out = ops.replay_execution(uow=uow, actor=studio, execution_id=failed, from_step="start", version="current")
    assert out.execution.status == "succeeded" and len(fixed.requests) == 1
    assert fixed.requests[0].json()["from"] == PHONE
    with Session(db) as s:
        replay = s.get(Execution, out.execution.id)
        assert replay.replay_of == failed and replay.workflow_version == 2


def test_two_concurrent_replays_run_exactly_once(db, studio, receivers):
    receiver = receivers([500, 200])
    _, failed = _failed_execution(db, studio, receiver)
    barrier, results = threading.Barrier(2), []

    def replay():
        barrier.wait()
        try:
            with unit_of_work(db) as uow:
                results.append(ops.replay_execution(uow=uow, actor=studio, execution_id=failed).execution.status)
        except Conflict as exc:
            results.append(exc.__class__.__name__)

    threads = [threading.Thread(target=replay) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == ["Conflict", "succeeded"]
    assert len(receiver.requests) == 2  # the original attempt and one replay
    with Session(db) as s:
        assert len(s.exec(select(Execution).where(Execution.replay_of == failed)).all()) == 1


def _waiting_execution(db, actor) -> str:
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data={
                "name": "Nudge",
                "trigger": {"type": "whatsapp_message", "config": {}},
                "conditions": [],
                "actions": [
                    {
                        "id": "later",
                        "type": "schedule_follow_up",
                        "config": {"delay": 3_600_000, "message": "Noch da?"},
                    },
                    {"id": "wait-1", "type": "wait", "config": {"delay": 60_000}},
                    {"id": "send-1", "type": "send_whatsapp", "config": {"message": "Nach dem Warten"}},
                ],
            },
        )
    with unit_of_work(db) as uow:
        [execution_id] = services.ingest_event(uow=uow, actor=actor, event=_message()).execution_ids
    with unit_of_work(db, read_only=True) as uow:
        assert services.get_execution(uow=uow, actor=actor, execution_id=execution_id).status == "waiting"
    return execution_id


def test_a_cancelled_wait_never_resumes_and_its_follow_up_never_fires(db, studio):
    execution_id = _waiting_execution(db, studio)
    with pytest.raises(InvalidInput) as e:
        with unit_of_work(db) as uow:
            ops.cancel_execution(uow=uow, actor=studio, execution_id=execution_id, reason=" ")
    assert e.value.field == "reason"
    with unit_of_work(db) as uow:
        out = ops.cancel_execution(
            uow=uow, actor=studio, execution_id=execution_id, reason="member called, booked by phone"
        )
    assert out.status == "cancelled" and "booked by phone" in out.error
    later = utcnow() + timedelta(hours=2)
    worker = Worker(db, clock=lambda: later, name="after-cancel")
    worker.run_once()
    assert _bodies(db, studio.tenant_id) == []
    with unit_of_work(db, read_only=True) as uow:
        assert services.get_execution(uow=uow, actor=studio, execution_id=execution_id).status == "cancelled"
    with Session(db) as s:
        assert {d.status for d in s.exec(select(DueWork).where(DueWork.execution_id == execution_id))} == {"cancelled"}
    with pytest.raises(Conflict):
        with unit_of_work(db) as uow:
            ops.cancel_execution(uow=uow, actor=studio, execution_id=execution_id, reason="again")


def test_a_follow_up_claimed_before_the_cancel_is_not_sent(db, studio):
    execution_id = _waiting_execution(db, studio)
    later = utcnow() + timedelta(hours=2)
    worker = Worker(db, clock=lambda: later, name="racer")
    claimed = worker.claim()
    assert {c.kind for c in claimed} == {"follow_up", "resume"}
    with unit_of_work(db) as uow:
        ops.cancel_execution(uow=uow, actor=studio, execution_id=execution_id, reason="too late for the worker")
    for item in claimed:
        worker.handle(item)
    assert _bodies(db, studio.tenant_id) == []
    with unit_of_work(db, read_only=True) as uow:
        assert services.get_execution(uow=uow, actor=studio, execution_id=execution_id).status == "cancelled"


def test_two_concurrent_cancels_cancel_once(db, studio):
    execution_id = _waiting_execution(db, studio)
    barrier, results = threading.Barrier(2), []

    def cancel():
        barrier.wait()
        try:
            with unit_of_work(db) as uow:
                results.append(
                    ops.cancel_execution(uow=uow, actor=studio, execution_id=execution_id, reason="dup").status
                )
        except Conflict:
            results.append("conflict")

    threads = [threading.Thread(target=cancel) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == ["cancelled", "conflict"]


def test_analysts_and_other_studios_cannot_replay_or_cancel(db, studio, other_actor, receivers):
    _, failed = _failed_execution(db, studio, receivers([500]))
    analyst = auth.Actor(tenant_id=studio.tenant_id, role=Role.ANALYST)
    with pytest.raises(PermissionDenied):
        with unit_of_work(db) as uow:
            ops.replay_execution(uow=uow, actor=analyst, execution_id=failed)
    with pytest.raises(PermissionDenied):
        with unit_of_work(db) as uow:
            ops.cancel_execution(uow=uow, actor=analyst, execution_id=failed, reason="x")
    with pytest.raises(NotFound):
        with unit_of_work(db) as uow:
            ops.replay_execution(uow=uow, actor=other_actor, execution_id=failed)
    with pytest.raises(NotFound):
        with unit_of_work(db) as uow:
            ops.cancel_execution(uow=uow, actor=other_actor, execution_id=failed, reason="x")
    with unit_of_work(db, read_only=True) as uow:
        assert ops.search_executions(uow=uow, actor=other_actor).items == []


def test_keyset_pages_filters_csv_and_bulk_replay(db, studio, receivers):
    receiver = receivers([500, 500, 500, 200])
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=studio, data=_hook_workflow(receiver.hook_url))
    for i in range(3):
        with unit_of_work(db) as uow:
            services.ingest_event(uow=uow, actor=studio, event=_message(f"+491511234567{i}"))
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=studio,
            data={
                "name": "Hi",
                "trigger": {"type": "sms_received", "config": {}},
                "conditions": [],
                "actions": [{"id": "s", "type": "send_sms", "config": {"message": "Hi"}}],
            },
        )
    for i in range(4):
        with unit_of_work(db) as uow:
            services.ingest_event(
                uow=uow,
                actor=studio,
                event={"triggerType": "sms_received", "channel": "sms", "from": "+4915199999999", "content": f"m{i}"},
            )
    seen, after = [], None
    while True:
        with unit_of_work(db, read_only=True) as uow:
            page = ops.search_executions(uow=uow, actor=studio, after=after, page_size=3)
        seen += [e.id for e in page.items]
        if not page.next_cursor:
            break
        after = page.next_cursor
    with unit_of_work(db, read_only=True) as uow:
        assert len(seen) == len(set(seen)) == 7 == ops.count_executions(uow=uow, actor=studio)
    f = ops.ExecutionFilter(channel="sms")
    with unit_of_work(db, read_only=True) as uow:
        assert ops.count_executions(uow=uow, actor=studio, filters=f) == 4
    with unit_of_work(db, read_only=True) as uow:
        assert ops.count_executions(uow=uow, actor=studio, filters=ops.ExecutionFilter(contact="0151 12345671")) == 1
    with unit_of_work(db, read_only=True) as uow:
        assert ops.count_executions(uow=uow, actor=studio, filters=ops.ExecutionFilter(status="failed")) == 3
    with unit_of_work(db, read_only=True) as uow:
        assert ops.count_executions(uow=uow, actor=studio, filters=ops.ExecutionFilter(status="test")) == 0
    with pytest.raises(InvalidInput):
        with unit_of_work(db, read_only=True) as uow:
            ops.search_executions(uow=uow, actor=studio, after="garbage!")
    with pytest.raises(InvalidInput):
        with unit_of_work(db, read_only=True) as uow:
            ops.count_executions(uow=uow, actor=studio, filters=ops.ExecutionFilter(status="nope"))
    with unit_of_work(db, read_only=True) as uow:
        lines = "".join(ops.iter_executions_csv(uow=uow, actor=studio, batch=2)).splitlines()
    assert lines[0].startswith("id,started_at") and len(lines) == 8
    with unit_of_work(db, read_only=True) as uow:
        masked = "".join(ops.iter_executions_csv(uow=uow, actor=studio, filters=f, mask=lambda v: "***")).splitlines()
    assert len(masked) == 5 and all(",***," in line for line in masked[1:])
    progress = []
    with unit_of_work(db) as uow:
        result = ops.bulk_replay(
            uow=uow, actor=studio, filters=ops.ExecutionFilter(), on_progress=lambda i, n: progress.append((i, n))
        )
    assert result["selected"] == 3 and len(result["replayed"]) == 3 and progress[-1] == (3, 3)
    with unit_of_work(db) as uow:
        assert (
            ops.bulk_replay(uow=uow, actor=studio, filters=ops.ExecutionFilter())["selected"] == 0
        )  # each replayed once
    with unit_of_work(db, read_only=True) as uow:
        timeline = ops.contact_timeline(uow=uow, actor=studio, contact="+4915199999999")
    assert [i["kind"] for i in timeline].count("received") == 4 and [i["kind"] for i in timeline].count("sent") == 4
