"""Issue 13: no input can break a studio. Each input that used to be accepted and then broke
later calls, or answered 500, is refused with a 4xx in the one error shape naming the field;
nothing is stored, and the studio's lists still answer afterwards. SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest

from engine.api import create_app
from engine.uow import unit_of_work
from engine.workflow.limits import MAX_RENDERED_BYTES
from tests.api.conftest import TestClient, simple_workflow

RAW = {"Content-Type": "application/json"}


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def _not_groups(levels: int) -> dict:
    cond: dict = {"type": "keyword_match", "operator": "contains", "value": "x"}
    for _ in range(levels):
        cond = {"type": "not", "condition": cond}
    return cond


def _studio_still_answers(client, auth) -> None:
    for path in ("/api/workflows/list?includeStats=true", "/api/executions", "/api/outbox"):
        r = client.get(path, headers=auth)
        assert r.status_code == 200, (path, r.text[:300])


def _stored(client, auth) -> tuple[int, int]:
    return (
        client.get("/api/workflows/list", headers=auth).json()["total"],
        client.get("/api/executions", headers=auth).json()["total"],
    )


def _refused(r, field: str | None = None, status: int = 422) -> dict:
    assert r.status_code == status, r.text[:500]
    body = r.json()
    assert body["success"] is False and body["error"]["code"] == "invalid" and body["error"]["message"]
    if field is not None:
        assert field in body["error"]["field"], body["error"]
    return body["error"]


def _workflow_with(**changes) -> dict:
    return {**simple_workflow(), **changes}


def _message(text: str) -> dict:
    return _workflow_with(actions=[{"id": "send-1", "type": "send_whatsapp", "config": {"message": text}}])


# --------------------------------------------------------------------------- poisoning inputs

POISONED_CREATES = {
    "nan in a condition": (
        '{"name":"N","trigger":{"type":"whatsapp_message","config":{}},"conditions":[{"type":"custom_field",'
        '"operator":"equals","field":"x","value":NaN}],"actions":[{"id":"a","type":"send_whatsapp",'
        '"config":{"message":"hi"}}]}',
        "body",
    ),
    "infinity in a condition": (
        '{"name":"N","trigger":{"type":"whatsapp_message","config":{}},"conditions":[{"type":'
        '"custom_field","operator":"greater_than","field":"x","value":Infinity}],"actions":[{"id":"a",'
        '"type":"send_whatsapp","config":{"message":"hi"}}]}',
        "body",
    ),
    "deeply nested condition groups": (json.dumps(_workflow_with(conditions=[_not_groups(300)])), "conditions[0]"),
    "condition groups one level too deep": (json.dumps(_workflow_with(conditions=[_not_groups(9)])), "conditions[0]"),
    "a NUL in the name": (json.dumps(_workflow_with(name="a\x00b")), "name"),
    "a NUL in a message": (json.dumps(_message("Hallo\x00")), "actions[0].config.message"),
    "a cron schedule that never fires": (
        json.dumps(_workflow_with(trigger={"type": "time_based", "config": {"schedule": "0 9 30 2 *"}})),
        "trigger.config.schedule",
    ),
    "a template of nested {{": (json.dumps(_message("{{" * 3000 + "x" + "}}" * 3000)), "actions[0].config.message"),
    "a template of nested parentheses": (
        json.dumps(_message("{{ " + "(" * 500 + "1" + ")" * 500 + " }}")),
        "actions[0].config.message",
    ),
    "a list where one value belongs (found by the property tests)": (
        json.dumps(
            _workflow_with(conditions=[{"type": "custom_field", "operator": "equals", "field": "x", "value": []}])
        ),
        "conditions[0].value",
    ),
    "too many actions": (
        json.dumps(
            _workflow_with(
                actions=[{"id": f"a{i}", "type": "send_whatsapp", "config": {"message": "hi"}} for i in range(201)]
            )
        ),
        "actions",
    ),
}


@pytest.mark.parametrize("name", list(POISONED_CREATES))
def test_a_poisoning_workflow_is_refused_and_nothing_is_stored(client, auth, name):
    raw, field = POISONED_CREATES[name]
    error = _refused(client.post("/api/workflows/create", content=raw, headers={**auth, **RAW}))
    assert field in error["message"] or any(field in p["path"] for p in error.get("problems", []))
    assert _stored(client, auth) == (0, 0)
    _studio_still_answers(client, auth)
    # /validate says the same, so what validates can always be stored, run and listed.
    r = client.post("/api/workflows/validate", content=raw, headers={**auth, **RAW})
    assert r.status_code == 422 or r.json()["valid"] is False


def test_an_update_cannot_poison_a_stored_workflow(client, auth):
    wf = client.post("/api/workflows/create", json=simple_workflow(), headers=auth).json()["workflow"]
    raw = (
        '{"workflowId":"%s","conditions":[{"type":"custom_field","operator":"equals","field":"x","value":NaN}]}'
        % wf["id"]
    )
    _refused(client.post("/api/workflows/update", content=raw, headers={**auth, **RAW}))
    r = client.post(
        "/api/workflows/update", json={"workflowId": wf["id"], "conditions": [_not_groups(40)]}, headers=auth
    )
    _refused(r)
    assert client.get(f"/api/workflows/{wf['id']}", headers=auth).json()["workflow"]["version"] == 1
    _studio_still_answers(client, auth)


POISONED_EVENTS = {
    "deep custom fields": (
        '{"triggerType":"whatsapp_message","content":"x","customFields":{"a":%s}}' % _deep(900),
        "customFields.a",
    ),
    "very deep custom fields": (
        '{"triggerType":"whatsapp_message","content":"x","customFields":{"a":%s}}' % _deep(20000),
        "body",
    ),
    "nan in custom fields": ('{"triggerType":"whatsapp_message","content":"x","customFields":{"a":NaN}}', "body"),
    "a NUL in the content": (json.dumps({"triggerType": "whatsapp_message", "content": "a\x00b"}), "content"),
    "a NUL in a custom field key": (
        json.dumps({"triggerType": "whatsapp_message", "customFields": {"a\x00": 1}}),
        "customFields",
    ),
    "a date at the edge of the calendar": (
        json.dumps({"triggerType": "whatsapp_message", "content": "x", "receivedAt": "0001-01-01T00:00:00+23:59"}),
        "receivedAt",
    ),
    "a date at the other edge": (
        json.dumps({"triggerType": "whatsapp_message", "content": "x", "receivedAt": "9999-12-31T23:59:59-23:59"}),
        "receivedAt",
    ),
}


@pytest.mark.parametrize("name", list(POISONED_EVENTS))
def test_a_poisoning_event_is_refused_and_nothing_is_stored(client, auth, name):
    client.post("/api/workflows/create", json=simple_workflow(), headers=auth)
    raw, field = POISONED_EVENTS[name]
    _refused(client.post("/api/events", content=raw, headers={**auth, **RAW}), field)
    assert _stored(client, auth) == (1, 0)
    _studio_still_answers(client, auth)


def test_deep_trigger_data_of_a_run_is_refused(client, auth):
    wf = client.post("/api/workflows/create", json=simple_workflow(), headers=auth).json()["workflow"]
    raw = '{"workflowId":"%s","triggerData":{"a":%s}}' % (wf["id"], _deep(900))
    _refused(client.post("/api/workflows/run", content=raw, headers={**auth, **RAW}), "triggerData.a")
    assert _stored(client, auth) == (1, 0)
    _studio_still_answers(client, auth)


def test_the_engine_refuses_what_the_edge_refuses(db, actor):
    """The same limits hold without the API (UI, CLI, adapters call the services)."""
    from engine import services
    from engine.errors import InvalidInput
    from engine.workflow.limits import LimitExceeded

    with pytest.raises(InvalidInput):
        with unit_of_work(db) as uow:
            services.create_workflow(
                uow=uow,
                actor=actor,
                data=_workflow_with(
                    conditions=[{"type": "custom_field", "operator": "equals", "field": "x", "value": float("nan")}]
                ),
            )
    with pytest.raises((InvalidInput, LimitExceeded)):
        with unit_of_work(db) as uow:
            services.ingest_event(uow=uow, actor=actor, event={"triggerType": "whatsapp_message", "content": "a\x00b"})
    nested: list = []
    for _ in range(100):
        nested = [nested]
    with pytest.raises((InvalidInput, LimitExceeded)):
        with unit_of_work(db) as uow:
            services.ingest_event(
                uow=uow, actor=actor, event={"triggerType": "whatsapp_message", "customFields": {"a": nested}}
            )
    with unit_of_work(db, read_only=True) as uow:
        assert services.list_executions(uow=uow, actor=actor).total == 0


# --------------------------------------------------------------------------- 500s from unchecked ranges


@pytest.mark.parametrize(
    "query", ["page=99999999999999999999", "page=9223372036854775807", "page=1000001", "pageSize=501", "page=0"]
)
@pytest.mark.parametrize("path", ["/api/workflows/list", "/api/executions", "/api/outbox"])
def test_page_numbers_beyond_the_limit_are_422(client, auth, path, query):
    _refused(client.get(f"{path}?{query}", headers=auth), query.split("=")[0])


@pytest.mark.parametrize(
    "path", ["/api/outbox?status=a&status=b", "/api/executions?page=1&page=2", "/api/workflows/list?search=a&search="]
)
def test_a_query_parameter_given_twice_is_422_found_by_the_fuzzer(client, auth, path):
    _refused(client.get(path, headers=auth), path.split("?")[1].split("=")[0])


def test_a_rollback_version_beyond_64_bits_is_422(client, auth):
    wf = client.post("/api/workflows/create", json=simple_workflow(), headers=auth).json()["workflow"]
    for version in (2**64, 2**31):
        _refused(client.post(f"/api/workflows/{wf['id']}/rollback", json={"version": version}, headers=auth), "version")
    r = client.post(f"/api/workflows/{wf['id']}/rollback", json={"version": 2**31 - 1}, headers=auth)
    assert r.status_code == 404


@pytest.mark.parametrize(
    "starts_at",
    ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "1900-01-01T00:00:00+00:00", 2.5, 1767632400],
)
def test_booking_dates_at_the_edge_of_the_calendar_are_422(client, auth, starts_at):
    r = client.post(
        "/api/bookings", json={"memberName": "Anna", "className": "Yoga", "startsAt": starts_at}, headers=auth
    )
    _refused(r, "startsAt")
    _studio_still_answers(client, auth)


@pytest.mark.parametrize(
    "path,field",
    [
        ("/api/workflows/list?search=a%00b", "search"),
        ("/api/workflows/a%00b", "path"),
        ("/api/executions/x%00", "path"),
        ("/api/executions?status=a%00", "status"),
    ],
)
def test_a_nul_in_a_query_or_id_is_422(client, auth, path, field):
    _refused(client.get(path, headers=auth), field)


def test_a_nul_in_an_idempotency_key_is_422(client, auth):
    r = client.post(
        "/api/events",
        json={"triggerType": "whatsapp_message", "content": "x"},
        headers={**auth, "Idempotency-Key": "k\x00"},
    )
    _refused(r, "idempotency-key")
    assert _stored(client, auth) == (0, 0)


def test_a_nul_in_a_booking_is_422(client, auth):
    r = client.post(
        "/api/bookings",
        json={"memberName": "A\x00", "className": "Yoga", "startsAt": "2026-01-05T18:00:00+01:00"},
        headers=auth,
    )
    _refused(r, "memberName")


# --------------------------------------------------------------------------- unbounded output


def test_a_huge_template_fails_the_step_with_a_clear_error_and_the_response_stays_small(client, auth):
    wf = client.post("/api/workflows/create", json=_message("{{ 'x' * 100000000 }}"), headers=auth).json()["workflow"]
    r = client.post(
        "/api/workflows/run",
        json={"workflowId": wf["id"], "dryRun": True, "triggerData": {"from": "+49151"}},
        headers=auth,
    )
    assert r.status_code == 200 and len(r.content) < 10_000
    result = r.json()["result"]
    assert result["success"] is False or "64 KB" in json.dumps(result)
    assert "64 KB" in json.dumps(result["results"])
    _studio_still_answers(client, auth)


def test_a_rendered_text_of_just_under_the_limit_still_renders(client, auth):
    size = MAX_RENDERED_BYTES - 10
    wf = client.post(
        "/api/workflows/create",
        json=_workflow_with(
            actions=[
                {
                    "id": "send-1",
                    "type": "send_email",
                    "config": {"message": "{{ 'x' * %d }}" % size, "recipient": "a@b.de"},
                }
            ]
        ),
        headers=auth,
    ).json()["workflow"]
    r = client.post("/api/workflows/run", json={"workflowId": wf["id"], "dryRun": True}, headers=auth)
    assert r.status_code == 200
    assert "64 KB" not in json.dumps(r.json()["result"]["results"])


# --------------------------------------------------------------------------- idempotency and bookings


def test_the_same_idempotency_key_with_a_different_body_is_422(client, auth):
    event = {"triggerType": "whatsapp_message", "content": "Was kostet die 10er-Karte?", "from": "+4915112345678"}
    first = client.post("/api/events", json=event, headers={**auth, "Idempotency-Key": "delivery-1"})
    assert first.status_code == 200 and first.json()["duplicate"] is False
    again = client.post("/api/events", json=event, headers={**auth, "Idempotency-Key": "delivery-1"})
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert again.json()["eventId"] == first.json()["eventId"]
    other = client.post(
        "/api/events",
        json={**event, "content": "Wann habt ihr offen?"},
        headers={**auth, "Idempotency-Key": "delivery-1"},
    )
    error = _refused(other, "idempotencyKey")
    assert "different event" in error["message"]


def test_a_booking_with_an_empty_lead_id_is_422_naming_it(client, auth):
    r = client.post(
        "/api/bookings",
        json={"memberName": "Anna", "className": "Yoga", "startsAt": "2026-01-05T18:00:00+01:00", "leadId": ""},
        headers=auth,
    )
    _refused(r, "leadId")
    r = client.post(
        "/api/bookings",
        json={"memberName": "Anna", "className": "Yoga", "startsAt": "2026-01-05T18:00:00+01:00", "leadId": "nope"},
        headers=auth,
    )
    assert r.status_code == 404


# --------------------------------------------------------------------------- connection after a 500


def test_a_500_tells_the_client_to_close_the_connection(db, auth):
    app = create_app(db)

    def broken() -> None:
        raise RuntimeError("boom")

    app.add_api_route("/api/broken", broken)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/api/broken", headers=auth)
    assert r.status_code == 500 and r.headers["connection"] == "close"
    assert r.json()["error"]["code"] == "internal"


# --------------------------------------------------------------------------- events carry the intent


def test_the_events_response_carries_the_detected_intent(client, auth):
    r = client.post(
        "/api/events", json={"triggerType": "whatsapp_message", "content": "Was kostet die 10er-Karte?"}, headers=auth
    )
    body = r.json()
    assert r.status_code == 200 and body["intent"] == "pricing" and 0 < body["intentConfidence"] <= 1
    given = client.post(
        "/api/events",
        json={"triggerType": "whatsapp_message", "content": "x", "intent": "booking", "intentConfidence": 0.9},
        headers=auth,
    ).json()
    assert (given["intent"], given["intentConfidence"]) == ("booking", 0.9)
    missed = client.post(
        "/api/events", json={"triggerType": "missed_call", "from": "+4915112345678"}, headers=auth
    ).json()
    assert missed["intent"] is None and missed["intentConfidence"] is None


# --------------------------------------------------------------------------- rate limit


def test_a_key_over_its_rate_limit_gets_429_with_retry_after(db, auth, other_auth):
    with TestClient(create_app(db, rate_limit=3)) as c:
        codes = [c.get("/api/outbox", headers=auth).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = c.get("/api/outbox", headers=auth)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["code"] == "rate_limited"
        # Another key has its own budget.
        assert c.get("/api/outbox", headers=other_auth).status_code == 200


def test_a_nul_from_outside_the_api_is_stripped_before_storage(db, actor):
    """A webhook's or AI provider's answer may carry NUL; JSON columns store it without (PostgreSQL cannot)."""
    from sqlmodel import Session

    from engine.store.db import session_scope
    from engine.store.models import Lead

    with session_scope(db) as s:
        lead = Lead(tenant_id=actor.tenant_id, name="Anna", custom_fields={"note\x00": "a\x00b", "path": "C:\\u0000"})
        s.add(lead)
    with Session(db) as s:
        assert s.get(Lead, lead.id).custom_fields == {"note": "ab", "path": "C:\\u0000"}


@pytest.mark.parametrize(
    "path,field",
    [
        ("/api/outbox?executionId=0&=null", "query"),
        ("/api/workflows/list?pagesize=10", "pagesize"),
        ("/api/workflows/W1?x=1", "x"),
    ],
)
def test_an_unknown_query_parameter_is_422_naming_it_found_by_the_fuzzer(client, auth, path, field):
    error = _refused(client.get(path, headers=auth), field)
    assert "unknown query parameter" in error["message"]
