"""``python -m engine api --workers N``: several processes on PostgreSQL, one on SQLite (refused
with the reason), and revocation reaching every process within the key-cache bound."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from engine import services
from engine.api.serve import server_options
from engine.security.auth import system_actor
from engine.uow import unit_of_work
from tests.api.test_server import _free_port, _wait_until_up

ROOT = Path(__file__).resolve().parents[2]
EVENT = {"triggerType": "whatsapp_message", "channel": "whatsapp", "content": "Hallo", "from": "+4915112345678"}


def _start(url: str, *args: str, cache_seconds: float = 5.0) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {
        "STUDIO_API_KEY_CACHE_SECONDS": str(cache_seconds)
    }
    return subprocess.Popen(
        [sys.executable, "-m", "engine", "--database-url", url, "api", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    proc.stdout.close()


def test_the_server_uses_the_c_parser_and_uvloop_and_no_access_log():
    assert server_options() == {"access_log": False, "timeout_keep_alive": 30, "http": "httptools", "loop": "uvloop"}


def test_several_processes_on_sqlite_are_refused_with_the_reason(tmp_path):
    proc = _start(f"sqlite:///{tmp_path / 'studio.db'}", "--workers", "2", "--port", str(_free_port()))
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "--workers above 1 needs PostgreSQL" in out and "Run one process on SQLite" in out


@pytest.mark.postgres
@pytest.mark.slow
def test_two_processes_on_postgresql_serve_events_and_honour_revocation(postgres_db):
    db = postgres_db
    with unit_of_work(db) as uow:
        tenant = services.create_tenant(uow=uow, slug="workers", name="Workers")
    actor = system_actor(tenant.id)
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data={
                "name": "Reply",
                "trigger": {"type": "whatsapp_message", "config": {}},
                "actions": [
                    {"id": "send-1", "type": "send_whatsapp", "config": {"message": "Hi"}, "nextActionId": None}
                ],
            },
        )
    with unit_of_work(db) as uow:
        key, secret = services.create_api_key(uow=uow, actor=actor, name="CRM", role="editor")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _start(
        db.url.render_as_string(hide_password=False), "--workers", "2", "--port", str(port), cache_seconds=1.0
    )
    try:
        _wait_until_up(base, proc)
        headers = {"Authorization": f"Bearer {secret}"}
        with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
            # New connections each time, so both processes get requests (the kernel spreads them).
            ids = []
            for _ in range(20):
                r = httpx.post(f"{base}/api/events", json=EVENT, headers=headers, timeout=10)
                assert r.status_code == 200, r.text
                ids += r.json()["executionIds"]
            assert len(ids) == 20
            _spread_over_both_processes(base, headers, proc.pid, port)
            with unit_of_work(db, read_only=True) as uow:
                assert all(
                    services.get_execution(uow=uow, actor=actor, execution_id=i).status == "succeeded" for i in ids
                )
            with unit_of_work(db) as uow:
                services.revoke_api_key(
                    uow=uow, actor=actor, key_id=key.id
                )  # in this process: the servers only see the database
            time.sleep(1.5)  # the cache bound the servers were started with
            for _ in range(10):
                r = httpx.post(f"{base}/api/events", json=EVENT, headers=headers, timeout=10)
                assert r.status_code == 401
            assert client.get("/api/health").status_code == 200
    finally:
        _stop(proc)


def _spread_over_both_processes(base: str, headers: dict, group: int, port: int) -> None:
    """A burst of 64 connections, opened at once as a load generator opens them, lands on both
    processes. (Connections complete in the kernel before any process accepts them; with one
    shared listening socket the first process to wake took nearly all of such a burst.)"""
    conns = [socket.socket() for _ in range(64)]
    try:
        for conn in conns:  # non-blocking: the whole burst is in the kernel within a millisecond
            conn.setblocking(False)
            conn.connect_ex(("127.0.0.1", port))
        for conn in conns:
            conn.settimeout(10)
            conn.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert all(conn.recv(64).startswith(b"HTTP/1.1 200") for conn in conns)
        per_process = _established_per_process(group, port)
        assert len(per_process) == 2 and min(per_process.values()) >= 12, per_process
    finally:
        for conn in conns:
            conn.close()


def _established_per_process(group: int, port: int) -> Counter:
    """Established connections to ``port`` by server process of the process group (Linux /proc)."""
    owner = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) != group:
                continue
            for fd in (stat.parent / "fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:["):
                    owner[int(link[8:-1])] = stat.parent.name
        except OSError:
            continue
    found: Counter = Counter()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port, state, inode = int(fields[1].rsplit(":", 1)[1], 16), fields[3], int(fields[9])
            if local_port == port and state == "01" and inode in owner:  # 01: ESTABLISHED
                found[owner[inode]] += 1
    return found
