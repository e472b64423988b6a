"""GET /api/scenarios and POST /api/scenarios/run, per role and tenant."""

from __future__ import annotations

from engine import services
from engine.services import console, scenarios
from engine.services.console import ConsoleInput
from engine.uow import unit_of_work
from tests.api.conftest import simple_workflow


def _scenario(db, actor, expect_text="Hallo"):
    with unit_of_work(db) as uow:
        wf = services.create_workflow(uow=uow, actor=actor, data=simple_workflow())
    contact = console.new_contact()
    with unit_of_work(db) as uow:
        console.send(uow=uow, actor=actor, contact=contact, inp=ConsoleInput(text="Hi"))
    with unit_of_work(db, read_only=True) as uow:
        conv = console.conversation(uow=uow, actor=actor, contact=contact)
    with unit_of_work(db) as uow:
        sc = scenarios.save_scenario(
            uow=uow,
            actor=actor,
            data={
                "name": "Hi gets Hallo",
                "steps": scenarios.steps_from(conv),
                "expectations": [{"kind": "sent", "contains": expect_text}],
            },
        )
    return wf, sc


def test_list_and_run(client, db, actor, auth, key_factory, other_auth):
    wf, _ = _scenario(db, actor)
    body = client.get("/api/scenarios", headers=auth).json()
    assert body["success"] and body["scenarios"][0]["name"] == "Hi gets Hallo"
    assert body["scenarios"][0]["status"] == "never run"
    run = client.post("/api/scenarios/run", headers=auth)
    assert run.status_code == 200 and run.json()["passed"] == 1 and run.json()["failed"] == 0
    assert client.get("/api/scenarios", headers=auth).json()["scenarios"][0]["lastResult"]["passed"] is True
    # Against a draft: fails, with what differs; stored result unchanged.
    with unit_of_work(db, read_only=True) as uow:
        draft = services.get_workflow(uow=uow, actor=actor, workflow_id=wf.id).definition
    draft["actions"][0]["config"]["message"] = "Servus!"
    run = client.post("/api/scenarios/run", headers=auth, json={"drafts": {wf.id: draft}}).json()
    assert run["failed"] == 1 and "Servus!" in run["results"][0]["failures"][0] and run["results"][0]["draft"]
    assert client.get("/api/scenarios", headers=auth).json()["scenarios"][0]["status"] == "pass"
    # Analysts read, cannot run; another studio sees nothing and cannot use this studio's workflow as a draft.
    analyst = key_factory(actor, "analyst")
    assert client.get("/api/scenarios", headers=analyst).status_code == 200
    assert client.post("/api/scenarios/run", headers=analyst).json()["error"]["code"] == "forbidden"
    assert client.get("/api/scenarios", headers=other_auth).json()["scenarios"] == []
    assert client.post("/api/scenarios/run", headers=other_auth).json()["results"] == []
    assert client.get("/api/scenarios").status_code == 401


def test_invalid_draft_names_the_problem(client, db, actor, auth, other_actor, other_auth):
    wf, _ = _scenario(db, actor)
    with unit_of_work(db, read_only=True) as uow:
        bad = {
            **services.get_workflow(uow=uow, actor=actor, workflow_id=wf.id).definition,
            "actions": [{"id": "x", "type": "nope", "config": {}}],
        }
    res = client.post("/api/scenarios/run", headers=auth, json={"drafts": {wf.id: bad}})
    assert res.status_code == 422 and res.json()["error"]["field"].startswith("drafts")
    _scenario(db, other_actor)
    res = client.post("/api/scenarios/run", headers=other_auth, json={"drafts": {wf.id: bad}})
    assert res.status_code == 404
