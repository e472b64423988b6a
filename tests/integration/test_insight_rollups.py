"""The Insights rollups (engine/store/rollups.py), on SQLite and PostgreSQL.

Every integration test on a database also ends by comparing the rollups with the counts
recomputed from the rows (``tests/integration/conftest.py``), so the writers exercised by
the other modules (worker batches and one-by-one resumes, cancel, replay, delivery
callbacks, outbox retries, pruning, workflow deletion) are checked there. Here: ingest through
the write buffer and a caller's unit of work, concurrent ingest on PostgreSQL, the backfill,
tenant isolation, and what Insights reads back.
"""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from engine import services
from engine.runner import Runner
from engine.security.auth import system_actor
from engine.services import insights
from engine.store import rollups
from engine.store.models import EventRecord, Execution, OutboxMessage
from engine.uow import unit_of_work

SENDERS = [f"+49151{i:08d}" for i in range(40)]


def reply_workflow(name: str = "Reply", keyword: str = "hallo") -> dict:
    return {
        "name": name,
        "trigger": {"type": "whatsapp_message", "config": {}},
        "conditions": [{"type": "keyword_match", "operator": "contains", "value": keyword}],
        "actions": [
            {"id": "send-1", "type": "send_whatsapp", "config": {"message": "Hi!"}, "nextActionId": None},
        ],
    }


def message(i: int, text: str = "Hallo") -> dict:
    return {"triggerType": "whatsapp_message", "channel": "whatsapp", "content": f"{text} {i}", "from": SENDERS[i % 40]}


def _matches(db, tenant_id: str | None = None) -> dict:
    with db.connect() as conn:
        stored, expected = rollups.stored(conn, tenant_id), rollups.from_rows(conn, tenant_id)
    assert stored == expected, rollups.difference(stored, expected)
    return stored


def test_ingest_in_batches_and_in_a_callers_unit_of_work_counts_every_row(db, tenant, actor):
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=actor, data=reply_workflow())
        services.create_workflow(uow=uow, actor=actor, data=reply_workflow("Prices", "preis"))
    runner = Runner(db)
    for i in range(6):  # one caller at a time: a batch each
        runner.ingest(tenant.id, message(i))
    threads = [threading.Thread(target=runner.ingest, args=(tenant.id, message(i, "Preis"))) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with unit_of_work(db) as uow:  # inside a caller's unit of work (the events route's way)
        runner.ingest(tenant.id, message(99), uow=uow)
    stored = _matches(db, tenant.id)
    assert sum(n for k, n in stored.items() if k[1] == rollups.EXECUTIONS) == 2 * 15  # both workflows, every event
    p = insights.resolve_period("Europe/Berlin", "today")
    with unit_of_work(db, read_only=True) as uow:
        k = insights.kpis(uow=uow, actor=actor, period=p)["current"]
    assert (k["inbound_events"], k["executions"], k["succeeded"], k["skipped"]) == (15, 30, 15, 15)
    assert k["messages"] == {"whatsapp": {"recorded": 15}}
    with unit_of_work(db, read_only=True) as uow:
        volume = insights.volume_by_trigger_channel(uow=uow, actor=actor, p=p)
        skips = insights.skip_reasons(uow=uow, actor=actor, p=p)
    assert volume == [{"trigger": "whatsapp_message", "channel": "whatsapp", "n": 30}]
    assert {s["workflow"]: s["n"] for s in skips} == {"Reply": 8, "Prices": 7}


@pytest.mark.postgres
def test_concurrent_ingest_from_several_runners_does_not_deadlock(postgres_db):
    """Four runners (four group commits, so four concurrent transactions) write the same hot
    rollup rows of two studios: sorted upserts take their row locks in one order."""
    db = postgres_db
    studios = []
    for c in "xy":
        with unit_of_work(db) as uow:
            studios.append(services.create_tenant(uow=uow, slug=f"studio-{c}", name=c, timezone="Europe/Berlin"))
    for t in studios:
        with unit_of_work(db) as uow:
            actor = system_actor(t.id)
            services.create_workflow(uow=uow, actor=actor, data=reply_workflow())
            services.create_workflow(uow=uow, actor=actor, data=reply_workflow("Prices", "preis"))
    errors: list[BaseException] = []

    def work(n: int) -> None:
        runner = Runner(db)
        try:
            for i in range(25):
                studio = studios[(i + n) % 2]
                runner.ingest(studio.id, message(i, "Hallo Preis" if i % 3 else "Hallo"))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    stored = _matches(db)
    assert sum(n for k, n in stored.items() if k[1] == rollups.EVENTS) == 100


def test_backfill_recomputes_what_the_writers_kept(db, tenant, actor, other_actor):
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=actor, data=reply_workflow())
    runner = Runner(db)
    for i in range(5):
        runner.ingest(tenant.id, message(i, "Hallo" if i % 2 else "Tschüss"))
    kept = _matches(db)
    with db.begin() as conn:
        conn.execute(sa.delete(rollups.InsightRollup.__table__))
        rollups.backfill(conn)
    assert _matches(db) == kept
    with db.begin() as conn:  # one studio's rollups only
        rollups.backfill(conn, tenant.id)
    assert _matches(db) == kept


def _row(tenant_id: str, at: datetime, status: str, seconds: float) -> tuple[dict, dict]:
    from engine.store.runs import build_row

    ev = build_row(EventRecord, at, tenant_id=tenant_id, trigger_type="whatsapp_message", channel="whatsapp")
    ex = build_row(
        Execution,
        at,
        tenant_id=tenant_id,
        event_id=ev["id"],
        status=status,
        started_at=at,
        finished_at=at + timedelta(seconds=seconds),
    )
    return ev, ex


def test_durations_median_from_buckets_and_studios_apart(db, actor, other_actor, tenant):
    at = datetime(2026, 11, 10, 9, tzinfo=UTC)
    rows = [_row(actor.tenant_id, at, "succeeded", s) for s in (0.25, 1.5, 2.0, 90.0, 400.0)]
    rows.append(_row(other_actor.tenant_id, at, "failed", 7.0))
    with unit_of_work(db) as uow:
        uow.insert(EventRecord, [ev for ev, _ in rows])
        uow.insert(Execution, [ex for _, ex in rows])
    mine, theirs = _matches(db, actor.tenant_id), _matches(db, other_actor.tenant_id)
    assert {k[0] for k in mine} == {actor.tenant_id} and {k[0] for k in theirs} == {other_actor.tenant_id}
    p = insights.period_of(date(2026, 11, 10), date(2026, 11, 10), "Europe/Berlin")
    with unit_of_work(db, read_only=True) as uow:
        table = insights.per_workflow(uow=uow, actor=actor, p=p)
        k = insights.kpis(uow=uow, actor=actor, period=p)["current"]
    assert table == [] and k["executions"] == 5 and k["succeeded"] == 5  # no workflow rows: counted all the same
    with db.connect() as conn:
        assert insights._median_durations(conn, actor.tenant_id, p) == {"": 2.0}  # type: ignore[arg-type]


def test_outbox_rows_count_by_channel_and_status(db, actor):
    from engine.store.runs import outbox_row

    at = datetime(2026, 11, 10, 9, tzinfo=UTC)
    with unit_of_work(db) as uow:
        uow.insert(
            OutboxMessage,
            [
                outbox_row(at, tenant_id=actor.tenant_id, channel="sms", status="failed"),
                outbox_row(at, tenant_id=actor.tenant_id, channel="sms", status="sent"),
                outbox_row(at, tenant_id=actor.tenant_id, channel="sms", status="sent", is_test=True),
            ],
        )
    p = insights.period_of(date(2026, 11, 10), date(2026, 11, 10), "Europe/Berlin")
    with unit_of_work(db, read_only=True) as uow:
        assert insights.kpis(uow=uow, actor=actor, period=p)["current"]["messages"] == {"sms": {"failed": 1, "sent": 1}}
