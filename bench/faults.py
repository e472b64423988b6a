"""Faults under load: ``python -m bench.faults disk|kill-api|kill-workers|lock|all``.

Every run uses real processes (``python -m engine api`` and ``python -m engine worker``) and
real HTTP on 127.0.0.1; it prints figures and checks, never asserts a speed:

* ``disk``: SQLite on a small filesystem of its own (``--fs tmpfs``, or ``ext4`` on a loop
  image), created and removed here (root only). API + worker under event load; a filler takes
  the rest of the volume (and whatever is freed, like a runaway log), then is deleted: did
  the studio recover by itself, how many answers
  were 500 rather than 503, how large the WAL grew, was every acknowledged event kept.
* ``kill-api``: events with idempotency keys from 8 connections; the API is killed with
  SIGKILL once 4,000 are acknowledged and started again; the clients resend what was not
  acknowledged. Lost (acknowledged but not stored, or without its execution) and duplicated
  (an event or execution twice) counts, on SQLite and PostgreSQL.
* ``kill-workers``: 1,600 executions wait 2 s then send two messages; two workers are killed
  with SIGKILL three times while they resume them. Lost (not finished) and duplicated (a step
  or message twice) counts.
* ``lock``: another process holds the write lock (SQLite ``BEGIN IMMEDIATE``; PostgreSQL
  ``LOCK TABLE ... IN EXCLUSIVE MODE``) for ``--hold`` seconds: status and answer time of
  REST writes, the events fast path, a signed WhatsApp webhook and ``/api/health``.

PostgreSQL runs on a throw-away database next to ``DATABASE_URL`` or ``TEST_POSTGRES_URL``
(default ``postgresql://postgres@127.0.0.1:5432/postgres``); ``--no-postgres`` skips them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from cryptography.fernet import Fernet

from bench.run import _postgres_scratch
from engine import services
from engine.inbound.signatures import meta_signature
from engine.security.auth import system_actor
from engine.store.db import get_engine, migrate, reader
from engine.uow import unit_of_work

ROOT = Path(__file__).resolve().parents[1]
PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"
APP_SECRET = "bench-meta-app-secret"
WORKFLOW = {
    "name": "Reply",
    "trigger": {"type": "whatsapp_message", "config": {}},
    "conditions": [],
    "actions": [{"id": "send-1", "type": "send_whatsapp", "config": {"message": "Hi {{trigger.from}}!"}}],
}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- processes


class Proc:
    """``python -m engine --database-url URL <args>`` in its own process group; log kept in a file."""

    def __init__(self, url: str, args: list[str], env: dict[str, str], log_dir: str, name: str) -> None:
        self.url, self.args, self.env, self.name = url, args, env, name
        self.log_path = Path(log_dir) / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> Proc:
        self.starts += 1
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | self.env
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "engine", "--database-url", self.url, *self.args],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill9()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Api(Proc):
    def __init__(self, url: str, env: dict[str, str], log_dir: str, workers: int = 1) -> None:
        self.port = _free_port()
        argv = ["api", "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers)]
        super().__init__(url, argv, env, log_dir, "api")
        self.base = f"http://127.0.0.1:{self.port}"

    def start(self) -> Api:
        super().start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"the API server exited: {self.log()[-2000:]}")
            try:
                httpx.get(f"{self.base}/api/health", timeout=1)
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("the API server did not answer within 60 seconds")


def worker(url: str, env: dict[str, str], log_dir: str, name: str) -> Proc:
    return Proc(url, ["worker", "--name", name], env, log_dir, name)


# --------------------------------------------------------------------------- a studio


@dataclass
class Studio:
    tenant_id: str
    secret: str
    hook_id: str


def prepare(url: str, *, whatsapp: bool = False) -> Studio:
    """A migrated database with one studio, the reply workflow and an editor key (and, with
    ``whatsapp``, a WhatsApp channel whose app secret signs webhooks; needs STUDIO_SECRET_KEY)."""
    db = get_engine(url)
    migrate(db)
    with unit_of_work(db) as uow:
        tenant = services.create_tenant(uow=uow, slug=f"faults-{uuid.uuid4().hex[:6]}", name="Faults")
    actor = system_actor(tenant.id)
    hook_id = ""
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=actor, data=WORKFLOW)
        _, secret = services.create_api_key(uow=uow, actor=actor, name="faults", role="editor")
    if whatsapp:
        from engine.services import channel_settings as cs

        with unit_of_work(db) as uow:
            cs.save_channel(
                uow=uow,
                actor=actor,
                channel="whatsapp",
                enabled=True,
                values={"phoneNumberId": "1055"},
                secrets={"accessToken": "bench-token", "appSecret": APP_SECRET, "verifyToken": "bench"},
            )
        with unit_of_work(db) as uow:
            hook_id = cs.webhook_id(uow=uow, actor=actor)
    db.dispose()
    return Studio(tenant.id, secret, hook_id)


def event_body(key: str) -> dict:
    return {
        "triggerType": "whatsapp_message",
        "content": f"Hallo {key}",
        "from": "+4915112345678",
        "idempotencyKey": key,
    }


# --------------------------------------------------------------------------- load


@dataclass
class Answer:
    at: float
    status: int  # 0: no answer (connection refused, reset, timed out)
    seconds: float


@dataclass
class Load:
    """Events with keys ``<prefix>-0, -1, ...`` from ``connections`` keep-alive connections, in a
    thread of its own. A key is sent again until it is acknowledged (2xx); ``total`` bounds the
    keys (None: new keys until :meth:`stop`). ``pause`` seconds between a connection's requests."""

    port: int
    secret: str
    connections: int = 8
    total: int | None = None
    pause: float = 0.0
    prefix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    acked: set[int] = field(default_factory=set)
    answers: list[Answer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._next = 0
        self._retry: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> Load:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def key(self, i: int) -> str:
        return f"{self.prefix}-{i}"

    def statuses(self, since: float = 0.0, until: float = float("inf")) -> Counter[int]:
        return Counter(a.status for a in list(self.answers) if since <= a.at < until)

    def done(self) -> bool:
        return self.total is not None and len(self.acked) >= self.total

    def _take(self) -> int | None:
        if self._retry:
            return self._retry.pop(0)
        if self.total is not None and self._next >= self.total:
            return None
        self._next += 1
        return self._next - 1

    async def _run(self) -> None:
        await asyncio.gather(*(self._connection() for _ in range(self.connections)))

    async def _connection(self) -> None:
        writer = reader = None
        while not self._stop.is_set() and not self.done():
            i = self._take()
            if i is None:
                await asyncio.sleep(0.01)
                continue
            start = time.monotonic()
            status = 0
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                assert reader is not None
                writer.write(self._request(i))
                status, close = await asyncio.wait_for(_read_status(reader), timeout=120)
                if close:  # the server asked for a new connection (its answer to an unexpected error)
                    writer.close()
                    writer = reader = None
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                if writer is not None:
                    writer.close()
                writer = reader = None
            now = time.monotonic()
            self.answers.append(Answer(now, status, now - start))
            if 200 <= status < 300:
                self.acked.add(i)
            else:
                self._retry.append(i)
                await asyncio.sleep(0.05)
            if self.pause:
                await asyncio.sleep(self.pause)
        if writer is not None:
            writer.close()

    def _request(self, i: int) -> bytes:
        body = json.dumps(event_body(self.key(i))).encode()
        head = (
            "POST /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {self.secret}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body


async def _read_status(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """The status of the next answer and whether the server closes the connection after it."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length, close = 0, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            close = value.strip().lower() == b"close"
    if length:
        await reader.readexactly(length)
    return status, close


def wait_until(condition, deadline: float, interval: float = 0.05) -> bool:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())


def event_check(url: str, tenant_id: str, keys: list[str], acked: list[str]) -> dict[str, int]:
    """Lost: an acknowledged key without its event or its execution; duplicated: a key or an
    event with more than one row; stuck: executions not finished."""
    db = get_engine(url)
    with db.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT e.idempotency_key, count(DISTINCT e.id), count(x.id) FROM events e "
                "LEFT JOIN executions x ON x.event_id = e.id WHERE e.tenant_id = :t GROUP BY e.idempotency_key"
            ),
            {"t": tenant_id},
        ).all()
        stuck = conn.execute(
            sa.text("SELECT count(*) FROM executions WHERE tenant_id = :t AND status NOT IN ('succeeded', 'failed')"),
            {"t": tenant_id},
        ).scalar()
    found = {k: (n, x) for k, n, x in rows}
    lost = sum(1 for k in acked if k not in found or found[k][1] == 0)
    duplicated = sum(1 for n, x in found.values() if n > 1 or x > 1)
    return {
        "acknowledged": len(acked),
        "stored": len(found),
        "lost": lost,
        "duplicated": duplicated,
        "stuck": int(stuck or 0),
        "unknown": sum(1 for k in found if k not in set(keys)),
    }


# --------------------------------------------------------------------------- disk


@contextlib.contextmanager
def small_volume(size_mb: int, fs: str):
    """A fresh ``size_mb`` filesystem mounted on a temporary folder (removed afterwards)."""
    if os.geteuid() != 0:
        raise PermissionError("mounting a small filesystem needs root")
    top = tempfile.mkdtemp(prefix="studio-disk-")
    mnt, image = os.path.join(top, "mnt"), os.path.join(top, "volume.img")
    os.mkdir(mnt)
    try:
        if fs == "tmpfs":
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", mnt], check=True)
        else:
            with open(image, "wb") as f:
                f.truncate(size_mb * 1024 * 1024)
            subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", image], check=True)
            subprocess.run(["mount", "-o", "loop", image, mnt], check=True)
        try:
            yield mnt
        finally:
            subprocess.run(["umount", "-l", mnt], check=False)
    finally:
        shutil.rmtree(top, ignore_errors=True)


class Filler(threading.Thread):
    """A runaway file: takes every free byte of its filesystem, and keeps taking whatever is
    freed (every 10 ms) until :meth:`stop`, which deletes it."""

    def __init__(self, path: str) -> None:
        super().__init__(daemon=True)
        self.path, self.size, self.finished = path, 0, threading.Event()
        self.full = threading.Event()

    def run(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            while not self.finished.is_set():
                for block in (1 << 20, 1 << 12, 512):
                    chunk = b"\0" * block
                    while not self.finished.is_set():
                        try:
                            self.size += os.write(fd, chunk)
                        except OSError:
                            break
                self.full.set()
                self.finished.wait(0.01)
        finally:
            os.close(fd)

    def stop(self) -> int:
        self.finished.set()
        self.join()
        os.unlink(self.path)
        return self.size


class WalWatch(threading.Thread):
    """The largest size of the ``-wal`` file, sampled every 20 ms."""

    def __init__(self, db_path: str) -> None:
        super().__init__(daemon=True)
        self.path, self.largest, self.finished = db_path + "-wal", 0, threading.Event()

    def run(self) -> None:
        while not self.finished.wait(0.02):
            with contextlib.suppress(OSError):
                self.largest = max(self.largest, os.stat(self.path).st_size)

    def stop(self) -> int:
        self.finished.set()
        self.join()
        return self.largest


def disk_run(args, run: int) -> dict:
    with small_volume(args.size_mb, args.fs) as mnt, tempfile.TemporaryDirectory() as logs:
        data = os.path.join(mnt, "data")
        os.mkdir(data)
        db_path = os.path.join(data, "studio.db")
        url = f"sqlite:///{db_path}"
        env = {"STUDIO_DATA_DIR": data, "STUDIO_API_RATE_LIMIT": "0", "STUDIO_POLL_INTERVAL": "0.2"}
        env |= {k: v for k, v in os.environ.items() if k.startswith("STUDIO_SQLITE_") or k == "STUDIO_DB_LOCK_TIMEOUT"}
        os.environ.update(env)  # the preparing process runs with the servers' settings
        from engine.settings import get_settings

        get_settings.cache_clear()
        studio = prepare(url)
        api, work = Api(url, env, logs), worker(url, env, logs, "worker")
        wal = WalWatch(db_path)
        wal.start()
        load = Load(api.port, studio.secret, connections=args.connections, pause=args.pause)
        result: dict = {"run": run}
        try:
            api.start()
            work.start()
            load.start()
            wait_until(lambda: load.acked, 60)  # the server's first answers wait for its intent model
            time.sleep(args.load)
            filler = Filler(os.path.join(mnt, "filler"))
            filler.start()
            filler.full.wait(30)
            t_full = time.monotonic()
            time.sleep(args.full)
            health_full = _health(api.base)
            result["filler MB"] = round(filler.stop() / 2**20, 1)
            t_free = time.monotonic()
            ok = wait_until(
                lambda: any(a.at > t_free and 200 <= a.status < 300 for a in list(load.answers)), args.deadline
            )
            recovered_after = next(
                (a.at - t_free for a in list(load.answers) if a.at > t_free and 200 <= a.status < 300), None
            )
            time.sleep(1.0)
            health_after = _health(api.base)
            load.stop()
            during = load.statuses(t_full)
            slow = [a.seconds for a in load.answers if a.at > t_full and a.status >= 500]
            result |= {
                "recovered": ok and health_after[0] == 200,
                "recovered after s": None if recovered_after is None else round(recovered_after, 2),
                "answers while full": dict(during),
                "500s": sum(n for s, n in load.statuses().items() if s == 500),
                "slowest 5xx s": round(max(slow), 2) if slow else None,
                "health while full": health_full,
                "health after": health_after,
                "acknowledged": len(load.acked),
            }
        finally:
            load.stop()
            api.stop()
            work.stop()
            result["largest WAL MB"] = round(wal.stop() / 2**20, 1)
        with contextlib.closing(sqlite3.connect(db_path)) as conn:
            result["integrity"] = conn.execute("PRAGMA integrity_check").fetchone()[0]
        check = event_check(url, studio.tenant_id, [], [load.key(i) for i in load.acked])
        get_engine(url).dispose()
        result["lost"] = check["lost"]
        if args.verbose:
            print(api.log()[-4000:], work.log()[-4000:], sep="\n")
        return result


def _health(base: str) -> tuple[int, str]:
    try:
        r = httpx.get(f"{base}/api/health", timeout=10)
        return r.status_code, r.json().get("database", "")
    except (httpx.HTTPError, ValueError) as exc:
        return 0, exc.__class__.__name__


def cmd_disk(args) -> int:
    print(
        f"full disk: SQLite on {args.size_mb} MB {args.fs}; API + worker; {args.connections} connections of events "
        f"for {args.load:g} s, then a runaway file takes the rest (and whatever is freed) for {args.full:g} s and is "
        f"deleted; recovered = a 2xx within {args.deadline:g} s and /api/health 200"
    )
    recovered = 0
    for run in range(1, args.runs + 1):
        r = disk_run(args, run)
        recovered += bool(r.get("recovered"))
        print(json.dumps(r), flush=True)
    print(f"full-disk runs recovered: {recovered} of {args.runs}")
    return 0 if recovered == args.runs else 1


# --------------------------------------------------------------------------- kill -9


def kill_api_run(url: str, args) -> dict:
    """Events from 8 connections; SIGKILL of the API once ``--kill-at`` are acknowledged; restart; resend."""
    studio = prepare(url)
    with tempfile.TemporaryDirectory() as logs:
        api = Api(url, {"STUDIO_API_RATE_LIMIT": "0"}, logs, workers=args.api_workers if "postgres" in url else 1)
        load = Load(0, studio.secret, connections=8, total=args.events)
        try:
            api.start()
            load.port = api.port
            load.start()
            if not wait_until(lambda: len(load.acked) >= args.kill_at, 600):
                raise RuntimeError(f"only {len(load.acked)} events acknowledged")
            api.kill9()
            at_kill = len(load.acked)
            killed = time.monotonic()
            api.start()
            restarted = time.monotonic() - killed
            if not wait_until(load.done, 600):
                raise RuntimeError(f"only {len(load.acked)} of {args.events} acknowledged after the restart")
        finally:
            load.stop()
            api.stop()
    keys = [load.key(i) for i in range(args.events)]
    check = event_check(url, studio.tenant_id, keys, [load.key(i) for i in load.acked])
    return check | {
        "killed at": at_kill,
        "restarted in s": round(restarted, 1),
        "no answer": sum(1 for a in load.answers if a.status == 0),
        "5xx": sum(1 for a in load.answers if a.status >= 500),
    }


def kill_api_line(label: str, args, r: dict) -> str:
    return (
        f"[{label}] kill -9 of the API at {r['killed at']:,} acknowledged events "
        f"(restarted in {r['restarted in s']} s), {args.events:,} sent with idempotency keys, "
        f"unacknowledged ones resent: requests that got no answer (server down) {r['no answer']}, "
        f"5xx {r['5xx']}; stored {r['stored']:,}, lost {r['lost']}, duplicated {r['duplicated']}, "
        f"executions not finished {r['stuck']}"
    )


def wait_then_send(delay_ms: int) -> dict:
    return {
        "name": "Wait then send",
        "trigger": {"type": "whatsapp_message", "config": {}},
        "conditions": [],
        "actions": [
            {"id": "wait-1", "type": "wait", "config": {"delay": delay_ms}},
            {"id": "send-1", "type": "send_whatsapp", "config": {"message": "A {{trigger.content}}"}},
            {"id": "send-2", "type": "send_whatsapp", "config": {"message": "B {{trigger.content}}"}},
        ],
    }


def kill_workers_run(url: str, args) -> dict:
    """``--due`` executions wait 2 s; two workers are killed with SIGKILL ``--kills`` times while resuming them."""
    from engine.runner import Runner

    db = get_engine(url)
    migrate(db)
    with unit_of_work(db) as uow:
        tenant = services.create_tenant(uow=uow, slug=f"kill-{uuid.uuid4().hex[:6]}", name="Kill")
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=system_actor(tenant.id), data=wait_then_send(2000))
    runner = Runner(db)
    for i in range(args.due):
        runner.ingest(tenant.id, {"triggerType": "whatsapp_message", "from": f"+49151{i:08d}", "content": f"m{i}"})
    env = {"STUDIO_LEASE_SECONDS": str(args.lease), "STUDIO_POLL_INTERVAL": "0.2"}
    count = sa.text("SELECT count(*) FROM executions WHERE tenant_id = :t AND status IN ('succeeded', 'failed')")

    def finished() -> int:
        with reader(db).connect() as conn:  # a deferred read: never queues behind the workers' writes
            return int(conn.execute(count, {"t": tenant.id}).scalar() or 0)

    kills: list[int] = []
    with tempfile.TemporaryDirectory() as logs:
        workers = [worker(url, env, logs, f"w{n}") for n in range(2)]
        try:
            time.sleep(2.0)  # the waits are due
            for _ in range(args.kills):
                before = finished()
                for w in workers:
                    w.start()
                wait_until(lambda before=before: finished() >= before + args.due // 10, 300, 0.01)
                for w in workers:
                    w.kill9()
                kills.append(finished())
            for w in workers:
                w.start()
            done = wait_until(lambda: finished() >= args.due, 600, 0.2)
        finally:
            for w in workers:
                w.stop()
    result = _each_ran_once(db, tenant.id, args.due)
    db.dispose()
    return result | {"kills at": kills, "all finished": done}


def kill_workers_line(label: str, args, r: dict) -> str:
    return (
        f"[{label}] {args.due:,} due waits, 2 workers killed with SIGKILL {len(r['kills at'])} times (at "
        f"{r['kills at']} finished; lease {args.lease} s): all finished {r['all finished']}; lost {r['lost']}, "
        f"duplicated {r['duplicated']} (steps run twice {r['steps twice']}, messages twice {r['messages twice']}, "
        f"runs counted twice {r['runs counted']})"
    )


def _each_ran_once(db, tenant_id: str, n: int) -> dict[str, int]:
    t = {"t": tenant_id}
    with db.connect() as conn:
        q = conn.execute
        succeeded = q(
            sa.text("SELECT count(*) FROM executions WHERE tenant_id = :t AND status = 'succeeded'"), t
        ).scalar()
        steps_twice = q(
            sa.text(
                "SELECT count(*) FROM (SELECT execution_id, action_id FROM step_runs WHERE tenant_id = :t "
                "AND status = 'succeeded' GROUP BY execution_id, action_id HAVING count(*) > 1) d"
            ),
            t,
        ).scalar()
        messages = q(sa.text("SELECT count(*) FROM outbox_messages WHERE tenant_id = :t"), t).scalar()
        distinct = q(
            sa.text(
                "SELECT count(*) FROM (SELECT DISTINCT execution_id, body FROM outbox_messages WHERE tenant_id = :t) d"
            ),
            t,
        ).scalar()
        runs = q(sa.text("SELECT coalesce(sum(run_count), 0) FROM workflows WHERE tenant_id = :t"), t).scalar()
    messages_twice = int(messages or 0) - int(distinct or 0)
    return {
        "lost": n - int(succeeded or 0) + max(0, 2 * n - int(distinct or 0)),
        "duplicated": int(steps_twice or 0) + messages_twice + max(0, int(runs or 0) - n),
        "steps twice": int(steps_twice or 0),
        "messages twice": messages_twice,
        "runs counted": max(0, int(runs or 0) - n),
    }


def _on_each_database(args, run, line) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results.append(run(f"sqlite:///{tmp}/studio.db", args))
        print(line("sqlite", args, results[-1]), flush=True)
        get_engine(f"sqlite:///{tmp}/studio.db").dispose()
    for admin, name, url in postgres_scratch(args):
        try:
            results.append(run(url, args))
            print(line("postgresql", args, results[-1]), flush=True)
        finally:
            drop(admin, name, url)
    return results


def cmd_kill_api(args) -> int:
    results = _on_each_database(args, kill_api_run, kill_api_line)
    return 0 if all(r["lost"] == 0 and r["duplicated"] == 0 for r in results) else 1


def cmd_kill_workers(args) -> int:
    results = _on_each_database(args, kill_workers_run, kill_workers_line)
    return 0 if all(r["lost"] == 0 and r["duplicated"] == 0 for r in results) else 1


# --------------------------------------------------------------------------- lock held


class LockHolder:
    """Another process's write lock, held until :meth:`release`: SQLite ``BEGIN IMMEDIATE`` on
    the file; PostgreSQL ``LOCK TABLE`` of the tables the requests write, ``IN EXCLUSIVE MODE``
    (reads go on, writes wait)."""

    TABLES = ("events", "workflows", "storage_probe")

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite"):
            self.conn: Any = sqlite3.connect(sa.engine.make_url(url).database or "", isolation_level=None)
            self.conn.execute("BEGIN IMMEDIATE")
        else:
            import psycopg

            self.conn = psycopg.connect(sa.engine.make_url(url).set(drivername="postgresql").render_as_string(False))
            self.conn.execute(f"LOCK TABLE {', '.join(self.TABLES)} IN EXCLUSIVE MODE")

    def release(self) -> None:
        self.conn.rollback() if not self.url.startswith("sqlite") else self.conn.execute("ROLLBACK")
        self.conn.close()


def whatsapp_body(msg_id: str) -> bytes:
    message = {"from": "4917612345678", "id": msg_id, "timestamp": str(int(time.time())), "type": "text"}
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"phone_number_id": "1055"},
        "contacts": [{"wa_id": "4917612345678", "profile": {"name": "Mia"}}],
        "messages": [{**message, "text": {"body": "Hallo"}}],
    }
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [{"id": "W", "changes": [{"field": "messages", "value": value}]}],
        }
    ).encode()


def storage_requests(base: str, studio: Studio) -> dict[str, Any]:
    """One request of each kind that must write: name -> a function that sends it."""
    auth = {"Authorization": f"Bearer {studio.secret}"}
    tag = uuid.uuid4().hex[:8]

    def hook() -> httpx.Response:
        body = whatsapp_body(f"wamid.{tag}-{time.monotonic_ns()}")
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": meta_signature(APP_SECRET, body)}
        return httpx.post(f"{base}/hooks/{studio.hook_id}/whatsapp", content=body, headers=headers, timeout=120)

    return {
        "POST /api/events": lambda: httpx.post(
            f"{base}/api/events", json=event_body(f"{tag}-{time.monotonic_ns()}"), headers=auth, timeout=120
        ),
        "POST /api/workflows/create": lambda: httpx.post(
            f"{base}/api/workflows/create",
            json={**WORKFLOW, "name": f"W {time.monotonic_ns()}"},
            headers=auth,
            timeout=120,
        ),
        "POST /hooks/.../whatsapp": hook,
        "GET /api/health": lambda: httpx.get(f"{base}/api/health", timeout=120),
    }


def timed(send) -> tuple[int, str | None, float]:
    start = time.monotonic()
    r = send()
    return r.status_code, r.headers.get("retry-after"), time.monotonic() - start


def lock_run(url: str, label: str, hold: float, env: dict[str, str]) -> list[str]:
    studio = prepare(url, whatsapp=True)
    lines = []
    with tempfile.TemporaryDirectory() as logs:
        api = Api(url, env, logs).start()
        try:
            requests = storage_requests(api.base, studio)
            for send in requests.values():  # warm: the key cached, the intent model trained
                send()
            holder = LockHolder(url)
            held_at = time.monotonic()
            try:
                load = Load(api.port, studio.secret, connections=8).start()
                during = {name: timed(send) for name, send in requests.items()}
                load.stop()
                held = time.monotonic() - held_at
                if held < hold:
                    time.sleep(hold - held)
            finally:
                holder.release()
            after = {name: timed(send) for name, send in requests.items()}
        finally:
            api.stop()
    for name, (status, retry, seconds) in during.items():
        lines.append(
            f"[{label}] lock held {hold:g} s: {name:<24} {status} Retry-After {retry}  answered in {seconds:5.2f} s; "
            f"after release {after[name][0]} in {after[name][2]:.2f} s"
        )
    answers = [a for a in load.answers if a.status]
    lines.append(
        f"[{label}] lock held: 8 more connections posting events meanwhile: {len(answers)} answers "
        f"{dict(Counter(a.status for a in answers))}, slowest {max(a.seconds for a in answers):.2f} s"
    )
    return lines


def cmd_lock(args) -> int:
    env = {"STUDIO_DB_LOCK_TIMEOUT": str(args.lock_timeout)} if args.lock_timeout else {}
    print(f"write lock held by another process; STUDIO_DB_LOCK_TIMEOUT={args.lock_timeout or 'default'}")
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for line in lock_run(f"sqlite:///{tmp}/studio.db", "sqlite", args.hold, env):
            print(line, flush=True)
            bad += "answered in" in line and " 503 " not in line
    for admin, name, url in postgres_scratch(args):
        try:
            for line in lock_run(url, "postgresql", args.hold, env):
                print(line, flush=True)
                bad += "answered in" in line and " 503 " not in line
        finally:
            drop(admin, name, url)
    return 1 if bad else 0


def postgres_scratch(args):
    """A throw-away PostgreSQL database (admin engine, name, url), unless --no-postgres."""
    if args.no_postgres:
        return
    base = os.environ.get("DATABASE_URL", "") or os.environ.get("TEST_POSTGRES_URL", PG_DEFAULT)
    if base.startswith(("postgres://", "postgresql")):
        yield _postgres_scratch(base.replace("postgres://", "postgresql://", 1))


def drop(admin, name: str, url: str) -> None:
    get_engine(url).dispose()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.splitlines()[0])
    p.add_argument("--verbose", action="store_true", help="print the end of the servers' logs after each disk run")
    sub = p.add_subparsers(dest="what", required=True)
    d = sub.add_parser("disk", help="full disk on a small filesystem (root)")
    d.add_argument("--runs", type=int, default=6)
    d.add_argument("--size-mb", type=int, default=30)
    d.add_argument("--fs", choices=("tmpfs", "ext4"), default="tmpfs")
    d.add_argument("--load", type=float, default=5.0, help="seconds of load before the filler")
    d.add_argument("--full", type=float, default=5.0, help="seconds the volume stays full")
    d.add_argument("--deadline", type=float, default=30.0, help="seconds to recover after the filler is deleted")
    d.add_argument("--connections", type=int, default=8)
    d.add_argument("--pause", type=float, default=0.0, help="seconds between a connection's requests")
    d.set_defaults(func=cmd_disk)
    lk = sub.add_parser("lock", help="a write lock held by another process")
    lk.add_argument("--hold", type=float, default=20.0, help="seconds the lock is held")
    lk.add_argument("--lock-timeout", type=float, default=0.0, help="STUDIO_DB_LOCK_TIMEOUT for the server")
    lk.set_defaults(func=cmd_lock)
    ka = sub.add_parser("kill-api", help="SIGKILL of the API under event load, restart, resend")
    ka.add_argument("--events", type=int, default=6000)
    ka.add_argument("--kill-at", type=int, default=4000)
    ka.add_argument("--api-workers", type=int, default=2, help="API processes on PostgreSQL")
    ka.set_defaults(func=cmd_kill_api)
    kw = sub.add_parser("kill-workers", help="SIGKILL of two workers resuming due waits")
    kw.add_argument("--due", type=int, default=1600)
    kw.add_argument("--kills", type=int, default=3)
    kw.add_argument("--lease", type=int, default=5, help="STUDIO_LEASE_SECONDS of the workers")
    kw.set_defaults(func=cmd_kill_workers)
    for sp in (lk, ka, kw):
        sp.add_argument("--no-postgres", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("STUDIO_SECRET_KEY", Fernet.generate_key().decode())
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
