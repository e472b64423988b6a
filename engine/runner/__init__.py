"""The runner: events in, workflows run, exactly once, with durable time.

A package of parts that read alone:

* :mod:`engine.runner.ingest` -- :class:`Runner`: store an event, match workflows, start
  executions (group commit for concurrent callers, or inside a caller's unit of work);
  manual and cron runs.
* :mod:`engine.runner.machine` -- the execution state machine: local steps in one
  transaction, external steps with none open, waits and retries as due work, lease tokens.
* :mod:`engine.runner.group_commit` -- leader/follower group commit, knowing nothing of events.
* :mod:`engine.runner.buffer` -- the buffered unit of work (:mod:`engine.uow`'s protocol
  with a write buffer): where the runner's rows reach the database.
* :mod:`engine.runner.context` -- the run, the event as workflows see it, pure helpers.

Statements and row builders live in :mod:`engine.store.runs`.
"""

from engine.runner.buffer import BufferedUnitOfWork, local_transaction
from engine.runner.context import (
    MAX_CHAIN_DEPTH,
    IngestResult,
    LeaseLost,
    Run,
    builtin_classifier,
    lead_stub,
    load_tenant,
    parse_definition,
    resumed_run,
    template_context,
    tenant_context,
    trigger_data,
)
from engine.runner.group_commit import GroupCommit
from engine.runner.ingest import Runner

__all__ = [
    "MAX_CHAIN_DEPTH",
    "BufferedUnitOfWork",
    "GroupCommit",
    "IngestResult",
    "LeaseLost",
    "Run",
    "Runner",
    "builtin_classifier",
    "lead_stub",
    "load_tenant",
    "local_transaction",
    "parse_definition",
    "resumed_run",
    "template_context",
    "tenant_context",
    "trigger_data",
]
