"""Inbound events run matching workflows once per Idempotency-Key; executions, outbox, bookings."""

from __future__ import annotations

from tests.api.conftest import simple_workflow

MESSAGE = {"triggerType": "whatsapp_message", "channel": "whatsapp", "content": "Hallo!", "from": "+4915112345678"}


def test_an_event_runs_the_matching_workflow_and_a_repeated_key_returns_the_same_executions(client, auth):
    wid = client.post("/api/workflows/create", json=simple_workflow(), headers=auth).json()["workflow"]["id"]
    client.post("/api/workflows/create", json=simple_workflow("Calls only", "voice_call"), headers=auth)
    first = client.post("/api/events", json=MESSAGE, headers={**auth, "Idempotency-Key": "msg-1"})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["success"] is True and body["duplicate"] is False and len(body["executionIds"]) == 1
    again = client.post("/api/events", json=MESSAGE, headers={**auth, "Idempotency-Key": "msg-1"}).json()
    assert (again["eventId"], again["executionIds"], again["duplicate"]) == (
        body["eventId"],
        body["executionIds"],
        True,
    )

    executions = client.get("/api/executions", params={"workflowId": wid}, headers=auth).json()
    assert executions["total"] == 1 and executions["executions"][0]["id"] == body["executionIds"][0]
    execution = client.get(f"/api/executions/{body['executionIds'][0]}", headers=auth).json()["execution"]
    assert execution["status"] == "succeeded"
    assert [s["actionId"] for s in execution["steps"]] == ["send-1"]
    messages = client.get("/api/outbox", headers=auth).json()["messages"]
    assert [(m["recipient"], m["body"]) for m in messages] == [("+4915112345678", "Hallo +4915112345678!")]


def test_the_key_may_also_come_in_the_body_but_must_not_contradict_the_header(client, auth):
    client.post("/api/workflows/create", json=simple_workflow(), headers=auth)
    first = client.post("/api/events", json={**MESSAGE, "idempotencyKey": "k"}, headers=auth).json()
    assert (
        client.post("/api/events", json=MESSAGE, headers={**auth, "Idempotency-Key": "k"}).json()["duplicate"] is True
    )
    assert first["duplicate"] is False
    r = client.post("/api/events", json={**MESSAGE, "idempotencyKey": "a"}, headers={**auth, "Idempotency-Key": "b"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "idempotencyKey"


def test_an_invalid_event_names_the_field(client, auth):
    r = client.post("/api/events", json={"triggerType": "carrier_pigeon"}, headers=auth)
    assert r.status_code == 422 and r.json()["error"]["field"] == "triggerType"


def test_executions_filter_by_status_and_page(client, auth):
    client.post("/api/workflows/create", json=simple_workflow(), headers=auth)
    for n in range(3):
        client.post("/api/events", json={**MESSAGE, "content": f"m{n}"}, headers=auth)
    page = client.get("/api/executions", params={"status": "succeeded", "pageSize": 2, "page": 2}, headers=auth).json()
    assert (page["total"], page["page"], page["pageSize"], len(page["executions"])) == (3, 2, 2, 1)
    assert client.get("/api/executions", params={"status": "failed"}, headers=auth).json()["total"] == 0


def test_a_booking_is_stored_and_runs_booking_created_workflows(client, auth):
    welcome = {
        **simple_workflow("Booking welcome", "booking_created"),
        "actions": [
            {
                "id": "sms-1",
                "type": "send_sms",
                "config": {"message": "Bis bald, {{trigger.memberName}}!"},
                "nextActionId": None,
            }
        ],
    }
    assert client.post("/api/workflows/create", json=welcome, headers=auth).status_code == 201
    r = client.post(
        "/api/bookings",
        json={
            "memberName": "Anna",
            "className": "Vinyasa",
            "startsAt": "2025-11-24T18:00:00+01:00",
            "memberContact": "+4915112345678",
        },
        headers=auth,
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["booking"]["memberName"] == "Anna" and len(body["executionIds"]) == 1
    assert [m["body"] for m in client.get("/api/outbox", headers=auth).json()["messages"]] == ["Bis bald, Anna!"]


def test_a_booking_needs_a_time_with_an_offset(client, auth):
    r = client.post(
        "/api/bookings",
        json={"memberName": "Anna", "className": "Yoga", "startsAt": "2025-11-24T18:00:00"},
        headers=auth,
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "startsAt"


def test_versions_rollback_and_duplicate(client, auth):
    wid = client.post("/api/workflows/create", json=simple_workflow(), headers=auth).json()["workflow"]["id"]
    client.post("/api/workflows/update", json={"workflowId": wid, "name": "Renamed"}, headers=auth)
    versions = client.get(f"/api/workflows/{wid}/versions", headers=auth).json()["versions"]
    assert [v["version"] for v in versions] == [2, 1]
    rolled = client.post(f"/api/workflows/{wid}/rollback", json={"version": 1}, headers=auth).json()["workflow"]
    assert (rolled["name"], rolled["version"]) == ("Reply on WhatsApp", 3)
    copy = client.post(f"/api/workflows/{wid}/duplicate", headers=auth)
    assert copy.status_code == 201 and copy.json()["workflow"]["name"] == "Reply on WhatsApp (copy)"
    assert copy.json()["workflow"]["enabled"] is False
    named = client.post(f"/api/workflows/{wid}/duplicate", json={"name": "Zweite"}, headers=auth).json()["workflow"]
    assert named["name"] == "Zweite"


def test_delete_removes_the_workflow_but_keeps_its_executions(client, auth):
    wid = client.post("/api/workflows/create", json=simple_workflow(), headers=auth).json()["workflow"]["id"]
    execution_id = client.post("/api/events", json=MESSAGE, headers=auth).json()["executionIds"][0]
    r = client.delete(f"/api/workflows/{wid}", headers=auth)
    assert r.status_code == 200 and r.json() == {"success": True, "deleted": wid}
    assert client.get(f"/api/workflows/{wid}", headers=auth).status_code == 404
    assert client.get(f"/api/executions/{execution_id}", headers=auth).status_code == 200
