"""``POST /api/events`` answers the same with and without the fast path (engine/api/fast_events.py),
and the fast path is really taken for a cached key."""

from __future__ import annotations

import warnings

import pytest

from engine import services
from engine.api import create_app
from engine.api import fast_events as fast_module
from engine.services.api_keys import KEY_CACHE
from engine.uow import unit_of_work
from tests.api.conftest import simple_workflow

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

EVENT = {"triggerType": "whatsapp_message", "channel": "whatsapp", "content": "Hallo", "from": "+4915112345678"}

CASES = [
    ("plain", {"json": EVENT}, {}),
    ("idempotent", {"json": {**EVENT, "idempotencyKey": "k-1"}}, {}),
    ("header key", {"json": EVENT}, {"Idempotency-Key": "k-2"}),
    ("header and body disagree", {"json": {**EVENT, "idempotencyKey": "a"}}, {"Idempotency-Key": "b"}),
    ("unknown trigger", {"json": {**EVENT, "triggerType": "fax"}}, {}),
    ("not an object", {"json": [EVENT]}, {}),
    ("malformed JSON", {"content": b'{"triggerType": ', "headers": {"Content-Type": "application/json"}}, {}),
    ("not JSON", {"content": b"triggerType=x", "headers": {"Content-Type": "text/plain"}}, {}),
    ("empty body", {"content": b"", "headers": {"Content-Type": "application/json"}}, {}),
]


def _shape(value):
    """The answer with generated ids blanked out (they differ between the two databases' runs)."""
    if isinstance(value, dict):
        return {
            k: ("<id>" if k == "eventId" else [("<id>") for _ in v] if k == "executionIds" else _shape(v))
            for k, v in value.items()
        }
    return value


def _answers(db, headers: dict[str, str], cases: list, *, fast: bool) -> list[tuple[int, object]]:
    out = []
    with TestClient(create_app(db, fast_events=fast)) as client:
        for _name, kwargs, extra in cases:
            kwargs = {**kwargs, "headers": {**headers, **kwargs.get("headers", {}), **extra}}
            for _ in range(2):  # the second time: duplicates, and surely a cached key
                r = client.post("/api/events", **kwargs)
                out.append((r.status_code, _shape(r.json())))
    return out


def _with_fresh_keys(cases: list, suffix: str) -> list:
    """The same cases with other idempotency keys (the first run's keys are taken)."""
    out = []
    for name, kwargs, extra in cases:
        body = kwargs.get("json")
        if isinstance(body, dict) and "idempotencyKey" in body:
            kwargs = {**kwargs, "json": {**body, "idempotencyKey": body["idempotencyKey"] + suffix}}
        out.append((name, kwargs, {h: v + suffix for h, v in extra.items()}))
    return out


def test_fast_and_framework_paths_answer_the_same(db, actor, key_factory):
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=actor, data=simple_workflow())
    headers = key_factory(actor, "editor")
    slow = _answers(db, headers, CASES, fast=False)
    fast = _answers(db, headers, _with_fresh_keys(CASES, "-fast"), fast=True)
    assert fast == slow
    assert [s for s, _ in slow] == [
        200,
        200,
        200,
        200,
        200,
        200,
        422,
        422,
        422,
        422,
        422,
        422,
        422,
        422,
        415,
        415,
        422,
        422,
    ]
    assert [a["duplicate"] for _, a in slow[:6]] == [False, False, False, True, False, True]


@pytest.mark.parametrize("role,status", [("analyst", 403), ("editor", 200), ("owner", 200)])
def test_the_role_is_checked_on_the_fast_path_too(db, actor, key_factory, role, status):
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=actor, data=simple_workflow())
    headers = key_factory(actor, role)
    with TestClient(create_app(db)) as client:
        answers = [client.post("/api/events", json=EVENT, headers=headers).status_code for _ in range(3)]
    assert answers == [status] * 3


def test_a_cached_key_takes_the_fast_path_and_stores_the_event(db, actor, key_factory, monkeypatch):
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=actor, data=simple_workflow())
    headers = key_factory(actor, "editor")
    taken = []
    real = fast_module.FastEvents._ingest

    async def spy(self, *args):
        taken.append(1)
        await real(self, *args)

    monkeypatch.setattr(fast_module.FastEvents, "_ingest", spy)
    KEY_CACHE.clear()
    with TestClient(create_app(db)) as client:
        first = client.post("/api/events", json=EVENT, headers=headers)  # cache miss: the FastAPI route
        second = client.post("/api/events", json=EVENT, headers=headers)  # cached: the fast path
    assert first.status_code == second.status_code == 200
    assert taken == [1]
    [execution_id] = second.json()["executionIds"]
    with unit_of_work(db, read_only=True) as uow:
        assert services.get_execution(uow=uow, actor=actor, execution_id=execution_id).status == "succeeded"


def test_another_tenants_key_cannot_reach_this_tenants_workflows(db, actor, other_actor, key_factory):
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=actor, data=simple_workflow())
    other = key_factory(other_actor, "owner")
    with TestClient(create_app(db)) as client:
        for _ in range(2):
            r = client.post("/api/events", json=EVENT, headers=other)
            assert r.status_code == 200 and r.json()["executionIds"] == []
    with unit_of_work(db, read_only=True) as uow:
        assert services.list_executions(uow=uow, actor=actor).total == 0
