"""Runner semantics on SQLite and PostgreSQL: templates, branches, wiring, retries,
idempotency, chain depth and tenant isolation. Time is injected; nothing sleeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, func, select

from engine import services
from engine.errors import NotFound
from engine.runner import MAX_CHAIN_DEPTH, Runner
from engine.security import auth
from engine.store.models import DueKind, DueWork, EventRecord, Execution, Lead, OutboxMessage, StepRun
from engine.uow import unit_of_work
from engine.worker import Worker
from tests.servers import Receiver

PHONE = "+4915112345678"
T0 = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)


@pytest.fixture
def make_receiver():
    made = []

    def make(statuses=(200,)):
        made.append(Receiver(statuses=statuses))
        return made[-1]

    yield make
    for r in made:
        r.close()


def workflow(
    actions: list[dict], *, trigger: str = "whatsapp_message", conditions: list | None = None, name: str = "Test"
) -> dict:
    return {
        "name": name,
        "trigger": {"type": trigger, "config": {}},
        "conditions": conditions or [],
        "actions": actions,
    }


def send(action_id: str, message: str, **extra) -> dict:
    return {"id": action_id, "type": "send_whatsapp", "config": {"message": message}, **extra}


def ticking(now: list[datetime]):
    """A clock that moves 1 ms per reading, so rows written one after another sort in order."""

    def read() -> datetime:
        now[0] += timedelta(milliseconds=1)
        return now[0]

    return read


@pytest.fixture
def clock(db):
    now = [T0]
    runner = Runner(db, clock=ticking(now))
    worker = Worker(db, clock=ticking(now), runner=runner, name="test-worker")
    return now, runner, worker


def message(content: str = "Hallo", **extra) -> dict:
    return {"triggerType": "whatsapp_message", "channel": "whatsapp", "from": PHONE, "content": content, **extra}


def outbox_bodies(db, tenant_id: str) -> list[str]:
    with Session(db) as s:
        rows = s.exec(
            select(OutboxMessage)
            .where(OutboxMessage.tenant_id == tenant_id)
            .order_by(OutboxMessage.created_at, OutboxMessage.id)
        ).all()
        return [r.body for r in rows]


def steps_of(db, execution_id: str) -> list[StepRun]:
    with Session(db) as s:
        return list(
            s.exec(
                select(StepRun)
                .where(StepRun.execution_id == execution_id)
                .order_by(StepRun.started_at, StepRun.attempt)
            ).all()
        )


def run_one(runner, tenant_id: str, event: dict) -> str:
    [execution_id] = runner.ingest(tenant_id, event).execution_ids
    return execution_id


# --------------------------------------------------------------------------- templates


def test_templates_see_trigger_and_results_of_ids_with_dashes(db, tenant, actor, clock):
    now, runner, worker = clock
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data=workflow(
                [
                    {"id": "wait-1", "type": "wait", "config": {"delay": 60000}},
                    send(
                        "send-1", "Hallo {{trigger.from}}, gewartet: {{results.wait-1.delayMs}} ms, {{ tenant.name }}"
                    ),
                ]
            ),
        )
    execution_id = run_one(runner, tenant.id, message())
    now[0] += timedelta(minutes=2)
    worker.run_once()
    with unit_of_work(db, read_only=True) as uow:
        assert services.get_execution(uow=uow, actor=actor, execution_id=execution_id).status == "succeeded"
    assert outbox_bodies(db, tenant.id) == [f"Hallo {PHONE}, gewartet: 60000 ms, Studio-A"]


def test_unknown_variable_fails_the_step_loudly_and_the_workflow_continues(db, tenant, actor, clock):
    _, runner, _ = clock
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data=workflow(
                [
                    send("send-1", "Hallo {{trigger.nope}}"),
                    send("send-2", "Weiter geht's"),
                ]
            ),
        )
    execution_id = run_one(runner, tenant.id, message())
    with unit_of_work(db, read_only=True) as uow:
        ex = services.get_execution(uow=uow, actor=actor, execution_id=execution_id)
    steps = {s.action_id: s for s in ex.steps}
    assert steps["send-1"].status == "failed"
    assert "unknown variable" in steps["send-1"].error and "nope" in steps["send-1"].error
    assert steps["send-2"].status == "succeeded"
    # Never a silently empty message: only the second one is in the outbox.
    assert outbox_bodies(db, tenant.id) == ["Weiter geht's"]
    # Template errors are not retried; the execution reports the failed step.
    assert ex.status == "failed" and "send-1" in ex.error
    with Session(db) as s:
        assert s.exec(select(DueWork)).all() == []


def test_unknown_result_of_an_action_that_did_not_run_fails_the_step(db, tenant, actor, clock):
    _, runner, _ = clock
    # send-2 exists but has not run yet when send-1 renders.
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data=workflow([send("send-1", "Antwort: {{results.send-2.outboxId}}"), send("send-2", "zwei")]),
        )
    execution_id = run_one(runner, tenant.id, message())
    step = steps_of(db, execution_id)[0]
    assert step.action_id == "send-1" and step.status == "failed" and "send-2" in step.error
    assert outbox_bodies(db, tenant.id) == ["zwei"]


def test_on_error_stop_fails_the_execution_and_later_steps_do_not_run(db, tenant, actor, clock):
    _, runner, _ = clock
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data=workflow(
                [
                    send("send-1", "Hallo {{trigger.nope}}", onError="stop"),
                    send("send-2", "darf nicht kommen"),
                ]
            ),
        )
    execution_id = run_one(runner, tenant.id, message())
    with unit_of_work(db, read_only=True) as uow:
        ex = services.get_execution(uow=uow, actor=actor, execution_id=execution_id)
    assert ex.status == "failed" and ex.finished_at is not None
    assert "send-1" in ex.error
    assert [(s.action_id, s.status) for s in ex.steps] == [("send-1", "failed")]
    assert outbox_bodies(db, tenant.id) == []


# --------------------------------------------------------------------------- branch and wiring


def _branch_workflow() -> dict:
    return workflow(
        [
            {
                "id": "branch-1",
                "type": "branch",
                "config": {
                    "conditions": [{"type": "keyword_match", "operator": "contains", "value": "preis"}],
                    "nextActionId": "send-price",
                },
                "nextActionId": "send-default",
            },
            send("send-price", "Unsere Preise", nextActionId=None),
            send("send-default", "Allgemeine Antwort", nextActionId=None),
        ]
    )


def test_branch_goes_to_its_target_when_the_condition_holds(db, tenant, actor, clock):
    _, runner, _ = clock
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=actor, data=_branch_workflow())
    execution_id = run_one(runner, tenant.id, message("Was ist der Preis?"))
    with unit_of_work(db, read_only=True) as uow:
        ex = services.get_execution(uow=uow, actor=actor, execution_id=execution_id)
    assert [s.action_id for s in ex.steps] == ["branch-1", "send-price"]
    assert ex.results["branch-1"]["matched"] is True and ex.results["branch-1"]["target"] == "send-price"
    assert outbox_bodies(db, tenant.id) == ["Unsere Preise"]


def test_branch_follows_its_own_next_when_the_condition_fails(db, tenant, actor, clock):
    _, runner, _ = clock
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=actor, data=_branch_workflow())
    execution_id = run_one(runner, tenant.id, message("Wann habt ihr offen?"))
    with unit_of_work(db, read_only=True) as uow:
        ex = services.get_execution(uow=uow, actor=actor, execution_id=execution_id)
    assert ex.status == "succeeded"
    assert [s.action_id for s in ex.steps] == ["branch-1", "send-default"]
    assert ex.results["branch-1"]["matched"] is False
    assert ex.results["branch-1"]["explanation"][0]["passed"] is False
    assert outbox_bodies(db, tenant.id) == ["Allgemeine Antwort"]


def test_branch_without_own_next_falls_through_to_the_next_in_the_list(db, tenant, actor, clock):
    _, runner, _ = clock
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data=workflow(
                [
                    {
                        "id": "branch-1",
                        "type": "branch",
                        "config": {
                            "conditions": [{"type": "keyword_match", "operator": "contains", "value": "preis"}],
                            "nextActionId": "send-3",
                        },
                    },
                    send("send-2", "zwei"),
                    send("send-3", "drei"),
                ]
            ),
        )
    run_one(runner, tenant.id, message("Hallo"))
    assert outbox_bodies(db, tenant.id) == ["zwei", "drei"]
    run_one(runner, tenant.id, message("Preis?"))
    assert outbox_bodies(db, tenant.id) == ["zwei", "drei", "drei"]


def test_next_action_id_absent_means_next_in_list_and_null_ends(db, tenant, actor, clock):
    _, runner, _ = clock
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data=workflow(
                [
                    send("send-1", "eins"),  # absent -> send-2
                    send("send-2", "zwei", nextActionId=None),  # null -> end
                    send("send-3", "drei"),
                ]
            ),
        )
    execution_id = run_one(runner, tenant.id, message())
    with unit_of_work(db, read_only=True) as uow:
        ex = services.get_execution(uow=uow, actor=actor, execution_id=execution_id)
    assert ex.status == "succeeded" and ex.actions_executed == 2
    assert [s.action_id for s in ex.steps] == ["send-1", "send-2"]
    assert outbox_bodies(db, tenant.id) == ["eins", "zwei"]


def test_explicit_next_action_id_jumps_over_actions(db, tenant, actor, clock):
    _, runner, _ = clock
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data=workflow(
                [
                    send("send-1", "eins", nextActionId="send-3"),
                    send("send-2", "zwei"),
                    send("send-3", "drei"),
                ]
            ),
        )
    run_one(runner, tenant.id, message())
    assert outbox_bodies(db, tenant.id) == ["eins", "drei"]


# --------------------------------------------------------------------------- retries


def _webhook_workflow(url: str, retry: dict | None = None) -> dict:
    hook = {
        "id": "hook-1",
        "type": "call_webhook",
        "config": {"webhookUrl": url, "method": "POST", "body": {"from": "{{trigger.from}}"}},
    }
    if retry:
        hook["retry"] = retry
    return workflow([hook, send("send-1", "fertig")])


def test_retryable_failure_is_retried_durably_until_it_succeeds(db, tenant_factory, make_receiver):
    tenant = tenant_factory("retry", webhookAllowList=["127.0.0.1"])
    actor = auth.system_actor(tenant.id)
    receiver = make_receiver([503, 503, 503, 200])
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow, actor=actor, data=_webhook_workflow(receiver.hook_url, {"maxAttempts": 4, "backoff": 1})
        )
    now = [T0]
    runner = Runner(db, clock=lambda: now[0])
    worker = Worker(db, clock=lambda: now[0], runner=runner, name="retry-worker")

    execution_id = run_one(runner, tenant.id, message())
    with unit_of_work(db, read_only=True) as uow:
        ex = services.get_execution(uow=uow, actor=actor, execution_id=execution_id)
    assert ex.status == "waiting" and ex.current_action_id == "hook-1"
    with Session(db) as s:
        [due] = s.exec(select(DueWork).where(DueWork.execution_id == execution_id)).all()
    assert due.kind == DueKind.RESUME and due.status == "pending" and due.payload["retry"] == 2
    assert T0 <= due.due_at <= T0 + timedelta(seconds=1)

    for _ in range(10):
        with unit_of_work(db, read_only=True) as uow:
            if services.get_execution(uow=uow, actor=actor, execution_id=execution_id).status != "waiting":
                break
        now[0] += timedelta(minutes=1)
        worker.run_once()
    with unit_of_work(db, read_only=True) as uow:
        ex = services.get_execution(uow=uow, actor=actor, execution_id=execution_id)
    assert ex.status == "succeeded", ex.error
    hook_steps = [s for s in ex.steps if s.action_id == "hook-1"]
    assert [s.attempt for s in hook_steps] == [1, 2, 3, 4]
    assert [s.status for s in hook_steps] == ["failed", "failed", "failed", "succeeded"]
    assert all("503" in s.error for s in hook_steps[:3])
    assert len(receiver.requests) == 4
    # The same idempotency key on every attempt, so the receiver can de-duplicate.
    assert len({r["headers"]["Idempotency-Key"] for r in receiver.requests}) == 1
    assert outbox_bodies(db, tenant.id) == ["fertig"]
    with Session(db) as s:
        dues = s.exec(select(DueWork).where(DueWork.execution_id == execution_id)).all()
    assert len(dues) == 3 and all(d.status == "done" for d in dues)


def test_retries_stop_after_max_attempts(db, tenant_factory, make_receiver):
    tenant = tenant_factory("retry-max", webhookAllowList=["127.0.0.1"])
    actor = auth.system_actor(tenant.id)
    receiver = make_receiver([503])
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow, actor=actor, data=_webhook_workflow(receiver.hook_url, {"maxAttempts": 2, "backoff": 1})
        )
    now = [T0]
    runner = Runner(db, clock=lambda: now[0])
    worker = Worker(db, clock=lambda: now[0], runner=runner, name="retry-worker")
    execution_id = run_one(runner, tenant.id, message())
    for _ in range(5):
        now[0] += timedelta(minutes=1)
        worker.run_once()
    with unit_of_work(db, read_only=True) as uow:
        ex = services.get_execution(uow=uow, actor=actor, execution_id=execution_id)
    assert [s.attempt for s in ex.steps if s.action_id == "hook-1"] == [1, 2]
    assert len(receiver.requests) == 2
    # onError continue (default): the rest runs, the execution reports the failed step.
    assert ex.status == "failed" and outbox_bodies(db, tenant.id) == ["fertig"]


def test_permanent_failure_is_not_retried(db, tenant_factory, make_receiver):
    tenant = tenant_factory("perm", webhookAllowList=["127.0.0.1"])
    actor = auth.system_actor(tenant.id)
    receiver = make_receiver([404])
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow, actor=actor, data=_webhook_workflow(receiver.hook_url, {"maxAttempts": 4, "backoff": 1})
        )
    now = [T0]
    runner = Runner(db, clock=lambda: now[0])
    execution_id = run_one(runner, tenant.id, message())
    with unit_of_work(db, read_only=True) as uow:
        ex = services.get_execution(uow=uow, actor=actor, execution_id=execution_id)
    [hook] = [s for s in ex.steps if s.action_id == "hook-1"]
    assert hook.status == "failed" and hook.attempt == 1 and "404" in hook.error
    assert ex.status == "failed" and outbox_bodies(db, tenant.id) == ["fertig"]
    with Session(db) as s:
        assert s.exec(select(DueWork)).all() == []
    Worker(db, clock=lambda: T0 + timedelta(hours=2), runner=runner).run_once()
    assert len(receiver.requests) == 1


# --------------------------------------------------------------------------- idempotency and chains


def test_same_idempotency_key_runs_once(db, tenant, actor, clock):
    _, runner, _ = clock
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=actor, data=workflow([send("send-1", "einmal")]))
    first = runner.ingest(tenant.id, message(idempotencyKey="msg-123"))
    second = runner.ingest(tenant.id, message(idempotencyKey="msg-123"))
    assert first.duplicate is False and second.duplicate is True
    assert second.event_id == first.event_id and second.execution_ids == first.execution_ids
    assert len(first.execution_ids) == 1
    with Session(db) as s:
        assert s.exec(select(func.count()).select_from(EventRecord)).one() == 1
        assert s.exec(select(func.count()).select_from(Execution)).one() == 1
        assert s.exec(select(func.count()).select_from(StepRun)).one() == 1
    assert outbox_bodies(db, tenant.id) == ["einmal"]
    # Another key (or none) is a new event.
    assert runner.ingest(tenant.id, message(idempotencyKey="msg-124")).duplicate is False
    assert len(outbox_bodies(db, tenant.id)) == 2


def test_idempotency_keys_are_per_tenant(db, tenant_factory, clock):
    _, runner, _ = clock
    a, b = tenant_factory("key-a"), tenant_factory("key-b")
    for t in (a, b):
        with unit_of_work(db) as uow:
            services.create_workflow(uow=uow, actor=auth.system_actor(t.id), data=workflow([send("send-1", t.slug)]))
    ra = runner.ingest(a.id, message(idempotencyKey="same"))
    rb = runner.ingest(b.id, message(idempotencyKey="same"))
    assert not ra.duplicate and not rb.duplicate and ra.event_id != rb.event_id
    assert outbox_bodies(db, a.id) == ["key-a"] and outbox_bodies(db, b.id) == ["key-b"]


def test_create_lead_loop_stops_at_the_chain_depth_limit(db, tenant, actor, clock):
    _, runner, _ = clock
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data=workflow(
                [
                    {
                        "id": "lead-1",
                        "type": "create_lead",
                        "config": {"name": "Loop {{trigger.eventId}}", "email": "{{trigger.eventId}}@x.de"},
                    },
                ],
                trigger="lead_created",
                name="Loop",
            ),
        )
    result = runner.ingest(tenant.id, {"triggerType": "lead_created", "leadId": "seed"})
    assert len(result.execution_ids) == 1

    with Session(db) as s:
        executions = s.exec(select(Execution).where(Execution.tenant_id == tenant.id).order_by(Execution.depth)).all()
        leads = s.exec(select(func.count()).select_from(Lead).where(Lead.tenant_id == tenant.id)).one()
        events = s.exec(select(EventRecord).where(EventRecord.tenant_id == tenant.id)).all()
    assert [e.depth for e in executions] == list(range(MAX_CHAIN_DEPTH + 1))
    assert all(e.status == "succeeded" for e in executions)
    assert leads == MAX_CHAIN_DEPTH + 1
    assert sorted(e.depth for e in events) == list(range(MAX_CHAIN_DEPTH + 1))

    last = executions[-1].context["results"]["lead-1"]
    assert last["created"] is True and last["leadCreatedEvent"]["emitted"] is False
    assert "chain depth limit" in last["leadCreatedEvent"]["reason"]
    for ex in executions[:-1]:
        assert ex.context["results"]["lead-1"]["leadCreatedEvent"]["emitted"] is True


# --------------------------------------------------------------------------- tenant isolation


def test_other_tenants_ids_are_not_found(db, tenant, actor, other_actor):
    with unit_of_work(db) as uow:
        wf = services.create_workflow(uow=uow, actor=actor, data=workflow([send("send-1", "Hallo")]))
    with unit_of_work(db) as uow:
        ex = services.run_workflow(uow=uow, actor=actor, workflow_id=wf.id, trigger_data={"from": PHONE})
    with unit_of_work(db, read_only=True) as uow:
        assert services.get_execution(uow=uow, actor=actor, execution_id=ex.id).id == ex.id
    with pytest.raises(NotFound):
        with unit_of_work(db) as uow:
            services.run_workflow(uow=uow, actor=other_actor, workflow_id=wf.id, trigger_data={"from": PHONE})
    with pytest.raises(NotFound):
        with unit_of_work(db) as uow:
            services.run_workflow(
                uow=uow, actor=other_actor, workflow_id=wf.id, trigger_data={"from": PHONE}, dry_run=True
            )
    with pytest.raises(NotFound):
        with unit_of_work(db, read_only=True) as uow:
            services.get_execution(uow=uow, actor=other_actor, execution_id=ex.id)
    with unit_of_work(db, read_only=True) as uow:
        assert services.list_executions(uow=uow, actor=other_actor).total == 0
    with unit_of_work(db, read_only=True) as uow:
        assert services.list_outbox(uow=uow, actor=other_actor).total == 0
    with unit_of_work(db, read_only=True) as uow:
        assert services.list_executions(uow=uow, actor=actor).total == 1


def test_ingest_for_one_tenant_never_runs_another_tenants_workflows(db, tenant, actor, other_actor, clock):
    _, runner, _ = clock
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=actor, data=workflow([send("send-1", "A")]))
    result = runner.ingest(other_actor.tenant_id, message())
    assert result.execution_ids == []
    assert outbox_bodies(db, tenant.id) == [] and outbox_bodies(db, other_actor.tenant_id) == []
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=other_actor, data=workflow([send("send-1", "B")]))
    [execution_id] = runner.ingest(other_actor.tenant_id, message()).execution_ids
    assert outbox_bodies(db, other_actor.tenant_id) == ["B"] and outbox_bodies(db, tenant.id) == []
    with Session(db) as s:
        assert s.get(Execution, execution_id).tenant_id == other_actor.tenant_id


def test_worker_resumes_each_tenant_with_its_own_data(db, tenant_factory, clock):
    now, runner, worker = clock
    a, b = tenant_factory("iso-a"), tenant_factory("iso-b")
    for t in (a, b):
        with unit_of_work(db) as uow:
            services.create_workflow(
                uow=uow,
                actor=auth.system_actor(t.id),
                data=workflow(
                    [
                        {"id": "wait-1", "type": "wait", "config": {"delay": 1000}},
                        send("send-1", "{{ tenant.slug }}"),
                    ]
                ),
            )
    runner.ingest(a.id, message())
    runner.ingest(b.id, message())
    now[0] += timedelta(seconds=5)
    assert worker.run_once() == 2
    assert outbox_bodies(db, a.id) == ["iso-a"] and outbox_bodies(db, b.id) == ["iso-b"]


def test_skipped_executions_are_purged_after_the_retention(db, tenant_factory):
    from datetime import datetime, timedelta

    from engine import services
    from engine.runner import Runner
    from engine.security.auth import system_actor
    from engine.worker import Worker

    tenant = tenant_factory()
    actor = system_actor(tenant.id)
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
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    runner = Runner(db, clock=lambda: now[0])
    runner.ingest(tenant.id, {"triggerType": "missed_call", "from": "+4917612345678"})
    worker = Worker(db, clock=lambda: now[0], runner=runner)
    now[0] += timedelta(days=29)
    assert worker.purge_skipped(force=True) == 0
    now[0] += timedelta(days=2)
    assert worker.purge_skipped(force=True) == 1
    with unit_of_work(db, read_only=True) as uow:
        assert services.list_executions(uow=uow, actor=actor).total == 0
