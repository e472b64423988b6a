"""GET /api/stats, the executions filters, CSV exports, replay and cancel over HTTP."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from engine import services
from engine.uow import unit_of_work
from tests.api.conftest import simple_workflow
from tests.servers import Receiver

PHONE = "+4915112345678"


def _today() -> str:
    return datetime.now(ZoneInfo("Europe/Berlin")).date().isoformat()


def _event(content="Hallo", sender=PHONE) -> dict:
    return {"triggerType": "whatsapp_message", "channel": "whatsapp", "from": sender, "content": content}


def test_stats_counts_like_the_workflow_list(client, auth):
    client.post("/api/workflows/create", json=simple_workflow(), headers=auth)
    cond = simple_workflow("Only mornings")
    cond["conditions"] = [{"type": "keyword_match", "operator": "contains", "value": "Kurs"}]
    client.post("/api/workflows/create", json=cond, headers=auth)
    for _ in range(2):
        assert client.post("/api/events", json=_event(), headers=auth).status_code == 200
    r = client.get("/api/stats", params={"from": _today(), "to": _today()}, headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    k = body["current"]
    assert (k["executions"], k["succeeded"], k["skipped"], k["inbound_events"]) == (4, 2, 2, 2)
    assert body["range"]["timezone"] == "Europe/Berlin" and body["delta"]["executions"] == 4
    listed = client.get("/api/workflows/list", params={"includeStats": "true"}, headers=auth).json()["stats"]
    assert listed["totalExecutions"] == 4 and listed["successRate"] == 1.0 == k["success_rate"]
    assert body["skipReasons"][0]["n"] == 2


def test_stats_errors_name_the_field(client, auth):
    r = client.get("/api/stats", params={"from": "2026-11-10", "to": "2026-11-01"}, headers=auth)
    assert r.status_code == 422 and r.json()["error"]["field"] == "to"
    r = client.get("/api/stats", params={"from": "yesterday"}, headers=auth)
    assert r.status_code == 422


def test_filters_cursor_and_streamed_csv(client, auth):
    client.post("/api/workflows/create", json=simple_workflow(), headers=auth)
    for i in range(5):
        client.post("/api/events", json=_event(f"m{i}", sender=f"+491511234567{i}"), headers=auth)
    page = client.get("/api/executions", params={"pageSize": 2, "from": _today()}, headers=auth).json()
    assert len(page["executions"]) == 2 and page["nextCursor"]
    nxt = client.get("/api/executions", params={"pageSize": 2, "after": page["nextCursor"]}, headers=auth).json()
    assert not {e["id"] for e in nxt["executions"]} & {e["id"] for e in page["executions"]}
    one = client.get("/api/executions/search", params={"contact": "0151 12345672"}, headers=auth).json()
    assert len(one["executions"]) == 1 and one["executions"][0]["trigger"]["from"] == "+4915112345672"
    r = client.get("/api/executions/export.csv", params={"channel": "whatsapp"}, headers=auth)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert len(r.text.strip().splitlines()) == 6
    assert client.get("/api/executions", params={"status": "bogus", "from": _today()}, headers=auth).status_code == 422
    kpis = client.get("/api/stats/export.csv", headers=auth)
    assert kpis.status_code == 200 and "executions,5" in kpis.text
    wf = client.get("/api/stats/export.csv", params={"table": "workflows"}, headers=auth)
    assert "Reply on WhatsApp,5" in wf.text


def test_replay_and_cancel_over_http_with_roles(db, client, auth, key_factory, actor, other_auth):
    with unit_of_work(db) as uow:
        services.update_tenant_settings(uow=uow, actor=actor, settings={"webhookAllowList": ["127.0.0.1"]})
    with Receiver(statuses=[404, 200]) as receiver:
        hook = {
            "name": "CRM",
            "trigger": {"type": "whatsapp_message", "config": {}},
            "conditions": [],
            "actions": [
                {
                    "id": "hook",
                    "type": "call_webhook",
                    "onError": "stop",
                    "config": {"webhookUrl": receiver.hook_url, "method": "POST"},
                }
            ],
        }
        client.post("/api/workflows/create", json=hook, headers=auth)
        [failed] = client.post("/api/events", json=_event(), headers=auth).json()["executionIds"]
        analyst = key_factory(actor, "analyst")
        assert client.post(f"/api/executions/{failed}/replay", headers=analyst).status_code == 403
        assert client.post(f"/api/executions/{failed}/replay", headers=other_auth).status_code == 404
        r = client.post(f"/api/executions/{failed}/replay", json={"fromStep": "failed"}, headers=auth)
        assert r.status_code == 200, r.text
        assert r.json()["execution"]["status"] == "succeeded"
        second = client.post(f"/api/executions/{failed}/replay", headers=auth)
        assert second.status_code == 409
        replay_id = r.json()["execution"]["id"]
        assert f"already replayed as {replay_id}" in second.text
        assert client.get(f"/api/executions/{failed}", headers=auth).json()["execution"]["replayedBy"] == replay_id
    r = client.post(f"/api/executions/{failed}/cancel", json={"reason": "x"}, headers=auth)
    assert r.status_code == 409
    assert client.post(f"/api/executions/{failed}/cancel", json={}, headers=auth).status_code == 422


def test_analysts_see_masked_contacts_unless_the_owner_allows(db, client, auth, key_factory, actor):
    client.post("/api/workflows/create", json=simple_workflow(), headers=auth)
    [ex_id] = client.post("/api/events", json=_event(), headers=auth).json()["executionIds"]
    analyst = key_factory(actor, "analyst")
    shown = client.get(f"/api/executions/{ex_id}", headers=analyst).json()["execution"]
    assert shown["trigger"]["from"] == "+49 151 ****678" and PHONE not in str(shown)
    listed = client.get("/api/executions", headers=analyst).json()["executions"][0]
    assert listed["trigger"]["from"] == "+49 151 ****678"
    assert PHONE not in client.get("/api/executions/export.csv", headers=analyst).text
    assert PHONE in client.get("/api/executions/export.csv", headers=auth).text
    with unit_of_work(db) as uow:
        services.update_tenant_settings(uow=uow, actor=actor, settings={"analystsSeeContacts": True})
    assert client.get(f"/api/executions/{ex_id}", headers=analyst).json()["execution"]["trigger"]["from"] == PHONE


def test_one_end_of_a_period_alone_is_that_day(client, auth):
    """Found by the fuzzer: ``?to=...`` alone was 422 on /api/stats but one day on the executions search."""
    for path in ("/api/stats", "/api/stats/workflows", "/api/stats/export.csv"):
        for end in ("from", "to"):
            r = client.get(path, params={end: "2026-11-03", "range": "7d"}, headers=auth)
            assert r.status_code == 200, (path, end, r.text)
    body = client.get("/api/stats", params={"to": "2026-11-03"}, headers=auth).json()
    assert body["range"]["from"] == body["range"]["to"] == "2026-11-03"
    r = client.get("/api/stats", params={"range": "custom"}, headers=auth)
    assert r.status_code == 422 and r.json()["error"]["field"] == "from"


def test_csv_exports_and_status_filter_are_documented(client, auth):
    """Found by the fuzzer: the CSV routes were documented as JSON, and the status filter as any text."""
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/stats/export.csv", "/api/executions/export.csv"):
        assert list(paths[path]["get"]["responses"]["200"]["content"]) == ["text/csv"]
        assert client.get(path, headers=auth).headers["content-type"].startswith("text/csv")
    [status] = [p for p in paths["/api/executions/search"]["get"]["parameters"] if p["name"] == "status"]
    assert "failed" in str(status["schema"]) and "in_progress" in str(status["schema"])
    r = client.get("/api/executions/search", params={"status": "{"}, headers=auth)
    assert r.status_code == 422 and r.json()["error"]["field"] == "status"


def test_a_number_is_not_a_day_found_by_the_fuzzer(client, auth):
    """``?to=0.0`` was read as a Unix timestamp (1970-01-01); days are YYYY-MM-DD text."""
    for path in ("/api/stats", "/api/stats/workflows", "/api/executions", "/api/executions/search"):
        r = client.get(path, params={"to": "0.0", "from": "5e-124"}, headers=auth)
        assert r.status_code == 422 and r.json()["error"]["field"] in ("from", "to"), (path, r.text)


def test_the_executions_list_documents_its_status_filter_found_by_the_fuzzer(client, auth):
    r = client.get("/api/executions", params={"status": "»d"}, headers=auth)
    assert r.status_code == 422 and r.json()["error"]["field"] == "status"
    for status in ("failed", "in_progress", "test"):
        assert client.get("/api/executions", params={"status": status}, headers=auth).status_code == 200, status


def test_contact_timeline_takes_the_contact_in_the_body_never_in_the_url(client, auth, other_auth, key_factory, actor):
    """Issue 21: ``GET /api/contacts/timeline?contact=...`` put a member's number into URLs (access logs)."""
    client.post("/api/workflows/create", json=simple_workflow(), headers=auth)
    client.post("/api/events", json=_event("Zeitleiste bitte"), headers=auth)
    r = client.post("/api/contacts/timeline", json={"contact": "0151 12345678"}, headers=auth)
    assert r.status_code == 200, r.text
    kinds = [i["kind"] for i in r.json()["items"]]
    assert sorted(kinds) == ["execution", "received", "sent"]
    assert any(i["text"] == "Zeitleiste bitte" for i in r.json()["items"])
    # The query-string form is gone; the route documents its body and every status.
    assert client.get("/api/contacts/timeline", params={"contact": PHONE}, headers=auth).status_code == 405
    op = client.get("/openapi.json").json()["paths"]["/api/contacts/timeline"]
    assert list(op) == ["post"] and not op["post"].get("parameters")
    assert {"200", "401", "403", "404", "405", "413", "415", "422", "429"} <= set(op["post"]["responses"])
    # Bad input names the field; an analyst sees the number masked; another studio sees nothing.
    r = client.post("/api/contacts/timeline", json={"contact": "  "}, headers=auth)
    assert r.status_code == 422 and r.json()["error"]["field"] == "contact"
    r = client.post("/api/contacts/timeline", json={"phone": PHONE}, headers=auth)
    assert r.status_code == 422
    analyst = client.post("/api/contacts/timeline", json={"contact": PHONE}, headers=key_factory(actor, "analyst"))
    assert analyst.status_code == 200 and len(analyst.json()["items"]) == 3 and PHONE not in analyst.text
    assert client.post("/api/contacts/timeline", json={"contact": PHONE}, headers=other_auth).json()["items"] == []
