"""Provider webhooks end to end on loopback: signed requests into the real API app, workflows
run, replies delivered by the worker to local fakes of the Graph API / Twilio / an SMTP
server, then signed status callbacks update the outbox. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import time
import warnings
from urllib.parse import urlencode

import pytest
from aiosmtpd.controller import Controller
from cryptography.fernet import Fernet
from sqlmodel import Session, select

from engine import services
from engine.api import create_app
from engine.errors import PermissionDenied
from engine.inbound.signatures import meta_signature, twilio_signature
from engine.security.auth import Actor
from engine.services import channel_settings as cs
from engine.settings import get_settings
from engine.store.models import EventRecord, OutboxMessage, TenantSecret
from engine.uow import unit_of_work
from engine.worker import Worker
from tests.servers import Receiver, free_port

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

APP_SECRET = "meta-app-secret-0123456789"
VERIFY = "verify-me-please-42"
ACCESS = "EAAG-access-token-secret-xyz"
TWILIO_TOKEN = "twilio-auth-token-abcdef123456"
MEMBER = "4917612345678"


@pytest.fixture(autouse=True)
def secret_key(monkeypatch):
    monkeypatch.setenv("STUDIO_SECRET_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("STUDIO_ALLOW_PROVIDER_BASE_URL", "1")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def client(db):
    with TestClient(create_app(db)) as c:
        yield c


def _workflow(trigger: str, action: dict) -> dict:
    return {
        "name": f"Answer {trigger}",
        "trigger": {"type": trigger, "config": {}},
        "conditions": [],
        "actions": [{"id": "reply", **action, "nextActionId": None}],
    }


def _point_at(db, actor, channel: str, url: str) -> None:
    """Tests only: send this channel's provider calls to a local fake (operator switch is on)."""
    with unit_of_work(db, read_only=True) as uow:
        tenant = services.get_tenant(uow=uow, actor=actor)
    channels = dict(tenant.settings["channels"])
    channels[channel] = {**channels[channel], "baseUrl": url}
    with unit_of_work(db) as uow:
        services.update_tenant_settings(uow=uow, actor=actor, settings={"channels": channels})


def _whatsapp(db, actor, graph: Receiver) -> str:
    with unit_of_work(db) as uow:
        cs.save_channel(
            uow=uow,
            actor=actor,
            channel="whatsapp",
            enabled=True,
            values={"phoneNumberId": "1055"},
            secrets={"accessToken": ACCESS, "appSecret": APP_SECRET, "verifyToken": VERIFY},
        )
    _point_at(db, actor, "whatsapp", graph.url)
    with unit_of_work(db) as uow:
        return cs.webhook_id(uow=uow, actor=actor)


def _wa_message(msg_id: str, text: str) -> bytes:
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "WABA",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {"phone_number_id": "1055"},
                                "contacts": [{"wa_id": MEMBER, "profile": {"name": "Mia"}}],
                                "messages": [
                                    {
                                        "from": MEMBER,
                                        "id": msg_id,
                                        "timestamp": str(int(time.time())),
                                        "type": "text",
                                        "text": {"body": text},
                                    }
                                ],
                            },
                        }
                    ],
                }
            ],
        }
    ).encode()


def _wa_status(wamid: str, status: str, errors: list | None = None) -> bytes:
    st = {"id": wamid, "status": status, "timestamp": str(int(time.time())), "recipient_id": MEMBER}
    if errors:
        st["errors"] = errors
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "WABA",
                    "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp", "statuses": [st]}}],
                }
            ],
        }
    ).encode()


def _post_meta(client, hook: str, body: bytes, secret: str | None = APP_SECRET):
    headers = {"Content-Type": "application/json"}
    if secret:
        headers["X-Hub-Signature-256"] = meta_signature(secret, body)
    return client.post(f"/hooks/{hook}/whatsapp", content=body, headers=headers)


def test_whatsapp_handshake(db, actor, client):
    with Receiver() as graph:
        hook = _whatsapp(db, actor, graph)
    ok = client.get(
        f"/hooks/{hook}/whatsapp",
        params={"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "1158201444"},
    )
    assert ok.status_code == 200 and ok.text == "1158201444"
    bad = client.get(
        f"/hooks/{hook}/whatsapp", params={"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"}
    )
    assert bad.status_code == 403
    assert client.get("/hooks/not-a-hook/whatsapp", params={"hub.mode": "subscribe"}).status_code == 404


def test_whatsapp_message_runs_workflow_reply_delivered_then_status(db, actor, client, caplog):
    graph = Receiver()
    graph.responses.append((200, {"messages": [{"id": "wamid.REPLY1"}]}, {}))
    try:
        hook = _whatsapp(db, actor, graph)
        with unit_of_work(db) as uow:
            services.create_workflow(
                uow=uow,
                actor=actor,
                data=_workflow(
                    "whatsapp_message",
                    {"type": "send_whatsapp", "config": {"message": "Hallo! Du schriebst: {{trigger.content}}"}},
                ),
            )
        body = _wa_message("wamid.IN1", "Wann ist Yoga?")
        r = _post_meta(client, hook, body)
        assert r.status_code == 200, r.text
        assert r.json() == {"received": 1, "duplicates": 0, "statuses": 0}
        # The provider retries the same delivery: no second event, no second run.
        again = _post_meta(client, hook, body)
        assert again.json()["duplicates"] == 1
        with Session(db) as s:
            events = s.exec(select(EventRecord).where(EventRecord.tenant_id == actor.tenant_id)).all()
            assert len(events) == 1 and events[0].sender == "+" + MEMBER and events[0].content == "Wann ist Yoga?"
            assert events[0].data["contactName"] == "Mia"
            msg = s.exec(select(OutboxMessage).where(OutboxMessage.tenant_id == actor.tenant_id)).one()
            assert msg.status == "pending"
        # The worker delivers the reply to the (fake) Graph API as free text (inside the 24 h window).
        Worker(db, name="t").run_once()
        assert len(graph.requests) == 1
        sent = graph.requests[0]
        assert sent.path == "/v21.0/1055/messages"
        assert sent.headers["authorization"] == f"Bearer {ACCESS}"
        assert sent.json()["type"] == "text" and sent.json()["to"] == MEMBER
        assert "Wann ist Yoga?" in sent.json()["text"]["body"]
        # Signed status callbacks: delivered, then a late "sent" does not move it back, then read.
        for status in ("delivered", "sent", "read"):
            assert _post_meta(client, hook, _wa_status("wamid.REPLY1", status)).status_code == 200
            with Session(db) as s:
                row = s.get(OutboxMessage, msg.id)
                if status == "delivered":
                    assert row.status == "delivered"
        assert row.status == "read"
        assert [e["status"] for e in row.detail["deliveryEvents"]] == ["delivered", "sent", "read"]
        with unit_of_work(db, read_only=True) as uow:
            out = services.list_outbox(uow=uow, actor=actor, execution_id=row.execution_id)
        assert out.items[0].status == "read" and out.items[0].provider_message_id == "wamid.REPLY1"
    finally:
        graph.close()


def test_whatsapp_bad_signatures_store_nothing(db, actor, client, caplog):
    with Receiver() as graph:
        hook = _whatsapp(db, actor, graph)
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data=_workflow("whatsapp_message", {"type": "send_whatsapp", "config": {"message": "Hi"}}),
        )
    body = _wa_message("wamid.X", "Hallo")
    caplog.set_level(logging.WARNING, logger="engine.api.inbound")
    assert _post_meta(client, hook, body, secret=None).status_code == 403  # missing header
    assert _post_meta(client, hook, body, secret="wrong-secret").status_code == 403
    tampered = body.replace(b"Hallo", b"Hallx")
    r = client.post(
        f"/hooks/{hook}/whatsapp", content=tampered, headers={"X-Hub-Signature-256": meta_signature(APP_SECRET, body)}
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert caplog.text.count("refused") == 3
    with Session(db) as s:
        assert s.exec(select(EventRecord)).all() == []


def test_failed_status_records_the_error(db, actor, client):
    graph = Receiver()
    graph.responses.append((200, {"messages": [{"id": "wamid.F"}]}, {}))
    try:
        hook = _whatsapp(db, actor, graph)
        with unit_of_work(db) as uow:
            services.create_workflow(
                uow=uow,
                actor=actor,
                data=_workflow("whatsapp_message", {"type": "send_whatsapp", "config": {"message": "Hi"}}),
            )
        _post_meta(client, hook, _wa_message("wamid.IN2", "Hallo"))
        Worker(db, name="t").run_once()
        err = [{"code": 131026, "title": "Message undeliverable", "error_data": {"details": "Receiver is incapable"}}]
        _post_meta(client, hook, _wa_status("wamid.F", "failed", err))
        with Session(db) as s:
            row = s.exec(select(OutboxMessage)).one()
        assert row.status == "failed" and "Message undeliverable" in row.error and "131026" in row.error
    finally:
        graph.close()


def _twilio_setup(db, actor, fake: Receiver) -> str:
    with unit_of_work(db) as uow:
        cs.save_channel(
            uow=uow,
            actor=actor,
            channel="sms",
            enabled=True,
            values={"accountSid": "AC123", "fromNumber": "+4930123456"},
            secrets={"authToken": TWILIO_TOKEN},
        )
    _point_at(db, actor, "sms", fake.url)
    with unit_of_work(db) as uow:
        return cs.webhook_id(uow=uow, actor=actor)


def _post_twilio(client, hook: str, kind: str, params: dict, token: str | None = TWILIO_TOKEN):
    url = f"http://testserver/hooks/{hook}/twilio/{kind}"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if token:
        headers["X-Twilio-Signature"] = twilio_signature(token, url, params.items())
    return client.post(url, content=urlencode(params), headers=headers)


def test_twilio_sms_reply_and_status(db, actor, client):
    fake = Receiver()
    fake.responses.append((201, {"sid": "SMREPLY1", "status": "queued"}, {}))
    try:
        hook = _twilio_setup(db, actor, fake)
        with unit_of_work(db) as uow:
            services.create_workflow(
                uow=uow,
                actor=actor,
                data=_workflow(
                    "sms_received", {"type": "send_sms", "config": {"message": "Danke, {{trigger.content}}"}}
                ),
            )
        params = {
            "MessageSid": "SMIN1",
            "AccountSid": "AC123",
            "From": "+4917611112222",
            "To": "+4930123456",
            "Body": "Probetraining?",
            "NumMedia": "0",
        }
        r = _post_twilio(client, hook, "sms", params)
        assert r.status_code == 200 and "<Response>" in r.text
        assert _post_twilio(client, hook, "sms", params).status_code == 200  # retry: duplicate
        assert _post_twilio(client, hook, "sms", {**params, "Body": "tampered"}, token=None).status_code == 403
        bad = dict(params, Body="x")
        bad_sig = twilio_signature(TWILIO_TOKEN, f"http://testserver/hooks/{hook}/twilio/sms", params.items())
        r = client.post(
            f"/hooks/{hook}/twilio/sms",
            content=urlencode(bad),
            headers={"X-Twilio-Signature": bad_sig, "Content-Type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 403
        assert _post_twilio(client, hook, "sms", params, token="wrong").status_code == 403
        with Session(db) as s:
            assert len(s.exec(select(EventRecord)).all()) == 1
        Worker(db, name="t").run_once()
        assert len(fake.requests) == 1 and fake.requests[0].path == "/2010-04-01/Accounts/AC123/Messages.json"
        assert b"Probetraining" in fake.requests[0].body
        status = {"MessageSid": "SMREPLY1", "MessageStatus": "delivered", "AccountSid": "AC123"}
        assert _post_twilio(client, hook, "message-status", status).status_code == 200
        with Session(db) as s:
            assert s.exec(select(OutboxMessage)).one().status == "delivered"
    finally:
        fake.close()


def test_twilio_missed_call_and_transcription(db, actor, client):
    fake = Receiver()
    fake.responses.append((201, {"sid": "SMCB1"}, {}))
    try:
        hook = _twilio_setup(db, actor, fake)
        with unit_of_work(db) as uow:
            services.create_workflow(
                uow=uow,
                actor=actor,
                data=_workflow(
                    "missed_call",
                    {
                        "type": "send_sms",
                        "config": {
                            "message": "Sorry, wir haben deinen Anruf verpasst.",
                            "recipient": "{{trigger.from}}",
                        },
                    },
                ),
            )
        answered = {"CallSid": "CA0", "CallStatus": "completed", "From": "+4917633334444", "To": "+4930123456"}
        assert _post_twilio(client, hook, "call-status", answered).status_code == 200
        missed = {"CallSid": "CA1", "CallStatus": "no-answer", "From": "+4917633334444", "To": "+4930123456"}
        assert _post_twilio(client, hook, "call-status", missed).status_code == 200
        transcript = {
            "TranscriptionSid": "TR1",
            "TranscriptionText": "Ich möchte einen Kurs buchen",
            "TranscriptionStatus": "completed",
            "CallSid": "CA1",
            "From": "+4917633334444",
        }
        assert _post_twilio(client, hook, "transcription", transcript).status_code == 200
        with Session(db) as s:
            events = {e.trigger_type: e for e in s.exec(select(EventRecord)).all()}
        assert set(events) == {"missed_call", "voice_call"}
        assert events["missed_call"].sender == "+4917633334444"
        assert events["voice_call"].content == "Ich möchte einen Kurs buchen"
        Worker(db, name="t").run_once()
        assert len(fake.requests) == 1 and b"verpasst" in fake.requests[0].body
    finally:
        fake.close()


class _Sink:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 OK"


def test_inbound_email_answered_over_smtp(db, actor, client):
    sink = _Sink()
    smtpd = Controller(sink, hostname="127.0.0.1", port=free_port())
    smtpd.start()
    try:
        with unit_of_work(db) as uow:
            cs.save_channel(
                uow=uow,
                actor=actor,
                channel="email",
                enabled=True,
                values={
                    "host": "127.0.0.1",
                    "port": smtpd.port,
                    "security": "none",
                    "fromAddress": "hallo@studio.test",
                },
            )
        with unit_of_work(db) as uow:
            services.create_workflow(
                uow=uow,
                actor=actor,
                data=_workflow(
                    "email_received",
                    {
                        "type": "send_email",
                        "config": {"message": "Danke für: {{trigger.subject}}", "subject": "Re: {{trigger.subject}}"},
                    },
                ),
            )
        with unit_of_work(db) as uow:
            urls = cs.callback_urls(uow=uow, actor=actor, base_url="http://testserver")
        path = urls["email"].removeprefix("http://testserver")
        payload = {
            "FromFull": {"Email": "Mia@Example.org", "Name": "Mia"},
            "From": "Mia <mia@example.org>",
            "To": "hallo@studio.test",
            "Subject": "Preise",
            "TextBody": "Was kostet ein Monat?",
            "MessageID": "73e6d360-66eb-11e1-8e72-a8904824019b",
        }
        assert client.post(path, json=payload).status_code == 200
        assert client.post(path, json=payload).json()["duplicates"] == 1
        wrong = path.rsplit("/", 1)[0] + "/not-the-token"
        assert client.post(wrong, json={**payload, "MessageID": "other"}).status_code == 403
        missing = client.post(path, json={"Subject": "x", "MessageID": "m2"})
        assert missing.status_code == 422 and missing.json()["error"]["field"] == "FromFull.Email"
        Worker(db, name="t").run_once()
        assert len(sink.messages) == 1
        assert sink.messages[0].rcpt_tos == ["mia@example.org"]
        assert b"Was kostet" not in sink.messages[0].content and b"Preise" in sink.messages[0].content
    finally:
        smtpd.stop()


def test_webhook_ids_do_not_cross_tenants(db, actor, other_actor, client):
    with Receiver() as graph:
        hook_a = _whatsapp(db, actor, graph)
        hook_b = _whatsapp(db, other_actor, graph)
    assert hook_a != hook_b
    # B's body signed with A's secret at B's hook is refused (secrets are per studio).
    with unit_of_work(db) as uow:
        cs.save_channel(
            uow=uow,
            actor=other_actor,
            channel="whatsapp",
            enabled=True,
            values={"phoneNumberId": "2"},
            secrets={"appSecret": "b-secret"},
        )
    assert _post_meta(client, hook_b, _wa_message("wamid.B", "x"), secret=APP_SECRET).status_code == 403
    with pytest.raises(PermissionDenied):
        with unit_of_work(db, read_only=True) as uow:
            cs.get_channel(uow=uow, actor=Actor(tenant_id=actor.tenant_id, role="editor"), channel="whatsapp")


def test_secrets_encrypted_at_rest_and_never_shown(db, actor):
    with Receiver() as graph:
        _whatsapp(db, actor, graph)
    with unit_of_work(db, read_only=True) as uow:
        view = cs.get_channel(uow=uow, actor=actor, channel="whatsapp")
    dumped = view.model_dump_json()
    for secret in (ACCESS, APP_SECRET, VERIFY):
        assert secret not in dumped
    assert view.secrets["accessToken"].set and view.secrets["accessToken"].set_at is not None
    with Session(db) as s:
        rows = s.exec(select(TenantSecret)).all()
        assert rows and all(ACCESS not in r.ciphertext and APP_SECRET not in r.ciphertext for r in rows)
    with unit_of_work(db, read_only=True) as uow:
        assert ACCESS not in json.dumps(services.get_tenant(uow=uow, actor=actor).settings)
    with unit_of_work(db, read_only=True) as uow:
        audit = cs.list_audit(uow=uow, actor=actor)
    assert audit and audit[-1].changes["accessToken"] == "changed"
    assert ACCESS not in json.dumps([a.model_dump(mode="json") for a in audit])


def test_twilio_sends_carry_the_status_callback_when_public_url_is_set(db, actor, monkeypatch):
    monkeypatch.setenv("STUDIO_PUBLIC_URL", "https://studio.example.com")
    get_settings.cache_clear()
    fake = Receiver()
    fake.responses.append((201, {"sid": "SM1"}, {}))
    try:
        hook = _twilio_setup(db, actor, fake)
        with unit_of_work(db) as uow:
            result = cs.send_test_message(uow=uow, actor=actor, channel="sms", recipient="+4917611112222")
        assert result.ok and result.provider_message_id == "SM1"
        form = dict(pair.split("=", 1) for pair in fake.requests[0].body.decode().split("&"))
        from urllib.parse import unquote_plus

        assert unquote_plus(form["StatusCallback"]) == f"https://studio.example.com/hooks/{hook}/twilio/message-status"
        assert TWILIO_TOKEN not in result.model_dump_json()
    finally:
        fake.close()


def test_external_steps_wait_for_the_worker_so_the_webhook_answers_at_once(db, tenant_factory, client):
    tenant = tenant_factory(webhookAllowList=["127.0.0.1"])
    actor = Actor(tenant_id=tenant.id, role="owner")
    crm = Receiver()
    try:
        with Receiver() as graph:
            hook = _whatsapp(db, actor, graph)
        with unit_of_work(db) as uow:
            services.create_workflow(
                uow=uow,
                actor=actor,
                data=_workflow(
                    "whatsapp_message",
                    {
                        "type": "call_webhook",
                        "config": {"webhookUrl": crm.url + "/crm", "body": {"text": "{{trigger.content}}"}},
                    },
                ),
            )
        assert _post_meta(client, hook, _wa_message("wamid.EXT", "Neuer Lead")).status_code == 200
        assert crm.requests == []  # the provider got its answer before any remote call
        with unit_of_work(db, read_only=True) as uow:
            execution = services.list_executions(uow=uow, actor=actor).items[0]
        assert execution.status == "waiting"
        Worker(db, name="t").run_once()
        assert len(crm.requests) == 1 and crm.requests[0].json() == {"text": "Neuer Lead"}
        with unit_of_work(db, read_only=True) as uow:
            assert services.get_execution(uow=uow, actor=actor, execution_id=execution.id).status == "succeeded"
    finally:
        crm.close()


def test_cli_prints_the_callback_urls(db, actor, capsys):
    from engine.cli import main

    url = db.url.render_as_string(hide_password=False)
    with unit_of_work(db, read_only=True) as uow:
        tenant = services.get_tenant(uow=uow, actor=actor)
    assert (
        main(["--database-url", url, "callback-urls", "--tenant", tenant.slug, "--base-url", "https://s.example"]) == 0
    )
    out = capsys.readouterr().out
    with unit_of_work(db) as uow:
        hook = cs.webhook_id(uow=uow, actor=actor)
    assert f"whatsapp\thttps://s.example/hooks/{hook}/whatsapp" in out
    assert 'data-studio="wc_' in out


def test_plain_text_secrets_from_old_settings_move_into_encrypted_storage(db, tenant_factory):
    tenant = tenant_factory(
        channels={
            "sms": {
                "adapter": "twilio",
                "accountSid": "AC9",
                "authToken": "legacy-plain-token",
                "fromNumber": "+4930123456",
            }
        }
    )
    actor = Actor(tenant_id=tenant.id, role="owner")
    with unit_of_work(db, read_only=True) as uow:
        assert cs.get_channel(uow=uow, actor=actor, channel="sms").secrets["authToken"].set
    with unit_of_work(db) as uow:
        cs.save_channel(
            uow=uow, actor=actor, channel="sms", enabled=True, values={"accountSid": "AC9", "fromNumber": "+4930123456"}
        )
    with unit_of_work(db, read_only=True) as uow:
        assert "legacy-plain-token" not in json.dumps(services.get_tenant(uow=uow, actor=actor).settings)
    with unit_of_work(db, read_only=True) as uow:
        assert cs.secret_value(uow=uow, tenant_id=tenant.id, name="channels.sms.authToken") == "legacy-plain-token"
    with unit_of_work(db, read_only=True) as uow:
        audit = cs.list_audit(uow=uow, actor=actor)[0]
    assert audit.changes["authToken"] == "changed" and "legacy-plain-token" not in json.dumps(audit.changes)
