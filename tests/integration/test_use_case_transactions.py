"""One use case, one transaction (issue 9): a booking commits with its booking_created event and the
executions it starts, a rollback or a duplicate commits whole; a failure in the second half leaves
nothing of the first. Services read the time of the unit of work's clock. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from engine import services
from engine.security import auth
from engine.services import runs as runs_service
from engine.services import workflows as workflows_service
from engine.store.db import reader
from engine.store.models import ApiKey, Booking, EventRecord, Execution, StepRun, UserSession, Workflow, WorkflowVersion
from engine.uow import unit_of_work

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def _count(db, model, **where) -> int:
    """Committed rows, read from another connection (a deferred read: it never waits for the writer)."""
    with reader(db).connect() as conn:
        stmt = sa.select(sa.func.count()).select_from(model.__table__)
        for column, value in where.items():
            stmt = stmt.where(model.__table__.c[column] == value)
        return conn.execute(stmt).scalar_one()


def _booking_workflow(db, actor):
    """A booking_created workflow with a local step (an outbox message) and a wait."""
    definition = {
        "name": "Booking thanks",
        "trigger": {"type": "booking_created", "config": {}},
        "actions": [
            {
                "id": "sms",
                "type": "send_sms",
                "config": {"message": "See you at {{trigger.className}}!", "recipient": "{{trigger.from}}"},
                "nextActionId": "pause",
            },
            {"id": "pause", "type": "wait", "config": {"delay": 60_000}},
        ],
    }
    with unit_of_work(db) as uow:
        return services.create_workflow(uow=uow, actor=actor, data=definition)


def _book(uow, actor, member="Lea"):
    return services.create_booking(
        uow=uow,
        actor=actor,
        member_name=member,
        class_name="Vinyasa Flow",
        starts_at=NOW + timedelta(days=1),
        member_contact="+4917611112222",
    )


# --------------------------------------------------------------------------- booking and its event


def test_a_booking_its_event_and_executions_commit_together(db, actor):
    _booking_workflow(db, actor)
    with unit_of_work(db) as uow:
        booking, result = _book(uow, actor)
        # Inside the unit of work everything is written, but nobody else sees any of it yet.
        assert _count(db, Booking) == 0 and _count(db, EventRecord) == 0 and _count(db, Execution) == 0
    assert _count(db, Booking, id=booking.id) == 1
    assert _count(db, EventRecord, id=result.event_id, trigger_type="booking_created") == 1
    (execution_id,) = result.execution_ids
    with unit_of_work(db, read_only=True) as uow:
        execution = services.get_execution(uow=uow, actor=actor, execution_id=execution_id)
    # The local step ran inside the same transaction; the wait parks it for the worker.
    assert execution.status == "waiting" and execution.trigger["bookingId"] == booking.id
    assert [s.action_id for s in execution.steps] == ["sms", "pause"]


def test_an_event_ingest_that_fails_after_the_booking_leaves_no_booking(db, actor, monkeypatch):
    _booking_workflow(db, actor)
    runner = runs_service.runner_for(db)
    ingest_in = runner._ingest_in

    def written_then_failing(*args, **kwargs):
        ingest_in(*args, **kwargs)  # the event, its execution and its steps are written ...
        raise RuntimeError("the event ingest broke")  # ... then the second half fails

    monkeypatch.setattr(runner, "_ingest_in", written_then_failing)
    with pytest.raises(RuntimeError, match="the event ingest broke"), unit_of_work(db) as uow:
        _book(uow, actor)
    assert _count(db, Booking) == 0
    assert _count(db, EventRecord) == 0 and _count(db, Execution) == 0 and _count(db, StepRun) == 0
    with unit_of_work(db, read_only=True) as uow:
        assert services.list_bookings(uow=uow, actor=actor) == []


def test_a_booking_for_another_tenants_lead_stores_nothing(db, actor, other_actor):
    """Tenant isolation still holds inside one unit of work: B cannot book against A's lead."""
    from engine.errors import NotFound
    from engine.store.models import Lead

    with unit_of_work(db) as uow:
        lead = Lead(tenant_id=actor.tenant_id, name="Lea", status="new")
        uow.session.add(lead)
    with pytest.raises(NotFound), unit_of_work(db) as uow:
        services.create_booking(
            uow=uow, actor=other_actor, member_name="Lea", class_name="Yin", starts_at=NOW, lead_id=lead.id
        )
    assert _count(db, Booking) == 0 and _count(db, EventRecord) == 0


# --------------------------------------------------------------------------- rollback and duplicate


def _two_versions(db, actor, spec_examples):
    with unit_of_work(db) as uow:
        wf = services.create_workflow(uow=uow, actor=actor, data=spec_examples[0])
    with unit_of_work(db) as uow:
        return services.update_workflow(uow=uow, actor=actor, workflow_id=wf.id, changes={"name": "Renamed"})


def _fail_on_record_version(monkeypatch):
    def fail(*_args, **_kwargs):
        raise RuntimeError("recording the version broke")

    monkeypatch.setattr(workflows_service, "_record_version", fail)


def test_a_rollback_that_fails_halfway_changes_nothing(db, actor, spec_examples, monkeypatch):
    wf = _two_versions(db, actor, spec_examples)
    _fail_on_record_version(monkeypatch)  # after the workflow row was changed to version 1's definition
    with pytest.raises(RuntimeError, match="recording the version broke"), unit_of_work(db) as uow:
        services.rollback_workflow(uow=uow, actor=actor, workflow_id=wf.id, version=1)
    with unit_of_work(db, read_only=True) as uow:
        after = services.get_workflow(uow=uow, actor=actor, workflow_id=wf.id)
    assert after.name == "Renamed" and after.version == 2
    assert _count(db, WorkflowVersion, workflow_id=wf.id) == 2


def test_a_rollback_commits_as_one(db, actor, spec_examples):
    wf = _two_versions(db, actor, spec_examples)
    with unit_of_work(db) as uow:
        out = services.rollback_workflow(uow=uow, actor=actor, workflow_id=wf.id, version=1)
        assert _count(db, WorkflowVersion, workflow_id=wf.id) == 2  # not visible before the commit
    assert out.version == 3 and out.name == spec_examples[0]["name"]
    assert _count(db, WorkflowVersion, workflow_id=wf.id) == 3


def test_a_duplicate_that_fails_halfway_stores_no_copy(db, actor, spec_examples, monkeypatch):
    wf = _two_versions(db, actor, spec_examples)
    _fail_on_record_version(monkeypatch)  # after the copy's row was added
    with pytest.raises(RuntimeError, match="recording the version broke"), unit_of_work(db) as uow:
        services.duplicate_workflow(uow=uow, actor=actor, workflow_id=wf.id)
    assert _count(db, Workflow, tenant_id=actor.tenant_id) == 1
    assert _count(db, WorkflowVersion, tenant_id=actor.tenant_id) == 2


def test_another_tenant_can_neither_roll_back_nor_duplicate(db, actor, other_actor, spec_examples):
    from engine.errors import NotFound

    wf = _two_versions(db, actor, spec_examples)
    for call in (
        lambda uow: services.rollback_workflow(uow=uow, actor=other_actor, workflow_id=wf.id, version=1),
        lambda uow: services.duplicate_workflow(uow=uow, actor=other_actor, workflow_id=wf.id),
    ):
        with pytest.raises(NotFound), unit_of_work(db) as uow:
            call(uow)
    assert _count(db, Workflow) == 1 and _count(db, WorkflowVersion) == 2


# --------------------------------------------------------------------------- one clock


def test_services_read_the_time_of_the_unit_of_work(db, actor):
    at = datetime(2030, 1, 7, 8, 0, tzinfo=UTC)  # a Monday, 09:00 in Berlin
    clock = lambda: at  # noqa: E731
    cron = {
        "name": "Weekly",
        "trigger": {"type": "time_based", "config": {"schedule": "0 10 * * 1"}},
        "actions": [{"id": "w", "type": "wait", "config": {"delay": 1000}}],
    }
    with unit_of_work(db, clock=clock) as uow:
        wf = services.create_workflow(uow=uow, actor=actor, data=cron)
        key, _secret = services.create_api_key(uow=uow, actor=actor, name="CRM", role="editor")
        user = auth.create_user(uow=uow, email="clock@x.test", password="password-123")
        auth.add_membership(uow=uow, user_id=user.id, tenant_id=actor.tenant_id, role="editor")
        token = auth.start_session(uow=uow, user_id=user.id, hours=2)
    with unit_of_work(db, clock=lambda: at + timedelta(hours=1)) as uow:
        services.revoke_api_key(uow=uow, actor=actor, key_id=key.id)
    with db.connect() as conn:
        next_fire = conn.execute(
            sa.select(Workflow.__table__.c.next_fire_at).where(Workflow.__table__.c.id == wf.id)
        ).scalar_one()
        created, revoked = conn.execute(
            sa.select(ApiKey.__table__.c.created_at, ApiKey.__table__.c.revoked_at).where(
                ApiKey.__table__.c.id == key.id
            )
        ).one()
        expires = conn.execute(
            sa.select(UserSession.__table__.c.expires_at).where(UserSession.__table__.c.user_id == user.id)
        ).scalar_one()

    def utc(value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    assert utc(next_fire) == datetime(2030, 1, 7, 9, 0, tzinfo=UTC)  # 10:00 Berlin, the same Monday
    assert utc(created) == at and utc(revoked) == at + timedelta(hours=1)
    assert utc(expires) == at + timedelta(hours=2)
    # The session lives and expires by the unit's clock, not the wall clock (it is 2030 there).
    with unit_of_work(db, clock=lambda: at + timedelta(hours=1), read_only=True) as uow:
        assert auth.resume_session(uow=uow, token=token) is not None
    with unit_of_work(db, clock=lambda: at + timedelta(hours=3), read_only=True) as uow:
        assert auth.resume_session(uow=uow, token=token) is None


def test_a_read_only_unit_refuses_to_write(db, actor, spec_examples):
    with pytest.raises(RuntimeError, match="read-only"), unit_of_work(db, read_only=True) as uow:
        services.create_workflow(uow=uow, actor=actor, data=spec_examples[0])
    assert _count(db, Workflow) == 0
