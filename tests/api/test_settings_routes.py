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


def test_studio_settings_are_read_and_patched_through_the_model(client, auth, other_auth, key_factory, actor):
    """GET /api/settings shows every setting with its default; PATCH is a merge patch that changes
    only what it names, and a bad value is a 422 naming the field (nothing written)."""
    got = client.get("/api/settings", headers=auth)
    assert got.status_code == 200, got.text
    assert got.json()["settings"]["language"] == "de" and got.json()["secrets"]["signingSecret"]["set"] is True
    ok = client.patch(
        "/api/settings",
        headers=auth,
        json={"quietHours": {"start": "21:00", "end": "7:00"}, "frequencyCap": 2, "webhookAllowList": ["[::1]:9000"]},
    )
    assert ok.status_code == 200, ok.text
    settings = ok.json()["settings"]
    assert settings["quietHours"] == {"start": "21:00", "end": "07:00"} and settings["frequencyCap"] == 2
    assert settings["webhookAllowList"] == ["[::1]:9000"]
    for body, field in (
        ({"quietHours": {"end": "25:00"}}, "quietHours.end"),
        ({"frequencyCap": 0}, "frequencyCap"),
        ({"webhookAllowList": ["http://crm.local/x"]}, "webhookAllowList[0]"),
        ({"nope": 1}, "nope"),
        ({"channels": {"sms": {"adapter": "twilio"}}}, "channels"),
        ({"ai": {"apiKeyEncrypted": "x"}}, "ai.apiKeyEncrypted"),
    ):
        bad = client.patch("/api/settings", headers=auth, json={"language": "en", **body})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == field, (body, bad.text)
    again = client.patch("/api/settings", headers=auth, json={"quietHours": {"end": "06:00"}, "frequencyCap": None})
    assert again.json()["settings"]["quietHours"] == {"start": "21:00", "end": "06:00"}
    assert "frequencyCap" not in again.json()["settings"] and again.json()["settings"]["language"] == "de"
    assert client.get("/api/settings", headers=other_auth).json()["settings"].get("quietHours") is None
    for role in ("editor", "analyst"):
        assert (
            client.patch("/api/settings", headers=key_factory(actor, role), json={"language": "en"}).status_code == 403
        )
        assert client.get("/api/settings", headers=key_factory(actor, role)).status_code == 403
    key = client.patch(
        "/api/settings", headers=auth, json={"ai": {"provider": "openai", "model": "m", "apiKey": SECRET}}
    )
    assert key.status_code == 200 and SECRET not in key.text and key.json()["secrets"]["aiApiKey"]["set"] is True
    assert key.json()["settings"]["ai"]["provider"] == "openai_compatible"
    assert SECRET not in client.get("/api/settings/audit", headers=auth).text
    # Found by the fuzzer: a patch of many settings named them all in the audit row's area (64 characters) -> 500.
    every = {
        "analystsSeeContacts": True,
        "defaultRegion": "AT",
        "language": "en",
        "goals": {"wf1": {"kind": "lead"}},
        "retention": {"detailsDays": 10, "summaryDays": 20},
        "optOut": {"stopWords": ["HALT"], "startWords": ["WEITER"]},
        "webChat": {"allowedOrigins": ["https://www.studio.test"]},
    }
    many = client.patch("/api/settings", headers=auth, json=every)
    assert many.status_code == 200, many.text
    entry = client.get("/api/settings/audit", headers=auth).json()["entries"][0]
    assert entry["area"] == "settings" and {"language", "retention.detailsDays", "goals.wf1.kind"} <= set(
        entry["changes"]
    )


def test_a_channel_put_keeps_the_fields_it_leaves_out(client, auth):
    """PUT used to reset every field it did not name (the overwrite of issue 21, over the API)."""
    first = client.put(
        "/api/settings/channels/sms",
        headers=auth,
        json={
            "enabled": True,
            "values": {"accountSid": "AC9", "messagingServiceSid": "MG9"},
            "secrets": {"authToken": SECRET},
        },
    )
    assert first.status_code == 200, first.text
    second = client.put("/api/settings/channels/sms", headers=auth, json={"values": {"fromNumber": "+4930123456"}})
    assert second.status_code == 200, second.text
    body = second.json()
    assert body["enabled"] is True and body["values"]["messagingServiceSid"] == "MG9"
    assert body["values"]["accountSid"] == "AC9" and body["secrets"]["authToken"]["set"] is True
    cleared = client.put("/api/settings/channels/sms", headers=auth, json={"values": {"messagingServiceSid": None}})
    assert cleared.json()["values"]["messagingServiceSid"] is None and cleared.json()["values"]["fromNumber"]
    refused = client.put("/api/settings/channels/sms", headers=auth, json={"values": {"fromNumber": None}})
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "channels.sms.fromNumber"
    assert client.get("/api/settings/channels/sms", headers=auth).json()["values"]["fromNumber"] == "+4930123456"
