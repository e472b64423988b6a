"""Data lifecycle routes on SQLite and PostgreSQL: retention, export, erase, opt-outs; owners only;
another studio's key never reaches this studio's members."""

from __future__ import annotations

from tests.api.conftest import simple_workflow

PHONE = "+4915112345678"


def seed(client, auth):
    assert client.post("/api/workflows/create", headers=auth, json=simple_workflow()).status_code in (200, 201)
    r = client.post(
        "/api/events",
        headers=auth,
        json={"triggerType": "whatsapp_message", "channel": "whatsapp", "from": PHONE, "content": "Mein Knie tut weh"},
    )
    assert r.status_code == 200


def test_retention_read_and_set(client, auth, key_factory, actor):
    r = client.get("/api/settings/retention", headers=auth)
    assert r.json()["retention"] == {"detailsDays": 90, "summaryDays": 730, "custom": False}
    r = client.put("/api/settings/retention", headers=auth, json={"detailsDays": 30, "summaryDays": 365})
    assert r.status_code == 200 and r.json()["retention"]["custom"] is True
    r = client.put("/api/settings/retention", headers=auth, json={"detailsDays": 30, "summaryDays": 10})
    assert r.status_code == 422 and r.json()["error"]["field"] == "summaryDays"
    editor = key_factory(actor, "editor")
    assert (
        client.put("/api/settings/retention", headers=editor, json={"detailsDays": 1, "summaryDays": 1}).status_code
        == 403
    )
    assert client.get("/api/settings/retention", headers=auth).json()["retention"]["detailsDays"] == 30


def test_export_and_erase(client, auth, other_auth, key_factory, actor):
    seed(client, auth)
    r = client.post("/api/contacts/export", headers=auth, json={"phone": PHONE})
    assert r.status_code == 200 and "Mein Knie tut weh" in r.text and r.json()["export"]["counts"]["events"] == 1
    # Another studio's owner finds nothing of ours; an editor may not look.
    r = client.post("/api/contacts/export", headers=other_auth, json={"phone": PHONE})
    assert r.status_code == 200 and "Knie" not in r.text
    assert (
        client.post("/api/contacts/export", headers=key_factory(actor, "editor"), json={"phone": PHONE}).status_code
        == 403
    )
    r = client.post("/api/contacts/erase", headers=auth, json={"phone": PHONE})
    assert r.status_code == 422 and r.json()["error"]["field"] == "confirm"
    r = client.post("/api/contacts/erase", headers=auth, json={"phone": PHONE, "email": "a@b.de", "confirm": True})
    assert r.status_code == 422 and r.json()["error"]["field"] == "phone"
    r = client.post("/api/contacts/erase", headers=other_auth, json={"phone": PHONE, "confirm": True})
    assert r.status_code == 200 and sum(r.json()["erasure"]["counts"].values()) == 0
    r = client.post("/api/contacts/erase", headers=auth, json={"phone": PHONE, "confirm": True})
    assert r.status_code == 200 and r.json()["erasure"]["counts"]["events"] == 1
    assert "Knie" not in client.post("/api/contacts/export", headers=auth, json={"phone": PHONE}).text
    [record] = client.get("/api/contacts/erasures", headers=auth).json()["erasures"]
    assert record["contactHash"] and PHONE not in str(record)
    assert (
        len(client.get("/api/contacts/erasures", headers=other_auth).json()["erasures"]) == 1
    )  # its own (empty) erasure


def test_opt_outs(client, auth, other_auth):
    seed(client, auth)
    client.post(
        "/api/events",
        headers=auth,
        json={"triggerType": "whatsapp_message", "channel": "whatsapp", "from": PHONE, "content": "STOP"},
    )
    [opt] = client.get("/api/contacts/opt-outs", headers=auth).json()["optOuts"]
    assert opt["contact"] == PHONE and opt["word"] == "STOP"
    assert client.get("/api/contacts/opt-outs", headers=other_auth).json()["optOuts"] == []
    r = client.post("/api/contacts/opt-outs", headers=auth, json={"contact": PHONE, "optedOut": False})
    assert r.status_code == 200 and client.get("/api/contacts/opt-outs", headers=auth).json()["optOuts"] == []
    r = client.put("/api/settings/opt-out-words", headers=auth, json={"stopWords": ["HALT"], "startWords": ["HALT"]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "startWords"
    r = client.put("/api/settings/opt-out-words", headers=auth, json={"stopWords": ["halt"], "startWords": ["los"]})
    assert r.json() == {"success": True, "stopWords": ["HALT"], "startWords": ["LOS"]}


def test_request_schemas_say_what_the_routes_accept(client, auth):
    """Found by the fuzzer: bodies documented as any text/number/list were refused by the services."""
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert schemas["RetentionRequest"]["properties"]["detailsDays"]["minimum"] == 1
    assert schemas["OptWordsRequest"]["properties"]["stopWords"]["minItems"] == 1
    assert "oneOf" in schemas["ContactRequest"] and schemas["EraseRequest"]["properties"]["confirm"]["const"] is True
    r = client.put("/api/settings/retention", headers=auth, json={"detailsDays": 0, "summaryDays": 0})
    assert r.status_code == 422 and r.json()["error"]["field"] == "detailsDays"
    r = client.put("/api/settings/opt-out-words", headers=auth, json={"stopWords": [], "startWords": ["los"]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "stopWords"
    r = client.post("/api/contacts/export", headers=auth, json={"phone": None, "email": "a@b.de"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "phone"
    assert client.post("/api/contacts/export", headers=auth, json={"email": "a@b.de"}).status_code == 200
