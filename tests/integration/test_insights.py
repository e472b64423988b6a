"""Insights counting rules, on SQLite and PostgreSQL: one definition of the counts, local days
(including DST days), previous-period deltas, tenant isolation of every aggregate."""

from datetime import UTC, date, datetime, timedelta

import pytest

from engine import services
from engine.errors import InvalidInput
from engine.security import auth
from engine.services import insights
from engine.store.db import session_scope
from engine.store.models import (
    Booking,
    EventRecord,
    Execution,
    OutboxMessage,
    Role,
    StepRun,
)
from engine.uow import unit_of_work


def _at(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def record(db):
    """Write an event with one execution (and optional steps/messages) at a given time."""

    def make(
        tenant_id: str,
        at: datetime,
        status: str = "succeeded",
        *,
        workflow_id: str | None = None,
        mode: str = "live",
        is_test: bool = False,
        sender: str = "+4915112345678",
        error: str | None = None,
        steps: tuple = (),
        reply_after_s: float | None = None,
        intent: str | None = "pricing",
    ) -> str:
        with session_scope(db) as s:
            ev = EventRecord(
                tenant_id=tenant_id,
                trigger_type="whatsapp_message",
                channel="whatsapp",
                content="hi",
                sender=sender,
                intent=intent,
                received_at=at,
                is_test=is_test,
            )
            s.add(ev)
            s.flush()
            ex = Execution(
                tenant_id=tenant_id,
                workflow_id=workflow_id,
                workflow_name="WF",
                event_id=ev.id,
                status=status,
                mode=mode,
                is_test=is_test,
                started_at=at,
                error=error,
                finished_at=at + timedelta(seconds=3) if status in ("succeeded", "failed") else None,
            )
            s.add(ex)
            s.flush()
            for action_id, action_type, st in steps:
                s.add(
                    StepRun(
                        tenant_id=tenant_id,
                        execution_id=ex.id,
                        action_id=action_id,
                        action_type=action_type,
                        status=st,
                        started_at=at,
                    )
                )
            if reply_after_s is not None:
                s.add(
                    OutboxMessage(
                        tenant_id=tenant_id,
                        execution_id=ex.id,
                        channel="whatsapp",
                        recipient=sender,
                        body="hello",
                        status="recorded",
                        created_at=at + timedelta(seconds=reply_after_s),
                        is_test=is_test,
                    )
                )
            return ex.id

    return make


@pytest.fixture
def workflow(db, actor, spec_examples):
    with unit_of_work(db) as uow:
        return services.create_workflow(uow=uow, actor=actor, data=spec_examples[0])


def test_every_status_counts_once_and_test_and_dry_runs_never(db, actor, record, workflow):
    day = _at(2026, 11, 10, 12)
    for status in ("succeeded", "succeeded", "failed", "skipped", "waiting", "cancelled"):
        record(actor.tenant_id, day, status, workflow_id=workflow.id)
    record(actor.tenant_id, day, "succeeded", workflow_id=workflow.id, is_test=True)
    record(actor.tenant_id, day, "failed", workflow_id=workflow.id, mode="dry_run")

    with unit_of_work(db, read_only=True) as uow:
        out = insights.stats(uow=uow, actor=actor, first=date(2026, 11, 10), last=date(2026, 11, 10))
    k = out["current"]
    assert (k["executions"], k["succeeded"], k["failures"], k["skipped"], k["in_progress"], k["cancelled"]) == (
        6,
        2,
        1,
        1,
        1,
        1,
    )
    assert k["success_rate"] == round(2 / 3, 4)
    assert k["inbound_events"] == 7 and k["inbound_messages"] == 7  # the test event is not counted
    # The workflow list, its stats and the cards count the same way.
    with unit_of_work(db, read_only=True) as uow:
        page = services.list_workflows(uow=uow, actor=actor, include_stats=True)
    card = next(w for w in page.items if w.id == workflow.id)
    assert (card.run_count, card.success_count, card.error_count, card.skipped_count) == (6, 2, 1, 1)
    assert page.stats.total_executions == 6 and page.stats.success_rate == round(2 / 3, 4)
    assert page.stats.skipped == 1 and page.stats.in_progress == 1


def test_previous_period_and_deltas(db, actor, record):
    record(actor.tenant_id, _at(2026, 11, 10, 12), "failed")
    for _ in range(3):
        record(actor.tenant_id, _at(2026, 11, 17, 12), "succeeded")
    with unit_of_work(db, read_only=True) as uow:
        out = insights.stats(uow=uow, actor=actor, first=date(2026, 11, 11), last=date(2026, 11, 17))
    assert out["range"]["previousFrom"] == "2026-11-04" and out["range"]["previousTo"] == "2026-11-10"
    assert out["current"]["executions"] == 3 and out["previous"]["executions"] == 1
    assert out["delta"]["executions"] == 2 and out["delta"]["failures"] == -1


def test_local_days_across_the_end_of_daylight_saving(db, actor, record):
    """Berlin, 25 Oct 2026 has 25 hours: 00:30 CEST is 22:30 UTC the day before, 23:30 CET is 22:30 UTC."""
    record(actor.tenant_id, _at(2026, 10, 24, 21, 30))  # 23:30 on the 24th, local
    record(actor.tenant_id, _at(2026, 10, 24, 22, 30))  # 00:30 on the 25th
    record(actor.tenant_id, _at(2026, 10, 25, 22, 30))  # 23:30 on the 25th (CET)
    record(actor.tenant_id, _at(2026, 10, 25, 23, 30))  # 00:30 on the 26th
    p = insights.period_of(date(2026, 10, 24), date(2026, 10, 26), "Europe/Berlin")
    assert p.boundaries()[2] - p.boundaries()[1] == timedelta(hours=25)
    with unit_of_work(db, read_only=True) as uow:
        by_day = {r["day"]: r["n"] for r in insights.executions_by_day(uow=uow, actor=actor, p=p)}
    assert by_day == {"2026-10-24": 1, "2026-10-25": 2, "2026-10-26": 1}
    with unit_of_work(db, read_only=True) as uow:
        assert (
            insights.stats(uow=uow, actor=actor, first=date(2026, 10, 25), last=date(2026, 10, 25))["current"][
                "executions"
            ]
            == 2
        )


def test_start_of_daylight_saving_is_a_23_hour_day(db, actor, record):
    record(actor.tenant_id, _at(2026, 3, 28, 23, 30))  # 00:30 CET on the 29th
    record(actor.tenant_id, _at(2026, 3, 29, 21, 30))  # 23:30 CEST on the 29th
    record(actor.tenant_id, _at(2026, 3, 29, 22, 30))  # 00:30 on the 30th
    p = insights.period_of(date(2026, 3, 29), date(2026, 3, 29), "Europe/Berlin")
    assert p.end - p.start == timedelta(hours=23)
    with unit_of_work(db, read_only=True) as uow:
        assert {r["day"]: r["n"] for r in insights.executions_by_day(uow=uow, actor=actor, p=p)} == {"2026-03-29": 2}


def test_first_reply_percentiles_errors_and_failure_rates(db, actor, record):
    at = _at(2026, 11, 10, 9)
    for seconds in (1, 2, 3, 4, 100):
        record(actor.tenant_id, at, reply_after_s=seconds, steps=(("a1", "send_whatsapp", "succeeded"),))
    record(actor.tenant_id, at, "failed", error="step w failed: HTTP 500", steps=(("w", "webhook", "failed"),))
    record(actor.tenant_id, at, "failed", error="step w failed: HTTP 500", steps=(("w", "webhook", "failed"),))
    p = insights.period_of(date(2026, 11, 10), date(2026, 11, 10), "Europe/Berlin")
    with unit_of_work(db, read_only=True) as uow:
        k = insights.kpis(uow=uow, actor=actor, period=p)["current"]
    assert k["first_reply_median_s"] == 3.0 and k["first_reply_p90_s"] == 100.0
    assert k["messages"] == {"whatsapp": {"recorded": 5}}
    with unit_of_work(db, read_only=True) as uow:
        assert insights.top_errors(uow=uow, actor=actor, p=p)[0] | {"exampleId": None} == {
            "error": "step w failed: HTTP 500",
            "n": 2,
            "exampleId": None,
        }
    with unit_of_work(db, read_only=True) as uow:
        rates = {r["actionType"]: r["failureRate"] for r in insights.action_failure_rates(uow=uow, actor=actor, p=p)}
    assert rates == {"send_whatsapp": 0.0, "webhook": 1.0}


def test_per_workflow_flow_numbers_and_conversions(db, actor, record, workflow):
    at = _at(2026, 11, 10, 9)
    booked = record(
        actor.tenant_id,
        at,
        workflow_id=workflow.id,
        sender="+4915100000001",
        steps=(("b", "branch", "succeeded"), ("yes", "send_whatsapp", "succeeded")),
    )
    record(
        actor.tenant_id,
        at,
        workflow_id=workflow.id,
        sender="+4915100000002",
        steps=(("b", "branch", "succeeded"), ("no", "send_whatsapp", "failed")),
    )
    record(actor.tenant_id, at, "skipped", workflow_id=workflow.id, sender="+4915100000003")
    with session_scope(db) as s:
        s.add(
            Booking(
                tenant_id=actor.tenant_id,
                member_name="A",
                member_contact="+4915100000001",
                class_name="Yoga",
                created_at=at + timedelta(hours=30),
            )
        )
        s.add(
            Booking(
                tenant_id=actor.tenant_id,
                member_name="B",
                member_contact="+4915100000002",
                class_name="Yoga",
                created_at=at + timedelta(days=9),
            )
        )  # too late for a 7-day goal
    p = insights.period_of(date(2026, 11, 10), date(2026, 11, 10), "Europe/Berlin")
    with unit_of_work(db, read_only=True) as uow:
        row = next(r for r in insights.per_workflow(uow=uow, actor=actor, p=p) if r["workflowId"] == workflow.id)
    assert (row["runs"], row["succeeded"], row["skipped"], row["errors"], row["successRate"]) == (3, 2, 1, 0, 1.0)
    assert row["medianDurationS"] == 3.0 and sum(row["trend"]) == 3
    with unit_of_work(db, read_only=True) as uow:
        flow = insights.flow_numbers(uow=uow, actor=actor, workflow_id=workflow.id, p=p)
    assert flow["b"] == {"reached": 2, "succeeded": 2}
    assert flow["yes"] == {"reached": 1, "succeeded": 1} and flow["no"] == {"reached": 1, "failed": 1}
    with unit_of_work(db, read_only=True) as uow:
        conv = insights.conversions(uow=uow, actor=actor, workflow_id=workflow.id, p=p, kind="booking", days=7)
    assert (conv["executions"], conv["converted"], conv["rate"], conv["medianHoursToConvert"]) == (2, 1, 0.5, 30.0)
    assert booked


def test_aggregates_never_cross_tenants(db, actor, other_actor, record, workflow):
    at = _at(2026, 11, 10, 9)
    record(other_actor.tenant_id, at, "failed", error="theirs", reply_after_s=1, steps=(("x", "webhook", "failed"),))
    p = insights.period_of(date(2026, 11, 10), date(2026, 11, 10), "Europe/Berlin")
    with unit_of_work(db, read_only=True) as uow:
        k = insights.kpis(uow=uow, actor=actor, period=p)["current"]
    assert (k["executions"], k["inbound_events"], k["messages"], k["first_reply_median_s"]) == (0, 0, {}, None)
    with unit_of_work(db, read_only=True) as uow:
        assert (
            insights.top_errors(uow=uow, actor=actor, p=p) == []
            and insights.action_failure_rates(uow=uow, actor=actor, p=p) == []
        )
    with unit_of_work(db, read_only=True) as uow:
        assert (
            insights.executions_by_day(uow=uow, actor=actor, p=p) == []
            and insights.volume_by_trigger_channel(uow=uow, actor=actor, p=p) == []
        )
    with unit_of_work(db, read_only=True) as uow:
        assert (
            insights.intents_by_day(uow=uow, actor=actor, p=p) == []
            and insights.inbound_heatmap(uow=uow, actor=actor, p=p) == []
        )
    with unit_of_work(db, read_only=True) as uow:
        assert insights.flow_numbers(uow=uow, actor=other_actor, workflow_id=workflow.id, p=p) == {}
    with unit_of_work(db, read_only=True) as uow:
        assert all(r["runs"] == 0 for r in insights.per_workflow(uow=uow, actor=actor, p=p))


def test_bad_ranges_name_the_field(db, actor):
    with pytest.raises(InvalidInput) as e:
        with unit_of_work(db, read_only=True) as uow:
            insights.stats(uow=uow, actor=actor, first=date(2026, 11, 10), last=date(2026, 11, 1))
    assert e.value.field == "to"
    with pytest.raises(InvalidInput) as e:
        with unit_of_work(db, read_only=True) as uow:
            insights.stats(uow=uow, actor=actor, preset="year")
    assert e.value.field == "range"


def test_analysts_read_insights(db, tenant):
    analyst = auth.Actor(tenant_id=tenant.id, role=Role.ANALYST)
    with unit_of_work(db, read_only=True) as uow:
        assert insights.stats(uow=uow, actor=analyst)["current"]["executions"] == 0
