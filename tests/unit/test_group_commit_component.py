"""engine.runner.group_commit on its own: no database, no private fields, no sleeps.

Threads are ordered with events and ``GroupCommit.wait_queued``: the leader's ``prepare`` is
held until the followers have queued, so what shares a batch is decided, not timed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import pytest

from engine.runner.group_commit import GroupCommit, Ticket


@dataclass
class Req(Ticket):
    name: str = ""
    fail: bool = False
    committed_in: list[str] = field(default_factory=list)


class Log:
    """prepare/commit callables that record each batch; ``hold`` keeps the first batch open."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.commits = 0
        self.hold = threading.Event()
        self.holding = threading.Event()
        self.hold.set()

    def prepare(self, batch: list[Req]) -> list[Req]:
        if not self.batches:
            self.holding.set()
            assert self.hold.wait(10)
        self.batches.append([r.name for r in batch])
        if any(r.fail for r in batch):
            raise RuntimeError("this batch cannot commit")
        return batch

    def commit(self, batch: list[Req]) -> None:
        self.commits += 1
        for r in batch:
            r.committed_in.append(f"commit {self.commits}")


def submit_in_threads(group: GroupCommit, reqs: list[Req], log: Log) -> None:
    """reqs[0] leads a held first batch; the rest queue behind it; then the batch is released."""
    log.hold.clear()

    def call(req: Req) -> None:
        group.enter()
        try:
            group.submit(req)
        finally:
            group.leave()

    threads = [threading.Thread(target=call, args=(r,)) for r in reqs]
    threads[0].start()
    assert log.holding.wait(10)
    for t in threads[1:]:
        t.start()
    assert group.wait_queued(len(reqs) - 1, timeout=10)
    log.hold.set()
    for t in threads:
        t.join(10)
        assert not t.is_alive()


def test_a_caller_alone_commits_at_once_in_a_batch_of_its_own():
    log = Log()
    group = GroupCommit(log.prepare, log.commit)
    for name in "abc":
        req = Req(name=name)
        group.submit(req)
        assert req.committed_in == [f"commit {len(log.batches)}"] and not req.alone
    assert log.batches == [["a"], ["b"], ["c"]]
    assert group.queued == 0


def test_callers_arriving_during_a_commit_share_the_next_one():
    log = Log()
    group = GroupCommit(log.prepare, log.commit)
    reqs = [Req(name=f"r{i}") for i in range(6)]
    submit_in_threads(group, reqs, log)
    assert log.batches[0] == ["r0"]
    assert sorted(log.batches[1]) == ["r1", "r2", "r3", "r4", "r5"]
    assert log.commits == 2
    assert all(r.committed_in and not r.alone for r in reqs)


def test_a_batch_is_never_larger_than_max_batch():
    log = Log()
    group = GroupCommit(log.prepare, log.commit, max_batch=2)
    reqs = [Req(name=f"r{i}") for i in range(5)]
    submit_in_threads(group, reqs, log)
    assert [len(b) for b in log.batches] == [1, 2, 2]
    assert sorted(n for b in log.batches for n in b) == [r.name for r in reqs]


def test_a_failed_batch_marks_each_request_to_run_alone_and_commits_nothing():
    log = Log()
    group = GroupCommit(log.prepare, log.commit)
    reqs = [Req(name=f"r{i}") for i in range(4)]
    reqs[2].fail = True
    submit_in_threads(group, reqs, log)
    assert [r.alone for r in reqs] == [False, True, True, True]  # r0's batch committed; the second failed
    assert [r.committed_in for r in reqs[1:]] == [[], [], []]
    assert log.commits == 1


def test_nested_tells_a_thread_inside_from_one_outside():
    group = GroupCommit(lambda batch: batch, lambda batch: None)
    assert not group.nested()
    group.enter()
    try:
        assert group.nested()
    finally:
        group.leave()
    assert not group.nested()


def test_an_interrupt_in_a_batch_still_wakes_the_followers_and_reaches_the_leader():
    log = Log()

    def prepare(batch):
        result = log.prepare(batch)
        if len(log.batches) == 1:
            raise KeyboardInterrupt
        return result

    group = GroupCommit(prepare, log.commit)
    with pytest.raises(KeyboardInterrupt):
        group.submit(Req(name="leader"))
    follower = Req(name="next")
    group.submit(follower)  # the group was handed over: the next caller is not stuck
    assert follower.committed_in == ["commit 1"]


class Locked(Exception):
    """Stands for a storage fault: the write lock held elsewhere past the lock timeout."""


def test_a_failure_give_up_knows_fails_the_batch_and_the_queue_without_running_any_alone():
    log = Log()

    def prepare(batch):
        result = log.prepare(batch)
        if len(log.batches) == 1:
            raise Locked()
        return result

    group = GroupCommit(prepare, log.commit, give_up=lambda exc: isinstance(exc, Locked))
    reqs = [Req(name=f"r{i}") for i in range(5)]
    submit_in_threads(group, reqs, log)  # r1..r4 queue while r0's batch waits for the "lock"
    assert log.batches == [["r0"]]  # the queued requests were not tried again for the same lock
    assert all(isinstance(r.failure, Locked) and not r.alone and not r.committed_in for r in reqs)
    after = Req(name="after")
    group.submit(after)  # the group is free again
    assert after.committed_in == ["commit 1"] and after.failure is None
