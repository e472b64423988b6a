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
        assert r.json() == {"received": 1, "duplicates": 0, "statuses": 0, "ignored": 0}
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


# --------------------------------------------------------------------------- issue 21: no 5xx


def _email_path(db, actor) -> str:
    with unit_of_work(db) as uow:
        return cs.callback_urls(uow=uow, actor=actor, base_url="http://testserver")["email"].removeprefix(
            "http://testserver"
        )


def _no_secrets_in(caplog, *secrets: str) -> None:
    """Nothing the server logged (the test's own HTTP client logs its URLs) holds a secret."""
    server = "\n".join(
        f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))
    )
    assert server, "the server logged nothing: the check would prove nothing"
    for secret in (APP_SECRET, VERIFY, ACCESS, TWILIO_TOKEN, *secrets):
        assert secret not in server


def _stored_events(db) -> int:
    with Session(db) as s:
        return len(s.exec(select(EventRecord)).all())


def test_non_ascii_signature_headers_are_refused_with_403(db, actor, client, caplog):
    with Receiver() as fake:
        hook = _whatsapp(db, actor, fake)
        _twilio_setup(db, actor, fake)
    caplog.set_level(logging.DEBUG)
    body = _wa_message("wamid.U", "Hallo")
    r = client.post(
        f"/hooks/{hook}/whatsapp",
        content=body,
        headers={"X-Hub-Signature-256": "sha256=éé".encode(), "Content-Type": "application/json"},
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    r = client.post(
        f"/hooks/{hook}/twilio/sms",
        content=urlencode({"MessageSid": "SM1", "From": "+4917611112222"}),
        headers={"X-Twilio-Signature": "éé=".encode(), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 403
    token = _email_path(db, actor).rsplit("/", 1)[1]
    r = client.post(
        f"/hooks/{hook}/email/-",
        json={"From": "a@b.c", "MessageID": "m"},
        headers={"Authorization": b"Basic " + "x:éé".encode()},
    )
    assert r.status_code == 403
    r = client.post(f"/hooks/{hook}/email/{'é' * 30}", json={"From": "a@b.c", "MessageID": "m"})
    assert r.status_code == 403
    assert _stored_events(db) == 0
    assert "unhandled" not in caplog.text
    _no_secrets_in(caplog, token)


def _shapes() -> list[bytes]:
    good = json.loads(_wa_message("wamid.S", "Hallo"))
    text_plain = json.loads(json.dumps(good))
    text_plain["entry"][0]["changes"][0]["value"]["messages"][0]["text"] = "plain"
    profile = json.loads(json.dumps(good))
    profile["entry"][0]["changes"][0]["value"]["contacts"][0]["profile"] = "x"
    return [
        b'{"entry":["x"]}',
        b'{"object":"whatsapp_business_account","entry":{"a":1}}',
        json.dumps(text_plain).encode(),
        json.dumps(profile).encode(),
        b'{"entry": [{"changes": [{"value": {"messages": [{"from": "49", "id": "w", "text": {"body": NaN}}]}}]}]}',
        b"not json at all",
        b'{"deep":' + b"[" * 100 + b"]" * 100 + b"}",
    ]


def test_whatsapp_signed_deliveries_of_unexpected_shape_are_ignored_with_200(db, actor, client, caplog):
    """Meta retries non-2xx for days: a signed delivery it will send the same way again gets
    200 with ``ignored`` and a log line naming where it differs, and nothing is stored."""
    with Receiver() as graph:
        hook = _whatsapp(db, actor, graph)
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data=_workflow("whatsapp_message", {"type": "send_whatsapp", "config": {"message": "Hi"}}),
        )
    caplog.set_level(logging.DEBUG)
    signatures = []
    for body in _shapes():
        signatures.append(meta_signature(APP_SECRET, body))
        r = _post_meta(client, hook, body)
        assert r.status_code == 200, (body[:80], r.text)
        assert r.json() == {"received": 0, "duplicates": 0, "statuses": 0, "ignored": 1}
    assert _stored_events(db) == 0
    lines = [rec.getMessage() for rec in caplog.records if "ignored" in rec.getMessage()]
    assert len(lines) == len(_shapes())
    assert "entry[0]: Input should be a valid dictionary" in lines[0]
    assert "entry[0].changes[0].value.messages[0].text" in lines[2]
    assert "entry[0].changes[0].value.contacts[0].profile" in lines[3]
    assert "numbers must be finite" in lines[4] and "body: is not JSON" in lines[5] and "nested" in lines[6]
    assert "unhandled" not in caplog.text
    _no_secrets_in(caplog, *signatures)
    # A well-formed delivery still goes through afterwards.
    assert _post_meta(client, hook, _wa_message("wamid.OK", "Hallo")).json()["received"] == 1


def test_email_of_unexpected_shape_gets_422_and_the_token_stays_out_of_the_log(db, actor, client, caplog):
    path = _email_path(db, actor)
    token = path.rsplit("/", 1)[1]
    caplog.set_level(logging.DEBUG)
    for payload, field in (
        ({"FromFull": {"Email": 123}, "MessageID": "m1"}, "FromFull.Email"),
        ({"From": ["a@b.c"], "MessageID": "m2"}, "From"),
        ({"From": "a@b.c", "MessageID": 7}, "MessageID"),
        ({"From": "a@b.c", "MessageID": "m3", "StrippedTextReply": "a\x00b"}, "StrippedTextReply"),
        ({"From": "a" * 400 + "@b.c", "MessageID": "m5"}, "from"),
    ):
        r = client.post(path, json=payload)
        assert r.status_code == 422, r.text
        assert field in r.json()["error"]["message"]
    r = client.post(
        path,
        content=b'{"From": "a@b.c", "MessageID": "m4", "TextBody": NaN}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 422 and "finite" in r.json()["error"]["message"]
    assert _stored_events(db) == 0
    assert "refused: unexpected payload: FromFull.Email" in caplog.text
    assert "unhandled" not in caplog.text
    _no_secrets_in(caplog, token, path)


def test_signed_bodies_with_the_wrong_content_type_get_415(db, actor, client):
    with Receiver() as fake:
        hook = _whatsapp(db, actor, fake)
        _twilio_setup(db, actor, fake)
    body = _wa_message("wamid.CT", "Hallo")
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"X-Hub-Signature-256": meta_signature(APP_SECRET, body)}
        if content_type:
            headers["Content-Type"] = content_type
        r = client.post(f"/hooks/{hook}/whatsapp", content=body, headers=headers)
        assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type", content_type
    assert _post_meta(client, hook, body, secret="wrong").status_code == 403  # the signature comes first
    params = {"MessageSid": "SMCT", "From": "+4917611112222", "Body": "Hi"}
    url = f"http://testserver/hooks/{hook}/twilio/sms"
    r = client.post(
        url,
        content=urlencode(params),
        headers={
            "X-Twilio-Signature": twilio_signature(TWILIO_TOKEN, url, params.items()),
            "Content-Type": "text/plain",
        },
    )
    assert r.status_code == 415
    path = _email_path(db, actor)
    r = client.post(path, content=b'{"From": "a@b.c", "MessageID": "m"}', headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert (
        client.post(
            path, json={"From": "a@b.c", "MessageID": "m"}, headers={"Content-Type": "application/json; charset=utf-8"}
        ).status_code
        == 200
    )
    assert _stored_events(db) == 1


def test_twilio_form_of_unexpected_shape_gets_422_naming_the_field(db, actor, client, caplog):
    with Receiver() as fake:
        hook = _twilio_setup(db, actor, fake)
    caplog.set_level(logging.DEBUG)
    base = {"MessageSid": "SMX", "From": "+4917611112222", "Body": "Hi"}
    for kind, params, field in (
        ("sms", {**base, "NumMedia": "²"}, "NumMedia"),
        ("sms", {"Body": "Hi", "MessageSid": "SMY"}, "From"),
        ("call-status", {"CallStatus": "busy", "From": "+4917611112222"}, "CallSid"),
        ("message-status", {"MessageSid": "SM1"}, "MessageStatus"),
    ):
        r = _post_twilio(client, hook, kind, params)
        assert r.status_code == 422 and field in r.json()["error"]["message"], (kind, r.text)
    assert _stored_events(db) == 0
    assert "unhandled" not in caplog.text
    _no_secrets_in(caplog)


def test_twilio_signed_url_with_a_query_string_is_accepted(db, actor, client, monkeypatch):
    """Twilio signs the full URL it called, query included: verified that way and accepted.
    Without STUDIO_PUBLIC_URL the expected URL comes from the request's Host header."""
    with Receiver() as fake:
        hook = _twilio_setup(db, actor, fake)
    params = {"MessageSid": "SMQ1", "From": "+4917611112222", "To": "+4930123456", "Body": "Mit Query"}
    url = f"http://testserver/hooks/{hook}/twilio/sms?foo=1&bar=2"
    r = _post_signed(client, url, params, url)
    assert r.status_code == 200, r.text
    assert "<Response>" in r.text
    # Signed without the query (or with it reordered): refused.
    r = _post_signed(client, url, {**params, "MessageSid": "SMQ2"}, url.split("?")[0])
    assert r.status_code == 403
    r = _post_signed(client, url, {**params, "MessageSid": "SMQ3"}, url.replace("foo=1&bar=2", "bar=2&foo=1"))
    assert r.status_code == 403
    # Host header of a proxy that passes it on: that host is what Twilio called.
    proxied = f"http://studio.example.com/hooks/{hook}/twilio/sms?foo=1&bar=2"
    r = _post_signed(client, url, {**params, "MessageSid": "SMQ4"}, proxied, host="studio.example.com")
    assert r.status_code == 200
    public = f"https://studio.example.com/hooks/{hook}/twilio/sms?foo=1"
    # Behind a TLS proxy, STUDIO_PUBLIC_URL names the public scheme and host; the query still counts.
    monkeypatch.setenv("STUDIO_PUBLIC_URL", "https://studio.example.com")
    get_settings.cache_clear()
    r = _post_signed(client, url.replace("foo=1&bar=2", "foo=1"), {**params, "MessageSid": "SMQ5"}, public)
    assert r.status_code == 200
    r = _post_signed(client, url, {**params, "MessageSid": "SMQ6"}, url)  # signed for the inner URL
    assert r.status_code == 403
    with Session(db) as s:
        keys = sorted(e.idempotency_key for e in s.exec(select(EventRecord)).all())
    assert keys == ["twilio:SMQ1", "twilio:SMQ4", "twilio:SMQ5"]


def _post_signed(client, url: str, params: dict, signed_url: str, host: str | None = None):
    headers = {
        "X-Twilio-Signature": twilio_signature(TWILIO_TOKEN, signed_url, params.items()),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    if host:
        headers["Host"] = host
    return client.post(url, content=urlencode(params), headers=headers)


def test_whatsapp_handshake_and_email_take_the_configured_urls_query(db, actor, client):
    with Receiver() as graph:
        hook = _whatsapp(db, actor, graph)
    r = client.get(
        f"/hooks/{hook}/whatsapp",
        params={"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "42", "studio": "nord"},
    )
    assert r.status_code == 200 and r.text == "42"
    r = client.post(_email_path(db, actor) + "?source=postmark", json={"From": "a@b.c", "MessageID": "mq"})
    assert r.status_code == 200
    body = _wa_message("wamid.Q", "Hallo")
    r = client.post(
        f"/hooks/{hook}/whatsapp?x=1",
        content=body,
        headers={"X-Hub-Signature-256": meta_signature(APP_SECRET, body), "Content-Type": "application/json"},
    )
    assert r.status_code == 200 and r.json()["received"] == 1
