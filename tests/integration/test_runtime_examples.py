"""The spec's four example workflows end to end from an event, plus dry and manual runs.

Time is injected (``Runner(db, clock=...)``, ``Worker(db, clock=...)``): nothing sleeps.
Runs on SQLite and PostgreSQL (``db`` fixture).
"""

from __future__ import annotations

import copy
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from engine import services
from engine.outbound.webhooks import SIGNATURE_HEADER, verify_signature
from engine.runner import Runner
from engine.security import auth
from engine.store.models import DueKind, DueWork, EventRecord, Lead, OutboxMessage
from engine.uow import unit_of_work
from engine.worker import Worker
from tests.servers import Receiver

PHONE = "+4915112345678"
# Monday 4 May 2026, summer time in Berlin (UTC+2) and New York (UTC-4).
T0 = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


def example(spec_examples, name: str) -> dict:
    return copy.deepcopy(next(e for e in spec_examples if e["name"] == name))


def clocked(db, start: datetime = T0):
    now = [start]
    runner = Runner(db, clock=lambda: now[0])
    worker = Worker(db, clock=lambda: now[0], runner=runner, name="test-worker")
    return now, runner, worker


def outbox(db, tenant_id: str) -> list[OutboxMessage]:
    with Session(db) as s:
        return list(s.exec(select(OutboxMessage).where(OutboxMessage.tenant_id == tenant_id)).all())


def due_rows(db, tenant_id: str) -> list[DueWork]:
    with Session(db) as s:
        return list(s.exec(select(DueWork).where(DueWork.tenant_id == tenant_id)).all())


# --------------------------------------------------------------------------- missed call -> wait -> WhatsApp


def test_missed_call_waits_five_minutes_then_sends_whatsapp(db, tenant, actor, spec_examples):
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=actor, data=example(spec_examples, "Missed Call Follow-Up"))
    now, runner, worker = clocked(db)

    result = runner.ingest(tenant.id, {"triggerType": "missed_call", "from": PHONE})
    [execution_id] = result.execution_ids
    with unit_of_work(db, read_only=True) as uow:
        ex = services.get_execution(uow=uow, actor=actor, execution_id=execution_id)
    assert ex.status == "waiting" and ex.current_action_id == "send-1"
    [due] = due_rows(db, tenant.id)
    assert due.kind == DueKind.RESUME and due.due_at == T0 + timedelta(minutes=5)

    # Nothing is due yet: no message before the wait is over.
    now[0] = T0 + timedelta(minutes=4)
    worker.run_once()
    assert outbox(db, tenant.id) == []
    with unit_of_work(db, read_only=True) as uow:
        assert services.get_execution(uow=uow, actor=actor, execution_id=execution_id).status == "waiting"

    now[0] = T0 + timedelta(minutes=6)
    assert worker.run_once() == 1
    [msg] = outbox(db, tenant.id)
    assert msg.channel == "whatsapp" and msg.recipient == PHONE and msg.execution_id == execution_id
    assert "angerufen" in msg.body
    with unit_of_work(db, read_only=True) as uow:
        ex = services.get_execution(uow=uow, actor=actor, execution_id=execution_id)
    assert ex.status == "succeeded" and [s.action_id for s in ex.steps] == ["wait-1", "send-1"]
    assert [d.status for d in due_rows(db, tenant.id)] == ["done"]

    # Running the worker again changes nothing.
    now[0] += timedelta(hours=1)
    assert worker.run_once() == 0
    assert len(outbox(db, tenant.id)) == 1


# --------------------------------------------------------------------------- intent training_plan


def _training_plan_event(confidence: float) -> dict:
    return {
        "triggerType": "whatsapp_message",
        "channel": "whatsapp",
        "from": PHONE,
        "content": "Kannst du mir einen Trainingsplan erstellen?",
        "intent": "training_plan",
        "intentConfidence": confidence,
    }


def test_training_plan_runs_above_the_confidence_threshold(db, tenant, actor, spec_examples):
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=actor, data=example(spec_examples, "Training Plan Request"))
    _, runner, _ = clocked(db)

    [execution_id] = runner.ingest(tenant.id, _training_plan_event(0.9)).execution_ids
    with unit_of_work(db, read_only=True) as uow:
        ex = services.get_execution(uow=uow, actor=actor, execution_id=execution_id)
    assert ex.status == "succeeded", ex.error
    assert ex.explanation[0]["passed"] is True
    steps = {s.action_id: s for s in ex.steps}
    assert set(steps) == {"ai-1", "send-1"}
    assert steps["ai-1"].status == "succeeded" and steps["send-1"].status == "succeeded"
    assert steps["ai-1"].input["question"] == "Kannst du mir einen Trainingsplan erstellen?"
    [msg] = outbox(db, tenant.id)
    assert msg.channel == "whatsapp" and msg.recipient == PHONE and "Trainingsplan" in msg.body


def test_training_plan_below_the_threshold_is_skipped_with_an_explanation(db, tenant, actor, spec_examples):
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=actor, data=example(spec_examples, "Training Plan Request"))
    _, runner, _ = clocked(db)

    [execution_id] = runner.ingest(tenant.id, _training_plan_event(0.5)).execution_ids
    with unit_of_work(db, read_only=True) as uow:
        ex = services.get_execution(uow=uow, actor=actor, execution_id=execution_id)
    assert ex.status == "skipped" and ex.steps == [] and ex.actions_executed == 0
    [entry] = [e for e in ex.explanation if e["condition"] == "confidence_threshold"]
    assert entry["passed"] is False and entry["actual"] == 0.5 and entry["expected"] == 0.8
    assert entry["operator"] == "greater_than"
    assert outbox(db, tenant.id) == []


def test_training_plan_ignores_other_intents(db, tenant, actor, spec_examples):
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=actor, data=example(spec_examples, "Training Plan Request"))
    _, runner, _ = clocked(db)
    event = {**_training_plan_event(0.95), "intent": "pricing"}
    assert runner.ingest(tenant.id, event).execution_ids == []


# --------------------------------------------------------------------------- after-hours in the tenant's zone


def _after_hours_at(db, tenant_id: str, moment: datetime) -> str:
    runner = Runner(db, clock=lambda: moment)
    [execution_id] = runner.ingest(
        tenant_id,
        {"triggerType": "whatsapp_message", "channel": "whatsapp", "from": PHONE, "content": "Habt ihr offen?"},
    ).execution_ids
    with Session(db) as s:
        from engine.store.models import Execution

        return s.get(Execution, execution_id).status


def test_after_hours_reply_uses_the_tenant_timezone(db, tenant_factory, spec_examples):
    berlin = tenant_factory("berlin", timezone="Europe/Berlin")
    new_york = tenant_factory("new-york", timezone="America/New_York")
    for t in (berlin, new_york):
        with unit_of_work(db) as uow:
            services.create_workflow(
                uow=uow, actor=auth.system_actor(t.id), data=example(spec_examples, "After Hours Auto-Reply")
            )

    early = datetime(2026, 5, 4, 5, 30, tzinfo=UTC)  # 07:30 Berlin, 01:30 New York
    noon = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)  # 12:00 Berlin, 06:00 New York
    assert _after_hours_at(db, berlin.id, early) == "succeeded"
    assert _after_hours_at(db, berlin.id, noon) == "skipped"
    assert _after_hours_at(db, new_york.id, early) == "succeeded"
    # Same instant, different answer: 06:00 in New York is still before 9.
    assert _after_hours_at(db, new_york.id, noon) == "succeeded"
    afternoon = datetime(2026, 5, 4, 18, 0, tzinfo=UTC)  # 20:00 Berlin, 14:00 New York
    assert _after_hours_at(db, new_york.id, afternoon) == "skipped"

    assert len(outbox(db, berlin.id)) == 1 and len(outbox(db, new_york.id)) == 2
    with Session(db) as s:
        from engine.store.models import Execution

        skipped = s.exec(select(Execution).where(Execution.tenant_id == berlin.id, Execution.status == "skipped")).one()
    [entry] = skipped.explanation
    assert entry["condition"] == "time_range" and entry["actual"] == 12 and entry["passed"] is False


def test_after_hours_in_winter_time(db, tenant, spec_examples):
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow, actor=auth.system_actor(tenant.id), data=example(spec_examples, "After Hours Auto-Reply")
        )
    # 07:30 UTC in January is 08:30 in Berlin (UTC+1): before 9.
    assert _after_hours_at(db, tenant.id, datetime(2026, 1, 12, 7, 30, tzinfo=UTC)) == "succeeded"
    # 08:30 UTC is 09:30 in Berlin.
    assert _after_hours_at(db, tenant.id, datetime(2026, 1, 12, 8, 30, tzinfo=UTC)) == "skipped"


# --------------------------------------------------------------------------- lead created -> webhook -> follow-up


def _lead_webhook_workflow(db, actor, spec_examples, url: str):
    with unit_of_work(db) as uow:
        wf = services.create_workflow(uow=uow, actor=actor, data=example(spec_examples, "Lead Qualification Webhook"))
    actions = copy.deepcopy(wf.actions)
    actions[0]["config"]["webhookUrl"] = url
    with unit_of_work(db) as uow:
        return services.update_workflow(uow=uow, actor=actor, workflow_id=wf.id, changes={"actions": actions})


def test_lead_created_calls_the_signed_webhook_and_schedules_a_follow_up(db, tenant_factory, spec_examples, receiver):
    tenant = tenant_factory("leads", webhookAllowList=["127.0.0.1"])
    actor = auth.system_actor(tenant.id)
    wf = _lead_webhook_workflow(db, actor, spec_examples, receiver.hook_url)
    assert wf.version == 2
    now, runner, worker = clocked(db)

    result = runner.ingest(tenant.id, {"triggerType": "lead_created", "leadId": "lead-42", "from": PHONE})
    [execution_id] = result.execution_ids
    with unit_of_work(db, read_only=True) as uow:
        ex = services.get_execution(uow=uow, actor=actor, execution_id=execution_id)
    assert ex.status == "succeeded", ex.error
    assert [s.action_id for s in ex.steps] == ["webhook-1", "followup-1"]
    assert ex.results["webhook-1"]["status"] == 200

    # The receiver got one signed request whose signature verifies with the tenant's secret.
    [request] = receiver.requests
    assert json.loads(request["body"]) == {"leadId": "lead-42", "source": "pilar_systems"}
    header = request["headers"][SIGNATURE_HEADER]
    secret = __import__("engine.services.studio_settings", fromlist=["x"]).signing_secrets(db, actor.tenant_id, {})[0]
    assert verify_signature(secret, header, request["body"], now=int(time.time()))
    assert not verify_signature("wrong-secret", header, request["body"], now=int(time.time()))

    # A durable follow-up, due in 24 hours; nothing in the outbox yet.
    [due] = due_rows(db, tenant.id)
    assert due.kind == DueKind.FOLLOW_UP and due.due_at == T0 + timedelta(hours=24) and due.status == "pending"
    assert outbox(db, tenant.id) == []

    now[0] = T0 + timedelta(hours=23, minutes=59)
    worker.run_once()
    assert outbox(db, tenant.id) == []

    now[0] = T0 + timedelta(hours=24)
    assert worker.run_once() == 1
    [msg] = outbox(db, tenant.id)
    assert msg.body == "Follow-up: Neuer Lead qualifizieren" and msg.recipient == PHONE
    assert msg.execution_id == execution_id
    assert [d.status for d in due_rows(db, tenant.id)] == ["done"]
    now[0] += timedelta(days=1)
    worker.run_once()
    assert len(outbox(db, tenant.id)) == 1 and len(receiver.requests) == 1


def test_webhook_to_loopback_is_blocked_without_the_allow_list(db, tenant, actor, spec_examples, receiver):
    _lead_webhook_workflow(db, actor, spec_examples, receiver.hook_url)
    _, runner, _ = clocked(db)
    [execution_id] = runner.ingest(tenant.id, {"triggerType": "lead_created", "leadId": "l1"}).execution_ids
    with unit_of_work(db, read_only=True) as uow:
        ex = services.get_execution(uow=uow, actor=actor, execution_id=execution_id)
    steps = {s.action_id: s for s in ex.steps}
    assert steps["webhook-1"].status == "failed" and receiver.requests == []
    # onError defaults to continue: the follow-up is still scheduled; no retry for a blocked address.
    assert steps["followup-1"].status == "succeeded"
    assert [d.kind for d in due_rows(db, tenant.id)] == ["follow_up"]


# --------------------------------------------------------------------------- dry run and manual run


def test_dry_run_of_the_lead_webhook_example_has_no_side_effects(db, tenant_factory, spec_examples, receiver):
    tenant = tenant_factory("dry", webhookAllowList=["127.0.0.1"])
    actor = auth.system_actor(tenant.id)
    wf = _lead_webhook_workflow(db, actor, spec_examples, receiver.hook_url)
    create = {
        "id": "lead-1",
        "type": "create_lead",
        "config": {"name": "Dry Run", "email": "dry@example.de"},
        "nextActionId": "send-1",
    }
    send = {"id": "send-1", "type": "send_whatsapp", "config": {"message": "Hallo {{trigger.from}}"}}
    actions = copy.deepcopy(wf.actions)
    actions[1]["nextActionId"] = "lead-1"
    with unit_of_work(db) as uow:
        services.update_workflow(uow=uow, actor=actor, workflow_id=wf.id, changes={"actions": actions + [create, send]})

    with unit_of_work(db) as uow:
        ex = services.run_workflow(
            uow=uow, actor=actor, workflow_id=wf.id, trigger_data={"leadId": "lead-7", "from": PHONE}, dry_run=True
        )
    assert ex.mode == "dry_run" and ex.status == "succeeded", ex.error
    assert [s.action_id for s in ex.steps] == ["webhook-1", "followup-1", "lead-1", "send-1"]
    assert all(s.status == "simulated" for s in ex.steps)
    assert receiver.requests == []
    assert outbox(db, tenant.id) == []
    assert due_rows(db, tenant.id) == []
    with Session(db) as s:
        assert s.exec(select(Lead).where(Lead.tenant_id == tenant.id)).all() == []
        assert s.exec(select(EventRecord).where(EventRecord.tenant_id == tenant.id)).all() == []
    assert ex.results["send-1"]["message"] == f"Hallo {PHONE}"
    # A dry run does not count as a run of the workflow.
    with unit_of_work(db, read_only=True) as uow:
        assert services.get_workflow(uow=uow, actor=actor, workflow_id=wf.id).run_count == 0


def test_manual_run_with_bypass_conditions_runs_a_workflow_whose_conditions_fail(db, tenant, actor):
    with unit_of_work(db) as uow:
        wf = services.create_workflow(
            uow=uow,
            actor=actor,
            data={
                "name": "Only for zebras",
                "trigger": {"type": "whatsapp_message", "config": {}},
                "conditions": [{"type": "keyword_match", "operator": "contains", "value": "zebra"}],
                "actions": [{"id": "send-1", "type": "send_whatsapp", "config": {"message": "Hi"}}],
            },
        )
    data = {"from": PHONE, "content": "Hallo"}
    with unit_of_work(db) as uow:
        skipped = services.run_workflow(uow=uow, actor=actor, workflow_id=wf.id, trigger_data=data)
    assert skipped.status == "skipped" and skipped.mode == "manual" and skipped.steps == []
    assert skipped.explanation[0]["passed"] is False

    with unit_of_work(db) as uow:
        ran = services.run_workflow(uow=uow, actor=actor, workflow_id=wf.id, trigger_data=data, bypass_conditions=True)
    assert ran.status == "succeeded" and ran.mode == "manual"
    assert [s.status for s in ran.steps] == ["succeeded"]
    assert any(e["condition"] == "bypass" for e in ran.explanation)
    [msg] = outbox(db, tenant.id)
    assert msg.recipient == PHONE and msg.execution_id == ran.id
