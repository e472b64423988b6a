"""Group commit of concurrent ingest calls, on SQLite and PostgreSQL.

Concurrent ``Runner.ingest`` calls share one unit of work and one commit (see
``engine.runner.group_commit``). These tests force several calls into one batch (the first
batch is held until the others have queued) and check that batching changes nothing a
caller or a reader can see: every call gets its own answer, policies that read earlier
writes still see them, a bad request or a failed batch never costs another event, and
nothing is written twice.
"""

from __future__ import annotations

import threading
from collections import Counter

import sqlalchemy as sa
from sqlmodel import Session, func, select

from engine import services
from engine.errors import NotFound
from engine.runner import Runner
from engine.security.auth import system_actor
from engine.store import fast
from engine.store.models import (
    EventRecord,
    Execution,
    Lead,
    OutboxMessage,
    StepRun,
    Workflow,
)
from engine.uow import unit_of_work

SENDERS = [f"+49151{i:08d}" for i in range(40)]


def reply_workflow(**config) -> dict:
    return {
        "name": "Reply",
        "trigger": {"type": "whatsapp_message", "config": {}},
        "conditions": [{"type": "keyword_match", "operator": "contains", "value": "hallo"}],
        "actions": [
            {
                "id": "send-1",
                "type": "send_whatsapp",
                "config": {"message": "Hi {{trigger.from}}!", **config},
                "nextActionId": None,
            }
        ],
    }


def message(i: int, **extra) -> dict:
    return {
        "triggerType": "whatsapp_message",
        "channel": "whatsapp",
        "content": f"Hallo {i}",
        "from": SENDERS[i % 40],
        **extra,
    }


class Batches:
    """Records batch sizes; holds the first batch until ``hold`` more callers have queued, so
    the second batch holds (at least) those ``hold`` callers."""

    def __init__(self, runner: Runner, hold: int) -> None:
        self.sizes: list[int] = []
        #: Set when the first batch is being prepared (its leader holds the group).
        self.leading = threading.Event()
        group = runner.group_commit
        original = group.prepare

        def prepare(batch):
            if not self.sizes and hold:
                self.leading.set()
                group.wait_queued(hold, timeout=10)
            self.sizes.append(len(batch))
            return original(batch)

        group.prepare = prepare


def ingest_concurrently(runner: Runner, calls: list[tuple[str, dict]], batches: Batches) -> list:
    """Run every (tenant id, event) from its own thread; results (or exceptions) in order.

    Call 0 starts first and leads the first batch; the others start once it holds the group,
    so they queue behind it."""
    results: list = [None] * len(calls)

    def call(i: int) -> None:
        try:
            results[i] = runner.ingest(*calls[i])
        except Exception as exc:  # noqa: BLE001 - returned to the test
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(calls))]
    threads[0].start()
    assert batches.leading.wait(10)
    for t in threads[1:]:
        t.start()
    for t in threads:
        t.join(60)
    return results


def count(db, model, *where) -> int:
    with Session(db) as s:
        return s.exec(select(func.count()).select_from(model).where(*where)).one()


def test_concurrent_events_share_commits_and_each_caller_gets_its_own_result(db, tenant, actor):
    with unit_of_work(db) as uow:
        wf = services.create_workflow(uow=uow, actor=actor, data=reply_workflow())
    runner = Runner(db)
    batches = Batches(runner, hold=8)
    results = ingest_concurrently(runner, [(tenant.id, message(i)) for i in range(24)], batches)

    assert not [r for r in results if isinstance(r, Exception)]
    assert batches.sizes[1] >= 8, batches.sizes  # the callers queued behind the held first batch
    assert len({r.event_id for r in results}) == 24
    assert all(len(r.execution_ids) == 1 and not r.duplicate for r in results)
    with Session(db) as s:
        for i, r in enumerate(results):
            ex = s.get(Execution, r.execution_ids[0])
            assert ex.event_id == r.event_id and ex.status == "succeeded"
            assert ex.context["trigger"]["content"] == f"Hallo {i}"  # its own event, not a neighbour's
            [out] = s.exec(select(OutboxMessage).where(OutboxMessage.execution_id == ex.id)).all()
            assert out.body == f"Hi {SENDERS[i]}!" and out.recipient == SENDERS[i]
        workflow_row = s.get(Workflow, wf.id)
        assert (workflow_row.run_count, workflow_row.success_count, workflow_row.error_count) == (24, 24, 0)
    assert count(db, EventRecord, EventRecord.tenant_id == tenant.id) == 24
    assert count(db, StepRun, StepRun.tenant_id == tenant.id) == 24


def test_an_unknown_tenant_in_a_batch_fails_only_its_own_call(db, tenant, actor):
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=actor, data=reply_workflow())
    runner = Runner(db)
    batches = Batches(runner, hold=5)
    calls = [(tenant.id, message(i)) for i in range(6)]
    calls[3] = ("no-such-tenant", message(3))
    results = ingest_concurrently(runner, calls, batches)

    assert batches.sizes[:2] == [1, 5]
    assert isinstance(results[3], NotFound)
    assert all(not isinstance(r, Exception) for i, r in enumerate(results) if i != 3)
    assert count(db, Execution, Execution.status == "succeeded") == 5


def test_the_same_idempotency_key_twice_in_one_batch_runs_once(db, tenant, actor):
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=actor, data=reply_workflow())
    runner = Runner(db)
    batches = Batches(runner, hold=3)
    calls = [(tenant.id, message(i, idempotencyKey="wamid.1" if i in (1, 2) else f"wamid.x{i}")) for i in range(4)]
    results = ingest_concurrently(runner, calls, batches)

    assert batches.sizes[:2] == [1, 3]
    assert not [r for r in results if isinstance(r, Exception)]
    first, second = results[1], results[2]
    assert first.event_id == second.event_id and first.execution_ids == second.execution_ids
    assert sorted([first.duplicate, second.duplicate]) == [False, True]
    assert count(db, EventRecord, EventRecord.idempotency_key == "wamid.1") == 1
    assert count(db, Execution) == 3 and count(db, OutboxMessage) == 3


def test_frequency_cap_sees_messages_written_earlier_in_the_same_batch(db, tenant_factory):
    tenant = tenant_factory(frequencyCap=1)
    # Not a direct reply (those are exempt): every event notifies the same front-desk number.
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=system_actor(tenant.id), data=reply_workflow(recipient="+4930123456"))
    runner = Runner(db)
    batches = Batches(runner, hold=3)
    calls = [(tenant.id, message(i)) for i in range(4)]
    calls[0] = (tenant.id, {**message(0), "content": "no keyword"})  # leads the first batch, sends nothing
    results = ingest_concurrently(runner, calls, batches)

    assert batches.sizes[:2] == [1, 3]
    assert not [r for r in results if isinstance(r, Exception)]
    with Session(db) as s:
        statuses = Counter(m.status for m in s.exec(select(OutboxMessage).where(OutboxMessage.tenant_id == tenant.id)))
    assert statuses == {"recorded": 1, "suppressed": 2}


def test_leads_created_in_one_batch_are_deduplicated(db, tenant, actor):
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data={
                "name": "Lead",
                "trigger": {"type": "missed_call", "config": {}},
                "actions": [
                    {"id": "lead-1", "type": "create_lead", "config": {"name": "Caller", "phone": "{{trigger.from}}"}}
                ],
            },
        )
    runner = Runner(db)
    batches = Batches(runner, hold=4)
    calls = [
        (tenant.id, {"triggerType": "missed_call", "from": "+4915199999999" if i in (1, 2, 3) else SENDERS[i]})
        for i in range(5)
    ]
    results = ingest_concurrently(runner, calls, batches)

    assert batches.sizes[0] == 1 and batches.sizes[1] >= 4  # (lead_created events may join)
    assert not [r for r in results if isinstance(r, Exception)]
    assert count(db, Lead, Lead.tenant_id == tenant.id) == 3  # one for the repeated caller, two others
    assert count(db, Execution, Execution.status == "succeeded") == 5


def test_a_batch_that_fails_to_commit_loses_nothing_and_writes_nothing_twice(db, tenant, actor, monkeypatch):
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=actor, data=reply_workflow())
    runner = Runner(db)
    batches = Batches(runner, hold=5)
    failures = []
    original = fast.FastStatement.executemany

    def flaky(self, target, rows):
        rows = list(rows)
        if self.stmt.table.name == "outbox_messages" and len(rows) > 1 and not failures:
            failures.append(len(rows))
            raise sa.exc.OperationalError("INSERT", {}, Exception("disk I/O error (simulated)"))
        return original(self, target, rows)

    monkeypatch.setattr(fast.FastStatement, "executemany", flaky)
    results = ingest_concurrently(runner, [(tenant.id, message(i)) for i in range(6)], batches)

    assert failures == [5] and batches.sizes[:2] == [1, 5]
    assert not [r for r in results if isinstance(r, Exception)]  # each retried alone, and succeeded
    assert count(db, EventRecord) == 6
    assert count(db, Execution, Execution.status == "succeeded") == 6
    assert count(db, OutboxMessage) == 6 and count(db, StepRun) == 6


def test_one_caller_alone_never_waits_for_company(db, tenant, actor):
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=actor, data=reply_workflow())
    runner = Runner(db)
    batches = Batches(runner, hold=0)
    for i in range(5):
        runner.ingest(tenant.id, message(i))
    assert batches.sizes == [1, 1, 1, 1, 1]
    assert count(db, Execution, Execution.status == "succeeded") == 5
