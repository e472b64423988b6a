"""The worker process: due work (waits, retries, follow-ups, deliveries), cron fires, recovery of
abandoned executions, retention passes; garbage-collector settings of the service processes."""

from engine.worker.loop import MAX_ITEM_ATTEMPTS, Worker, run_worker

__all__ = ["MAX_ITEM_ATTEMPTS", "Worker", "run_worker"]
