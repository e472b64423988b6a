"""A key of tenant B never sees or changes tenant A's workflows and executions: always 404."""

from __future__ import annotations

import pytest

from engine.api.workflows import SPEC_EXAMPLE

REQUESTS = {
    "get": lambda c, wid, h: c.get(f"/api/workflows/{wid}", headers=h),
    "update": lambda c, wid, h: c.post(
        "/api/workflows/update", json={"workflowId": wid, "name": "hijacked"}, headers=h
    ),
    "run": lambda c, wid, h: c.post("/api/workflows/run", json={"workflowId": wid}, headers=h),
    "delete": lambda c, wid, h: c.delete(f"/api/workflows/{wid}", headers=h),
    "duplicate": lambda c, wid, h: c.post(f"/api/workflows/{wid}/duplicate", headers=h),
    "versions": lambda c, wid, h: c.get(f"/api/workflows/{wid}/versions", headers=h),
    "rollback": lambda c, wid, h: c.post(f"/api/workflows/{wid}/rollback", json={"version": 1}, headers=h),
    "export": lambda c, wid, h: c.get(f"/api/workflows/{wid}/export", headers=h),
}


@pytest.fixture
def a_workflow(client, auth) -> dict:
    return client.post("/api/workflows/create", json=SPEC_EXAMPLE, headers=auth).json()["workflow"]


@pytest.mark.parametrize("operation", list(REQUESTS))
def test_another_tenants_workflow_is_404_like_an_unknown_id(client, auth, other_auth, a_workflow, operation):
    r = REQUESTS[operation](client, a_workflow["id"], other_auth)
    unknown = REQUESTS[operation](client, "f" * 32, other_auth)
    assert r.status_code == unknown.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    assert r.json()["error"]["message"] == unknown.json()["error"]["message"].replace("f" * 32, a_workflow["id"])
    after = client.get(f"/api/workflows/{a_workflow['id']}", headers=auth).json()["workflow"]
    assert (after["name"], after["version"], after["runCount"]) == (a_workflow["name"], 1, 0)


def test_lists_never_include_another_tenants_rows(client, auth, other_auth, a_workflow):
    run = client.post(
        "/api/workflows/run", json={"workflowId": a_workflow["id"], "triggerData": {"from": "x"}}, headers=auth
    )
    execution_id = run.json()["result"]["executionId"]
    listed = client.get(
        "/api/workflows/list", params={"includeStats": "true", "search": "Workflow"}, headers=other_auth
    ).json()
    assert listed["workflows"] == [] and listed["total"] == 0 and listed["stats"]["totalWorkflows"] == 0
    assert client.get("/api/executions", headers=other_auth).json()["executions"] == []
    assert (
        client.get("/api/executions", params={"workflowId": a_workflow["id"]}, headers=other_auth).json()["total"] == 0
    )
    assert client.get(f"/api/executions/{execution_id}", headers=other_auth).status_code == 404
    assert client.get("/api/outbox", headers=other_auth).json()["messages"] == []
