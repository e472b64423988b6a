"""Opt-out by keyword on SQLite and PostgreSQL: STOP (or ABMELDEN, or the studio's words) on any
channel suppresses automated messages with the reason; START resumes them; other contacts and
other studios are not affected; the REST door goes through the same ingest path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from engine import services
from engine.errors import InvalidInput, PermissionDenied
from engine.messaging.optout import keyword, list_opt_outs, set_opt_out, set_opt_words
from engine.runner import Runner
from engine.security.auth import Actor, system_actor
from engine.store.models import OutboxMessage, Role
from engine.uow import unit_of_work

PHONE = "+4915112345678"
OTHER = "+4917099887766"
REPLY = {
    "name": "Reply",
    "trigger": {"type": "whatsapp_message", "config": {}},
    "conditions": [],
    "actions": [{"id": "r", "type": "send_whatsapp", "config": {"message": "Hallo {{trigger.from}}"}}],
}
SMS_REPLY = {
    "name": "SMS",
    "trigger": {"type": "sms_received", "config": {}},
    "conditions": [],
    "actions": [{"id": "r", "type": "send_sms", "config": {"message": "SMS an {{trigger.from}}"}}],
}


@pytest.fixture
def studio(db, tenant_factory):
    tenant = tenant_factory()
    actor = system_actor(tenant.id)
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=actor, data=REPLY)
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=actor, data=SMS_REPLY)
    return db, actor, Runner(db)


def whatsapp(runner, tenant_id, sender, text):
    return runner.ingest(
        tenant_id, {"triggerType": "whatsapp_message", "channel": "whatsapp", "from": sender, "content": text}
    )


def last_message(db, tenant_id) -> OutboxMessage:
    with Session(db) as s:
        return s.exec(
            select(OutboxMessage)
            .where(OutboxMessage.tenant_id == tenant_id)
            .order_by(OutboxMessage.created_at.desc(), OutboxMessage.id.desc())
        ).first()


def test_stop_suppresses_with_the_reason_and_start_resumes(studio):
    db, actor, runner = studio
    whatsapp(runner, actor.tenant_id, PHONE, "Hallo")
    assert last_message(db, actor.tenant_id).status == "recorded"
    whatsapp(runner, actor.tenant_id, PHONE, "  Stop! ")
    msg = last_message(db, actor.tenant_id)
    assert msg.status == "suppressed" and "opted out" in msg.error and "STOP" in msg.error
    whatsapp(runner, actor.tenant_id, PHONE, "Wann ist Yoga?")
    assert last_message(db, actor.tenant_id).status == "suppressed"
    # Another member is not affected.
    whatsapp(runner, actor.tenant_id, OTHER, "Hallo")
    assert last_message(db, actor.tenant_id).status == "recorded"
    with unit_of_work(db, read_only=True) as uow:
        [opt] = list_opt_outs(uow=uow, actor=actor)
    assert (opt.contact, opt.word, opt.channel) == (PHONE, "STOP", "whatsapp")
    whatsapp(runner, actor.tenant_id, PHONE, "start")
    assert last_message(db, actor.tenant_id).status == "recorded"
    with unit_of_work(db, read_only=True) as uow:
        assert list_opt_outs(uow=uow, actor=actor) == []


def test_opt_out_on_one_channel_holds_on_every_channel(studio):
    db, actor, runner = studio
    runner.ingest(
        actor.tenant_id,
        {"triggerType": "sms_received", "channel": "sms", "from": "0151 12345678", "content": "ABMELDEN"},
    )
    whatsapp(runner, actor.tenant_id, PHONE, "Noch eine Frage")
    msg = last_message(db, actor.tenant_id)
    assert msg.channel == "whatsapp" and msg.status == "suppressed" and "ABMELDEN on sms" in msg.error


def test_words_only_count_as_the_whole_message(studio):
    db, actor, runner = studio
    whatsapp(runner, actor.tenant_id, PHONE, "Bitte nicht stoppen, ich komme morgen")
    assert last_message(db, actor.tenant_id).status == "recorded"
    assert keyword("Stop.") == "STOP" and keyword("stop the music please, I love it, really") is None


def test_a_studios_own_words(studio):
    db, actor, runner = studio
    with unit_of_work(db) as uow:
        set_opt_words(uow=uow, actor=actor, stop_words=["Pause bitte"], start_words=["weiter"])
    whatsapp(runner, actor.tenant_id, PHONE, "STOP")  # not a word of this studio any more
    assert last_message(db, actor.tenant_id).status == "recorded"
    whatsapp(runner, actor.tenant_id, PHONE, "pause bitte")
    assert last_message(db, actor.tenant_id).status == "suppressed"
    whatsapp(runner, actor.tenant_id, PHONE, "Weiter")
    assert last_message(db, actor.tenant_id).status == "recorded"
    with pytest.raises(InvalidInput) as exc:
        with unit_of_work(db) as uow:
            set_opt_words(uow=uow, actor=actor, stop_words=["STOP"], start_words=["stop"])
    assert exc.value.field == "startWords"
    with pytest.raises(InvalidInput) as exc:
        with unit_of_work(db) as uow:
            set_opt_words(uow=uow, actor=actor, stop_words=[], start_words=["START"])
    assert exc.value.field == "stopWords"


def test_other_studios_are_not_affected(studio, tenant_factory):
    db, actor, runner = studio
    other = system_actor(tenant_factory().id)
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=other, data=REPLY)
    whatsapp(runner, actor.tenant_id, PHONE, "STOP")
    whatsapp(runner, other.tenant_id, PHONE, "Hallo")
    assert last_message(db, other.tenant_id).status == "recorded"
    with unit_of_work(db, read_only=True) as uow:
        assert list_opt_outs(uow=uow, actor=other) == []


def test_owner_marks_by_hand_and_a_queued_message_is_not_delivered(studio):
    from engine.messaging.delivery import deliver

    db, actor, runner = studio
    whatsapp(runner, actor.tenant_id, PHONE, "Hallo")
    queued = last_message(db, actor.tenant_id)
    with Session(db) as s:  # as if it waited for the end of quiet hours
        row = s.get(OutboxMessage, queued.id)
        row.status = "deferred"
        s.add(row)
        s.commit()
    with pytest.raises(PermissionDenied):
        with unit_of_work(db) as uow:
            set_opt_out(
                uow=uow, actor=Actor(tenant_id=actor.tenant_id, role=Role.EDITOR), contact=PHONE, opted_out=True
            )
    with pytest.raises(InvalidInput):
        with unit_of_work(db) as uow:
            set_opt_out(uow=uow, actor=actor, contact="nobody", opted_out=True)
    with unit_of_work(db) as uow:
        set_opt_out(uow=uow, actor=actor, contact="0151 12345678", opted_out=True, note="desk")
    assert deliver(db, queued.id, now=datetime.now(UTC) + timedelta(hours=1)) == "suppressed"
    assert "opted out" in last_message(db, actor.tenant_id).error


def test_stop_through_the_rest_api(studio):
    import warnings

    from engine.api import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    db, actor, _ = studio
    with unit_of_work(db) as uow:
        _, secret = services.create_api_key(uow=uow, actor=actor, name="inbound", role="editor")
    with TestClient(create_app(db)) as client:
        headers = {"Authorization": f"Bearer {secret}"}
        r = client.post(
            "/api/events",
            headers=headers,
            json={"triggerType": "whatsapp_message", "channel": "whatsapp", "from": PHONE, "content": "STOP"},
        )
        assert r.status_code == 200
    assert last_message(db, actor.tenant_id).status == "suppressed"
