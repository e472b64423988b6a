"""Bad requests get one error shape naming the field, and nothing half-written is stored."""

from __future__ import annotations

from engine.api import create_app
from engine.api.workflows import SPEC_EXAMPLE
from tests.api.conftest import TestClient, simple_workflow

BROKEN = {
    "name": "Broken",
    "trigger": {"type": "whatsapp_message", "config": {}},
    "conditions": [{"type": "keyword_match", "operator": "greater_than", "value": "preis"}],
    "actions": [
        {"id": "send-1", "type": "send_whatsapp", "config": {"message": "Hallo"}, "nextActionId": "ghost"},
        {"id": "odd-1", "type": "teleport", "config": {}},
    ],
}


def test_an_invalid_workflow_is_422_with_every_problem_and_its_path_and_nothing_is_stored(client, auth):
    r = client.post("/api/workflows/create", json=BROKEN, headers=auth)
    assert r.status_code == 422
    error = r.json()["error"]
    assert r.json()["success"] is False and error["code"] == "invalid"
    paths = {p["path"] for p in error["problems"] if p["severity"] == "error"}
    assert {"actions[0].nextActionId", "actions[1].type", "conditions[0].operator"} <= paths
    assert all(set(p) == {"path", "message", "severity"} for p in error["problems"])
    assert client.get("/api/workflows/list", headers=auth).json()["total"] == 0


def test_an_invalid_update_keeps_the_stored_workflow(client, auth):
    wf = client.post("/api/workflows/create", json=SPEC_EXAMPLE, headers=auth).json()["workflow"]
    r = client.post("/api/workflows/update", json={"workflowId": wf["id"], "actions": BROKEN["actions"]}, headers=auth)
    assert r.status_code == 422
    assert "actions[0].nextActionId" in {p["path"] for p in r.json()["error"]["problems"]}
    after = client.get(f"/api/workflows/{wf['id']}", headers=auth).json()["workflow"]
    assert after["actions"] == SPEC_EXAMPLE["actions"] and after["version"] == 1


def test_an_import_with_one_bad_item_stores_none_and_prefixes_its_index(client, auth, spec_examples):
    r = client.post("/api/workflows/import", json=[spec_examples[0], BROKEN], headers=auth)
    assert r.status_code == 422
    assert any(p["path"].startswith("[1].actions[0]") for p in r.json()["error"]["problems"])
    assert client.get("/api/workflows/list", headers=auth).json()["total"] == 0
    ok = client.post("/api/workflows/import", json=spec_examples, headers=auth)
    assert ok.status_code == 201 and len(ok.json()["workflows"]) == 4


def test_validate_answers_200_with_problems_and_stores_nothing(client, auth):
    bad = client.post("/api/workflows/validate", json=BROKEN, headers=auth)
    assert bad.status_code == 200 and bad.json()["valid"] is False
    assert "actions[1].type" in {p["path"] for p in bad.json()["problems"]}
    good = client.post("/api/workflows/validate", json=SPEC_EXAMPLE, headers=auth).json()
    assert good == {"success": True, "valid": True, "problems": []}
    assert client.get("/api/workflows/list", headers=auth).json()["total"] == 0


def test_malformed_json_is_422_naming_the_body(client, auth):
    r = client.post(
        "/api/workflows/create", content=b'{"name": "x",', headers={**auth, "Content-Type": "application/json"}
    )
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "body" and "not valid JSON" in r.json()["error"]["message"]


def test_a_body_that_is_not_sent_as_json_is_415(client, auth):
    r = client.post("/api/workflows/create", content=b'{"name": "x"}', headers={**auth, "Content-Type": "text/plain"})
    assert r.status_code == 415
    assert "Content-Type: application/json" in r.json()["error"]["message"]


def test_wrong_types_are_422_naming_the_field(client, auth):
    r = client.post("/api/workflows/run", json={"workflowId": 5, "dryRun": "perhaps"}, headers=auth)
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["field"] == "workflowId"
    assert {p["path"] for p in error["problems"]} == {"workflowId", "dryRun"}
    r = client.get("/api/workflows/list", params={"pageSize": 0}, headers=auth)
    assert r.status_code == 422 and r.json()["error"]["field"] == "pageSize"
    r = client.post("/api/workflows/create", json=["not", "an", "object"], headers=auth)
    assert r.status_code == 422 and r.json()["error"]["field"] == "body"
    r = client.post("/api/workflows/run", json={"workflowId": "x", "unknownFlag": True}, headers=auth)
    assert r.status_code == 422 and r.json()["error"]["field"] == "unknownFlag"


def test_an_oversized_body_is_413_with_a_clear_message(client, auth):
    huge = {**SPEC_EXAMPLE, "description": "x" * (1024 * 1024)}
    r = client.post("/api/workflows/create", json=huge, headers=auth)
    assert r.status_code == 413
    assert r.json()["error"] == {"code": "too_large", "message": "the request body is larger than the limit of 1 MB"}
    assert client.get("/api/workflows/list", headers=auth).json()["total"] == 0


def test_an_oversized_chunked_body_is_413_too(db, auth):
    def chunks():
        for _ in range(20):
            yield b" " * 100_000

    with TestClient(create_app(db)) as client:
        r = client.post("/api/workflows/create", content=chunks(), headers={**auth, "Content-Type": "application/json"})
    assert r.status_code == 413


def test_a_small_chunked_body_still_arrives(db, auth):
    import json

    def chunks():
        yield json.dumps(simple_workflow()).encode()

    with TestClient(create_app(db)) as client:
        r = client.post("/api/workflows/create", content=chunks(), headers={**auth, "Content-Type": "application/json"})
    assert r.status_code == 201, r.text


def test_unknown_routes_and_methods_use_the_same_shape(client, auth):
    r = client.get("/api/nothing-here", headers=auth)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = client.put("/api/workflows/list", headers=auth)
    assert r.status_code == 405 and r.json()["success"] is False


def test_a_reused_idempotency_key_on_a_manual_run_is_409(client, auth):
    wid = client.post("/api/workflows/create", json=SPEC_EXAMPLE, headers=auth).json()["workflow"]["id"]
    run = {"workflowId": wid, "triggerData": {"from": "x", "idempotencyKey": "once"}}
    assert client.post("/api/workflows/run", json=run, headers=auth).status_code == 200
    r = client.post("/api/workflows/run", json=run, headers=auth)
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
