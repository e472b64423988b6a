"""The worker's resumptions in batches: many due ``resume`` items in one transaction.

One at a time, a resumption costs three transactions (take over the execution, run its
local steps, close the due item), about 240 a second. :func:`resume_batch` takes the
``resume`` items of one claimed batch and, **in one transaction**:

1. locks their executions (``FOR UPDATE`` in id order on PostgreSQL; SQLite's
   ``BEGIN IMMEDIATE`` serialises writers anyway) and takes over those that are waiting,
   pending, or running without progress for a lease (a dead runner) with a new lease token,
   exactly as :meth:`Runner.resume` does;
2. runs each one's local steps (up to a wait, an external step or the end) through the
   runner's buffered unit of work (:class:`engine.runner.BufferedUnitOfWork`), like an ingest batch;
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

from engine.runner import Run, load_tenant, local_transaction, resumed_run
from engine.store.models import DueKind, DueWork, ExecutionStatus, new_id
from engine.store.runs import TAKE_OVER, close_due_many, lock_executions

if TYPE_CHECKING:
    from engine.worker import Worker

logger = logging.getLogger(__name__)


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


def _resume_in_one_transaction(worker: Worker, items: list[DueWork]) -> list[Run]:
    """Steps 1-3 of the module docstring; returns the runs that go on outside the transaction."""
    runner, now = worker.runner, worker.clock()
    stale_before = now - worker.lease
    goes_on: list[Run] = []
    with local_transaction(worker.db, worker.clock) as s:
        s.defer_updates()  # every execution's final UPDATE in the write-out, with its steps and messages
        conn = s.connection()
        executions = lock_executions(conn, [i.execution_id for i in items if i.execution_id])
        tenants: dict[str, dict[str, Any]] = {}
        take_over, runs = [], []
        for item in items:
            ex = executions.pop(item.execution_id or "", None)  # an execution twice in a batch: resumed once
            if ex is None or not _resumable(ex, stale_before):
                continue
            token = new_id()
            take_over.append({"b_id": ex["id"], "b_token": token, "b_now": now})
            tenant = tenants.get(ex["tenant_id"]) or tenants.setdefault(
                ex["tenant_id"], load_tenant(conn, ex["tenant_id"])
            )
            runs.append(resumed_run(ex, tenant, token))
        if take_over:
            conn.execute(TAKE_OVER, take_over)
        for run in runs:
            run.stopped = runner.local_steps_in(s, run)
            if run.stopped is None or run.emitted:  # an external step is next (or the worker stops), or chains
                goes_on.append(run)
        _close_items(s.connection(), items, worker.name, now)
    return goes_on


def _resumable(ex: dict[str, Any], stale_before) -> bool:
    """Waiting or pending, or running with no progress for a lease (its runner died): as Runner.resume."""
    if ex["status"] in (ExecutionStatus.WAITING, ExecutionStatus.PENDING):
        return True
    heartbeat = ex["heartbeat_at"]
    return ex["status"] == ExecutionStatus.RUNNING and heartbeat is not None and heartbeat < stale_before


def _close_items(conn: Any, items: list[DueWork], worker_name: str, now) -> None:
    """Mark the items done; every one must still be leased to this worker, else roll back."""
    closed = close_due_many(conn, [i.id for i in items], worker_name, now)
    if closed != len(items):
        raise LeaseLostInBatch(f"{len(items) - closed} of {len(items)} due items are no longer leased to {worker_name}")


def _continue(worker: Worker, run: Run) -> None:
    """After the commit: drive an execution whose next step is external; ingest what it emitted."""
    try:
        if run.stopped is None:
            worker.runner.drive(run)  # ingests what it emitted at the end
        else:
            worker.runner.process_emitted(run)
    except Exception:
        logger.exception("execution %s failed after its batch committed", run.id)
