"""engine.store.fast: statements compiled once per dialect, run on the DB-API connection,
must store and read exactly what SQLAlchemy's own execution would (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from engine.store.fast import FastStatement
from engine.store.models import EventRecord, Execution, Workflow, new_id
from engine.store.runs import FAST_CANDIDATES as _FAST_CANDIDATES
from engine.store.runs import FAST_INSERTS as _FAST_INSERTS
from engine.store.runs import FAST_SAVE as _FAST_SAVE
from engine.store.runs import FAST_TENANT as _FAST_TENANT
from engine.store.runs import TENANT_COLUMNS as _TENANT_COLUMNS

# Rows are written through the fast statements themselves, below the writers that keep the rollups.
pytestmark = pytest.mark.rollups_unchecked

AT = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)  # microsecond 0: the format must still be SQLAlchemy's


def _event(tenant_id: str, **over) -> dict:
    row = {
        "id": new_id(),
        "tenant_id": tenant_id,
        "trigger_type": "whatsapp_message",
        "channel": "whatsapp",
        "content": "Hallo ünïcode",
        "sender": "+4915100000001",
        "intent": None,
        "intent_confidence": 0.5,
        "custom_fields": {"a": [1, 2, {"b": None}]},
        "data": {"x": "y"},
        "received_at": AT.astimezone(timezone(timedelta(hours=2))),
        "idempotency_key": None,
        "depth": 0,
        "parent_execution_id": None,
        "is_test": False,
    }
    row.update(over)
    return row


def _execution(tenant_id: str, **over) -> dict:
    row = {
        "id": new_id(),
        "tenant_id": tenant_id,
        "workflow_id": None,
        "workflow_name": "wf",
        "workflow_version": 1,
        "event_id": None,
        "status": "running",
        "mode": "live",
        "definition": {"actions": []},
        "context": {"trigger": {"from": "x"}},
        "explanation": [],
        "current_action_id": None,
        "lease_token": "token-1",
        "heartbeat_at": AT,
        "depth": 0,
        "error": None,
        "started_at": AT,
        "finished_at": None,
        "actions_executed": 0,
        "is_test": False,
        "replay_of": None,
    }
    row.update(over)
    return row


def test_fast_insert_stores_what_sqlalchemy_stores(db, tenant_factory):
    tenant = tenant_factory()
    fast_row, core_row = _event(tenant.id), _event(tenant.id)
    with db.begin() as conn:
        _FAST_INSERTS[EventRecord].executemany(conn, [fast_row])
        conn.execute(sa.insert(EventRecord.__table__), core_row)
    t = EventRecord.__table__
    with db.connect() as conn:
        # Raw stored values are identical (datetime text format on SQLite, JSON text/JSONB).
        raw = {
            r[0]: tuple(r[1:])
            for r in conn.exec_driver_sql("SELECT id, received_at, custom_fields, data, intent_confidence FROM events")
        }
        assert raw[fast_row["id"]] == raw[core_row["id"]]
        # And they read back through the model types as given.
        got = conn.execute(sa.select(t).where(t.c.id == fast_row["id"])).mappings().one()
        # Comparisons on the stored text work the same way for both rows.
        both = conn.execute(sa.select(sa.func.count()).select_from(t).where(t.c.received_at >= AT)).scalar()
    assert both == 2
    assert got["received_at"] == AT and got["received_at"].tzinfo is not None
    assert got["custom_fields"] == fast_row["custom_fields"] and got["data"] == {"x": "y"}
    assert got["content"] == "Hallo ünïcode" and got["intent_confidence"] == 0.5


def test_fast_statements_run_inside_the_session_transaction(db, tenant_factory):
    tenant = tenant_factory()
    row = _event(tenant.id)
    with Session(db) as s:
        _FAST_INSERTS[EventRecord].executemany(s, [row])
        assert s.connection().execute(sa.select(sa.func.count()).select_from(EventRecord)).scalar() == 1
        s.rollback()
    with db.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(EventRecord)).scalar() == 0


def test_lease_checked_update_reports_the_rows_it_matched(db, tenant_factory):
    tenant = tenant_factory()
    ex = _execution(tenant.id)
    with db.begin() as conn:
        _FAST_INSERTS[Execution].executemany(conn, [ex])
    values = {
        "status": "succeeded",
        "context": {"results": {"a": 1}},
        "current_action_id": None,
        "actions_executed": 1,
        "heartbeat_at": AT + timedelta(seconds=5),
    }
    with db.begin() as conn:
        assert _FAST_SAVE.rowcount(conn, {**values, "b_id": ex["id"], "b_token": "someone-else"}) == 0
        assert _FAST_SAVE.rowcount(conn, {**values, "b_id": ex["id"], "b_token": "token-1"}) == 1
    with Session(db) as s:
        stored = s.get(Execution, ex["id"])
    assert stored.status == "succeeded" and stored.context == {"results": {"a": 1}}
    assert stored.heartbeat_at == AT + timedelta(seconds=5) and stored.actions_executed == 1


def test_tenant_and_candidate_selects_decode_like_sqlalchemy(db, tenant_factory):
    tenant = tenant_factory(defaultRegion="AT", quietHours={"start": "21:00", "end": "08:00"})
    now = AT
    wf = {
        "id": new_id(),
        "tenant_id": tenant.id,
        "name": "W",
        "description": None,
        "enabled": True,
        "trigger_type": "whatsapp_message",
        "definition": {"actions": [{"id": "a"}]},
        "version": 3,
        "created_by": None,
        "created_at": now,
        "updated_at": now,
        "run_count": 0,
        "success_count": 0,
        "error_count": 0,
        "last_run_at": None,
        "next_fire_at": None,
    }
    other = {**wf, "id": new_id(), "trigger_type": "missed_call"}
    disabled = {**wf, "id": new_id(), "enabled": False}
    intent = {**wf, "id": new_id(), "trigger_type": "intent_detected"}
    with db.begin() as conn:
        conn.execute(sa.insert(Workflow.__table__), [wf, other, disabled, intent])
        row = _FAST_TENANT.first(conn, {"tenant_id": tenant.id})
        assert _FAST_TENANT.first(conn, {"tenant_id": "nope"}) is None
        one = _FAST_CANDIDATES.all(conn, {"tenant_id": tenant.id, "t1": "missed_call", "t2": "missed_call"})
        two = _FAST_CANDIDATES.all(conn, {"tenant_id": tenant.id, "t1": "whatsapp_message", "t2": "intent_detected"})
        elsewhere = _FAST_CANDIDATES.all(conn, {"tenant_id": new_id(), "t1": "missed_call", "t2": "missed_call"})
    tenant_row = dict(zip(_TENANT_COLUMNS, row))
    assert tenant_row["id"] == tenant.id and tenant_row["settings"]["defaultRegion"] == "AT"
    assert tenant_row["settings"]["quietHours"] == {"start": "21:00", "end": "08:00"}
    assert [r[0] for r in one] == [other["id"]]
    assert sorted(r[0] for r in two) == sorted([wf["id"], intent["id"]])
    assert all(r[3] == {"actions": [{"id": "a"}]} and r[2] == 3 for r in two)
    assert elsewhere == []


def test_errors_are_raised_as_sqlalchemy_raises_them(db, tenant_factory):
    tenant = tenant_factory()
    row = _event(tenant.id, idempotency_key="k")
    with db.begin() as conn:
        _FAST_INSERTS[EventRecord].executemany(conn, [row])
    with pytest.raises(sa.exc.IntegrityError), db.begin() as conn:
        _FAST_INSERTS[EventRecord].executemany(conn, [{**row, "id": new_id()}])
    # The connection is usable afterwards (the failed transaction was rolled back).
    with db.begin() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(EventRecord)).scalar() == 1


def test_every_column_is_required():
    stmt = FastStatement(sa.insert(EventRecord.__table__))
    row = _event("t")
    del row["depth"]
    with pytest.raises(KeyError):
        stmt.compiled(sa.create_engine("sqlite://").dialect).args(row)


def test_statements_needing_python_defaults_are_refused():
    partial = FastStatement(sa.insert(EventRecord.__table__), column_keys=["id", "tenant_id", "trigger_type"])
    with pytest.raises(ValueError, match="defaults"):
        partial.compiled(sa.create_engine("sqlite://").dialect)


def test_sqlite_binds_use_the_direct_processors_only_where_they_agree(tmp_path):
    from engine.store.db import get_engine, json_dumps
    from engine.store.fast import _sqlite_utc_datetime

    ours = get_engine(f"sqlite:///{tmp_path}/ours.db")
    plain = sa.create_engine(f"sqlite:///{tmp_path}/plain.db")  # SQLAlchemy's default JSON serializer
    insert = _FAST_INSERTS[Execution]
    by_key = {name: proc for name, _sql, proc in insert.compiled(ours.dialect).binds}
    assert by_key["started_at"] is _sqlite_utc_datetime and by_key["context"] is json_dumps
    plain_procs = {name: proc for name, _sql, proc in insert.compiled(plain.dialect).binds}
    assert plain_procs["context"] is not json_dumps  # compiled separately, with SQLAlchemy's own
    reference = Execution.__table__.c.started_at.type.dialect_impl(ours.dialect).bind_processor(ours.dialect)
    for moment in (
        AT,
        AT.replace(microsecond=7),
        AT.astimezone(timezone(timedelta(hours=-5))),
        AT.replace(tzinfo=None),
    ):
        assert _sqlite_utc_datetime(moment) == reference(moment)


def test_ids_are_time_ordered_unique_and_32_hex_digits():
    import threading
    import time as _time

    first = new_id()
    _time.sleep(0.002)
    found: list[str] = []

    def make() -> None:
        found.extend(new_id() for _ in range(2000))

    threads = [threading.Thread(target=make) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(found)) == 8000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in found)
    assert min(found) > first  # later milliseconds sort later
