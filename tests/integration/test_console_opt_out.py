"""STOP in the test console (issue 21) on SQLite and PostgreSQL: the test conversation opts out
as a member would (the reply to STOP and every later one are suppressed with the reason, START
opts back in), and test and live opt-outs never affect each other, nor do studios."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import Session, select

from engine import services
from engine.messaging.optout import FLAG, list_opt_outs
from engine.runner import Runner
from engine.security.auth import system_actor
from engine.services import console
from engine.services.console import ConsoleInput, TestContact
from engine.store.models import OutboxMessage, Tenant
from engine.uow import unit_of_work
from tests.uow import in_uow

PHONE = "+4915112345678"
REPLY = {
    "name": "Reply",
    "trigger": {"type": "whatsapp_message", "config": {}},
    "conditions": [],
    "actions": [{"id": "r", "type": "send_whatsapp", "config": {"message": "Hallo {{trigger.from}}"}}],
}
SMS_REPLY = {
    "name": "SMS reply",
    "trigger": {"type": "sms_received", "config": {}},
    "conditions": [],
    "actions": [{"id": "r", "type": "send_sms", "config": {"message": "SMS an {{trigger.from}}"}}],
}
FOLLOW_UP = {
    "name": "Follow-up",
    "trigger": {"type": "web_chat", "config": {}},
    "conditions": [],
    "actions": [{"id": "later", "type": "schedule_follow_up", "config": {"delay": 3_600_000, "message": "Noch da?"}}],
}


@pytest.fixture
def studio(db, tenant_factory):
    actor = system_actor(tenant_factory().id)
    for data in (REPLY, SMS_REPLY):
        with unit_of_work(db) as uow:
            services.create_workflow(uow=uow, actor=actor, data=data)
    return db, actor


def _say(db, actor, contact, text, channel="whatsapp", live=False):
    return in_uow(
        db,
        console.send,
        actor=actor,
        contact=contact,
        inp=ConsoleInput(kind="message", channel=channel, text=text),
        live=live,
    )


def _conversation(db, actor, contact):
    with unit_of_work(db, read_only=True) as uow:
        return console.conversation(uow=uow, actor=actor, contact=contact)


def _live(db, tenant_id, text, sender=PHONE):
    Runner(db).ingest(
        tenant_id, {"triggerType": "whatsapp_message", "channel": "whatsapp", "from": sender, "content": text}
    )
    with Session(db) as s:
        return s.exec(
            select(OutboxMessage)
            .where(OutboxMessage.tenant_id == tenant_id, OutboxMessage.is_test == False)  # noqa: E712
            .order_by(OutboxMessage.created_at.desc(), OutboxMessage.id.desc())
        ).first()


def test_stop_in_the_console_suppresses_this_and_later_replies_until_start(studio):
    db, actor = studio
    contact = console.new_contact()
    assert [r.status for r in _say(db, actor, contact, "Hallo").replies] == ["simulated"]

    stop = _say(db, actor, contact, "Stop!")
    assert stop.opt == "out"
    [reply] = stop.replies
    assert reply.status == "suppressed"
    assert "opted out" in reply.reason and "STOP" in reply.reason and "START" in reply.reason
    assert _conversation(db, actor, contact).opted_out is not None

    # The next message, and one on another channel to the same number, get no reply either.
    assert [r.status for r in _say(db, actor, contact, "Wann ist Yoga?").replies] == ["suppressed"]
    [sms] = _say(db, actor, contact, "Hallo per SMS", channel="sms").replies
    assert sms.status == "suppressed" and "STOP on whatsapp" in sms.reason

    start = _say(db, actor, contact, "start")
    assert start.opt == "in" and [r.status for r in start.replies] == ["simulated"]
    assert [r.status for r in _say(db, actor, contact, "Danke").replies] == ["simulated"]
    assert _conversation(db, actor, contact).opted_out is None


def test_a_test_stop_never_touches_real_opt_outs(studio):
    db, actor = studio
    contact = TestContact(phone=PHONE, email="member@example.com")
    assert _say(db, actor, contact, "STOP").replies[0].status == "suppressed"
    with unit_of_work(db, read_only=True) as uow:
        assert list_opt_outs(uow=uow, actor=actor, opted_out_only=False) == []
    with Session(db) as s:
        assert FLAG not in (s.get(Tenant, actor.tenant_id).settings or {})
    # The real member with that number still gets their replies.
    assert _live(db, actor.tenant_id, "Hallo").status == "recorded"


def test_a_real_opt_out_does_not_silence_a_test_conversation(studio):
    db, actor = studio
    assert _live(db, actor.tenant_id, "STOP").status == "suppressed"
    contact = TestContact(phone=PHONE, email="member@example.com")
    turn = _say(db, actor, contact, "Hallo")
    assert [r.status for r in turn.replies] == ["simulated"]
    conv = _conversation(db, actor, contact)
    assert conv.opted_out is None and conv.opted_out_live is not None  # shown, but it is the live state
    assert _live(db, actor.tenant_id, "Noch da?").status == "suppressed"  # the real opt-out holds


def test_stop_in_live_mode_is_a_real_opt_out(studio):
    db, actor = studio
    contact = TestContact(phone=PHONE, email="member@example.com")
    turn = _say(db, actor, contact, "STOP", live=True)
    assert not turn.is_test and turn.replies[0].status == "suppressed"
    with unit_of_work(db, read_only=True) as uow:
        [opt] = list_opt_outs(uow=uow, actor=actor)
    assert opt.contact == PHONE
    # ... and test mode keeps its own state: the test conversation never wrote STOP.
    assert _say(db, actor, contact, "Hallo").replies[0].status == "simulated"


def test_a_test_stop_in_one_studio_leaves_another_studio_alone(studio, tenant_factory):
    db, actor = studio
    other = system_actor(tenant_factory().id)
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=other, data=REPLY)
    contact = TestContact(phone=PHONE, email="member@example.com")
    _say(db, actor, contact, "STOP")
    assert _say(db, other, contact, "Hallo").replies[0].status == "simulated"
    assert _conversation(db, other, contact).opted_out is None


def test_a_follow_up_due_after_stop_is_suppressed_when_fast_forwarded(studio):
    db, actor = studio
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=actor, data=FOLLOW_UP)
    contact = console.new_contact()
    _say(db, actor, contact, "Hallo?", channel="web")
    _say(db, actor, contact, "STOP", channel="web")
    in_uow(db, console.fast_forward, actor=actor, contact=contact, all_items=True)
    replies = [r for t in _conversation(db, actor, contact).turns for r in t.replies if r.body == "Noch da?"]
    assert len(replies) == 2 and {r.status for r in replies} == {"suppressed"}
    assert all("opted out" in r.reason for r in replies)


def test_a_quiet_hours_message_held_back_then_stop_is_not_delivered(db, tenant_factory):
    """A test message deferred by quiet hours, then STOP: the worker's delivery suppresses it."""
    from engine.messaging.delivery import deliver

    tenant = tenant_factory(quietHours={"start": "00:00", "end": "23:59"})
    actor = system_actor(tenant.id)
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data={
                **REPLY,
                "actions": [
                    {"id": "w", "type": "wait", "config": {"delay": 3_600_000}},
                    {"id": "r", "type": "send_whatsapp", "config": {"message": "Später"}},
                ],
            },
        )
    contact = console.new_contact()
    _say(db, actor, contact, "Hallo")
    in_uow(db, console.fast_forward, actor=actor, contact=contact)  # the wait ends: the message is deferred
    [held] = [r for t in _conversation(db, actor, contact).turns for r in t.replies]
    assert held.status == "deferred"
    _say(db, actor, contact, "STOP")
    with Session(db) as s:
        now = s.get(OutboxMessage, held.outbox_id).created_at + timedelta(days=1)
    assert deliver(db, held.outbox_id, now=now) == "suppressed"
    with Session(db) as s:
        assert "opted out" in s.get(OutboxMessage, held.outbox_id).error


def test_a_members_timeline_leaves_out_test_conversations_written_as_their_number(studio):
    """The console may write as a real member's number; their timeline shows only what really happened."""
    from engine.services import operations

    db, actor = studio
    _live(db, actor.tenant_id, "Echt")
    _say(db, actor, TestContact(phone=PHONE, email="member@example.com"), "Nur ein Test")
    with unit_of_work(db, read_only=True) as uow:
        items = operations.contact_timeline(uow=uow, actor=actor, contact=PHONE)
    texts = [i["text"] for i in items]
    assert "Echt" in texts and "Nur ein Test" not in texts
    assert [i["kind"] for i in items].count("execution") == 1 and [i["kind"] for i in items].count("sent") == 1


def test_a_scenario_never_counts_a_suppressed_reply_as_a_reply(studio):
    """Saved from a conversation with STOP, a scenario offers no "a reply contains" for the
    suppressed replies, and an expectation of a reply after STOP fails, saying why."""
    from engine.services import scenarios

    db, actor = studio
    contact = console.new_contact()
    for text in ("Hallo", "STOP", "Noch da?"):
        _say(db, actor, contact, text)
    conv = _conversation(db, actor, contact)
    offered = [e for e in scenarios.expectations_from(conv) if e["kind"] == "sent"]
    assert [e["turn"] for e in offered] == [0]
    expect = [{"kind": "sent", "contains": "Hallo", "turn": 2}]
    with unit_of_work(db) as uow:
        sc = scenarios.save_scenario(
            uow=uow,
            actor=actor,
            data={"name": "Reply after STOP", "steps": scenarios.steps_from(conv), "expectations": expect},
        )
    with unit_of_work(db) as uow:
        result = scenarios.run_scenario(uow=uow, actor=actor, scenario_id=sc.id)
    [failure] = result.failures
    assert not result.passed and "the replies were: no reply at all; not sent: " in failure
    assert "(suppressed: test conversation opted out: the contact wrote STOP" in failure
