"""The REST API on the ``db`` fixture (SQLite and PostgreSQL) through FastAPI's TestClient."""

from __future__ import annotations

import warnings

import pytest

from engine import services
from engine.api import create_app
from engine.security.auth import system_actor
from engine.uow import unit_of_work

with warnings.catch_warnings():
    # Starlette prefers httpx2 for its TestClient; httpx (a dependency of the engine) still works.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item (the fuzzer counts failed operations with it)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
def client(db) -> TestClient:
    with TestClient(create_app(db)) as c:
        yield c


@pytest.fixture
def key_factory(db):
    """``make(actor, role)`` -> headers with a fresh API key of that role in the actor's tenant."""

    def make(actor, role: str = "owner", name: str = "test key") -> dict[str, str]:
        with unit_of_work(db) as uow:
            _, secret = services.create_api_key(uow=uow, actor=system_actor(actor.tenant_id), name=name, role=role)
        return {"Authorization": f"Bearer {secret}"}

    return make


@pytest.fixture
def auth(key_factory, actor) -> dict[str, str]:
    """Headers with an owner key of tenant A."""
    return key_factory(actor, "owner")


@pytest.fixture
def other_auth(key_factory, other_actor) -> dict[str, str]:
    """Headers with an owner key of tenant B."""
    return key_factory(other_actor, "owner")


def simple_workflow(name: str = "Reply on WhatsApp", trigger: str = "whatsapp_message") -> dict:
    return {
        "name": name,
        "trigger": {"type": trigger, "config": {}},
        "conditions": [],
        "actions": [
            {
                "id": "send-1",
                "type": "send_whatsapp",
                "config": {"message": "Hallo {{trigger.from}}!"},
                "nextActionId": None,
            }
        ],
    }
