"""The worker's resumptions in batches: many due ``resume`` items in one transaction.

One at a time, a resumption costs three transactions (take over the execution, run its
local steps, close the due item), about 240 a second. :func:`resume_batch` takes the
``resume`` items of one claimed batch and, **in one transaction**:

1. locks their executions (``FOR UPDATE`` in id order on PostgreSQL; SQLite's
   ``BEGIN IMMEDIATE`` serialises writers anyway) and takes over those that are waiting,
   pending, or running without progress for a lease (a dead runner) with a new lease token,
   exactly as :meth:`Runner.resume` does;
2. runs each one's local steps (up to a wait, an external step or the end) through the
   runner's write buffer (:class:`engine.runner._LazySession`), like an ingest batch;
3. closes the due items, only where this worker still holds their lease.

Exactly-once holds as before, and more strictly: steps, execution rows and the due items
commit together or not at all. If any item's lease was lost meanwhile (its lease expired and
another worker claimed it) or anything unexpected fails, the whole transaction rolls back
and the items are handled one by one the old way (:meth:`Worker.handle`), whose lease
tokens make a second run of an execution impossible. External steps (webhooks, AI,
provider sends) never run inside the transaction: executions whose next step is external
are driven after the commit, one by one, holding the lease token the batch gave them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from engine.runner import _local_transaction, _Run, _tenant, parse_definition
from engine.store.models import (
    DueKind,
    DueStatus,
    DueWork,
    Execution,
    ExecutionStatus,
    new_id,
)

if TYPE_CHECKING:
    from engine.worker import Worker

logger = logging.getLogger(__name__)

_ex = Execution.__table__.c
_due = DueWork.__table__.c
_TAKE_OVER = (sa.update(Execution.__table__).where(_ex.id == sa.bindparam("b_id"))
              .values(lease_token=sa.bindparam("b_token"), status=ExecutionStatus.RUNNING,
                      heartbeat_at=sa.bindparam("b_now")))
_CLOSE = (sa.update(DueWork.__table__)
          .where(_due.id == sa.bindparam("b_id"), _due.locked_by == sa.bindparam("b_by"),
                 _due.status == DueStatus.CLAIMED)
          .values(status=DueStatus.DONE, done_at=sa.bindparam("b_now"), locked_until=None))


class LeaseLostInBatch(RuntimeError):
    """a due item of the batch was claimed by another worker meanwhile"""


def resume_batch(worker: Worker, items: list[DueWork]) -> tuple[int, list[DueWork]]:
    """Resume the ``resume`` items of ``items`` together; returns (how many it handled, the rest).

    The rest (other kinds, or every item when the batch had to roll back) is for
    :meth:`Worker.handle`, one by one.
    """
    resumes = [i for i in items if DueKind(i.kind) == DueKind.RESUME]
    others = [i for i in items if DueKind(i.kind) != DueKind.RESUME]
    if len(resumes) < 2:
        return 0, items
    try:
        runs = _resume_in_one_transaction(worker, resumes)
    except Exception:
        logger.warning("batch of %d resumptions rolled back; resuming them one by one", len(resumes), exc_info=True)
        return 0, items
    for run in runs:
        _continue(worker, run)
    return len(resumes), others


def _resume_in_one_transaction(worker: Worker, items: list[DueWork]) -> list[_Run]:
    """Steps 1-3 of the module docstring; returns the runs that go on outside the transaction."""
    runner, now = worker.runner, worker.clock()
    stale_before = now - worker.lease
    goes_on: list[_Run] = []
    with _local_transaction(worker.db) as s:
        conn = s.connection()
        executions = _lock_executions(conn, [i.execution_id for i in items if i.execution_id])
        tenants: dict[str, dict[str, Any]] = {}
        take_over, runs = [], []
        for item in items:
            ex = executions.pop(item.execution_id or "", None)  # an execution twice in a batch: resumed once
            if ex is None or not _resumable(ex, stale_before):
                continue
            token = new_id()
            take_over.append({"b_id": ex["id"], "b_token": token, "b_now": now})
            tenant = tenants.get(ex["tenant_id"]) or tenants.setdefault(ex["tenant_id"], _tenant(conn, ex["tenant_id"]))
            runs.append(_run_of(ex, tenant, token))
        if take_over:
            conn.execute(_TAKE_OVER, take_over)
        for run in runs:
            run.stopped = runner._local_steps_in(s, run)
            if run.stopped is None or run.emitted:  # an external step is next (or the worker stops), or chains
                goes_on.append(run)
        _close_items(s.connection(), items, worker.name, now)
    return goes_on


def _lock_executions(conn: sa.Connection, ids: list[str]) -> dict[str, dict[str, Any]]:
    stmt = sa.select(Execution.__table__).where(_ex.id.in_(sorted(set(ids)))).order_by(_ex.id)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return {row["id"]: dict(row) for row in conn.execute(stmt).mappings()}


def _resumable(ex: dict[str, Any], stale_before) -> bool:
    """Waiting or pending, or running with no progress for a lease (its runner died): as Runner.resume."""
    if ex["status"] in (ExecutionStatus.WAITING, ExecutionStatus.PENDING):
        return True
    heartbeat = ex["heartbeat_at"]
    return ex["status"] == ExecutionStatus.RUNNING and heartbeat is not None and heartbeat < stale_before


def _run_of(ex: dict[str, Any], tenant: dict[str, Any], token: str) -> _Run:
    context = dict(ex["context"] or {})
    return _Run(ex["id"], tenant, ex["workflow_id"], parse_definition(ex["workflow_id"], ex["workflow_version"],
                                                                       ex["definition"]),
                context, ex["current_action_id"], token, ex["mode"], ex["depth"], ex["actions_executed"],
                list(context.get("failedSteps", [])))


def _close_items(conn: sa.Connection, items: list[DueWork], worker_name: str, now) -> None:
    """Mark the items done; every one must still be leased to this worker, else roll back."""
    closed = conn.execute(_CLOSE, [{"b_id": i.id, "b_by": worker_name, "b_now": now} for i in items]).rowcount
    if closed != len(items):
        raise LeaseLostInBatch(f"{len(items) - closed} of {len(items)} due items are no longer leased to {worker_name}")


def _continue(worker: Worker, run: _Run) -> None:
    """After the commit: drive an execution whose next step is external; ingest what it emitted."""
    try:
        if run.stopped is None:
            worker.runner._drive(run)  # ingests what it emitted at the end
        else:
            worker.runner._process_emitted(run)
    except Exception:
        logger.exception("execution %s failed after its batch committed", run.id)
