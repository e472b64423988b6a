"""The demo studio answers members well: plans in their language, knowledge-base replies in
business hours, an after-hours reply in the evening and the early morning.

Seeded with ``engine.demo.seed.init`` on SQLite and PostgreSQL; time is injected, nothing sleeps.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlmodel import Session, select

from engine import services
from engine.ai.language import detect_language
from engine.demo.seed import demo_workflows, init, spec_examples
from engine.runner import Runner, builtin_classifier
from engine.store.models import OutboxMessage
from engine.uow import unit_of_work
from engine.workflow.validation import validate

PHONE = "+4915112345678"


def at(hour: int, minute: int = 0) -> datetime:
    """Wednesday 6 May 2026 at this Berlin wall-clock time (UTC+2)."""
    return (
        datetime(2026, 5, 6, hour - 2, minute, tzinfo=UTC)
        if hour >= 2
        else datetime(2026, 5, 5, 22 + hour, minute, tzinfo=UTC)
    )


@pytest.fixture
def demo(db):
    return init(db, demo_email="owner@demo.studio", demo_password="demo-pass-2026")["tenant_id"]


def send(db, tenant_id: str, text: str, when: datetime, trigger: str = "whatsapp_message", channel: str = "whatsapp"):
    Runner(db, clock=lambda: when, classifier=builtin_classifier()).ingest(
        tenant_id, {"triggerType": trigger, "channel": channel, "from": PHONE, "content": text}
    )
    with Session(db) as s:
        return list(
            s.exec(
                select(OutboxMessage).where(OutboxMessage.tenant_id == tenant_id).order_by(OutboxMessage.created_at)
            ).all()
        )


def test_demo_workflows_are_valid_and_seeded_enabled(db, demo):
    for definition in demo_workflows():
        assert [p for p in validate(definition) if p.severity == "error"] == [], definition["name"]
    from engine.security.auth import system_actor

    with unit_of_work(db, read_only=True) as uow:
        stored = services.list_workflows(uow=uow, actor=system_actor(demo))
    items = getattr(stored, "items", stored)
    assert sorted(w.name for w in items) == sorted(d["name"] for d in demo_workflows())
    assert all(w.enabled for w in items)


def test_seeding_twice_adds_nothing(db, demo):
    from engine.security.auth import system_actor

    init(db, demo_email="owner@demo.studio", demo_password="demo-pass-2026")
    with unit_of_work(db, read_only=True) as uow:
        stored = services.list_workflows(uow=uow, actor=system_actor(demo))
    assert len(getattr(stored, "items", stored)) == len(demo_workflows())


def test_german_training_plan_request_sends_the_plan_in_german(db, demo):
    messages = send(db, demo, "Ich möchte einen Trainingsplan", at(11))
    assert len(messages) == 1, [m.body for m in messages]
    body = messages[0].body
    assert messages[0].channel == "whatsapp" and messages[0].recipient == PHONE
    assert body.startswith("Dein Trainingsplan") and "Tag 1" in body and "Aufwärmen" in body


def test_english_training_plan_request_sends_the_plan_in_english(db, demo):
    body = send(db, demo, "Hi, I would like a training plan please", at(20))[0].body
    assert body.startswith("Your training plan") and "Warm-up" in body


def test_a_caller_asking_for_a_plan_gets_it_on_whatsapp(db, demo):
    messages = send(db, demo, "Ich möchte einen Trainingsplan", at(10), trigger="voice_call", channel="voice")
    assert [(m.channel, m.recipient) for m in messages] == [("whatsapp", PHONE)]
    assert "Tag 1" in messages[0].body


def test_hello_in_business_hours_gets_a_greeting(db, demo):
    messages = send(db, demo, "Hallo", at(11))
    assert [m.body for m in messages] == ["Hallo! Schön, von dir zu hören. Wie können wir dir helfen?"]


@pytest.mark.parametrize(
    "question, expected",
    [
        ("Was kostet ein Probetraining?", "Probetraining: 0 €"),
        ("Wann habt ihr offen?", "Öffnungszeiten"),
        ("Was kostet die Mitgliedschaft?", "89 €"),
        # A member writing in English gets the English texts.
        ("Hello!", "Hi! Great to hear from you."),
        ("Hi, I'd like to try a class", "Your first trial class with us is free!"),
        ("How much does the 10-class card cost?", "10-class card: 140 €"),
        ("What are your opening hours?", "Our opening hours: Mon-Fri 07:00-22:00"),
    ],
)
def test_questions_in_business_hours_are_answered_from_the_knowledge_base(db, demo, question, expected):
    messages = send(db, demo, question, at(14, 30))
    assert len(messages) == 1 and expected in messages[0].body, [m.body for m in messages]
    assert "9 bis 18 Uhr" not in messages[0].body


@pytest.mark.parametrize("hour", [19, 23, 0, 6, 8])
def test_after_hours_reply_covers_the_evening_and_the_early_morning(db, demo, hour):
    messages = send(db, demo, "Hallo", at(hour, 30))
    assert len(messages) == 1, [m.body for m in messages]
    assert "9 bis 18 Uhr" in messages[0].body and messages[0].body.startswith("Hallo!")


def test_after_hours_reply_speaks_english_to_an_english_member(db, demo):
    body = send(db, demo, "Hello, what are your opening hours?", at(21))[0].body
    assert "Our team is here every day from 9 am to 6 pm" in body


def test_after_hours_english_member_gets_the_knowledge_base_answer_in_english(db, demo):
    body = send(db, demo, "How much is the trial class?", at(7))[0].body
    assert body.startswith("Trial class: 0 € (free, once per person)") and "from 9 am to 6 pm" in body, body


def test_spec_examples_still_import_unchanged(db, demo):
    from engine.security.auth import system_actor

    with unit_of_work(db) as uow:
        imported = services.import_workflows(uow=uow, actor=system_actor(demo), items=spec_examples())
    for out, original in zip(imported, spec_examples()):
        with unit_of_work(db, read_only=True) as uow:
            assert services.get_workflow(uow=uow, actor=system_actor(demo), workflow_id=out.id).definition == original


@pytest.mark.parametrize(
    "text, language",
    [
        ("Ich möchte einen Trainingsplan", "de"),
        ("Hallo", "de"),
        ("I want a workout plan", "en"),
        ("Hello", "en"),
        ("ok", None),
        ("", None),
    ],
)
def test_member_language_is_detected_from_the_message(text, language):
    assert detect_language(text) == language
