"""Execution statuses and the one definition of what an execution counts as.

:class:`ExecutionStatus` (the values of ``executions.status``) lives here, not in the store:
the API, services and pages import it from this module. :func:`is_success` is the only
definition of a successful run (the API's ``result.success``, ``ExecutionOut.success`` and the
``succeeded`` counts agree with it; ``tests/unit/test_domain.py`` pins it).

Workflow cards, the Insights page, ``GET /api/workflows/list?includeStats=true``,
``GET /api/stats`` and the executions page all count through this module, so "Runs",
"success rate" and "failures" mean the same thing everywhere:

* a **run** is every live or manual execution that is not a test-console run and not a dry
  run: succeeded, failed, skipped, cancelled and the ones still in progress all count;
* **success rate** is succeeded / (succeeded + failed): skipped runs (conditions did not
  hold), cancelled runs and runs still in progress are neither success nor failure;
* **in progress** is pending, running or waiting.

The SQL expressions below are what every aggregate uses (never Python loops over rows).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import sqlalchemy as sa


class ExecutionStatus(StrEnum):
    """``executions.status``."""

    PENDING = "pending"  # created, not started yet
    RUNNING = "running"  # a step is being executed
    WAITING = "waiting"  # parked until a due-work row fires (wait, retry, deferred)
    SUCCEEDED = "succeeded"  # reached the end; failed steps may have been continued past
    FAILED = "failed"  # stopped by a failing step with onError=stop, or an engine error
    SKIPPED = "skipped"  # conditions did not hold; see the explanation
    CANCELLED = "cancelled"  # stopped by a person or because the workflow was deleted


FINISHED_STATUSES = (
    ExecutionStatus.SUCCEEDED,
    ExecutionStatus.FAILED,
    ExecutionStatus.SKIPPED,
    ExecutionStatus.CANCELLED,
)


def _columns(table: Any) -> Any:
    """The columns of ``table`` (a model, a Table or an alias); None: ``executions``.

    The store is imported here, not at the top, because ``engine.store.models`` imports
    :class:`ExecutionStatus` from this module."""
    if table is None:
        from engine.store.models import Execution

        table = Execution
    return getattr(table, "__table__", table).c


class Outcome(StrEnum):
    """The buckets every count uses (one per execution)."""

    SUCCEEDED = "succeeded"  # reached the end
    FAILED = "failed"  # stopped by a failing step or an engine error
    SKIPPED = "skipped"  # conditions did not hold
    IN_PROGRESS = "in_progress"  # pending, running or waiting
    CANCELLED = "cancelled"  # stopped by a person


IN_PROGRESS_STATUSES = (ExecutionStatus.PENDING, ExecutionStatus.RUNNING, ExecutionStatus.WAITING)
#: Modes that never count: a dry run sends nothing and is a preview, not a run.
UNCOUNTED_MODES = ("dry_run",)
#: The status filter value for test-console runs (they have their own flag, not a status).
TEST_FILTER = "test"
#: What the executions page offers as status filter, in that order.
STATUS_FILTERS = ("succeeded", "failed", "skipped", "waiting", "running", "pending", "cancelled", TEST_FILTER)


def outcome_of(status: str) -> Outcome:
    """The bucket of one status (Python side, for single executions)."""
    if status in IN_PROGRESS_STATUSES:
        return Outcome.IN_PROGRESS
    return Outcome(status)


def is_success(status: str) -> bool:
    """The spec's ``success`` for one execution: it reached the end (waiting is not success yet)."""
    return status == ExecutionStatus.SUCCEEDED


def success_rate(succeeded: int, failed: int) -> float | None:
    """succeeded / (succeeded + failed); None when nothing finished either way."""
    finished = succeeded + failed
    return round(succeeded / finished, 4) if finished else None


def counted(table: Any = None) -> sa.ColumnElement[bool]:
    """WHERE clause: executions that count (no test-console runs, no dry runs)."""
    t = _columns(table)
    return sa.and_(t.is_test == sa.false(), t.mode.notin_(UNCOUNTED_MODES))


def count_columns(table: Any = None) -> list[sa.ColumnElement[int]]:
    """SELECT list: runs, succeeded, failed, skipped, in progress, cancelled (labelled)."""
    status = _columns(table).status

    def n(*values: str) -> sa.ColumnElement[int]:
        return sa.func.coalesce(sa.func.sum(sa.case((status.in_(values), 1), else_=0)), 0)

    return [
        sa.func.count().label("runs"),
        n(ExecutionStatus.SUCCEEDED).label("succeeded"),
        n(ExecutionStatus.FAILED).label("failed"),
        n(ExecutionStatus.SKIPPED).label("skipped"),
        n(*IN_PROGRESS_STATUSES).label("in_progress"),
        n(ExecutionStatus.CANCELLED).label("cancelled"),
    ]


COUNT_KEYS = ("runs", "succeeded", "failed", "skipped", "in_progress", "cancelled")

#: Test-console executions have this mode; rollups of pruned executions keep only the mode.
TEST_MODE = "test"


def rollup_counted() -> sa.ColumnElement[bool]:
    """WHERE clause on ``execution_rollups`` (executions pruned after the summary retention)."""
    from engine.store.lifecycle import ExecutionRollup

    return ExecutionRollup.__table__.c.mode.notin_((*UNCOUNTED_MODES, TEST_MODE))


def rollup_count_columns() -> list[sa.ColumnElement[int]]:
    """The same labelled SELECT list as :func:`count_columns`, summed over ``execution_rollups``."""
    from engine.store.lifecycle import ExecutionRollup

    t = ExecutionRollup.__table__.c

    def n(*values: str) -> sa.ColumnElement[int]:
        return sa.func.coalesce(sa.func.sum(sa.case((t.status.in_(values), t["count"]), else_=0)), 0)

    return [
        sa.func.coalesce(sa.func.sum(t["count"]), 0).label("runs"),
        n(ExecutionStatus.SUCCEEDED).label("succeeded"),
        n(ExecutionStatus.FAILED).label("failed"),
        n(ExecutionStatus.SKIPPED).label("skipped"),
        n(*IN_PROGRESS_STATUSES).label("in_progress"),
        n(ExecutionStatus.CANCELLED).label("cancelled"),
    ]


def all_time_counts(s: Any, tenant_id: str, workflow_ids: list[str] | None = None) -> dict[str | None, dict[str, int]]:
    """Counts per workflow id (``None``: the whole studio) over live rows plus the rollups of pruned ones.

    Pruning (engine/lifecycle/retention.py) deletes summary rows only after adding them to
    ``execution_rollups``, so all-time numbers on the cards and in the stats never drop.
    """
    from engine.store.lifecycle import ExecutionRollup
    from engine.store.models import Execution

    roll, ex = ExecutionRollup.__table__.c, Execution.__table__.c
    per_workflow = workflow_ids is not None
    live = sa.select(*([ex.workflow_id] if per_workflow else []), *count_columns()).where(
        ex.tenant_id == tenant_id, counted()
    )
    pruned = sa.select(*([roll.workflow_id] if per_workflow else []), *rollup_count_columns()).where(
        roll.tenant_id == tenant_id, rollup_counted()
    )
    if workflow_ids is not None:
        live = live.where(ex.workflow_id.in_(workflow_ids)).group_by(ex.workflow_id)
        pruned = pruned.where(roll.workflow_id.in_(workflow_ids)).group_by(roll.workflow_id)
    out: dict[str | None, dict[str, int]] = {}
    for stmt in (live, pruned):
        for row in s.execute(stmt):
            m = row._mapping
            key = m["workflow_id"] if per_workflow else None
            acc = out.setdefault(key, dict.fromkeys(COUNT_KEYS, 0))
            for k in COUNT_KEYS:
                acc[k] += int(m[k] or 0)
    return out


def status_filter(value: str | None, table: Any = None) -> list[sa.ColumnElement[bool]]:
    """WHERE clauses of the executions list's status filter; ``test`` lists test-console runs."""
    t = _columns(table)
    if not value:
        return []
    if value == TEST_FILTER:
        return [t.is_test == sa.true()]
    if value == Outcome.IN_PROGRESS:
        return [t.status.in_(IN_PROGRESS_STATUSES)]
    return [t.status == value]
