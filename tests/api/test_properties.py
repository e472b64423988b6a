"""Issue 13: random JSON thrown at create, update, run and events never breaks a studio.

Hypothesis builds arbitrary JSON (any nesting, NaN and Infinity, NUL and other control
characters, huge and tiny numbers, dates at the calendar's edges) and near-valid workflows
and events with such values planted in them. Whatever the answer to the write, it is never
a 500, and afterwards the studio's workflow list, executions and outbox still answer 200.
SQLite and PostgreSQL; bounded by ``PROPERTY_EXAMPLES`` (default 25) per test.
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.conftest import simple_workflow

EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "25"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=30) | st.sampled_from(
    [
        "",
        "\x00",
        "a\x00b",
        "{{",
        "{{ trigger.from }}",
        "{{ 'x' * 100000000 }}",
        "0 0 30 2 *",
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:00:00+23:59",
        "whatsapp_message",
        "not",
        "all",
    ]
)
NUMBER = (
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0, -1, 2**63, 2**64, 1e308])
)
SCALAR = st.none() | st.booleans() | NUMBER | TEXT
JSON = st.recursive(
    SCALAR, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4), max_leaves=30
)


def _nested(levels: int) -> list:
    value: list = []
    for _ in range(levels):
        value = [value]
    return value


DEEP = st.integers(min_value=30, max_value=200).map(_nested)
ANY = JSON | DEEP


def _planted(base: dict) -> st.SearchStrategy[dict]:
    """``base`` with one of its keys (or a new one) replaced by arbitrary JSON."""
    keys = st.sampled_from(sorted(base) + ["customFields", "extra"])
    return st.builds(lambda k, v: {**base, k: v}, keys, ANY)


def _body(value) -> bytes:
    # allow_nan: send NaN / Infinity as JavaScript clients and Python's json do.
    return json.dumps(value, allow_nan=True).encode()


def _post(client, auth, path: str, value):
    r = client.post(path, content=_body(value), headers={**auth, "Content-Type": "application/json"})
    assert r.status_code < 500, (path, r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("application/json")
    if r.status_code >= 400:
        error = r.json()["error"]
        assert r.json()["success"] is False and error["code"] and error["message"]
    return r


def _studio_still_answers(client, auth) -> None:
    for path in ("/api/workflows/list?includeStats=true", "/api/executions", "/api/outbox"):
        r = client.get(path, headers=auth)
        assert r.status_code == 200, (path, r.text[:500])
    for wf in client.get("/api/workflows/list?pageSize=500", headers=auth).json()["workflows"]:
        assert client.get(f"/api/workflows/{wf['id']}", headers=auth).status_code == 200
        assert client.get(f"/api/workflows/{wf['id']}/export", headers=auth).status_code == 200


WORKFLOW = simple_workflow()
CONDITION = {"type": "custom_field", "operator": "equals", "field": "plan", "value": "x"}
EVENT = {"triggerType": "whatsapp_message", "channel": "whatsapp", "content": "Hallo", "from": "+4915112345678"}


@pytest.fixture
def stored(client, auth) -> str:
    r = client.post("/api/workflows/create", json=WORKFLOW, headers=auth)
    return r.json()["workflow"]["id"]


@SETTINGS
@given(
    value=ANY
    | _planted(WORKFLOW)
    | st.builds(lambda v: {**WORKFLOW, "conditions": [{**CONDITION, "value": v}]}, ANY)
    | st.builds(lambda v: {**WORKFLOW, "actions": [{**WORKFLOW["actions"][0], "config": {"message": v}}]}, ANY)
)
def test_random_json_at_create_never_breaks_the_studio(client, auth, value):
    r = _post(client, auth, "/api/workflows/create", value)
    if r.status_code == 201:
        wf = r.json()["workflow"]
        assert _post(client, auth, "/api/workflows/run", {"workflowId": wf["id"], "dryRun": True}).status_code == 200
    _studio_still_answers(client, auth)


@SETTINGS
@given(
    changes=st.dictionaries(
        st.sampled_from(["name", "description", "enabled", "trigger", "conditions", "actions"]),
        ANY,
        min_size=1,
        max_size=3,
    )
)
def test_random_json_at_update_never_breaks_the_studio(client, auth, stored, changes):
    r = _post(client, auth, "/api/workflows/update", {"workflowId": stored, **changes})
    if r.status_code == 200:
        _post(client, auth, "/api/workflows/run", {"workflowId": stored, "dryRun": True})
    _studio_still_answers(client, auth)


@SETTINGS
@given(trigger_data=ANY, dry_run=st.booleans(), bypass=st.booleans())
def test_random_trigger_data_at_run_never_breaks_the_studio(client, auth, stored, trigger_data, dry_run, bypass):
    _post(
        client,
        auth,
        "/api/workflows/run",
        {"workflowId": stored, "triggerData": trigger_data, "dryRun": dry_run, "bypassConditions": bypass},
    )
    _studio_still_answers(client, auth)


@SETTINGS
@given(
    event=ANY
    | _planted(EVENT)
    | st.builds(lambda v: {**EVENT, "customFields": {"plan": v}}, ANY)
    | st.builds(lambda v: {**EVENT, "receivedAt": v}, TEXT | NUMBER)
)
def test_random_json_at_events_never_breaks_the_studio(client, auth, stored, event):
    _post(client, auth, "/api/events", event)
    _studio_still_answers(client, auth)
