"""Reads never wait for the writer (deferred transactions on SQLite), and the API-key cache
answers without the database while bounding how long a revoked key keeps working."""

from __future__ import annotations

import threading
import warnings

import pytest
import sqlalchemy as sa
from sqlmodel import select

from engine import services
from engine.api import create_app
from engine.errors import PermissionDenied
from engine.security.auth import system_actor
from engine.services.api_keys import KEY_CACHE
from engine.store.db import read_session, session_scope
from engine.store.models import ApiKey, Tenant, utcnow
from engine.uow import unit_of_work
from tests.uow import in_uow

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

JOIN = 20  # seconds; far below SQLite's 30 s busy timeout, far above any real read


def _in_thread(fn) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - asserted by the test
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


@pytest.fixture(autouse=True)
def _fresh_cache():
    KEY_CACHE.clear()
    yield
    KEY_CACHE.clear()
    KEY_CACHE.ttl = None  # back to STUDIO_API_KEY_CACHE_SECONDS


def test_a_read_completes_while_a_writer_holds_the_lock(db, actor):

    with unit_of_work(db) as uow:
        _, secret = services.create_api_key(uow=uow, actor=actor, name="CRM", role="editor")
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data={
                "name": "Hello",
                "trigger": {"type": "missed_call", "config": {}},
                "actions": [{"id": "a", "type": "wait", "config": {"delay": 1000}}],
            },
        )
    # The first use of a key records last_used_at (a write, at most once a minute per key).
    with unit_of_work(db, read_only=True) as uow:
        services.actor_for_api_key(uow=uow, secret=secret)
    KEY_CACHE.clear()  # so the read below asks the database
    writer = db.connect()
    writer.begin()  # BEGIN IMMEDIATE: the write lock is held until the rollback below
    writer.execute(sa.update(Tenant).values(name="uncommitted"))
    try:
        # A second writer queues behind the lock ...
        blocked, blocked_out = _in_thread(
            lambda: in_uow(db, services.update_tenant_settings, actor=actor, name="second writer")
        )
        # ... while reads (API-key auth, a list, a lookup) go through and see the last commit.
        read, out = _in_thread(
            lambda: (
                in_uow(db, services.actor_for_api_key, read_only=True, secret=secret),
                in_uow(db, services.list_workflows, read_only=True, actor=actor),
                in_uow(db, services.get_tenant, read_only=True, actor=actor),
            )
        )
        read.join(JOIN)
        assert not read.is_alive(), "a read waited for the writer's lock"
        assert "error" not in out, out.get("error")
        who, workflows, tenant = out["value"]
        assert who.tenant_id == actor.tenant_id and who.role == "editor"
        assert [w.name for w in workflows.items] == ["Hello"]
        assert tenant.name != "uncommitted"
        assert blocked.is_alive(), "the second writer should still wait for the lock"
    finally:
        writer.rollback()
        writer.close()
    blocked.join(JOIN)
    assert not blocked.is_alive() and "error" not in blocked_out
    with unit_of_work(db, read_only=True) as uow:
        assert services.get_tenant(uow=uow, actor=actor).name == "second writer"


def test_a_read_session_refuses_to_write(db, actor):
    with pytest.raises(RuntimeError, match="read-only"), read_session(db) as s:
        tenant = s.get(Tenant, actor.tenant_id)
        tenant.name = "changed"
        s.add(tenant)
        s.flush()
    with unit_of_work(db, read_only=True) as uow:
        assert services.get_tenant(uow=uow, actor=actor).name != "changed"


def test_a_writer_session_still_takes_the_lock_at_begin(sqlite_db):
    with session_scope(sqlite_db) as s:
        s.exec(select(Tenant)).all()
        assert s.connection().connection.driver_connection.in_transaction


def test_a_cached_key_needs_no_database_round_trip(db, actor):
    with unit_of_work(db) as uow:
        _, secret = services.create_api_key(uow=uow, actor=actor, name="CRM", role="editor")
    assert services.cached_actor_for_api_key(db, secret) is None  # not verified yet
    with unit_of_work(db, read_only=True) as uow:
        first = services.actor_for_api_key(uow=uow, secret=secret)
    statements: list[str] = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731 - (conn, cursor, statement, ...)
    sa.event.listen(db, "before_cursor_execute", listener)
    try:
        assert services.cached_actor_for_api_key(db, secret) == first
    finally:
        sa.event.remove(db, "before_cursor_execute", listener)
    assert statements == []


def test_unknown_keys_are_never_cached(db, actor):
    for _ in range(2):
        with pytest.raises(PermissionDenied):
            with unit_of_work(db, read_only=True) as uow:
                services.actor_for_api_key(uow=uow, secret="sa_unknown-key")
        assert services.cached_actor_for_api_key(db, "sa_unknown-key") is None


def test_a_key_revoked_by_another_process_stops_working_within_the_cache_ttl(db, actor, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(KEY_CACHE, "clock", lambda: now[0])
    monkeypatch.setattr(KEY_CACHE, "_ttl", 5.0)
    with unit_of_work(db) as uow:
        key, secret = services.create_api_key(uow=uow, actor=actor, name="CRM", role="editor")
    headers = {"Authorization": f"Bearer {secret}"}
    with TestClient(create_app(db)) as client:
        assert client.get("/api/workflows/list", headers=headers).status_code == 200
        # Another process revokes the key: only the database changes, not this process's cache.
        with session_scope(db) as s:
            s.execute(sa.update(ApiKey).where(ApiKey.id == key.id).values(revoked_at=utcnow()))
        now[0] += 4.9
        assert client.get("/api/workflows/list", headers=headers).status_code == 200  # within the bound
        now[0] += 0.2
        r = client.get("/api/workflows/list", headers=headers)
        assert r.status_code == 401 and r.json()["error"]["message"] == "invalid or revoked API key"
        assert services.cached_actor_for_api_key(db, secret) is None


def test_revoking_in_this_process_forgets_the_key_at_once(db, actor, monkeypatch):
    monkeypatch.setattr(KEY_CACHE, "_ttl", 300.0)
    with unit_of_work(db) as uow:
        key, secret = services.create_api_key(uow=uow, actor=actor, name="CRM", role="editor")
    with unit_of_work(db, read_only=True) as uow:
        services.actor_for_api_key(uow=uow, secret=secret)
    assert services.cached_actor_for_api_key(db, secret) is not None
    with unit_of_work(db) as uow:
        services.revoke_api_key(uow=uow, actor=actor, key_id=key.id)
    assert services.cached_actor_for_api_key(db, secret) is None


def test_a_zero_ttl_turns_the_cache_off(db, actor, monkeypatch):
    monkeypatch.setattr(KEY_CACHE, "_ttl", 0.0)
    with unit_of_work(db) as uow:
        _, secret = services.create_api_key(uow=uow, actor=actor, name="CRM", role="editor")
    with unit_of_work(db, read_only=True) as uow:
        services.actor_for_api_key(uow=uow, secret=secret)
    assert services.cached_actor_for_api_key(db, secret) is None


def test_the_cache_keeps_each_tenants_actor(db, actor, other_actor):
    with unit_of_work(db) as uow:
        _, a = services.create_api_key(uow=uow, actor=actor, name="A", role="analyst")
    with unit_of_work(db) as uow:
        _, b = services.create_api_key(uow=uow, actor=system_actor(other_actor.tenant_id), name="B", role="owner")
    with unit_of_work(db, read_only=True) as uow:
        services.actor_for_api_key(uow=uow, secret=a)
    with unit_of_work(db, read_only=True) as uow:
        services.actor_for_api_key(uow=uow, secret=b)
    assert services.cached_actor_for_api_key(db, a).tenant_id == actor.tenant_id
    assert services.cached_actor_for_api_key(db, a).role == "analyst"
    assert services.cached_actor_for_api_key(db, b).tenant_id == other_actor.tenant_id


def test_the_cache_is_bounded(db, actor, monkeypatch):
    monkeypatch.setattr(KEY_CACHE, "max_entries", 2)
    with unit_of_work(db) as uow:
        secrets = [services.create_api_key(uow=uow, actor=actor, name=f"K{i}", role="editor")[1] for i in range(3)]
    for s in secrets:
        with unit_of_work(db, read_only=True) as uow:
            services.actor_for_api_key(uow=uow, secret=s)
    assert services.cached_actor_for_api_key(db, secrets[0]) is None
    assert all(services.cached_actor_for_api_key(db, s) for s in secrets[1:])


def test_health_answers_while_a_writer_holds_the_lock(db):
    writer = db.connect()
    writer.begin()
    writer.execute(sa.update(Tenant).values(name="uncommitted"))
    try:
        with TestClient(create_app(db)) as client:
            t, out = _in_thread(lambda: client.get("/api/health"))
            t.join(JOIN)
            assert not t.is_alive(), "the health check waited for the writer's lock"
            assert out["value"].json() == {"status": "ok", "database": "ok"}
    finally:
        writer.rollback()
        writer.close()
