"""Settings routes: secrets write-only over the API, owners only, tenants apart; outbox retry."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from engine.settings import get_settings
from engine.store.db import session_scope
from engine.store.models import OutboxMessage

SECRET = "EAAG-api-route-secret-3141"


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv("STUDIO_SECRET_KEY", Fernet.generate_key().decode())
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_channel_secrets_are_write_only(client, auth, other_auth, key_factory, actor):
    body = {
        "enabled": True,
        "values": {"phoneNumberId": "1055"},
        "secrets": {"accessToken": SECRET, "appSecret": "a-secret-xyz", "verifyToken": "v-xyz"},
    }
    r = client.put("/api/settings/channels/whatsapp", json=body, headers=auth)
    assert r.status_code == 200, r.text
    assert SECRET not in r.text and r.json()["secrets"]["accessToken"]["set"] is True
    got = client.get("/api/settings/channels/whatsapp", headers=auth)
    assert SECRET not in got.text and got.json()["values"]["phoneNumberId"] == "1055"
    assert (
        client.get("/api/settings/channels/whatsapp", headers=other_auth).json()["secrets"]["accessToken"]["set"]
        is False
    )
    assert client.get("/api/settings/channels/whatsapp", headers=key_factory(actor, "editor")).status_code == 403
    bad = client.put(
        "/api/settings/channels/sms", json={"enabled": True, "values": {"accountSid": "XX1"}}, headers=auth
    )
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "channels.sms.accountSid"
    assert client.get("/api/settings/channels/telegram", headers=auth).status_code == 422
    audit = client.get("/api/settings/audit", headers=auth)
    assert audit.status_code == 200 and SECRET not in audit.text
    entry = next(e for e in audit.json()["entries"] if e["area"] == "channels.whatsapp")
    assert entry["changes"]["accessToken"] == "changed" and entry["actor"] == "api-key:test key"


def test_outbox_retry_route(client, db, auth, other_auth, key_factory, actor):
    with session_scope(db) as s:
        msg = OutboxMessage(
            tenant_id=actor.tenant_id,
            channel="sms",
            recipient="+4917611112222",
            body="x",
            status="failed",
            adapter="twilio",
            error="boom",
        )
        s.add(msg)
    assert client.post(f"/api/outbox/{msg.id}/retry", headers=other_auth).status_code == 404
    assert client.post(f"/api/outbox/{msg.id}/retry", headers=key_factory(actor, "analyst")).status_code == 403
    r = client.post(f"/api/outbox/{msg.id}/retry", headers=auth)
    assert r.status_code == 200 and r.json()["status"] == "pending"
    assert client.post(f"/api/outbox/{msg.id}/retry", headers=auth).status_code == 409


def test_unknown_keys_a_body_ignores_are_documented_without_nul(client, auth):
    """Found by the fuzzer: the test-message body documented any extra key, but the edge refuses a
    NUL character in any key (422); the document now says so for every model that ignores extras."""
    schema = client.get("/openapi.json").json()["components"]["schemas"]["TestMessageIn"]
    assert schema["additionalProperties"] == {"$ref": "#/components/schemas/JsonValue"}
    assert schema["propertyNames"]["pattern"] == "^[^\\u0000]*$"
    r = client.post(
        "/api/settings/channels/sms/test", headers=auth, json={"recipient": "+4915112345678", "x": [{"a\u0000": 1}]}
    )
    assert r.status_code == 422 and "NUL" in r.json()["error"]["message"]


def test_channel_settings_document_their_field_names(client, auth):
    """The fuzzer sent keys of no channel, which the document allowed and the service refuses."""
    schema = client.get("/openapi.json").json()["components"]["schemas"]["ChannelIn"]
    assert "port" in schema["properties"]["values"]["propertyNames"]["enum"]
    assert "authToken" in schema["properties"]["secrets"]["propertyNames"]["enum"]
    r = client.put("/api/settings/channels/email", headers=auth, json={"enabled": False, "values": {"": "x"}})
    assert r.status_code == 422 and r.json()["error"]["field"] == "channels.email."
