"""The spec's four routes with the spec's own JSON: create, update, run, list."""

from __future__ import annotations

from engine.api.workflows import SPEC_EXAMPLE


def test_create_with_the_spec_request_answers_the_spec_response(client, auth, actor):
    r = client.post("/api/workflows/create", json=SPEC_EXAMPLE, headers=auth)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["success"] is True
    wf = body["workflow"]
    for key in (
        "id",
        "tenantId",
        "name",
        "enabled",
        "trigger",
        "conditions",
        "actions",
        "createdAt",
        "updatedAt",
        "runCount",
        "successCount",
        "errorCount",
    ):
        assert key in wf, key
    assert wf["tenantId"] == actor.tenant_id
    assert (wf["name"], wf["trigger"], wf["actions"]) == (
        SPEC_EXAMPLE["name"],
        SPEC_EXAMPLE["trigger"],
        SPEC_EXAMPLE["actions"],
    )
    assert (wf["runCount"], wf["successCount"], wf["errorCount"]) == (0, 0, 0)
    assert wf["createdAt"].endswith("Z")


def test_each_of_the_spec_examples_can_be_created_and_read_back(client, auth, spec_examples):
    for example in spec_examples:
        created = client.post("/api/workflows/create", json=example, headers=auth).json()["workflow"]
        read = client.get(f"/api/workflows/{created['id']}", headers=auth).json()["workflow"]
        assert {k: read[k] for k in ("name", "trigger", "conditions", "actions")} == {
            k: example[k] for k in ("name", "trigger", "conditions", "actions")
        }
        assert client.get(f"/api/workflows/{created['id']}/export", headers=auth).json() == example


def test_update_with_the_spec_request_changes_only_the_given_keys(client, auth):
    wid = client.post("/api/workflows/create", json=SPEC_EXAMPLE, headers=auth).json()["workflow"]["id"]
    r = client.post(
        "/api/workflows/update", json={"workflowId": wid, "name": "Updated Name", "enabled": False}, headers=auth
    )
    assert r.status_code == 200, r.text
    wf = r.json()["workflow"]
    assert (wf["name"], wf["enabled"], wf["version"]) == ("Updated Name", False, 2)
    assert wf["actions"] == SPEC_EXAMPLE["actions"]


def test_update_with_an_unknown_key_names_it(client, auth):
    wid = client.post("/api/workflows/create", json=SPEC_EXAMPLE, headers=auth).json()["workflow"]["id"]
    r = client.post("/api/workflows/update", json={"workflowId": wid, "nmae": "typo"}, headers=auth)
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "nmae"


def test_run_with_the_spec_request_answers_the_spec_result(client, auth):
    wid = client.post("/api/workflows/create", json=SPEC_EXAMPLE, headers=auth).json()["workflow"]["id"]
    r = client.post(
        "/api/workflows/run",
        json={"workflowId": wid, "triggerData": {"content": "Test message", "from": "test-user"}},
        headers=auth,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True
    result = body["result"]
    assert result["success"] is True and result["status"] == "succeeded"
    assert result["executionId"] and result["actionsExecuted"] == 1
    assert set(result["results"]) == {"action-1"}
    assert [s["actionId"] for s in result["steps"]] == ["action-1"]
    execution = client.get(f"/api/executions/{result['executionId']}", headers=auth).json()["execution"]
    assert execution["status"] == "succeeded" and execution["steps"][0]["status"] == "succeeded"
    outbox = client.get("/api/outbox", params={"executionId": result["executionId"]}, headers=auth).json()["messages"]
    assert [m["body"] for m in outbox] == ["Hello!"]


def test_dry_run_sends_nothing(client, auth):
    wid = client.post("/api/workflows/create", json=SPEC_EXAMPLE, headers=auth).json()["workflow"]["id"]
    result = client.post(
        "/api/workflows/run", json={"workflowId": wid, "triggerData": {"from": "x"}, "dryRun": True}, headers=auth
    ).json()["result"]
    assert result["steps"][0]["status"] == "simulated"
    assert client.get("/api/outbox", params={"status": "recorded"}, headers=auth).json()["total"] == 0


def test_run_of_a_skipped_workflow_is_not_a_success_unless_conditions_are_bypassed(client, auth):
    definition = {**SPEC_EXAMPLE, "conditions": [{"type": "keyword_match", "operator": "contains", "value": "preis"}]}
    wid = client.post("/api/workflows/create", json=definition, headers=auth).json()["workflow"]["id"]
    run = {"workflowId": wid, "triggerData": {"content": "hallo", "from": "x"}}
    skipped = client.post("/api/workflows/run", json=run, headers=auth).json()["result"]
    assert (skipped["success"], skipped["status"], skipped["actionsExecuted"]) == (False, "skipped", 0)
    assert skipped["explanation"]
    bypassed = client.post("/api/workflows/run", json={**run, "bypassConditions": True}, headers=auth).json()["result"]
    assert (bypassed["success"], bypassed["actionsExecuted"]) == (True, 1)


def test_list_with_stats_as_the_spec(client, auth, spec_examples):
    for example in spec_examples:
        client.post("/api/workflows/create", json=example, headers=auth)
    first = client.get("/api/workflows/list", headers=auth).json()["workflows"][0]
    client.post("/api/workflows/update", json={"workflowId": first["id"], "enabled": False}, headers=auth)
    r = client.get("/api/workflows/list", params={"includeStats": "true"}, headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True and body["total"] == 4 and len(body["workflows"]) == 4
    for key in (
        "id",
        "name",
        "enabled",
        "trigger",
        "conditions",
        "actions",
        "runCount",
        "successCount",
        "errorCount",
        "lastRunAt",
    ):
        assert key in body["workflows"][0], key
    spec_keys = ("totalWorkflows", "enabledWorkflows", "totalExecutions", "successRate")
    assert {k: body["stats"][k] for k in spec_keys} == {
        "totalWorkflows": 4,
        "enabledWorkflows": 3,
        "totalExecutions": 0,
        "successRate": 0.0,
    }
    assert body["stats"]["skipped"] == body["stats"]["inProgress"] == 0
    enabled = client.get("/api/workflows/list", params={"enabledOnly": "true"}, headers=auth).json()
    assert enabled["total"] == 3 and enabled["stats"] is None
    assert first["id"] not in [w["id"] for w in enabled["workflows"]]


def test_list_searches_and_pages(client, auth, spec_examples):
    for example in spec_examples:
        client.post("/api/workflows/create", json=example, headers=auth)
    page = client.get("/api/workflows/list", params={"page": 2, "pageSize": 3}, headers=auth).json()
    assert (page["total"], page["page"], page["pageSize"], len(page["workflows"])) == (4, 2, 3, 1)
    found = client.get("/api/workflows/list", params={"search": "MISSED"}, headers=auth).json()["workflows"]
    assert [w["name"] for w in found] == ["Missed Call Follow-Up"]
