"""A crashed worker no longer holds up to 50 due items for a whole 60 s lease (issue 21): items
are leased for a short time (``STUDIO_CLAIM_LEASE_SECONDS``) and renewed while the worker
lives, deliveries are claimed one at a time, and a stopping worker gives back what it has not
begun. SQLite and PostgreSQL."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from engine import services
from engine.runner import Runner
from engine.security import auth
from engine.store.models import DueStatus, DueWork
from engine.uow import unit_of_work
from engine.worker import Worker

T0 = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)


@pytest.fixture
def due_items(db, tenant):
    """60 executions parked on a wait that is due at T0 + 1 h, and 3 queued WhatsApp replies."""
    actor = auth.system_actor(tenant.id)
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data={
                "name": "Reminder",
                "trigger": {"type": "missed_call", "config": {}},
                "actions": [
                    {"id": "wait-1", "type": "wait", "config": {"delay": 3_600_000}},
                    {"id": "send-1", "type": "send_sms", "config": {"message": "Wir rufen zurück"}},
                ],
            },
        )
    runner = Runner(db, clock=lambda: T0)
    for i in range(60):
        runner.ingest(tenant.id, {"triggerType": "missed_call", "channel": "voice", "from": f"+49151{i:08d}"})
    return tenant.id


def _worker(db, name: str, at: list[datetime], **kw) -> Worker:
    return Worker(db, name=name, clock=lambda: at[0], runner=Runner(db, clock=lambda: at[0]), **kw)


def test_a_dead_workers_unstarted_items_are_claimed_within_one_short_lease(db, due_items):
    at = [T0 + timedelta(hours=1, seconds=1)]
    dead = _worker(db, "dead", at)
    assert dead.claim_lease == timedelta(seconds=10) < dead.lease
    held = dead.claim()
    assert len(held) == 50  # a batch of resumptions; then the worker is killed before starting them
    other = _worker(db, "other", at)
    at[0] += timedelta(seconds=5)
    assert len(other.claim()) == 10  # the dead worker's 50 are still leased to it
    at[0] += timedelta(seconds=6)  # 11 s after the claim: one short lease, not 60 s
    taken = other.claim()
    assert {i.id for i in taken} == {i.id for i in held}
    with db.connect() as conn:
        holders = conn.execute(sa.select(DueWork.locked_by).where(DueWork.status == DueStatus.CLAIMED)).scalars()
        assert set(holders) == {"other"}


def test_a_living_worker_keeps_its_leases_while_it_works(db, due_items):
    at = [T0 + timedelta(hours=1, seconds=1)]
    busy = Worker(db, name="busy", claim_lease_seconds=0.6, runner=Runner(db))
    busy.clock = lambda: max(datetime.now(UTC), at[0])  # real time, after the waits are due
    other = Worker(db, name="other", runner=Runner(db))
    other.clock = busy.clock
    with busy.keeping_leases():
        held = busy.claim()
        assert len(held) == 50
        time.sleep(1.5)  # more than two of busy's leases: the keeper renews them
        assert {i.id for i in other.claim()}.isdisjoint({i.id for i in held})
        with db.connect() as conn:
            until = conn.execute(
                sa.select(sa.func.min(DueWork.locked_until)).where(DueWork.locked_by == "busy")
            ).scalar_one()
        assert until > busy.clock()
    time.sleep(0.8)  # the keeper stopped (as if busy died): its leases run out
    assert {i.id for i in other.claim()} == {i.id for i in held}


def test_a_stopping_worker_gives_back_what_it_has_not_begun(db, due_items):
    at = [T0 + timedelta(hours=1, seconds=1)]
    worker = _worker(db, "stopping", at)
    worker.batch_resumes = False
    worker.stopping.set()  # SIGTERM arrived: run_once claims nothing more and releases
    worker.claim()
    assert worker.release_unstarted() == 50
    with db.connect() as conn:
        rows = conn.execute(sa.select(DueWork.status, DueWork.attempts, DueWork.locked_until)).all()
    assert {tuple(r) for r in rows} == {(DueStatus.PENDING, 0, None)}
    assert len(_worker(db, "next", at).claim()) == 50  # due again at once


def test_deliveries_are_claimed_one_at_a_time(db, tenant_factory):
    """A send takes up to seconds: idle workers share them, and a dead worker holds one."""
    sms = {"adapter": "twilio", "accountSid": "AC1", "authToken": "t", "fromNumber": "+4930123456"}
    tenant = tenant_factory(channels={"sms": sms})
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=auth.system_actor(tenant.id),
            data={
                "name": "Call back",
                "trigger": {"type": "missed_call", "config": {}},
                "actions": [{"id": "sms", "type": "send_sms", "config": {"message": "Wir rufen zurück"}}],
            },
        )
    runner = Runner(db, clock=lambda: T0)
    for i in range(3):
        runner.ingest(tenant.id, {"triggerType": "missed_call", "channel": "voice", "from": f"+49160{i:08d}"})
    at = [T0 + timedelta(seconds=1)]
    claims = [_worker(db, name, at).claim() for name in ("a", "b", "c", "d")]
    assert [[i.kind for i in c] for c in claims] == [["deliver"], ["deliver"], ["deliver"], []]
