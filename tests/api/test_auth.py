"""API keys: missing, unknown and revoked keys get 401; a key's role decides what it may do."""

from __future__ import annotations

import pytest

from engine import services
from engine.api.workflows import SPEC_EXAMPLE
from engine.errors import NotFound, PermissionDenied
from engine.security.auth import Actor
from engine.uow import unit_of_work


def test_a_request_without_a_key_is_401_and_says_how_to_authenticate(client):
    r = client.get("/api/workflows/list")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json() == {"success": False, "error": {"code": "unauthorized", "message": r.json()["error"]["message"]}}
    assert "Authorization: Bearer" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "header", ["Bearer sa_not-a-real-key", "Bearer nonsense", "Basic dXNlcjpwYXNz", "sa_no_scheme"]
)
def test_an_unknown_key_is_401(client, header):
    r = client.get("/api/workflows/list", headers={"Authorization": header})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"


def test_a_revoked_key_stops_working_at_once(client, db, actor, auth):
    assert client.get("/api/workflows/list", headers=auth).status_code == 200
    with unit_of_work(db, read_only=True) as uow:
        [key] = services.list_api_keys(uow=uow, actor=actor)
    with unit_of_work(db) as uow:
        services.revoke_api_key(uow=uow, actor=actor, key_id=key.id)
    r = client.get("/api/workflows/list", headers=auth)
    assert r.status_code == 401
    assert r.json()["error"]["message"] == "invalid or revoked API key"


def test_analyst_key_can_read_but_not_create_or_run(client, key_factory, actor, auth):
    wid = client.post("/api/workflows/create", json=SPEC_EXAMPLE, headers=auth).json()["workflow"]["id"]
    analyst = key_factory(actor, "analyst")
    r = client.post("/api/workflows/create", json=SPEC_EXAMPLE, headers=analyst)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert client.post("/api/workflows/run", json={"workflowId": wid}, headers=analyst).status_code == 403
    listed = client.get("/api/workflows/list", headers=analyst)
    assert listed.status_code == 200 and [w["id"] for w in listed.json()["workflows"]] == [wid]
    assert client.get("/api/workflows/list", headers=auth).json()["total"] == 1


def test_editor_key_can_build_and_run(client, key_factory, actor):
    editor = key_factory(actor, "editor")
    created = client.post("/api/workflows/create", json=SPEC_EXAMPLE, headers=editor)
    assert created.status_code == 201
    run = client.post("/api/workflows/run", json={"workflowId": created.json()["workflow"]["id"]}, headers=editor)
    assert run.status_code == 200


def test_key_service_stores_only_a_hash_and_reports_the_prefix(db, actor):
    with unit_of_work(db) as uow:
        key, secret = services.create_api_key(uow=uow, actor=actor, name="CRM", role="editor")
    assert secret.startswith("sa_") and len(secret) > 40
    assert key.prefix == secret[:8]
    from sqlalchemy import text

    with db.connect() as conn:
        stored = conn.execute(text("select key_hash from api_keys")).scalar_one()
    assert secret not in stored and len(stored) == 64
    with unit_of_work(db, read_only=True) as uow:
        who = services.actor_for_api_key(uow=uow, secret=secret)
    assert (who.tenant_id, who.role) == (actor.tenant_id, "editor")
    with unit_of_work(db, read_only=True) as uow:
        assert services.list_api_keys(uow=uow, actor=actor)[0].last_used_at is not None


def test_only_owners_manage_keys_and_other_tenants_keys_are_not_found(db, actor, other_actor):
    editor = Actor(tenant_id=actor.tenant_id, role="editor")
    with pytest.raises(PermissionDenied):
        with unit_of_work(db) as uow:
            services.create_api_key(uow=uow, actor=editor, name="x", role="owner")
    with pytest.raises(PermissionDenied):
        with unit_of_work(db, read_only=True) as uow:
            services.list_api_keys(uow=uow, actor=editor)
    with unit_of_work(db) as uow:
        key, _ = services.create_api_key(uow=uow, actor=actor, name="CRM", role="analyst")
    with pytest.raises(NotFound):
        with unit_of_work(db) as uow:
            services.revoke_api_key(uow=uow, actor=other_actor, key_id=key.id)
    with unit_of_work(db, read_only=True) as uow:
        assert services.list_api_keys(uow=uow, actor=other_actor) == []
    with unit_of_work(db, read_only=True) as uow:
        assert services.list_api_keys(uow=uow, actor=actor)[0].revoked_at is None


@pytest.mark.parametrize("name, role, field", [("", "editor", "name"), ("CRM", "boss", "role")])
def test_a_key_needs_a_name_and_a_known_role(db, actor, name, role, field):
    from engine.errors import InvalidInput

    with pytest.raises(InvalidInput) as exc:
        with unit_of_work(db) as uow:
            services.create_api_key(uow=uow, actor=actor, name=name, role=role)
    assert exc.value.field == field


def test_health_and_schema_need_no_key(client):
    health = client.get("/api/health")
    assert health.status_code == 200 and health.json() == {"status": "ok", "database": "ok"}
    schema = client.get("/api/schema").json()
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert {"name", "trigger", "actions"} <= set(schema["properties"])


def test_openapi_docs_are_served_and_declare_the_bearer_scheme(client):
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/api/workflows/create" in spec["paths"]
    assert spec["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
