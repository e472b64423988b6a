"""Crash safety and concurrency with real worker processes (``python -m engine worker``).

These tests use the real clock: waits of 2 seconds, leases of 2 seconds. They never sleep
for a duration to pass; they poll the database until a condition holds or a deadline ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, func, select

from engine import services
from engine.runner import Runner
from engine.security import auth
from engine.store.models import DueStatus, DueWork, Execution, OutboxMessage, StepRun, Workflow, utcnow
from engine.uow import unit_of_work
from engine.worker import Worker

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PHONE = "+4915112345678"


def wait_then_send(wait_ms: int) -> dict:
    return {
        "name": "Wait then send",
        "trigger": {"type": "whatsapp_message", "config": {}},
        "conditions": [],
        "actions": [
            {"id": "wait-1", "type": "wait", "config": {"delay": wait_ms}},
            {"id": "send-1", "type": "send_whatsapp", "config": {"message": "A {{trigger.content}}"}},
            {"id": "send-2", "type": "send_whatsapp", "config": {"message": "B {{trigger.content}}"}},
        ],
    }


def start_worker(url: str, *, lease: int = 2, name: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "STUDIO_POLL_INTERVAL": "0.2", "STUDIO_LEASE_SECONDS": str(lease), "PYTHONUNBUFFERED": "1"}
    env.pop("DATABASE_URL", None)
    cmd = [sys.executable, "-m", "engine", "--database-url", url, "worker"] + (["--name", name] if name else [])
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for_start(proc: subprocess.Popen, deadline: float = 30.0) -> None:
    """Read the worker's log until it says it started (its first pass follows right away)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        line = proc.stderr.readline()
        if "started" in line:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining the pipe
            return
        if not line and proc.poll() is not None:
            raise AssertionError(f"worker exited with {proc.returncode} before starting")
    raise AssertionError("worker did not start in time")


def poll(condition, deadline: float, interval: float = 0.05, what: str = "condition"):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {deadline}s waiting for {what}")


def kill9(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL


def stop_all(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)


def count(db, stmt) -> int:
    with Session(db) as s:
        return s.exec(stmt).one()


def assert_each_ran_once(db, tenant_id: str, execution_ids: list[str], steps_after_wait: tuple[str, ...]) -> None:
    with Session(db) as s:
        statuses = s.exec(
            select(Execution.status, func.count()).where(Execution.tenant_id == tenant_id).group_by(Execution.status)
        ).all()
        assert dict(statuses) == {"succeeded": len(execution_ids)}
        doubled = s.exec(
            select(StepRun.execution_id, StepRun.action_id, func.count())
            .where(StepRun.tenant_id == tenant_id, StepRun.status == "succeeded")
            .group_by(StepRun.execution_id, StepRun.action_id)
            .having(func.count() > 1)
        ).all()
        assert doubled == []
        for action_id in ("wait-1", *steps_after_wait):
            done = s.exec(
                select(func.count())
                .select_from(StepRun)
                .where(StepRun.tenant_id == tenant_id, StepRun.action_id == action_id, StepRun.status == "succeeded")
            ).one()
            assert done == len(execution_ids), action_id
        messages = s.exec(
            select(OutboxMessage.execution_id, OutboxMessage.body).where(OutboxMessage.tenant_id == tenant_id)
        ).all()
        assert len(messages) == len(execution_ids) * len(steps_after_wait)
        assert len(set(messages)) == len(messages), "a message was sent twice"
        assert {m[0] for m in messages} == set(execution_ids)
        runs = s.exec(select(func.sum(Workflow.run_count)).where(Workflow.tenant_id == tenant_id)).one()
        assert runs == len(execution_ids), "an execution was finished more than once"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_and_url(request):
    if request.param == "sqlite":
        db = request.getfixturevalue("sqlite_db")
        return db, db.url.render_as_string(hide_password=False)
    return request.getfixturevalue("postgres_db"), request.getfixturevalue("postgres_url")


# --------------------------------------------------------------------------- kill -9 and restart


def test_workers_killed_with_sigkill_lose_nothing_and_repeat_nothing(db_and_url):
    db, url = db_and_url
    with unit_of_work(db) as uow:
        tenant = services.create_tenant(uow=uow, slug="crash", name="Crash")
    actor = auth.system_actor(tenant.id)
    with unit_of_work(db) as uow:
        # 6 s: longer than 40 ingests and a worker's start take on a loaded machine
        services.create_workflow(uow=uow, actor=actor, data=wait_then_send(6000))
    runner = Runner(db)
    procs: list[subprocess.Popen] = []
    try:
        # 1. A worker is killed while the executions wait (nothing is due yet).
        first = start_worker(url)
        procs.append(first)
        wait_for_start(first)
        ids = [
            runner.ingest(
                tenant.id, {"triggerType": "whatsapp_message", "from": PHONE, "content": f"m{i}"}
            ).execution_ids[0]
            for i in range(40)
        ]
        kill9(first)
        assert count(db, select(func.count()).select_from(Execution).where(Execution.status == "waiting")) == len(ids)

        # 2. Once due, the next worker is killed as soon as it holds claims.
        poll(lambda: utcnow() > max_due(db), 30, what="the waits to be due")
        second = start_worker(url)
        procs.append(second)
        poll(
            lambda: count(db, select(func.count()).select_from(DueWork).where(DueWork.status != DueStatus.PENDING)) > 0,
            30,
            interval=0.005,
            what="a claim",
        )
        kill9(second)
        claimed = count(db, select(func.count()).select_from(DueWork).where(DueWork.status == DueStatus.CLAIMED))

        # 3. The next worker takes the expired leases over and is killed half-way through.
        finished = select(func.count()).select_from(Execution).where(Execution.status == "succeeded")
        half = start_worker(url)
        procs.append(half)
        poll(lambda: count(db, finished) >= 5, 30, interval=0.005, what="some executions to finish")
        kill9(half)

        # 4. A fresh worker finishes everything.
        third = start_worker(url)
        procs.append(third)
        # Its SIGTERM handler is installed before it logs "started"; the previous worker may
        # already have finished everything, so wait for that before step 5's SIGTERM.
        wait_for_start(third)
        poll(
            lambda: (
                count(
                    db, select(func.count()).select_from(Execution).where(Execution.status.in_(("succeeded", "failed")))
                )
                == len(ids)
            ),
            60,
            interval=0.2,
            what="all executions to finish",
        )
        assert_each_ran_once(db, tenant.id, ids, ("send-1", "send-2"))
        with Session(db) as s:
            dues = s.exec(select(DueWork)).all()
        assert all(d.status == DueStatus.DONE for d in dues)
        if claimed:
            assert any(d.attempts > 1 for d in dues), "items claimed by the killed worker were run again"

        # 5. SIGTERM: the worker finishes its step and exits cleanly.
        third.send_signal(signal.SIGTERM)
        assert third.wait(timeout=20) == 0
    finally:
        stop_all(procs)


def max_due(db):
    with Session(db) as s:
        return s.exec(select(func.max(DueWork.due_at))).one()


def test_sigterm_while_idle_exits_zero(sqlite_db):
    url = sqlite_db.url.render_as_string(hide_password=False)
    proc = start_worker(url)
    try:
        wait_for_start(proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        stop_all([proc])


def test_worker_once_runs_what_is_due_and_exits(sqlite_db):
    db = sqlite_db
    with unit_of_work(db) as uow:
        tenant = services.create_tenant(uow=uow, slug="once", name="Once")
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=auth.system_actor(tenant.id), data=wait_then_send(1000))
    runner = Runner(db, clock=lambda: utcnow() - timedelta(minutes=5))
    ids = [
        runner.ingest(tenant.id, {"triggerType": "whatsapp_message", "from": PHONE, "content": f"o{i}"}).execution_ids[
            0
        ]
        for i in range(3)
    ]
    url = db.url.render_as_string(hide_password=False)
    done = subprocess.run(
        [sys.executable, "-m", "engine", "--database-url", url, "worker", "--once"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert_each_ran_once(db, tenant.id, ids, ("send-1", "send-2"))


# --------------------------------------------------------------------------- many workers, many items


def park_due_executions(db, tenant_id: str, n: int) -> list[str]:
    """``n`` executions parked on a wait that is already due (started an hour ago)."""
    runner = Runner(db, clock=lambda: utcnow() - timedelta(hours=1))

    def one(i: int) -> str:
        return runner.ingest(
            tenant_id, {"triggerType": "whatsapp_message", "from": PHONE, "content": f"item-{i}"}
        ).execution_ids[0]

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(one, range(n)))
    assert (
        count(
            db,
            select(func.count())
            .select_from(DueWork)
            .where(DueWork.status == DueStatus.PENDING, DueWork.due_at <= utcnow()),
        )
        == n
    )
    return ids


def assert_items_ran_once(db, tenant_id: str, ids: list[str]) -> None:
    assert_each_ran_once(db, tenant_id, ids, ("send-1", "send-2"))
    with Session(db) as s:
        rows = s.exec(select(DueWork.status, DueWork.attempts, DueWork.locked_by)).all()
    assert len(rows) == len(ids)
    assert {(status, attempts) for status, attempts, _ in rows} == {(DueStatus.DONE, 1)}
    return {locked_by for *_, locked_by in rows}


@pytest.mark.postgres
def test_four_worker_processes_run_a_thousand_due_items_exactly_once(postgres_db, postgres_url):
    db = postgres_db
    with unit_of_work(db) as uow:
        tenant = services.create_tenant(uow=uow, slug="many", name="Many")
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=auth.system_actor(tenant.id), data=wait_then_send(1000))
    ids = park_due_executions(db, tenant.id, 1000)
    procs = [start_worker(postgres_url, lease=60, name=f"w{i}") for i in range(4)]
    try:
        poll(
            lambda: (
                count(db, select(func.count()).select_from(DueWork).where(DueWork.status == DueStatus.DONE)) == len(ids)
            ),
            120,
            interval=0.25,
            what="1,000 items to be done",
        )
        poll(
            lambda: (
                count(db, select(func.count()).select_from(Execution).where(Execution.status == "succeeded"))
                == len(ids)
            ),
            30,
            what="executions to finish",
        )
        for p in procs:
            p.send_signal(signal.SIGTERM)
        assert [p.wait(timeout=30) for p in procs] == [0, 0, 0, 0]
    finally:
        stop_all(procs)
    assert count(db, select(func.count()).select_from(OutboxMessage)) == 2 * len(ids)
    assert_items_ran_once(db, tenant.id, ids)


@pytest.mark.postgres
def test_four_worker_threads_share_due_items_without_running_one_twice(postgres_db):
    db = postgres_db
    with unit_of_work(db) as uow:
        tenant = services.create_tenant(uow=uow, slug="threads", name="Threads")
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=auth.system_actor(tenant.id), data=wait_then_send(1000))
    ids = park_due_executions(db, tenant.id, 1000)
    workers = [Worker(db, name=f"thread-{i}", runner=Runner(db), lease_seconds=60, batch=25) for i in range(4)]
    start = threading.Barrier(len(workers))
    handled = [0] * len(workers)
    errors: list[BaseException] = []

    def loop(i: int) -> None:
        try:
            start.wait()
            while True:
                n = workers[i].run_once()
                handled[i] += n
                if n == 0:
                    return
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(len(workers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert errors == [] and not any(t.is_alive() for t in threads)
    assert sum(handled) == len(ids)
    assert_items_ran_once(db, tenant.id, ids)
    with Session(db) as s:
        by_worker = dict(s.exec(select(DueWork.locked_by, func.count()).group_by(DueWork.locked_by)).all())
    # _done clears the lease but keeps who ran it; every item was run by exactly one named worker.
    assert sum(by_worker.values()) == len(ids)
