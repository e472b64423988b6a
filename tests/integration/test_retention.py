"""Retention on SQLite and PostgreSQL: details go after their horizon, summaries after theirs,
counts survive both, pruning works in small batches and never touches another studio's data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import Session, func, select

from engine import services
from engine.errors import InvalidInput, PermissionDenied
from engine.lifecycle.retention import (
    Pruner,
    check_retention,
    execution_counts,
    get_retention,
    set_retention,
)
from engine.runner import Runner
from engine.security.auth import system_actor
from engine.store.models import (
    EventRecord,
    Execution,
    OutboxMessage,
    Role,
    StepRun,
    Workflow,
)
from engine.uow import unit_of_work
from engine.worker import Worker
from tests.uow import in_uow

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
PHONE = "+4915112345678"
REPLY = {
    "name": "Echo",
    "trigger": {"type": "whatsapp_message", "config": {}},
    "conditions": [],
    "actions": [{"id": "reply", "type": "send_whatsapp", "config": {"message": "Du schriebst: {{trigger.content}}"}}],
}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


@pytest.fixture
def setup(db, tenant_factory):
    tenant = tenant_factory()
    actor = system_actor(tenant.id)
    with unit_of_work(db) as uow:
        wf = services.create_workflow(uow=uow, actor=actor, data=REPLY)
    clock = Clock()
    return tenant, actor, wf, clock, Runner(db, clock=clock)


def ingest(runner, tenant_id: str, n: int, text: str = "Was kostet die 10er-Karte?") -> list[str]:
    return [
        runner.ingest(
            tenant_id,
            {"triggerType": "whatsapp_message", "channel": "whatsapp", "from": PHONE, "content": f"{text} #{i}"},
        ).execution_ids[0]
        for i in range(n)
    ]


def count(db, model, *where) -> int:
    with Session(db) as s:
        return s.exec(select(func.count()).select_from(model).where(*where)).one()


def test_details_go_after_their_horizon_and_counts_stay(db, setup):
    tenant, actor, wf, clock, runner = setup
    old = ingest(runner, tenant.id, 3, "alt")
    clock.now += timedelta(days=60)
    new = ingest(runner, tenant.id, 2, "neu")
    before = execution_counts(db, actor)
    clock.now = T0 + timedelta(days=100)  # old ones are 100 days old, new ones 40

    report = Pruner(db, clock=clock, pause=0).run()

    assert (
        report.details["executions"] == 3 and report.details["events"] == 3 and report.details["outbox_messages"] == 3
    )
    assert count(db, StepRun, StepRun.execution_id.in_(old)) == 0
    assert count(db, StepRun, StepRun.execution_id.in_(new)) == 2
    with Session(db) as s:
        for ex in s.exec(select(Execution).where(Execution.id.in_(old))):
            assert ex.status == "succeeded" and "detailsPrunedAt" in ex.context and "trigger" not in ex.context
        assert sorted(m.body for m in s.exec(select(OutboxMessage))) == [
            "",
            "",
            "",
            "Du schriebst: neu #0",
            "Du schriebst: neu #1",
        ]
        assert sorted(e.content or "-" for e in s.exec(select(EventRecord))) == ["-", "-", "-", "neu #0", "neu #1"]
        # The summary stays: who got what on which channel, and when.
        assert {m.recipient for m in s.exec(select(OutboxMessage))} == {PHONE}
    assert execution_counts(db, actor) == before == {"succeeded": 5}
    with unit_of_work(db, read_only=True) as uow:
        assert services.get_workflow(uow=uow, actor=actor, workflow_id=wf.id).run_count == 5
    with unit_of_work(db, read_only=True) as uow:
        assert services.list_executions(uow=uow, actor=actor).total == 5
    with unit_of_work(db, read_only=True) as uow:
        pruned = services.get_execution(uow=uow, actor=actor, execution_id=old[0])
    assert pruned.steps == [] and pruned.details_removed and pruned.status == "succeeded"
    with unit_of_work(db, read_only=True) as uow:
        assert services.get_execution(uow=uow, actor=actor, execution_id=new[0]).details_removed is None
    # A second pass finds nothing left to do (the mark remembers how far it came).
    assert Pruner(db, clock=clock, pause=0).run().total() == 0


def test_summaries_go_after_their_horizon_into_rollups(db, setup):
    tenant, actor, wf, clock, runner = setup
    ingest(runner, tenant.id, 4)
    clock.now += timedelta(days=100)
    ingest(runner, tenant.id, 1)
    with unit_of_work(db, read_only=True) as uow:
        stats_before = services.get_workflow(uow=uow, actor=actor, workflow_id=wf.id)
    clock.now = T0 + timedelta(days=731 + 50)  # the first four are past two years, the last one is not

    report = Pruner(db, clock=clock, pause=0).run()

    assert (
        report.deleted["executions"] == 4 and report.deleted["events"] == 4 and report.deleted["outbox_messages"] == 4
    )
    assert count(db, Execution, Execution.tenant_id == tenant.id) == 1
    assert count(db, StepRun, StepRun.tenant_id == tenant.id) == 0  # 4 deleted with their executions, 1 pruned
    assert execution_counts(db, actor) == {"succeeded": 5}
    assert execution_counts(db, actor, since=T0 - timedelta(days=1), until=T0 + timedelta(days=1)) == {"succeeded": 4}
    assert execution_counts(db, actor, workflow_id=wf.id) == {"succeeded": 5}
    with unit_of_work(db, read_only=True) as uow:
        after = services.get_workflow(uow=uow, actor=actor, workflow_id=wf.id)
    assert (after.run_count, after.success_count) == (stats_before.run_count, stats_before.success_count) == (5, 5)
    with unit_of_work(db, read_only=True) as uow:
        stats = services.workflow_stats(uow=uow, actor=actor)
    assert (stats.total_executions, stats.succeeded, stats.success_rate) == (5, 5, 1.0)
    with unit_of_work(db, read_only=True) as uow:
        assert services.list_workflows(uow=uow, actor=actor).items[0].run_count == 5


def test_pruning_runs_in_small_batches_with_pauses(db, setup):
    tenant, actor, wf, clock, runner = setup
    ingest(runner, tenant.id, 7)
    clock.now += timedelta(days=95)
    pauses: list[float] = []
    report = Pruner(db, clock=clock, batch=3, pause=0.25, sleep=pauses.append).run()
    # 7 rows in batches of 3 = 3 batches per table and kind (executions, outbox, events).
    assert report.batches == 9 and report.details["executions"] == 7
    assert pauses == [0.25] * 9


def test_a_stop_request_leaves_the_rest_for_the_next_pass(db, setup):
    tenant, actor, wf, clock, runner = setup
    ingest(runner, tenant.id, 5)
    clock.now += timedelta(days=95)
    calls = []
    first = Pruner(db, clock=clock, batch=2, pause=0, stop=lambda: len(calls) >= 2, sleep=calls.append).run()
    assert not first.finished and first.details["executions"] == 4
    second = Pruner(db, clock=clock, batch=2, pause=0).run()
    assert second.finished and second.details["executions"] == 1 and second.details["events"] == 5


def test_each_studio_keeps_its_own_retention(db, setup, tenant_factory):
    tenant, actor, wf, clock, runner = setup
    other = tenant_factory()
    other_actor = system_actor(other.id)
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=other_actor, data=REPLY)
    in_uow(db, set_retention, actor=other_actor, details_days=365, summary_days=800)
    ingest(runner, tenant.id, 2)
    ingest(runner, other.id, 2)
    clock.now += timedelta(days=120)
    Pruner(db, clock=clock, pause=0).run()
    assert count(db, StepRun, StepRun.tenant_id == tenant.id) == 0
    assert count(db, StepRun, StepRun.tenant_id == other.id) == 2
    assert (
        in_uow(db, get_retention, actor=other_actor).details_days == 365
        and in_uow(db, get_retention, actor=actor).details_days == 90
    )
    clock.now += timedelta(days=800)  # both studios' executions roll up; counts never mix
    Pruner(db, clock=clock, pause=0).run()
    assert execution_counts(db, actor) == {"succeeded": 2} and execution_counts(db, other_actor) == {"succeeded": 2}
    assert (
        in_uow(db, get_retention, actor=actor).summary_days == 730 and not in_uow(db, get_retention, actor=actor).custom
    )


def test_worker_prunes_and_skipped_purge_keeps_counts(db, setup):
    tenant, actor, wf, clock, runner = setup
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data={
                "name": "Never",
                "trigger": {"type": "missed_call"},
                "conditions": [{"type": "sender_match", "operator": "equals", "value": "nobody"}],
                "actions": [{"id": "a", "type": "wait", "config": {"delay": 1}}],
            },
        )
    runner.ingest(tenant.id, {"triggerType": "missed_call", "from": PHONE})
    ingest(runner, tenant.id, 1)
    clock.now += timedelta(days=95)
    worker = Worker(db, clock=clock, runner=runner)
    assert worker.purge_skipped(force=True) == 1
    assert worker.prune(force=True) == 4  # details of the succeeded execution, its message and both events
    assert execution_counts(db, actor) == {"succeeded": 1, "skipped": 1}
    assert worker.prune() == 0  # not due again for ten minutes


@pytest.mark.parametrize(
    ("details", "summary", "field"),
    [
        (0, 730, "detailsDays"),
        (90, "730", "summaryDays"),
        (90, 30, "summaryDays"),
        (True, 730, "detailsDays"),
        (90, 10**6, "summaryDays"),
    ],
)
def test_bad_retention_names_the_field_and_stores_nothing(db, setup, details, summary, field):
    tenant, actor, *_ = setup
    with pytest.raises(InvalidInput) as exc:
        in_uow(db, set_retention, actor=actor, details_days=details, summary_days=summary)
    assert exc.value.field == field
    assert not in_uow(db, get_retention, actor=actor).custom


def test_only_owners_change_retention(db, setup):
    tenant, *_ = setup
    with pytest.raises(PermissionDenied):
        in_uow(
            db,
            set_retention,
            actor=system_actor(tenant.id).__class__(tenant.id, role=Role.EDITOR),
            details_days=30,
            summary_days=60,
        )
    assert check_retention(30, 60) == (30, 60)


def test_sqlite_gives_freed_pages_back(sqlite_db, tenant_factory):
    db = sqlite_db
    with db.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA auto_vacuum").scalar() == 2  # new files are incremental
    with unit_of_work(db) as uow:
        tenant = services.create_tenant(uow=uow, slug="big", name="Big")
    actor = system_actor(tenant.id)
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=actor, data=REPLY)
    clock = Clock()
    runner = Runner(db, clock=clock)
    ingest(runner, tenant.id, 60, "x" * 4000)
    clock.now += timedelta(days=800)
    report = Pruner(db, clock=clock, pause=0).run()
    assert report.deleted["executions"] == 60 and report.vacuumed_pages > 50
    with db.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA freelist_count").scalar() == 0
        assert conn.execute(sa.select(func.count()).select_from(Workflow.__table__)).scalar() == 1
