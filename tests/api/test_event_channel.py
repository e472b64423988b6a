"""A message event's channel follows from its trigger type, at every door (issue 21).

REST events without ``"channel"`` were stored with channel NULL, so the WhatsApp 24-hour window
(which counts the member's WhatsApp messages) found nothing and the reply was suppressed as
"outside the 24-hour window". Over real HTTP against a server on 127.0.0.1, on SQLite and
PostgreSQL, through both the FastAPI route (a key not cached yet) and the fast path (cached).
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import uvicorn
from cryptography.fernet import Fernet
from sqlmodel import Session, func, select

from engine import services
from engine.api import create_app
from engine.services import channel_settings as cs
from engine.settings import get_settings
from engine.store.models import EventRecord, OutboxMessage
from engine.uow import unit_of_work
from engine.worker import Worker
from tests.servers import Receiver, free_port

MEMBER = "+4917612345678"


@pytest.fixture(autouse=True)
def settings(monkeypatch):
    monkeypatch.setenv("STUDIO_SECRET_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("STUDIO_ALLOW_PROVIDER_BASE_URL", "1")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def api(db):
    """The API app over ``db``, served by uvicorn on 127.0.0.1 in a thread."""
    server = uvicorn.Server(uvicorn.Config(create_app(db), host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{server.config.port}"
    server.should_exit = True
    thread.join(10)


def _reply_workflow(trigger: str, action: str) -> dict:
    return {
        "name": f"Answer {trigger}",
        "trigger": {"type": trigger, "config": {}},
        "conditions": [],
        "actions": [{"id": "reply", "type": action, "config": {"message": "Danke, {{trigger.content}}!"}}],
    }


def _whatsapp_to(db, actor, graph: Receiver) -> None:
    """The studio's WhatsApp channel, its Graph API calls sent to ``graph`` (tests only)."""
    with unit_of_work(db) as uow:
        cs.save_channel(
            uow=uow,
            actor=actor,
            channel="whatsapp",
            enabled=True,
            values={"phoneNumberId": "1055"},
            secrets={"accessToken": "token-123", "appSecret": "app-secret", "verifyToken": "verify"},
        )
    with unit_of_work(db, read_only=True) as uow:
        channels = dict(services.get_tenant(uow=uow, actor=actor).settings["channels"])
    channels["whatsapp"] = {**channels["whatsapp"], "baseUrl": graph.url}
    with unit_of_work(db) as uow:
        services.update_tenant_settings(uow=uow, actor=actor, settings={"channels": channels})


def _events(db, tenant_id: str) -> list[EventRecord]:
    with Session(db) as s:
        return list(s.exec(select(EventRecord).where(EventRecord.tenant_id == tenant_id)).all())


def test_a_whatsapp_event_without_channel_is_stored_on_whatsapp_and_its_reply_is_sent(db, actor, auth, api):
    graph = Receiver()
    graph.responses.extend([(200, {"messages": [{"id": f"wamid.R{i}"}]}, {}) for i in range(2)])
    try:
        _whatsapp_to(db, actor, graph)
        with unit_of_work(db) as uow:
            services.create_workflow(uow=uow, actor=actor, data=_reply_workflow("whatsapp_message", "send_whatsapp"))
        with httpx.Client(base_url=api, headers=auth, timeout=30) as client:
            for text in ("route", "fast path"):  # the first request caches the key for the second
                event = {"triggerType": "whatsapp_message", "from": MEMBER, "content": text}
                r = client.post("/api/events", json=event)
                assert r.status_code == 200, r.text
        assert [e.channel for e in _events(db, actor.tenant_id)] == ["whatsapp", "whatsapp"]
        Worker(db, name="t").run_once()
        # Inside the member's 24-hour window: both replies go out as free text, none suppressed.
        assert [req.json()["type"] for req in graph.requests] == ["text", "text"]
        with Session(db) as s:
            statuses = s.exec(select(OutboxMessage.status).where(OutboxMessage.tenant_id == actor.tenant_id)).all()
        assert statuses == ["sent", "sent"]
    finally:
        graph.close()


@pytest.mark.parametrize(
    ("trigger", "channel"),
    [("sms_received", "sms"), ("email_received", "email"), ("web_chat", "web"), ("voice_call", "voice")],
)
def test_every_message_trigger_implies_its_channel(db, actor, auth, api, trigger, channel):
    r = httpx.post(f"{api}/api/events", json={"triggerType": trigger, "content": "Hallo"}, headers=auth, timeout=30)
    assert r.status_code == 200, r.text
    assert [e.channel for e in _events(db, actor.tenant_id)] == [channel]


def test_a_channel_that_contradicts_the_trigger_is_refused_naming_the_field(db, actor, auth, api):
    body = {"triggerType": "whatsapp_message", "channel": "sms", "from": MEMBER, "content": "Hallo"}
    with httpx.Client(base_url=api, headers=auth, timeout=30) as client:
        for _ in ("route", "fast path"):
            r = client.post("/api/events", json=body)
            assert r.status_code == 422, r.text
            error = r.json()["error"]
            assert error["field"] == "channel"
            assert "whatsapp" in error["message"] and "sms" in error["message"]
        # The trigger's own channel, and triggers that imply none, are taken as sent.
        assert client.post("/api/events", json={**body, "channel": "whatsapp"}).status_code == 200
        missed = client.post("/api/events", json={"triggerType": "missed_call", "channel": "voice", "from": MEMBER})
        assert missed.status_code == 200
    with Session(db) as s:
        assert s.exec(select(func.count()).select_from(EventRecord)).one() == 2  # nothing of the refused ones


def test_a_repeated_key_without_channel_is_the_same_event(db, actor, auth, api):
    body = {"triggerType": "whatsapp_message", "from": MEMBER, "content": "Hallo", "idempotencyKey": "k-1"}
    with httpx.Client(base_url=api, headers=auth, timeout=30) as client:
        first = client.post("/api/events", json=body).json()
        again = client.post("/api/events", json={**body, "channel": "whatsapp"}).json()
        assert again["duplicate"] is True and again["eventId"] == first["eventId"]
