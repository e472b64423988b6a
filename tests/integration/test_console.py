"""The test console (engine/services/console.py) on SQLite and PostgreSQL: test mode delivers,
calls and counts nothing; every decision is reported; time travel resumes exactly the
conversation's items once, through the worker."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from engine import services
from engine.errors import InvalidInput, NotFound, PermissionDenied
from engine.security.auth import Actor, system_actor
from engine.services import console, scenarios
from engine.services.console import ConsoleInput, TestContact
from engine.store.models import DueWork, EventRecord, Execution, OutboxMessage, Role
from engine.uow import unit_of_work
from engine.worker import Worker
from tests.servers import Receiver
from tests.uow import in_uow

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def _wf(name, actions, trigger="whatsapp_message", conditions=(), config=None):
    return {
        "name": name,
        "trigger": {"type": trigger, "config": config or {}},
        "conditions": list(conditions),
        "actions": actions,
    }


def _say(db, actor, contact, text, channel="whatsapp", **kw):
    return in_uow(
        db,
        console.send,
        actor=actor,
        contact=contact,
        inp=ConsoleInput(kind="message", channel=channel, text=text),
        **kw,
    )


def _count(db, model, **where):
    with Session(db) as s:
        stmt = select(sa.func.count()).select_from(model)
        for key, value in where.items():
            stmt = stmt.where(getattr(model, key) == value)
        return s.exec(stmt).one()


def test_test_mode_delivers_nothing_and_counts_nothing(db, tenant_factory, receiver):
    tenant = tenant_factory(
        channels={
            "whatsapp": {"adapter": "whatsapp_cloud", "baseUrl": receiver.url, "phoneNumberId": "1", "accessToken": "t"}
        },
        frequencyCap=1,
    )
    actor = system_actor(tenant.id)
    with unit_of_work(db) as uow:
        wf = services.create_workflow(
            uow=uow,
            actor=actor,
            data=_wf(
                "Echo",
                [
                    {
                        "id": "send-1",
                        "type": "send_whatsapp",
                        "config": {"message": "Du schriebst: {{trigger.content}}", "recipient": "+4915199999999"},
                    }
                ],
            ),
        )
    contact = console.new_contact()
    report = _say(db, actor, contact, "Hallo")
    assert report.is_test and [d.outcome for d in report.decisions] == ["ran"]
    (reply,) = report.replies
    assert reply.body == "Du schriebst: Hallo" and reply.status == "simulated"
    with Session(db) as s:
        row = s.get(OutboxMessage, reply.outbox_id)
        assert row.is_test and row.adapter == "outbox"
        assert s.get(EventRecord, report.event_id).is_test
        assert s.get(Execution, report.decisions[0].execution_id).is_test
        assert s.exec(select(DueWork)).all() == []  # nothing queued for delivery
    Worker(db, name="t").run_once()
    assert receiver.requests == []
    # No counter, no stat moved.
    with unit_of_work(db, read_only=True) as uow:
        assert services.get_workflow(uow=uow, actor=actor, workflow_id=wf.id).run_count == 0
    with unit_of_work(db, read_only=True) as uow:
        assert services.workflow_stats(uow=uow, actor=actor).total_executions == 0
    # A real message to the same recipient is not capped by the test message (cap 1 per day) ...
    with unit_of_work(db) as uow:
        live = services.ingest_event(
            uow=uow,
            actor=actor,
            event={"triggerType": "whatsapp_message", "channel": "whatsapp", "content": "Hallo", "from": contact.phone},
        )
    with Session(db) as s:
        live_row = s.exec(select(OutboxMessage).where(OutboxMessage.execution_id == live.execution_ids[0])).one()
    assert live_row.status == "pending" and not live_row.is_test
    with unit_of_work(db, read_only=True) as uow:
        assert services.get_workflow(uow=uow, actor=actor, workflow_id=wf.id).run_count == 1
    # ... and a second test message is capped only by the first test message.
    second = _say(db, actor, contact, "Noch was")
    assert second.replies[0].status == "suppressed"


def test_test_mode_calls_no_webhook_unless_asked(db, tenant_factory, receiver):
    tenant = tenant_factory(webhookAllowList=["127.0.0.1"])
    actor = system_actor(tenant.id)
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data=_wf(
                "Hook",
                [
                    {
                        "id": "hook-1",
                        "type": "call_webhook",
                        "config": {"webhookUrl": receiver.url + "/crm", "body": {"x": 1}},
                    }
                ],
                trigger="web_chat",
            ),
        )
    contact = console.new_contact()
    report = _say(db, actor, contact, "Hi", channel="web")
    (step,) = report.decisions[0].steps
    assert step.output["simulated"] is True and receiver.requests == []
    _say(db, actor, contact, "Hi again", channel="web", real_calls=True)
    assert len(receiver.requests) == 1


def test_every_workflow_is_reported_with_why(db, tenant, actor, spec_examples):
    with unit_of_work(db) as uow:
        services.import_workflows(uow=uow, actor=actor, items=spec_examples)
    contact = console.new_contact()
    sunday_night = datetime(2026, 11, 29, 7, 30, tzinfo=BERLIN)  # before 9: the after-hours reply runs
    with unit_of_work(db) as uow:
        report = console.send(uow=uow, actor=actor, contact=contact, inp=ConsoleInput(text="Hallo", at=sunday_night))
    by_name = {d.workflow_name: d for d in report.decisions}
    assert by_name["After Hours Auto-Reply"].outcome == "ran"
    training = by_name["Training Plan Request"]
    assert training.outcome == "skipped" and "training_plan" in training.reasons[0]
    assert set(report.other_triggers) == {"missed_call", "lead_created"}
    assert report.at.astimezone(BERLIN).hour == 7 and report.replies[0].at.astimezone(BERLIN).hour == 7
    # At 10:00 the same message is skipped with the condition in words.
    with unit_of_work(db) as uow:
        later = console.send(
            uow=uow, actor=actor, contact=contact, inp=ConsoleInput(text="Hallo", at=sunday_night.replace(hour=10))
        )
    after = {d.workflow_name: d for d in later.decisions}["After Hours Auto-Reply"]
    assert after.outcome == "skipped" and "failed" in after.reasons[0] and later.replies == []


@pytest.mark.parametrize("channel", ["voice", "whatsapp"])
def test_training_plan_request_is_recognised(db, tenant, actor, spec_examples, channel):
    with unit_of_work(db) as uow:
        services.import_workflows(uow=uow, actor=actor, items=spec_examples)
    report = _say(db, actor, console.new_contact(), "Ich möchte einen Trainingsplan", channel=channel)
    assert report.intent == "training_plan" and report.intent_confidence > 0.8 and report.intent_used
    ran = [d for d in report.decisions if d.outcome == "ran"]
    assert [d.workflow_name for d in ran] == ["Training Plan Request"]
    assert ran[0].steps[0].output.get("provider") and report.replies[0].ai_provider


def test_fast_forward_resumes_exactly_this_conversation_once(db, tenant, actor, spec_examples):
    with unit_of_work(db) as uow:
        services.import_workflows(uow=uow, actor=actor, items=spec_examples)
    a, b = console.new_contact(), console.new_contact()
    for contact in (a, b):
        with unit_of_work(db) as uow:
            report = console.send(uow=uow, actor=actor, contact=contact, inp=ConsoleInput(kind="missed_call"))
        assert report.decisions[0].status == "waiting" and report.replies == []
    with unit_of_work(db, read_only=True) as uow:
        (item,) = console.pending_items(uow=uow, actor=actor, contact=a)
    assert item.kind == "resume" and item.workflow_name == "Missed Call Follow-Up"
    with unit_of_work(db) as uow:
        handled = console.fast_forward(uow=uow, actor=actor, contact=a, all_items=True)
    assert [h.id for h in handled] == [item.id]
    with unit_of_work(db, read_only=True) as uow:
        conv = console.conversation(uow=uow, actor=actor, contact=a)
    (turn,) = conv.turns
    assert [r.body[:6] for r in turn.replies] == ["Hallo!"] and conv.pending == []
    assert turn.decisions[0].status == "succeeded" and turn.decisions[0].fast_forwarded
    # The follow-up is dated at the due time (5 minutes after the call), not now.
    assert turn.replies[0].at - turn.at >= timedelta(minutes=5)
    # B untouched; A again: nothing more.
    with unit_of_work(db, read_only=True) as uow:
        assert len(console.pending_items(uow=uow, actor=actor, contact=b)) == 1
    with unit_of_work(db) as uow:
        assert console.fast_forward(uow=uow, actor=actor, contact=a, all_items=True) == []
    assert _count(db, OutboxMessage) == 1


def test_follow_ups_and_quiet_hours_in_test_mode(db, tenant_factory):
    tenant = tenant_factory(quietHours={"start": "21:00", "end": "08:00"})
    actor = system_actor(tenant.id)
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data=_wf(
                "Later",
                [
                    {"id": "send-1", "type": "send_whatsapp", "config": {"message": "Sofort"}},
                    {
                        "id": "f-1",
                        "type": "schedule_follow_up",
                        "config": {"delay": 3_600_000, "message": "Eine Stunde später"},
                    },
                ],
            ),
        )
    contact = console.new_contact()
    night = datetime(2026, 11, 29, 22, 0, tzinfo=BERLIN)
    with unit_of_work(db) as uow:
        report = console.send(uow=uow, actor=actor, contact=contact, inp=ConsoleInput(text="Hallo", at=night))
    # A direct reply is exempt from quiet hours; the follow-up an hour later is not.
    assert report.replies[0].status == "simulated"
    with unit_of_work(db, read_only=True) as uow:
        kinds = [p.kind for p in console.pending_items(uow=uow, actor=actor, contact=contact)]
    assert kinds == ["follow_up"]
    with unit_of_work(db) as uow:
        console.fast_forward(uow=uow, actor=actor, contact=contact)
    with unit_of_work(db, read_only=True) as uow:
        pending = console.pending_items(uow=uow, actor=actor, contact=contact)
    assert [p.kind for p in pending] == ["deliver"] and pending[0].due_at.astimezone(BERLIN).hour == 8
    with unit_of_work(db) as uow:
        console.fast_forward(uow=uow, actor=actor, contact=contact, all_items=True)
    with unit_of_work(db, read_only=True) as uow:
        replies = console.conversation(uow=uow, actor=actor, contact=contact).turns[0].replies
    assert [(r.body, r.status) for r in replies] == [("Sofort", "simulated"), ("Eine Stunde später", "simulated")]
    with Session(db) as s:
        assert all(m.is_test for m in s.exec(select(OutboxMessage)).all())


def test_other_triggers_and_chains(db, tenant_factory):
    tenant = tenant_factory()
    actor = system_actor(tenant.id)
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data=_wf(
                "Welcome lead",
                [
                    {
                        "id": "send-1",
                        "type": "send_email",
                        "config": {
                            "message": "Willkommen {{trigger.name}}",
                            "recipient": "{{trigger.email}}",
                            "subject": "Hallo",
                        },
                    }
                ],
                trigger="lead_created",
            ),
        )
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data=_wf(
                "Booked",
                [{"id": "send-1", "type": "send_sms", "config": {"message": "Bis {{trigger.className}}!"}}],
                trigger="booking_created",
            ),
        )
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data=_wf(
                "Chat to lead",
                [{"id": "lead-1", "type": "create_lead", "config": {"name": "Chat", "email": "chat@example.com"}}],
                trigger="web_chat",
            ),
        )
    contact = console.new_contact("Anna")
    with unit_of_work(db) as uow:
        lead = console.send(uow=uow, actor=actor, contact=contact, inp=ConsoleInput(kind="lead", lead_name="Anna B"))
    assert lead.replies[0].subject == "Hallo" and lead.replies[0].body == "Willkommen Anna B"
    with unit_of_work(db) as uow:
        booking = console.send(
            uow=uow, actor=actor, contact=contact, inp=ConsoleInput(kind="booking", class_name="Yin Yoga")
        )
    assert booking.replies[0].body == "Bis Yin Yoga!" and booking.replies[0].channel == "sms"
    chat = _say(db, actor, contact, "Ich will Mitglied werden", channel="web")
    chained = [d for d in chat.decisions if d.chained]
    assert [d.workflow_name for d in chained] == ["Welcome lead"]
    with Session(db) as s:
        assert s.exec(select(sa.func.count()).select_from(sa.table("leads"))).one() == 0
        assert s.exec(select(sa.func.count()).select_from(sa.table("bookings"))).one() == 0


def test_bad_input_is_refused_by_field_and_nothing_is_stored(db, tenant, actor):
    contact = console.new_contact()
    cases = [
        (ConsoleInput(text="   "), "text"),
        (ConsoleInput(text="x" * 10_001), "text"),
        (ConsoleInput(kind="booking"), "className"),
        (ConsoleInput(kind="schedule"), "workflowId"),
        (ConsoleInput(kind="lead", lead_email="nope"), "leadEmail"),
    ]
    for inp, field in cases:
        with pytest.raises(InvalidInput) as info:
            with unit_of_work(db) as uow:
                console.send(uow=uow, actor=actor, contact=contact, inp=inp)
        assert info.value.field == field
    with pytest.raises(InvalidInput) as info:
        with unit_of_work(db) as uow:
            console.send(
                uow=uow,
                actor=actor,
                contact=TestContact(phone="12", email="a@example.com"),
                inp=ConsoleInput(text="Hi"),
            )
    assert info.value.field == "contact.phone"
    assert _count(db, EventRecord) == 0
    # Long, emoji and right-to-left text run normally.
    for text in ("x" * 5000, "💪🧘‍♀️ Hallo 🙏", "مرحبا، أريد خطة تدريب"):
        assert _say(db, actor, contact, text).text == text


def test_roles_and_tenants(db, tenant, actor, other_actor):
    contact = console.new_contact()
    report = _say(db, actor, contact, "Hallo")
    analyst = Actor(tenant_id=tenant.id, user_id=None, role=Role.ANALYST)
    with pytest.raises(PermissionDenied):
        _say(db, analyst, contact, "Hallo")
    with unit_of_work(db, read_only=True) as uow:
        assert console.conversation(uow=uow, actor=analyst, contact=contact).turns[0].event_id == report.event_id
    with pytest.raises(NotFound):
        with unit_of_work(db, read_only=True) as uow:
            console.turn_report(uow=uow, actor=other_actor, event_id=report.event_id)
    with unit_of_work(db, read_only=True) as uow:
        assert console.conversation(uow=uow, actor=other_actor, contact=contact).turns == []
    with pytest.raises(PermissionDenied):
        with unit_of_work(db) as uow:
            console.fast_forward(uow=uow, actor=analyst, contact=contact)


def test_schedule_tick_of_a_scheduled_workflow(db, tenant, actor):
    with unit_of_work(db) as uow:
        wf = services.create_workflow(
            uow=uow,
            actor=actor,
            data=_wf(
                "Daily",
                [
                    {
                        "id": "send-1",
                        "type": "send_sms",
                        "config": {"message": "Guten Morgen", "recipient": "+4915112345678"},
                    }
                ],
                trigger="time_based",
                config={"schedule": "0 8 * * *"},
            ),
        )
    contact = console.new_contact()
    with unit_of_work(db) as uow:
        report = console.send(
            uow=uow, actor=actor, contact=contact, inp=ConsoleInput(kind="schedule", workflow_id=wf.id)
        )
    assert report.trigger_type == "time_based" and report.replies[0].body == "Guten Morgen"
    with unit_of_work(db, read_only=True) as uow:
        assert services.get_workflow(uow=uow, actor=actor, workflow_id=wf.id).run_count == 0


# --------------------------------------------------------------------------- scenarios


def _missed_call_scenario(db, actor, spec_examples):
    with unit_of_work(db) as uow:
        services.import_workflows(uow=uow, actor=actor, items=spec_examples)
    contact = console.new_contact()
    with unit_of_work(db) as uow:
        console.send(uow=uow, actor=actor, contact=contact, inp=ConsoleInput(kind="missed_call"))
    with unit_of_work(db) as uow:
        console.fast_forward(uow=uow, actor=actor, contact=contact, all_items=True)
    with unit_of_work(db, read_only=True) as uow:
        conv = console.conversation(uow=uow, actor=actor, contact=contact)
    steps = scenarios.steps_from(conv)
    assert [s["kind"] for s in steps] == ["missed_call", "skip_all"]
    offered = scenarios.expectations_from(conv)
    assert {"kind": "ran", "workflow": "Missed Call Follow-Up", "turn": 0} in offered
    expect = [{"kind": "ran", "workflow": "Missed Call Follow-Up"}, {"kind": "sent", "contains": "angerufen"}]
    with unit_of_work(db) as uow:
        return scenarios.save_scenario(
            uow=uow, actor=actor, data={"name": "Missed call gets a follow-up", "steps": steps, "expectations": expect}
        )


def test_scenario_passes_then_fails_against_a_draft(db, tenant, actor, spec_examples):
    sc = _missed_call_scenario(db, actor, spec_examples)
    with unit_of_work(db) as uow:
        (result,) = scenarios.run_all(uow=uow, actor=actor)
    assert result.passed and result.failures == []
    with unit_of_work(db, read_only=True) as uow:
        assert scenarios.get_scenario(uow=uow, actor=actor, scenario_id=sc.id).status == "pass"
    with unit_of_work(db, read_only=True) as uow:
        wf = next(w for w in services.list_workflows(uow=uow, actor=actor).items if w.name == "Missed Call Follow-Up")
    with unit_of_work(db, read_only=True) as uow:
        draft = services.get_workflow(uow=uow, actor=actor, workflow_id=wf.id).definition
    draft["actions"][1]["config"]["message"] = "Schön, dass du dich meldest."
    with unit_of_work(db) as uow:
        failing = scenarios.run_scenario(uow=uow, actor=actor, scenario_id=sc.id, drafts={wf.id: draft})
    assert not failing.passed and failing.draft
    assert "angerufen" in failing.failures[0] and "Schön, dass du dich meldest" in failing.failures[0]
    # The draft was not saved and the stored result is still the last real run.
    with unit_of_work(db, read_only=True) as uow:
        assert (
            services.get_workflow(uow=uow, actor=actor, workflow_id=wf.id)
            .definition["actions"][1]["config"]["message"]
            .startswith("Hallo!")
        )
    with unit_of_work(db, read_only=True) as uow:
        assert scenarios.get_scenario(uow=uow, actor=actor, scenario_id=sc.id).status == "pass"
    # A disabled draft: the workflow is not considered at all.
    with unit_of_work(db) as uow:
        failing = scenarios.run_scenario(
            uow=uow, actor=actor, scenario_id=sc.id, drafts={wf.id: {**draft, "enabled": False}}
        )
    assert "runs, but it was skipped" in failing.failures[0]


def test_scenario_fail_is_stored_and_names_are_per_studio(db, tenant, actor, other_actor, spec_examples):
    sc = _missed_call_scenario(db, actor, spec_examples)
    with unit_of_work(db, read_only=True) as uow:
        wf = next(w for w in services.list_workflows(uow=uow, actor=actor).items if w.name == "Missed Call Follow-Up")
    with unit_of_work(db) as uow:
        services.set_enabled(uow=uow, actor=actor, workflow_id=wf.id, enabled=False)
    with unit_of_work(db) as uow:
        (result,) = scenarios.run_all(uow=uow, actor=actor)
    with unit_of_work(db, read_only=True) as uow:
        assert not result.passed and scenarios.get_scenario(uow=uow, actor=actor, scenario_id=sc.id).status == "fail"
    with pytest.raises(NotFound):
        with unit_of_work(db, read_only=True) as uow:
            scenarios.get_scenario(uow=uow, actor=other_actor, scenario_id=sc.id)
    with unit_of_work(db, read_only=True) as uow:
        assert scenarios.list_scenarios(uow=uow, actor=other_actor) == []
    from engine.errors import Conflict

    with pytest.raises(Conflict):
        with unit_of_work(db) as uow:
            scenarios.save_scenario(
                uow=uow, actor=actor, data={"name": sc.name, "steps": sc.steps, "expectations": sc.expectations}
            )
    with pytest.raises(InvalidInput) as info:
        with unit_of_work(db) as uow:
            scenarios.save_scenario(
                uow=uow, actor=actor, data={"name": "x", "steps": [], "expectations": sc.expectations}
            )
    assert info.value.field == "steps"
    analyst = Actor(tenant_id=tenant.id, user_id=None, role=Role.ANALYST)
    with unit_of_work(db, read_only=True) as uow:
        assert scenarios.list_scenarios(uow=uow, actor=analyst)[0].status == "fail"
    with pytest.raises(PermissionDenied):
        with unit_of_work(db) as uow:
            scenarios.run_all(uow=uow, actor=analyst)


def test_demo_studio_scenarios_pass_on_the_seed(sqlite_db):
    from engine.demo.seed import DEMO_SCENARIOS, init

    out = init(sqlite_db, demo_email="owner@demo.example", demo_password="a-long-password-1")
    actor = system_actor(out["tenant_id"])
    with unit_of_work(sqlite_db) as uow:
        results = scenarios.run_all(uow=uow, actor=actor)
    assert len(results) == len(DEMO_SCENARIOS)
    assert [r.failures for r in results if not r.passed] == []


def test_live_mode_counts_and_plans_show_as_plans(db, tenant, actor):
    with unit_of_work(db) as uow:
        wf = services.create_workflow(
            uow=uow,
            actor=actor,
            data=_wf(
                "Plan",
                [
                    {"id": "plan-1", "type": "generate_workout_plan", "config": {"daysPerWeek": 2}},
                    {"id": "send-1", "type": "send_whatsapp", "config": {"message": "{{results.plan-1.summary}}"}},
                ],
            ),
        )
    report = _say(db, actor, console.new_contact(), "Plan bitte")
    assert report.replies[0].plan and report.replies[0].plan["summary"] == report.replies[0].body
    live = _say(db, actor, console.new_contact(), "Plan bitte", live=True)
    assert not live.is_test and live.replies[0].status == "recorded"
    with unit_of_work(db, read_only=True) as uow:
        assert services.get_workflow(uow=uow, actor=actor, workflow_id=wf.id).run_count == 1
    with pytest.raises(InvalidInput):
        _say(db, actor, console.new_contact(), "x", live=True, drafts={wf.id: {}})


def test_inputs_sent_as_if_at_the_same_time_stay_in_the_order_they_were_sent(db, tenant, actor):
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data=_wf("Echo", [{"id": "a", "type": "send_whatsapp", "config": {"message": "Re: {{trigger.content}}"}}]),
        )
    contact = console.new_contact()
    at = datetime(2026, 11, 30, 10, 0, tzinfo=BERLIN)
    for text in ("first", "second", "third"):
        with unit_of_work(db) as uow:
            console.send(uow=uow, actor=actor, contact=contact, inp=ConsoleInput(text=text, at=at))
    with unit_of_work(db) as uow:
        turns = console.conversation(uow=uow, actor=actor, contact=contact).turns
    assert [[r.body for r in t.replies] for t in turns] == [["Re: first"], ["Re: second"], ["Re: third"]]
