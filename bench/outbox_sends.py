"""Messages sent once: ``python -m bench.outbox_sends --workers 4 --messages 200 [--kills 3]``.

Queues ``--messages`` WhatsApp replies (and, with ``--sms``, as many Twilio SMS) on a fresh
SQLite file (or a throw-away PostgreSQL database with ``--database-url``), points the studio at
a slow loopback provider (bench/provider.py: 0.3-2 s per send) and starts ``--workers`` real
worker processes (``python -m engine worker``). With ``--kills K`` it kills a worker with
SIGKILL K times while it is sending (a replacement starts each time). It prints how many
requests the provider got per message (more than one is a duplicate), how the messages ended
(sent, unknown...), the time it took, and how long a killed worker's claimed but unstarted
items waited before another worker took them.

The same functions drive tests/integration/test_outbox_processes.py, which asserts what this
prints: each message sent exactly once without kills; with kills, each message sent once or
"outcome unknown", never twice unannounced.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.provider import LoopbackProvider
from engine import services
from engine.messaging.delivery import SENDER_STOPPED
from engine.messaging.outbox_states import IN_PROGRESS
from engine.runner import Runner
from engine.security import auth
from engine.store.db import get_engine, migrate
from engine.store.models import DueStatus, DueWork, OutboxMessage
from engine.uow import unit_of_work

ROOT = Path(__file__).resolve().parents[1]

_due, _ob = DueWork.__table__.c, OutboxMessage.__table__.c


@dataclass
class Studio:
    tenant_id: str
    messages: int  # outbox rows queued


@dataclass
class Workers:
    """Worker processes (``python -m engine worker``) on one database; kill and replace them.
    Each one's log goes to ``<logs>/<name>.log``."""

    url: str
    env: dict[str, str]
    logs: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    started: int = 0

    def start(self) -> str:
        self.started += 1
        name = f"w{self.started}"
        cmd = [sys.executable, "-m", "engine", "--database-url", self.url, "worker", "--name", name]
        with open(self.logs / f"{name}.log", "w") as log:
            self.procs[name] = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return name

    def wait_started(self, deadline: float = 120.0) -> None:
        """Until every running worker logged "started" (its first pass follows at once)."""
        for name, proc in self.procs.items():
            log = self.logs / f"{name}.log"

            def up(name: str = name, proc: subprocess.Popen = proc, log: Path = log) -> bool:
                if proc.poll() is not None:
                    raise RuntimeError(f"worker {name} exited with {proc.returncode}: {log.read_text()[-2000:]}")
                return f"worker {name} started" in log.read_text()

            wait_until(up, deadline, interval=0.1, what=f"worker {name} to start")

    def kill9(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self) -> list[int | None]:
        """SIGTERM to every worker; their exit codes (0: finished its step and exited cleanly)."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes: list[int | None] = []
        for proc in self.procs.values():
            try:
                codes.append(proc.wait(timeout=30))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait(timeout=10))
        self.procs.clear()
        return codes


def worker_env(*, lease_seconds: int = 60, claim_lease_seconds: float = 3.0) -> dict[str, str]:
    env = {
        **os.environ,
        "STUDIO_POLL_INTERVAL": "0.2",
        "STUDIO_LEASE_SECONDS": str(lease_seconds),
        "STUDIO_CLAIM_LEASE_SECONDS": str(claim_lease_seconds),
        "STUDIO_ALLOW_PROVIDER_BASE_URL": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DATABASE_URL", None)
    return env


def queue_messages(db: Any, provider_url: str, *, messages: int, sms: int = 0) -> Studio:
    """A studio on the loopback provider and ``messages`` WhatsApp replies (+ ``sms`` SMS) queued
    through real workflows (one inbound event each); every body is unique."""
    channels = {
        "whatsapp": {
            "adapter": "whatsapp_cloud",
            "baseUrl": provider_url,
            "phoneNumberId": "1055",
            "accessToken": "loopback-token",
            "timeout": 30,
        },
        "sms": {
            "adapter": "twilio",
            "baseUrl": provider_url,
            "accountSid": "AC1",
            "authToken": "loopback-token",
            "fromNumber": "+4930123456",
            "timeout": 30,
        },
    }
    with unit_of_work(db) as uow:
        tenant = services.create_tenant(
            uow=uow, slug=f"once-{uuid.uuid4().hex[:6]}", name="Once", settings={"channels": channels}
        )
    actor = auth.system_actor(tenant.id)
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=actor, data=_reply("whatsapp_message", "send_whatsapp"))
        services.create_workflow(uow=uow, actor=actor, data=_reply("missed_call", "send_sms"))
    runner = Runner(db)
    for i in range(max(messages, sms)):  # interleaved, so kills meet both channels
        if i < messages:
            wa = {"triggerType": "whatsapp_message", "channel": "whatsapp", "from": f"+49151{i:08d}"}
            runner.ingest(tenant.id, {**wa, "content": f"wa-{i}"})
        if i < sms:
            runner.ingest(tenant.id, {"triggerType": "missed_call", "from": f"+49160{i:08d}", "content": f"sms-{i}"})
    return Studio(tenant.id, messages + sms)


def _reply(trigger: str, action: str) -> dict[str, Any]:
    return {
        "name": f"Reply to {trigger}",
        "trigger": {"type": trigger, "config": {}},
        "conditions": [],
        "actions": [{"id": "reply", "type": action, "config": {"message": "Reply to {{trigger.content}}"}}],
    }


def rows(db: Any, tenant_id: str) -> list[dict[str, Any]]:
    with db.connect() as conn:
        q = sa.select(_ob.id, _ob.channel, _ob.body, _ob.status, _ob.attempts, _ob.provider_message_id, _ob.detail)
        return [dict(r) for r in conn.execute(q.where(_ob.tenant_id == tenant_id)).mappings()]


def in_progress(db: Any, tenant_id: str) -> int:
    """Messages the worker still owes something, plus open deliver items."""
    with db.connect() as conn:
        messages = conn.execute(
            sa.select(sa.func.count()).where(_ob.tenant_id == tenant_id, _ob.status.in_(sorted(IN_PROGRESS)))
        ).scalar_one()
        items = conn.execute(
            sa.select(sa.func.count()).where(
                _due.tenant_id == tenant_id, _due.status.in_((DueStatus.PENDING, DueStatus.CLAIMED))
            )
        ).scalar_one()
    return messages + items


def sending_by(db: Any, tenant_id: str) -> dict[str, dict[str, str]]:
    """Worker name -> {deliver item id: provider key} of the items it holds whose message is
    ``sending`` now (the key: our reference for WhatsApp, the body for Twilio)."""
    with db.connect() as conn:
        held = conn.execute(
            sa.select(_due.id, _due.locked_by, _due.payload).where(
                _due.tenant_id == tenant_id, _due.kind == "deliver", _due.status == DueStatus.CLAIMED
            )
        ).all()
        sending = {
            r.id: (r.id if r.channel == "whatsapp" else r.body)
            for r in conn.execute(
                sa.select(_ob.id, _ob.channel, _ob.body).where(_ob.tenant_id == tenant_id, _ob.status == "sending")
            )
        }
    out: dict[str, dict[str, str]] = {}
    for item_id, by, payload in held:
        key = sending.get((payload or {}).get("outboxId"))
        if by and key is not None:
            out.setdefault(by, {})[item_id] = key
    return out


def held_by(db: Any, name: str) -> set[str]:
    with db.connect() as conn:
        q = sa.select(_due.id).where(_due.locked_by == name, _due.status == DueStatus.CLAIMED)
        return set(conn.execute(q).scalars())


def wait_until(condition, deadline: float, interval: float = 0.05, what: str = "condition") -> Any:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {deadline}s waiting for {what}")


def _mid_send(db: Any, studio: Studio, pool: Workers, provider: LoopbackProvider) -> dict[str, dict[str, str]]:
    """Live workers whose send the provider has received and not yet answered."""
    received = provider.counts()
    busy = sending_by(db, studio.tenant_id).items()
    return {n: items for n, items in busy if n in pool.procs and any(received[k] for k in items.values())}


def _kill_mid_send(db: Any, studio: Studio, pool: Workers, victim: str, deadline: float) -> tuple[float, int]:
    """kill -9 ``victim`` (a replacement starts); the seconds until its claimed, unstarted items
    were taken by another worker (or none were left), and how many messages it left "sending"."""
    pool.kill9(victim)
    killed_at = time.monotonic()
    caught = sending_by(db, studio.tenant_id).get(victim, {})  # what it was sending when it died
    unstarted = held_by(db, victim) - set(caught)
    pool.start()
    wait_until(lambda: not (unstarted & held_by(db, victim)), deadline, what="the killed worker's items")
    return time.monotonic() - killed_at, len(caught)


@dataclass
class Result:
    seconds: float
    requests: int
    outcomes: Counter[str]
    duplicates: list[str]  # keys the provider got more than once
    unknown_received: int  # unknown messages the provider did get
    sent_not_received: list[str]  # "sent" messages the provider never got (must be none)
    takeover_seconds: list[float]  # per kill: until the victim's unstarted items were another's
    kills: int = 0
    provider_seconds: float = 0.0  # the provider's delays added up (the time one worker would need)
    caught_sending: int = 0  # messages the killed workers left "sending" when they died
    left_sending: int = 0  # messages found "sending" by another worker and made unknown
    settled_by_lookup: int = 0  # of those, settled as sent by a Twilio look-up


def run(
    db: Any,
    url: str,
    *,
    workers: int,
    messages: int,
    sms: int = 0,
    kills: int = 0,
    delay: tuple[float, float] = (0.3, 2.0),
    lease_seconds: int = 60,
    claim_lease_seconds: float = 3.0,
    deadline: float = 600.0,
) -> Result:
    """Queue the messages, run the workers (killing some with SIGKILL mid-send), report."""
    with LoopbackProvider(delay=delay) as provider, tempfile.TemporaryDirectory() as logs:
        env = worker_env(lease_seconds=lease_seconds, claim_lease_seconds=claim_lease_seconds)
        pool = Workers(url, env, Path(logs))
        takeovers: list[float] = []
        caught = 0
        try:
            for _ in range(workers):
                pool.start()
            pool.wait_started()
            start = time.monotonic()  # the workers send while the messages are queued
            studio = queue_messages(db, provider.url, messages=messages, sms=sms)
            for _ in range(kills):
                busy = wait_until(lambda: _mid_send(db, studio, pool, provider), deadline, 0.02, "a worker mid-send")
                seconds, left = _kill_mid_send(db, studio, pool, next(iter(busy)), deadline)
                takeovers.append(seconds)
                caught += left
            wait_until(lambda: in_progress(db, studio.tenant_id) == 0, deadline, interval=0.2, what="every message")
            seconds = time.monotonic() - start
        finally:
            pool.stop()
        counts, provider_seconds = provider.counts(), provider.busy_seconds
        final = rows(db, studio.tenant_id)
    keys = {r["id"]: (r["id"] if r["channel"] == "whatsapp" else r["body"]) for r in final}
    return Result(
        seconds=seconds,
        requests=sum(counts.values()),
        outcomes=Counter(r["status"] for r in final),
        duplicates=sorted(k for k, n in counts.items() if n > 1),
        unknown_received=sum(1 for r in final if r["status"] == "unknown" and counts[keys[r["id"]]]),
        sent_not_received=sorted(r["id"] for r in final if r["status"] == "sent" and not counts[keys[r["id"]]]),
        takeover_seconds=takeovers,
        kills=kills,
        provider_seconds=provider_seconds,
        caught_sending=caught,
        left_sending=sum(1 for r in final if SENDER_STOPPED in _events(r, "error")),
        settled_by_lookup=sum(1 for r in final if "look-up" in _events(r, "by")),
    )


def _events(row: dict[str, Any], key: str) -> list[Any]:
    return [e.get(key) for e in (row["detail"] or {}).get("deliveryEvents") or []]


def report(dialect: str, args: argparse.Namespace, r: Result) -> str:
    total = args.messages + args.sms
    takeover = f", killed worker's unstarted items taken after max {max(r.takeover_seconds):.1f} s" if r.kills else ""
    return (
        f"[{dialect}] {args.workers} workers (lease {args.lease} s), {total} messages ({args.sms} SMS), "
        f"{r.kills} kill -9: "
        f"{r.requests} provider requests, {len(r.duplicates)} sent twice, "
        f"outcomes {dict(sorted(r.outcomes.items()))}, {r.unknown_received} of the unknown reached the provider, "
        f"{len(r.sent_not_received)} 'sent' never reached it, {r.left_sending} left sending by a killed worker "
        f"({r.settled_by_lookup} settled by a Twilio look-up); "
        f"{r.seconds:.1f} s ({total / r.seconds:.1f} messages/s; the provider's delays add up to "
        f"{r.provider_seconds:.0f} s, {r.provider_seconds / args.workers:.1f} s per worker){takeover}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--messages", type=int, default=200)
    p.add_argument("--sms", type=int, default=0, help="Twilio SMS besides the WhatsApp messages")
    p.add_argument("--kills", type=int, default=0, help="kill -9 a worker mid-send this many times")
    p.add_argument("--delay", type=float, nargs=2, default=(0.3, 2.0), metavar=("LOW", "HIGH"))
    p.add_argument("--lease", type=int, default=60, help="STUDIO_LEASE_SECONDS of the workers (default 60)")
    p.add_argument("--claim-lease", type=float, default=10.0, help="STUDIO_CLAIM_LEASE_SECONDS (default 10)")
    p.add_argument("--database-url", default="", help="a PostgreSQL server URL (a scratch database is made)")
    args = p.parse_args(argv)
    from bench.run import _postgres_scratch

    with tempfile.TemporaryDirectory() as tmp:
        admin = name = None
        url = f"sqlite:///{tmp}/bench.db"
        if args.database_url.startswith(("postgres://", "postgresql")):
            admin, name, url = _postgres_scratch(args.database_url)
        db = get_engine(url)
        try:
            migrate(db)
            result = run(
                db,
                url,
                workers=args.workers,
                messages=args.messages,
                sms=args.sms,
                kills=args.kills,
                delay=tuple(args.delay),
                lease_seconds=args.lease,
                claim_lease_seconds=args.claim_lease,
            )
            print(report(db.dialect.name, args, result))
        finally:
            db.dispose()
            if admin is not None:
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
