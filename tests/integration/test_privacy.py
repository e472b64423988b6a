"""A member's data on request, on SQLite and PostgreSQL: export has everything erasure removes;
after erasure no text column of the studio holds the member's phone, e-mail or words; other
members and other studios keep theirs; the erasure itself is recorded without the data."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from engine import services
from engine.errors import InvalidInput, PermissionDenied
from engine.lifecycle.privacy import (
    erase_contact,
    export_contact,
    find_contact_rows,
    is_text,
    list_erasures,
    parse_contact,
    was_erased,
)
from engine.lifecycle.retention import execution_counts
from engine.security.auth import Actor, system_actor
from engine.store.models import Role, SQLModel
from engine.uow import unit_of_work
from tests.uow import in_uow

PHONE = "+4915112345678"
OTHER_PHONE = "+4917099887766"
EMAIL = "erika.muster@example.de"
WORDS = "Mein Knie tut weh seit dem Lauf"
NEEDLES = ["4915112345678", "015112345678", "1511 2345678", EMAIL, "Knie tut weh", "Erika Muster"]

INTAKE = {
    "name": "Intake",
    "trigger": {"type": "whatsapp_message", "config": {}},
    "conditions": [],
    "actions": [
        {
            "id": "reply",
            "type": "send_whatsapp",
            "config": {"message": "Danke! Du schriebst: {{trigger.content}}"},
            "nextActionId": "lead",
        },
        {
            "id": "lead",
            "type": "create_lead",
            "config": {
                "name": "{{trigger.customFields.name}}",
                "phone": "{{trigger.from}}",
                "email": "{{trigger.customFields.email}}",
                "notes": "{{trigger.content}}",
            },
            "nextActionId": "later",
        },
        {
            "id": "later",
            "type": "schedule_follow_up",
            "config": {"delay": 172800, "message": "Wie geht es dem Knie, {{trigger.customFields.name}}?"},
        },
    ],
}
WELCOME = {
    "name": "Welcome",
    "trigger": {"type": "lead_created", "config": {}},
    "conditions": [],
    "actions": [
        {
            "id": "mail",
            "type": "send_email",
            "config": {
                "recipient": "{{trigger.data.email}}",
                "subject": "Willkommen {{trigger.data.name}}",
                "message": "Hallo {{trigger.data.name}}",
            },
        }
    ],
}


def message(tenant_id, runner, sender, content, name, email):
    return runner.ingest(
        tenant_id,
        {
            "triggerType": "whatsapp_message",
            "channel": "whatsapp",
            "from": sender,
            "content": content,
            "customFields": {"name": name, "email": email},
        },
    )


@pytest.fixture
def studio(db, tenant_factory):
    from engine.services.runs import runner_for

    a, b = tenant_factory(), tenant_factory()
    actor_a, actor_b = system_actor(a.id), system_actor(b.id)
    for actor in (actor_a, actor_b):
        with unit_of_work(db) as uow:
            services.create_workflow(uow=uow, actor=actor, data=INTAKE)
        with unit_of_work(db) as uow:
            services.create_workflow(uow=uow, actor=actor, data=WELCOME)
    runner = runner_for(db)
    message(a.id, runner, PHONE, WORDS, "Erika Muster", EMAIL)
    message(a.id, runner, OTHER_PHONE, "Ich moechte eine Probestunde", "Max Other", "max@example.de")
    message(b.id, runner, PHONE, WORDS, "Erika Muster", EMAIL)  # the same member in another studio
    # A provider's delivery key that contains the number (the event itself has no workflow).
    runner.ingest(a.id, {"triggerType": "missed_call", "from": "+49 151 12345678", "idempotencyKey": f"call:{PHONE}:1"})
    with unit_of_work(db, read_only=True) as uow:
        lead = next(x for x in services.list_leads(uow=uow, actor=actor_a) if x.phone == PHONE)
    with unit_of_work(db) as uow:
        services.create_booking(
            uow=uow,
            actor=actor_a,
            member_name="Erika Muster",
            class_name="Yin Yoga",
            lead_id=lead.id,
            member_contact=EMAIL,
            starts_at=datetime(2026, 12, 1, 18, tzinfo=UTC),
        )
    return db, actor_a, actor_b


def text_columns():
    for table in SQLModel.metadata.sorted_tables:
        for col in table.columns:
            if is_text(col):
                yield table, col


def traces(db, tenant_id: str, needle: str) -> list[str]:
    """Every table.column of the tenant (and of tables without a tenant) whose text holds ``needle``."""
    hits = []
    with db.connect() as conn:
        for table, col in text_columns():
            text = sa.cast(col, sa.Text) if isinstance(col.type, sa.JSON) else col
            stmt = sa.select(sa.func.count()).select_from(table).where(text.ilike(f"%{needle}%"))
            if "tenant_id" in table.c:
                stmt = stmt.where(table.c.tenant_id == tenant_id)
            if conn.execute(stmt).scalar():
                hits.append(f"{table.name}.{col.name}")
    return hits


def test_the_search_covers_every_text_column():
    names = {f"{t.name}.{c.name}" for t, c in text_columns()}
    assert {
        "events.content",
        "events.sender",
        "events.data",
        "outbox_messages.body",
        "leads.name",
        "bookings.member_name",
        "users.email",
        "step_runs.output",
        "executions.context",
    } <= names
    assert "events.received_at" not in names


def test_erasure_leaves_no_trace_of_the_member(studio):
    db, a, b = studio
    assert traces(db, a.tenant_id, "Knie tut weh")  # the search finds the words before erasure
    counts_before = execution_counts(db, a)
    with unit_of_work(db) as uow:
        record = erase_contact(uow=uow, actor=a, phone="0151 12345678")
    for needle in NEEDLES:
        assert traces(db, a.tenant_id, needle) == [], needle
    # The other member of the studio and the same member at another studio keep everything.
    assert traces(db, a.tenant_id, "4917099887766") and traces(db, a.tenant_id, "Probestunde")
    for needle in ("4915112345678", EMAIL, "Knie tut weh", "Erika Muster"):
        assert traces(db, b.tenant_id, needle), needle
    # Anonymous counts stay: executions per status, leads and bookings as rows.
    assert execution_counts(db, a) == counts_before
    with unit_of_work(db, read_only=True) as uow:
        assert len(services.list_leads(uow=uow, actor=a)) == 2 and len(services.list_bookings(uow=uow, actor=a)) == 1
    assert record.counts["leads"] == 1 and record.counts["bookings"] == 1 and record.counts["events"] >= 3
    assert record.counts["due_work"] == 1  # the follow-up, cancelled
    assert traces(db, a.tenant_id, "call:") == []  # the idempotency key is gone with the number
    # The record says who, when and which contact (hash), and nothing of the data.
    with unit_of_work(db, read_only=True) as uow:
        [stored] = list_erasures(uow=uow, actor=a)
    assert stored.contact_hash == record.contact_hash == parse_contact(phone=PHONE).digest
    assert all(n not in json.dumps(stored.to_api()) for n in NEEDLES)
    with unit_of_work(db, read_only=True) as uow:
        assert was_erased(uow=uow, actor=a, phone=PHONE) and not was_erased(uow=uow, actor=b, phone=PHONE)


def test_export_holds_everything_the_erasure_removes(studio):
    db, a, _ = studio
    with unit_of_work(db, read_only=True) as uow:
        exported = export_contact(uow=uow, actor=a, phone=PHONE)
    text = json.dumps(exported, ensure_ascii=False)
    for needle in ("4915112345678", EMAIL, "Knie tut weh", "Erika Muster"):
        assert needle in text, needle
    assert "Probestunde" not in text and "4917099887766" not in text  # not the other member's data
    exported_ids = {name: {row["id"] for row in rows} for name, rows in exported["tables"].items()}
    with db.connect() as conn:
        to_erase = find_contact_rows(conn, a.tenant_id, parse_contact(phone=PHONE))
    with unit_of_work(db) as uow:
        record = erase_contact(uow=uow, actor=a, phone=PHONE)
    assert exported_ids == to_erase and exported["counts"] == record.counts
    assert exported["contact"] == {"kind": "phone", "value": PHONE}
    assert {"events", "executions", "step_runs", "outbox_messages", "leads", "bookings", "due_work"} <= {
        k for k, v in exported_ids.items() if v
    }
    # After erasure, an export finds nothing any more.
    with unit_of_work(db, read_only=True) as uow:
        assert sum(export_contact(uow=uow, actor=a, phone=PHONE)["counts"].values()) == 0


def test_erase_by_email_finds_the_same_member(studio):
    db, a, _ = studio
    with unit_of_work(db) as uow:
        erase_contact(uow=uow, actor=a, email=EMAIL.upper())
    for needle in NEEDLES:
        assert traces(db, a.tenant_id, needle) == [], needle


def test_only_owners_and_one_contact(studio):
    db, a, _ = studio
    analyst = Actor(tenant_id=a.tenant_id, role=Role.EDITOR)
    with pytest.raises(PermissionDenied):
        with unit_of_work(db, read_only=True) as uow:
            export_contact(uow=uow, actor=analyst, phone=PHONE)
    with pytest.raises(PermissionDenied):
        with unit_of_work(db) as uow:
            erase_contact(uow=uow, actor=analyst, phone=PHONE)
    for kwargs, field in (
        ({}, "email"),
        ({"phone": PHONE, "email": EMAIL}, "phone"),
        ({"phone": "12"}, "phone"),
        ({"email": "not-an-address"}, "email"),
    ):
        with pytest.raises(InvalidInput) as exc:
            in_uow(db, erase_contact, actor=a, **kwargs)
        assert exc.value.field == field
    with unit_of_work(db, read_only=True) as uow:
        assert list_erasures(uow=uow, actor=a) == [] and traces(db, a.tenant_id, "Knie tut weh")


def test_an_erased_follow_up_is_not_sent(studio):
    from engine.worker import Worker

    db, a, _ = studio
    with unit_of_work(db) as uow:
        erase_contact(uow=uow, actor=a, phone=PHONE)
    worker = Worker(db, clock=lambda: datetime.now(UTC) + timedelta(days=3))
    worker.run_once()
    # The other member's follow-up went out; the erased member's did not.
    assert "outbox_messages.body" in traces(db, a.tenant_id, "Wie geht es dem Knie, Max Other")
    assert traces(db, a.tenant_id, "Erika") == [] and traces(db, a.tenant_id, "4915112345678") == []
