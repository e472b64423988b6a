"""Secrets never leak: after a studio connects WhatsApp/Twilio/SMTP/AI, rotates its signing
secret and real traffic flows (inbound webhook, delivery to a local Graph API fake, status
callback, test message), no secret appears in any API response, export, service output
meant for pages, log line, or (on SQLite) anywhere in the database file in plain text."""

from __future__ import annotations

import json
import logging
import time
import warnings

import pytest
from cryptography.fernet import Fernet

from engine import services
from engine.api import create_app
from engine.inbound.signatures import meta_signature
from engine.services import channel_settings as cs
from engine.services import outbox
from engine.services import studio_settings as ss
from engine.settings import get_settings
from engine.uow import unit_of_work
from engine.worker import Worker
from tests.servers import Receiver

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

SECRETS = {
    "wa_token": "EAAG-leak-check-access-token-91a",
    "wa_app": "leak-check-app-secret-77f",
    "wa_verify": "leak-check-verify-token-13c",
    "tw_token": "leak-check-twilio-token-55d",
    "smtp": "leak-check-smtp-password-2e0",
    "ai": "sk-leak-check-ai-key-6b2",
}


@pytest.fixture(autouse=True)
def env(monkeypatch):
    monkeypatch.setenv("STUDIO_SECRET_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("STUDIO_ALLOW_PROVIDER_BASE_URL", "1")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _assert_clean(where: str, text: str, extra: list[str]) -> None:
    for name, value in [*SECRETS.items(), *(("signing", v) for v in extra)]:
        assert value not in text, f"{name} secret found in {where}"


def test_no_secret_in_api_exports_logs_or_database(db, actor, caplog):
    caplog.set_level(logging.DEBUG)
    graph = Receiver()
    graph.responses.append((200, {"messages": [{"id": "wamid.LEAK1"}]}, {}))
    try:
        with unit_of_work(db) as uow:
            cs.save_channel(
                uow=uow,
                actor=actor,
                channel="whatsapp",
                enabled=True,
                values={"phoneNumberId": "1055"},
                secrets={
                    "accessToken": SECRETS["wa_token"],
                    "appSecret": SECRETS["wa_app"],
                    "verifyToken": SECRETS["wa_verify"],
                },
            )
        with unit_of_work(db) as uow:
            cs.save_channel(
                uow=uow,
                actor=actor,
                channel="sms",
                enabled=True,
                values={"accountSid": "AC1", "fromNumber": "+4930123456"},
                secrets={"authToken": SECRETS["tw_token"]},
            )
        with unit_of_work(db) as uow:
            cs.save_channel(
                uow=uow,
                actor=actor,
                channel="email",
                enabled=True,
                values={"host": "127.0.0.1", "port": 2525, "fromAddress": "a@b.test"},
                secrets={"password": SECRETS["smtp"]},
            )
        with unit_of_work(db) as uow:
            ss.save_ai_provider(
                uow=uow,
                actor=actor,
                provider="openai_compatible",
                base_url="https://llm.example/v1",
                model="m",
                api_key=SECRETS["ai"],
            )
        legacy = __import__("engine.services.studio_settings", fromlist=["x"]).signing_secrets(db, actor.tenant_id, {})[
            0
        ]
        with unit_of_work(db) as uow:
            signing = ss.rotate_signing_secret(uow=uow, actor=actor)
        with unit_of_work(db, read_only=True) as uow:
            tenant = services.get_tenant(uow=uow, actor=actor)
        channels = dict(tenant.settings["channels"])
        channels["whatsapp"] = {**channels["whatsapp"], "baseUrl": graph.url}
        channels["sms"] = {**channels["sms"], "baseUrl": "http://127.0.0.1:9"}  # nothing listens: an error answer
        with unit_of_work(db) as uow:
            services.update_tenant_settings(uow=uow, actor=actor, settings={"channels": channels})
        with unit_of_work(db) as uow:
            wf = services.create_workflow(
                uow=uow,
                actor=actor,
                data={
                    "name": "Reply",
                    "trigger": {"type": "whatsapp_message", "config": {}},
                    "conditions": [],
                    "actions": [
                        {"id": "r", "type": "send_whatsapp", "config": {"message": "Hallo"}, "nextActionId": None}
                    ],
                },
            )
        with unit_of_work(db) as uow:
            hook = cs.webhook_id(uow=uow, actor=actor)
        body = json.dumps(
            {
                "entry": [
                    {
                        "changes": [
                            {
                                "value": {
                                    "messages": [
                                        {
                                            "from": "4917612345678",
                                            "id": "wamid.IN",
                                            "timestamp": str(int(time.time())),
                                            "type": "text",
                                            "text": {"body": "Hallo"},
                                        }
                                    ]
                                }
                            }
                        ]
                    }
                ]
            }
        ).encode()
        status = json.dumps(
            {
                "entry": [
                    {
                        "changes": [
                            {
                                "value": {
                                    "statuses": [
                                        {
                                            "id": "wamid.LEAK1",
                                            "status": "failed",
                                            "errors": [{"code": 131026, "title": "Undeliverable"}],
                                        }
                                    ]
                                }
                            }
                        ]
                    }
                ]
            }
        ).encode()
        texts: list[tuple[str, str]] = []
        with TestClient(create_app(db)) as client:
            assert (
                client.post(
                    f"/hooks/{hook}/whatsapp",
                    content=body,
                    headers={
                        "X-Hub-Signature-256": meta_signature(SECRETS["wa_app"], body),
                        "Content-Type": "application/json",  # as Meta sends it (else 415)
                    },
                ).status_code
                == 200
            )
            Worker(db, name="leak").run_once()
            assert graph.requests and graph.requests[0].headers["authorization"].endswith(SECRETS["wa_token"])
            client.post(
                f"/hooks/{hook}/whatsapp",
                content=status,
                headers={
                    "X-Hub-Signature-256": meta_signature(SECRETS["wa_app"], status),
                    "Content-Type": "application/json",
                },
            )
            refused = client.post(f"/hooks/{hook}/whatsapp", content=body, headers={"X-Hub-Signature-256": "sha256=00"})
            texts.append(("refused webhook", refused.text))
            texts.append(
                (
                    "handshake refusal",
                    client.get(
                        f"/hooks/{hook}/whatsapp",
                        params={"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
                    ).text,
                )
            )
            with unit_of_work(db) as uow:
                _, key = services.create_api_key(uow=uow, actor=actor, name="leak check", role="owner")
            headers = {"Authorization": f"Bearer {key}"}
            with unit_of_work(db, read_only=True) as uow:
                execution = services.list_executions(uow=uow, actor=actor).items[0].id
            for path in (
                "/api/workflows/list",
                "/api/executions",
                f"/api/executions/{execution}",
                "/api/outbox",
                f"/api/workflows/{wf.id}",
                f"/api/workflows/{wf.id}/export",
                f"/api/workflows/{wf.id}/versions",
                "/openapi.json",
            ):
                response = client.get(path, headers=headers)
                assert response.status_code == 200, path
                texts.append((path, response.text))
        with unit_of_work(db) as uow:
            result = cs.send_test_message(
                uow=uow, actor=actor, channel="sms", recipient="+4917611112222"
            )  # Twilio unreachable: an error
        texts.append(("test message answer", result.model_dump_json()))
        with unit_of_work(db, read_only=True) as uow:
            texts.append(
                ("export", json.dumps(services.export_workflows(uow=uow, actor=actor, workflow_id=None), default=str))
            )
        for channel in ("whatsapp", "sms", "email"):
            with unit_of_work(db, read_only=True) as uow:
                texts.append(
                    (f"channel view {channel}", cs.get_channel(uow=uow, actor=actor, channel=channel).model_dump_json())
                )
        with unit_of_work(db, read_only=True) as uow:
            texts.append(("studio settings view", ss.get_studio_settings(uow=uow, actor=actor).model_dump_json()))
        with unit_of_work(db, read_only=True) as uow:
            texts.append(
                ("audit log", json.dumps([a.model_dump(mode="json") for a in cs.list_audit(uow=uow, actor=actor)]))
            )
        with unit_of_work(db, read_only=True) as uow:
            texts.append(("outbox page rows", outbox.browse_outbox(uow=uow, actor=actor).model_dump_json()))
        texts.append(("logs", caplog.text))
        for where, text in texts:
            _assert_clean(where, text, [signing, legacy])
        with unit_of_work(db, read_only=True) as uow:
            assert "Undeliverable" in outbox.browse_outbox(uow=uow, actor=actor).items[0].reason
    finally:
        graph.close()
    if db.dialect.name == "sqlite":
        db.dispose()  # checkpoint the WAL into the file
        with open(db.url.database, "rb") as fh:
            raw = fh.read()
        for name, value in SECRETS.items():
            assert value.encode() not in raw, f"{name} stored in plain text"
        assert signing.encode() not in raw
