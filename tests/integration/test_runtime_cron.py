"""time_based workflows fire exactly once per fire time, also on daylight-saving days.

The worker's clock is stepped in 15-minute steps through three days around each DST change
in Europe/Berlin (29 March and 25 October 2026); nothing sleeps.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, select

from engine import services
from engine.runner import Runner
from engine.store.models import EventRecord, Execution, OutboxMessage, Workflow
from engine.uow import unit_of_work
from engine.worker import Worker

BERLIN = ZoneInfo("Europe/Berlin")


def nightly(schedule: str = "30 2 * * *") -> dict:
    return {
        "name": "Nightly report",
        "trigger": {"type": "time_based", "config": {"schedule": schedule}},
        "conditions": [],
        "actions": [
            {
                "id": "send-1",
                "type": "send_email",
                "config": {
                    "message": "Bericht {{trigger.scheduledFor}}",
                    "recipient": "owner@studio.de",
                    "subject": "Nachtbericht",
                },
            }
        ],
    }


def step_through(db, monkeypatch, actor, first_day: datetime, days: int, workflow: dict | None = None):
    """Create the workflow at local midnight of ``first_day``, then run the worker every 15 minutes."""
    now = [first_day.replace(tzinfo=BERLIN).astimezone(UTC)]
    with unit_of_work(db, clock=lambda: now[0]) as uow:  # next_fire_at is planned from the unit's clock
        wf = services.create_workflow(uow=uow, actor=actor, data=workflow or nightly())
    runner = Runner(db, clock=lambda: now[0])
    worker = Worker(db, clock=lambda: now[0], runner=runner, name="cron-worker")
    end = now[0] + timedelta(days=days)
    while now[0] < end:
        worker.run_once()
        now[0] += timedelta(minutes=15)
    with Session(db) as s:
        executions = s.exec(
            select(Execution).where(Execution.workflow_id == wf.id).order_by(Execution.started_at)
        ).all()
    return wf, executions


def local_days(executions) -> Counter:
    return Counter(ex.started_at.astimezone(BERLIN).date().isoformat() for ex in executions)


def test_cron_fires_once_a_day_across_spring_forward(db, actor, monkeypatch):
    wf, executions = step_through(db, monkeypatch, actor, datetime(2026, 3, 28), 3)
    assert local_days(executions) == {"2026-03-28": 1, "2026-03-29": 1, "2026-03-30": 1}
    assert all(ex.status == "succeeded" and ex.mode == "live" for ex in executions)
    fired = [ex.started_at.astimezone(BERLIN).strftime("%H:%M") for ex in executions]
    # 02:30 does not exist on 29 March (02:00 -> 03:00): it is moved forward by the gap.
    assert fired == ["02:30", "03:30", "02:30"]
    scheduled = [ex.context["trigger"]["scheduledFor"] for ex in executions]
    assert scheduled == ["2026-03-28T01:30:00+00:00", "2026-03-29T01:30:00+00:00", "2026-03-30T00:30:00+00:00"]
    with Session(db) as s:
        assert len(s.exec(select(OutboxMessage).where(OutboxMessage.tenant_id == actor.tenant_id)).all()) == 3
        row = s.get(Workflow, wf.id)
        assert row.run_count == 3 and row.next_fire_at == datetime(2026, 3, 31, 0, 30, tzinfo=UTC)


def test_cron_fires_once_a_day_across_fall_back(db, actor, monkeypatch):
    _, executions = step_through(db, monkeypatch, actor, datetime(2026, 10, 24), 3)
    assert local_days(executions) == {"2026-10-24": 1, "2026-10-25": 1, "2026-10-26": 1}
    # 02:30 happens twice on 25 October: only the first (summer time, 00:30 UTC) fires.
    utc = [ex.started_at.strftime("%m-%d %H:%M") for ex in executions]
    assert utc == ["10-24 00:30", "10-25 00:30", "10-26 01:30"]
    assert all(ex.status == "succeeded" for ex in executions)


def test_cron_fire_is_idempotent_per_fire_time(db, actor, monkeypatch):
    """Two workers (or a restarted one) that see the same fire time run it once."""
    now = [datetime(2026, 6, 1, 0, 0, tzinfo=UTC)]
    with unit_of_work(db, clock=lambda: now[0]) as uow:  # next_fire_at is planned from the unit's clock
        wf = services.create_workflow(uow=uow, actor=actor, data=nightly("0 * * * *"))
    runner = Runner(db, clock=lambda: now[0])
    a = Worker(db, clock=lambda: now[0], runner=runner, name="a")
    b = Worker(db, clock=lambda: now[0], runner=runner, name="b")
    now[0] += timedelta(hours=1, minutes=1)
    with Session(db) as s:
        fire_at = s.get(Workflow, wf.id).next_fire_at
    assert a.fire_cron() == 1
    # Put the old fire time back, as if b had read it before a moved it on.
    with Session(db) as s:
        row = s.get(Workflow, wf.id)
        row.next_fire_at = fire_at
        s.add(row)
        s.commit()
    assert b.fire_cron() == 0
    with Session(db) as s:
        assert len(s.exec(select(Execution).where(Execution.workflow_id == wf.id)).all()) == 1
        assert len(s.exec(select(EventRecord).where(EventRecord.tenant_id == actor.tenant_id)).all()) == 1


def test_disabled_cron_workflow_does_not_fire(db, actor, monkeypatch):
    workflow = {**nightly(), "enabled": False}
    _, executions = step_through(db, monkeypatch, actor, datetime(2026, 5, 1), 1, workflow)
    assert executions == []


@pytest.mark.parametrize("tz_name,expected_utc", [("Europe/Berlin", "00:30"), ("America/New_York", "06:30")])
def test_cron_is_evaluated_in_the_tenant_timezone(db, tenant_factory, monkeypatch, tz_name, expected_utc):
    from engine.security import auth

    tenant = tenant_factory(timezone=tz_name)
    actor = auth.system_actor(tenant.id)
    now = [datetime(2026, 7, 1, 0, 0, tzinfo=UTC)]
    with unit_of_work(db, clock=lambda: now[0]) as uow:  # next_fire_at is planned from the unit's clock
        wf = services.create_workflow(uow=uow, actor=actor, data=nightly())
    runner = Runner(db, clock=lambda: now[0])
    worker = Worker(db, clock=lambda: now[0], runner=runner, name="tz-worker")
    for _ in range(4 * 24):
        worker.run_once()
        now[0] += timedelta(minutes=15)
    with Session(db) as s:
        [ex] = s.exec(select(Execution).where(Execution.workflow_id == wf.id)).all()
    assert ex.started_at.strftime("%H:%M") == expected_utc
