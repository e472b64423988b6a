"""The one definition of success (engine/domain.py), pinned: the API's ``result.success``,
``ExecutionOut.success`` and the ``succeeded`` counts agree with ``domain.is_success``."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from engine import domain
from engine.api.workflows import run_result
from engine.domain import ExecutionStatus
from engine.services.runs import ExecutionOut


def _execution(status: str) -> ExecutionOut:
    return ExecutionOut(
        id="e1",
        workflow_id="w1",
        workflow_name="W",
        event_id=None,
        status=status,
        mode="live",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        finished_at=None,
        explanation=[],
        error=None,
        actions_executed=0,
    )


def test_only_a_run_that_reached_the_end_is_a_success() -> None:
    assert [s for s in ExecutionStatus if domain.is_success(s)] == [ExecutionStatus.SUCCEEDED]
    # Waiting (parked on a wait or a retry) is in progress, not yet a success.
    assert not domain.is_success("waiting")
    assert domain.outcome_of("waiting") == domain.Outcome.IN_PROGRESS


@pytest.mark.parametrize("status", list(ExecutionStatus))
def test_api_result_and_service_output_use_the_domain_definition(status: ExecutionStatus) -> None:
    ex = _execution(status)
    assert ex.success is domain.is_success(status)
    assert run_result(ex)["success"] is domain.is_success(status)


def test_the_succeeded_count_counts_exactly_the_successes() -> None:
    """One execution of each status (plus a test and a dry run that never count) in a real database."""
    engine = sa.create_engine("sqlite://")
    table = sa.Table(
        "executions",
        sa.MetaData(),
        sa.Column("status", sa.String),
        sa.Column("mode", sa.String),
        sa.Column("is_test", sa.Boolean),
    )
    table.metadata.create_all(engine)
    rows = [{"status": s, "mode": "live", "is_test": False} for s in ExecutionStatus]
    rows += [
        {"status": "succeeded", "mode": "dry_run", "is_test": False},
        {"status": "succeeded", "mode": "test", "is_test": True},
    ]
    with engine.begin() as c:
        c.execute(table.insert(), rows)
        counts = c.execute(sa.select(*domain.count_columns(table)).where(domain.counted(table))).one()._mapping
    assert counts["runs"] == len(ExecutionStatus)
    assert counts["succeeded"] == sum(domain.is_success(s) for s in ExecutionStatus) == 1
    assert counts["in_progress"] == len(domain.IN_PROGRESS_STATUSES) == 3
    assert domain.success_rate(counts["succeeded"], counts["failed"]) == 0.5
