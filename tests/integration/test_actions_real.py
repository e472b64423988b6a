"""Every action type doing real work through the runner and the worker, against local servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiosmtpd.controller import Controller
from sqlmodel import Session, select

from engine import services
from engine.outbound.webhooks import SIGNATURE_HEADER, verify_signature
from engine.runner import Runner
from engine.settings import get_settings
from engine.store.models import Lead, OutboxMessage
from engine.uow import unit_of_work
from engine.worker import Worker
from tests.servers import Receiver, free_port

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)  # 11:00 in Berlin, a Wednesday


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def clock():
    now = [NOW]
    return now


@pytest.fixture
def runner(db, clock):
    from engine.ai.intent import classify

    return Runner(db, clock=lambda: clock[0], classifier=classify)


@pytest.fixture
def worker(db, clock, runner):
    return Worker(db, clock=lambda: clock[0], runner=runner, name="test-worker")


@pytest.fixture
def provider_base_urls(monkeypatch):
    monkeypatch.setenv("STUDIO_ALLOW_PROVIDER_BASE_URL", "1")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _workflow(actions, trigger="web_chat", conditions=()):
    return {
        "name": f"Test {trigger}",
        "trigger": {"type": trigger, "config": {}},
        "conditions": list(conditions),
        "actions": actions,
    }


def _steps(db, actor, execution_id):
    with unit_of_work(db, read_only=True) as uow:
        return {s.action_id: s for s in services.get_execution(uow=uow, actor=actor, execution_id=execution_id).steps}


def test_all_twelve_action_types_do_real_work(db, tenant_factory, runner, worker, clock, receiver):
    tenant = tenant_factory(webhookAllowList=["127.0.0.1"])
    actor = _actor(tenant)
    with unit_of_work(db) as uow:
        wf = services.create_workflow(
            uow=uow,
            actor=actor,
            data=_workflow(
                [
                    {
                        "id": "lead-1",
                        "type": "create_lead",
                        "config": {"name": "{{trigger.name}}", "email": "{{trigger.email}}", "source": "web"},
                    },
                    {
                        "id": "lead-2",
                        "type": "update_lead",
                        "config": {"leadId": "{{results.lead-1.leadId}}", "updates": {"status": "contacted"}},
                    },
                    {"id": "ai-1", "type": "ask_ai", "config": {"prompt": "Beantworte die Frage freundlich"}},
                    {"id": "plan-1", "type": "generate_workout_plan", "config": {"daysPerWeek": 2}},
                    {"id": "msg-1", "type": "send_message", "config": {"message": "{{results.ai-1.text}}"}},
                    {
                        "id": "wa-1",
                        "type": "send_whatsapp",
                        "config": {
                            "message": "Dein Plan: {{results.plan-1.summary}}",
                            "recipient": "+49 176 1234 5678",
                        },
                    },
                    {
                        "id": "mail-1",
                        "type": "send_email",
                        "config": {
                            "message": "Hallo {{lead.name}}",
                            "recipient": "{{trigger.email}}",
                            "subject": "Willkommen",
                        },
                    },
                    {
                        "id": "sms-1",
                        "type": "send_sms",
                        "config": {"message": "Bis bald!", "recipient": "+4917612345678"},
                    },
                    {
                        "id": "hook-1",
                        "type": "call_webhook",
                        "config": {
                            "webhookUrl": receiver.url + "/crm",
                            "body": {"leadId": "{{results.lead-1.leadId}}"},
                        },
                    },
                    {
                        "id": "branch-1",
                        "type": "branch",
                        "config": {
                            "conditions": [{"type": "keyword_match", "operator": "contains", "value": "preis"}],
                            "nextActionId": "follow-1",
                        },
                    },
                    {"id": "wait-1", "type": "wait", "config": {"delay": 60_000}},
                    {
                        "id": "follow-1",
                        "type": "schedule_follow_up",
                        "config": {"delay": 86_400_000, "message": "Noch Fragen?"},
                        "nextActionId": None,
                    },
                ]
            ),
        )
    result = runner.ingest(
        tenant.id,
        {
            "triggerType": "web_chat",
            "channel": "web",
            "content": "Was kostet der Preis für die 10er-Karte?",
            "from": "visitor-1",
            "data": {"name": "Mia", "email": "mia@example.com"},
        },
    )
    steps = _steps(db, actor, result.execution_ids[0])
    assert set(steps) == {
        "lead-1",
        "lead-2",
        "ai-1",
        "plan-1",
        "msg-1",
        "wa-1",
        "mail-1",
        "sms-1",
        "hook-1",
        "branch-1",
        "follow-1",
    }
    assert all(s.status == "succeeded" for s in steps.values()), {k: s.error for k, s in steps.items() if s.error}
    assert steps["branch-1"].output["matched"] is True  # jumped over wait-1
    assert steps["ai-1"].output["provider"] == "offline"
    assert len(steps["plan-1"].output["days"]) == 2
    assert steps["wa-1"].output["recipient"] == "+4917612345678"  # normalised to E.164
    with Session(db) as s:
        lead = s.exec(select(Lead).where(Lead.tenant_id == tenant.id)).one()
        assert (lead.name, lead.email, lead.status) == ("Mia", "mia@example.com", "contacted")
        channels = sorted(m.channel for m in s.exec(select(OutboxMessage).where(OutboxMessage.tenant_id == tenant.id)))
    assert channels == ["email", "sms", "web", "whatsapp"]
    hook = receiver.requests[0]
    assert hook.path == "/crm" and hook.json() == {"leadId": lead.id}
    secret = __import__("engine.services.studio_settings", fromlist=["x"]).signing_secrets(db, actor.tenant_id, {})[0]
    assert verify_signature(
        secret, hook.headers[SIGNATURE_HEADER.lower()], hook.body, now=int(datetime.now().timestamp())
    )
    with unit_of_work(db, read_only=True) as uow:
        assert services.get_workflow(uow=uow, actor=actor, workflow_id=wf.id).run_count == 1


def _actor(tenant):
    from engine.security.auth import system_actor

    return system_actor(tenant.id)


def test_create_lead_updates_the_lead_with_the_same_email_and_emits_lead_created(db, tenant_factory, runner):
    tenant = tenant_factory()
    actor = _actor(tenant)
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data=_workflow(
                [
                    {
                        "id": "lead-1",
                        "type": "create_lead",
                        "config": {"name": "{{trigger.content}}", "email": "anna@example.com"},
                    }
                ]
            ),
        )
    with unit_of_work(db) as uow:
        notified = services.create_workflow(
            uow=uow,
            actor=actor,
            data=_workflow(
                [
                    {
                        "id": "note-1",
                        "type": "send_message",
                        "config": {"message": "Neuer Lead {{trigger.leadId}}", "recipient": "team", "channel": "web"},
                    }
                ],
                trigger="lead_created",
            ),
        )
    first = runner.ingest(tenant.id, {"triggerType": "web_chat", "content": "Anna", "from": "v1"})
    second = runner.ingest(tenant.id, {"triggerType": "web_chat", "content": "Anna Schmidt", "from": "v2"})
    out1 = _steps(db, actor, first.execution_ids[0])["lead-1"].output
    out2 = _steps(db, actor, second.execution_ids[0])["lead-1"].output
    assert out1["created"] is True and out2["created"] is False
    assert out2["leadId"] == out1["leadId"] and "instead of creating a duplicate" in out2["note"]
    with Session(db) as s:
        leads = s.exec(select(Lead).where(Lead.tenant_id == tenant.id)).all()
    assert [lead.name for lead in leads] == ["Anna Schmidt"]
    with unit_of_work(db, read_only=True) as uow:
        assert (
            services.get_workflow(uow=uow, actor=actor, workflow_id=notified.id).run_count == 1
        )  # only the first one emitted lead_created


def test_update_lead_finds_the_lead_by_the_trigger_sender(db, tenant_factory, runner):
    tenant = tenant_factory()
    actor = _actor(tenant)
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data=_workflow(
                [{"id": "lead-1", "type": "create_lead", "config": {"name": "Tom", "phone": "{{trigger.from}}"}}],
                trigger="missed_call",
            ),
        )
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data=_workflow(
                [
                    {
                        "id": "up-1",
                        "type": "update_lead",
                        "config": {"updates": {"status": "qualified", "customFields": {"goal": "strength"}}},
                    }
                ],
                trigger="sms_received",
            ),
        )
    runner.ingest(tenant.id, {"triggerType": "missed_call", "from": "0176 12345678"})
    result = runner.ingest(tenant.id, {"triggerType": "sms_received", "from": "+4917612345678", "content": "Ja, gerne"})
    step = _steps(db, actor, result.execution_ids[0])["up-1"]
    assert step.status == "succeeded", step.error
    with Session(db) as s:
        lead = s.exec(select(Lead).where(Lead.tenant_id == tenant.id)).one()
    assert (lead.phone, lead.status, lead.custom_fields) == ("+4917612345678", "qualified", {"goal": "strength"})


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9/x", "http://10.0.0.1/x", "http://169.254.169.254/latest/meta-data"]
)
def test_webhooks_to_internal_addresses_are_refused_without_the_allow_list(db, tenant_factory, runner, url):
    tenant = tenant_factory()
    actor = _actor(tenant)
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data=_workflow([{"id": "hook-1", "type": "call_webhook", "config": {"webhookUrl": url}}]),
        )
    result = runner.ingest(tenant.id, {"triggerType": "web_chat", "content": "x", "from": "v"})
    step = _steps(db, actor, result.execution_ids[0])["hook-1"]
    assert step.status == "failed" and "not on the allow-list" in step.error
    with unit_of_work(db, read_only=True) as uow:
        assert services.get_execution(uow=uow, actor=actor, execution_id=result.execution_ids[0]).status == "failed"


def test_whatsapp_reply_is_delivered_by_the_worker_to_the_cloud_api(
    db, tenant_factory, runner, worker, receiver, provider_base_urls
):
    receiver.responses.append((200, {"messages": [{"id": "wamid.TEST1"}]}, {}))
    tenant = tenant_factory(
        channels={
            "whatsapp": {
                "adapter": "whatsapp_cloud",
                "baseUrl": receiver.url,
                "apiVersion": "v21.0",
                "phoneNumberId": "12345",
                "accessToken": "secret-token",
            }
        }
    )
    actor = _actor(tenant)
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data=_workflow(
                [{"id": "send-1", "type": "send_whatsapp", "config": {"message": "Hallo {{trigger.from}}!"}}],
                trigger="whatsapp_message",
            ),
        )
    result = runner.ingest(
        tenant.id, {"triggerType": "whatsapp_message", "channel": "whatsapp", "content": "Hi", "from": "+4917612345678"}
    )
    with unit_of_work(db, read_only=True) as uow:
        assert services.list_outbox(uow=uow, actor=actor).items[0].status == "pending"
    assert worker.run_once() >= 1
    request = receiver.requests[0]
    assert (request.method, request.path) == ("POST", "/v21.0/12345/messages")
    assert request.headers["authorization"] == "Bearer secret-token"
    with unit_of_work(db, read_only=True) as uow:
        message = services.list_outbox(uow=uow, actor=actor, execution_id=result.execution_ids[0]).items[0]
    # Our own reference goes along; Meta echoes it in every status report of the message.
    assert request.json() == {
        "messaging_product": "whatsapp",
        "to": "4917612345678",
        "type": "text",
        "text": {"body": "Hallo +4917612345678!"},
        "biz_opaque_callback_data": message.id,
    }
    assert (message.status, message.provider_message_id, message.attempts) == ("sent", "wamid.TEST1", 1)


def test_sms_is_delivered_through_twilio(db, tenant_factory, runner, worker, receiver, provider_base_urls):
    receiver.responses.append((201, {"sid": "SM123"}, {}))
    tenant = tenant_factory(
        channels={
            "sms": {
                "adapter": "twilio",
                "baseUrl": receiver.url,
                "accountSid": "AC1",
                "authToken": "tok",
                "fromNumber": "+4930123456",
            }
        }
    )
    actor = _actor(tenant)
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data=_workflow(
                [{"id": "sms-1", "type": "send_sms", "config": {"message": "Rückruf folgt"}}], trigger="missed_call"
            ),
        )
    runner.ingest(tenant.id, {"triggerType": "missed_call", "from": "+4917612345678"})
    worker.run_once()
    request = receiver.requests[0]
    assert request.path == "/2010-04-01/Accounts/AC1/Messages.json"
    assert request.headers["authorization"].startswith("Basic ")
    from urllib.parse import parse_qs

    assert parse_qs(request.body.decode()) == {
        "To": ["+4917612345678"],
        "From": ["+4930123456"],
        "Body": ["Rückruf folgt"],
    }
    with unit_of_work(db, read_only=True) as uow:
        assert services.list_outbox(uow=uow, actor=actor).items[0].provider_message_id == "SM123"


class _Sink:
    def __init__(self):
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 OK"


def test_email_is_delivered_over_smtp(db, tenant_factory, runner, worker):
    sink = _Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        tenant = tenant_factory(
            channels={
                "email": {
                    "adapter": "smtp",
                    "host": "127.0.0.1",
                    "port": controller.port,
                    "security": "none",
                    "fromAddress": "studio@example.com",
                }
            }
        )
        actor = _actor(tenant)
        with unit_of_work(db) as uow:
            services.create_workflow(
                uow=uow,
                actor=actor,
                data=_workflow(
                    [
                        {
                            "id": "mail-1",
                            "type": "send_email",
                            "config": {"message": "Grüße aus dem Studio", "subject": "Hallo"},
                        }
                    ],
                    trigger="email_received",
                ),
            )
        runner.ingest(
            tenant.id,
            {"triggerType": "email_received", "channel": "email", "content": "Frage", "from": "kim@example.com"},
        )
        worker.run_once()
    finally:
        controller.stop()
    envelope = sink.envelopes[0]
    assert envelope.mail_from == "studio@example.com" and envelope.rcpt_tos == ["kim@example.com"]
    assert "Grüße aus dem Studio" in envelope.content.decode("utf-8", errors="replace") or b"Gr" in envelope.content
    with unit_of_work(db, read_only=True) as uow:
        assert services.list_outbox(uow=uow, actor=actor).items[0].status == "sent"


def test_quiet_hours_defer_and_the_frequency_cap_suppresses(db, tenant_factory, runner, worker, clock):
    tenant = tenant_factory(quietHours={"start": "21:00", "end": "08:00"}, frequencyCap=2)
    actor = _actor(tenant)
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data=_workflow([{"id": "sms-1", "type": "send_sms", "config": {"message": "Hi"}}], trigger="missed_call"),
        )
    clock[0] = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)  # 23:00 in Berlin
    old_call = (clock[0] - timedelta(hours=2)).isoformat()  # not a direct reply
    outputs = []
    for _ in range(3):
        result = runner.ingest(
            tenant.id, {"triggerType": "missed_call", "from": "+4917612345678", "receivedAt": old_call}
        )
        outputs.append(_steps(db, actor, result.execution_ids[0])["sms-1"].output)
    assert [o["status"] for o in outputs] == ["deferred", "deferred", "suppressed"]
    assert outputs[0]["policy"]["deferredUntil"] == "2026-11-26T07:00:00+00:00"
    assert "frequency cap" in outputs[2]["policy"]["reason"]
    clock[0] = datetime(2026, 11, 26, 7, 0, 30, tzinfo=UTC)
    worker.run_once()
    with unit_of_work(db, read_only=True) as uow:
        statuses = sorted(m.status for m in services.list_outbox(uow=uow, actor=actor).items)
    assert statuses == ["recorded", "recorded", "suppressed"]


def test_a_direct_reply_is_exempt_from_quiet_hours(db, tenant_factory, runner, clock):
    tenant = tenant_factory(quietHours={"start": "21:00", "end": "08:00"})
    actor = _actor(tenant)
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data=_workflow(
                [{"id": "wa-1", "type": "send_whatsapp", "config": {"message": "Danke!"}}], trigger="whatsapp_message"
            ),
        )
    clock[0] = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)
    result = runner.ingest(tenant.id, {"triggerType": "whatsapp_message", "content": "Hallo", "from": "+4917612345678"})
    output = _steps(db, actor, result.execution_ids[0])["wa-1"].output
    assert output["status"] == "recorded" and "direct reply" in output["policy"]["exempt"]


def test_a_booking_emits_booking_created(db, tenant_factory):
    tenant = tenant_factory()
    actor = _actor(tenant)
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data=_workflow(
                [
                    {
                        "id": "c-1",
                        "type": "send_sms",
                        "config": {"message": "Bis {{trigger.className}}!", "recipient": "{{trigger.from}}"},
                    }
                ],
                trigger="booking_created",
            ),
        )
    with unit_of_work(db) as uow:
        booking, result = services.create_booking(
            uow=uow,
            actor=actor,
            member_name="Lea",
            class_name="Vinyasa Flow",
            starts_at=NOW + timedelta(days=1),
            member_contact="+4917611112222",
        )
    with unit_of_work(db, read_only=True) as uow:
        execution = services.get_execution(uow=uow, actor=actor, execution_id=result.execution_ids[0])
    assert execution.status == "succeeded" and execution.trigger["bookingId"] == booking.id
    with unit_of_work(db, read_only=True) as uow:
        assert services.list_outbox(uow=uow, actor=actor).items[0].body == "Bis Vinyasa Flow!"


def test_inbound_text_gets_an_intent_before_matching(db, tenant_factory, runner):
    tenant = tenant_factory()
    actor = _actor(tenant)
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data={
                "name": "Prices",
                "trigger": {"type": "intent_detected", "config": {"intent": "pricing"}},
                "actions": [{"id": "a", "type": "send_whatsapp", "config": {"message": "Preisliste folgt"}}],
            },
        )
    result = runner.ingest(
        tenant.id,
        {"triggerType": "whatsapp_message", "content": "Was kostet eine 10er-Karte?", "from": "+4917612345678"},
    )
    with unit_of_work(db, read_only=True) as uow:
        execution = services.get_execution(uow=uow, actor=actor, execution_id=result.execution_ids[0])
    assert execution.trigger["intent"] == "pricing" and execution.trigger["intentConfidence"] > 0.5


def test_an_unusable_phone_number_fails_the_step_with_a_clear_error(db, tenant_factory, runner):
    tenant = tenant_factory()
    actor = _actor(tenant)
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data=_workflow(
                [{"id": "sms-1", "type": "send_sms", "config": {"message": "Hi", "recipient": "call me maybe"}}]
            ),
        )
    result = runner.ingest(tenant.id, {"triggerType": "web_chat", "content": "x", "from": "v"})
    step = _steps(db, actor, result.execution_ids[0])["sms-1"]
    assert step.status == "failed" and "call me maybe" in step.error
    with unit_of_work(db, read_only=True) as uow:
        assert services.list_outbox(uow=uow, actor=actor).total == 0


def test_a_tenant_can_let_its_openai_compatible_provider_classify(db, tenant_factory, runner, receiver):
    import json as _json

    receiver.responses.append(
        (200, {"choices": [{"message": {"content": _json.dumps({"intent": "complaint", "confidence": 0.77})}}]}, {})
    )
    tenant = tenant_factory(
        ai={"provider": "openai_compatible", "baseUrl": receiver.url, "apiKey": "k", "model": "m", "classify": True}
    )
    actor = _actor(tenant)
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data={
                "name": "Complaints",
                "trigger": {"type": "intent_detected", "config": {"intent": "complaint"}},
                "actions": [{"id": "a", "type": "send_whatsapp", "config": {"message": "Das tut uns leid"}}],
            },
        )
    result = runner.ingest(
        tenant.id, {"triggerType": "whatsapp_message", "content": "Hallo zusammen", "from": "+4917612345678"}
    )
    with unit_of_work(db, read_only=True) as uow:
        execution = services.get_execution(uow=uow, actor=actor, execution_id=result.execution_ids[0])
    assert (execution.trigger["intent"], execution.trigger["intentConfidence"]) == ("complaint", 0.77)
    assert receiver.requests[0].path == "/chat/completions"
