"""HTTP benchmark: ``python -m engine bench http``.

Starts ``python -m engine api`` on loopback over a fresh SQLite file (one tenant, one
workflow: keyword condition + WhatsApp reply to the outbox, every execution persisted),
drives ``POST /api/events`` from a separate process for ``--duration`` seconds at each of
``--connections`` (``wrk -t2 --latency`` when installed, else ``bench/loadgen.py``) and
prints req/s, p50, p99, errors, and a check that every acknowledged event has its
execution. Then the same on PostgreSQL (a throw-away database next to ``DATABASE_URL`` or
``TEST_POSTGRES_URL``) with 1 and ``--pg-workers`` processes, and the ratio.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import sqlalchemy as sa

from bench.run import WORKFLOW, _postgres_scratch
from engine import services
from engine.security.auth import system_actor
from engine.store.db import get_engine, migrate
from engine.uow import unit_of_work

ROOT = Path(__file__).resolve().parents[1]
BODY = {
    "triggerType": "whatsapp_message",
    "channel": "whatsapp",
    "content": "Hallo, was kostet die 10er-Karte?",
    "from": "+4915112345678",
}
WRK_SCRIPT = """wrk.method = "POST"
wrk.body = [[{body}]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {secret}"
"""


@dataclass
class Result:
    connections: int
    requests: int
    ok: int
    non2xx: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    events: int = 0
    executions: int = 0
    missing: int = 0
    #: Server CPU (user + system, every server process) per acknowledged request.
    cpu_ms: float = 0.0
    #: CPU of the load generator (wrk) per acknowledged request.
    load_cpu_ms: float = 0.0
    #: PostgreSQL: CPU of the backends serving the benchmark's database per acknowledged request
    #: (the WAL writer and checkpointer, shared with every database, are not counted).
    db_cpu_ms: float | None = None
    #: PostgreSQL: what the benchmark database's busy backends were doing, sampled every 20 ms
    #: during the load ("CPU" = active and not waiting; else the wait event), share of samples.
    db_waits: dict[str, float] | None = None

    def line(self, label: str) -> str:
        check = "ok" if self.missing == 0 and self.events >= self.ok else "FAILED"
        return (
            f"[{label}] c{self.connections:<3} {self.rps:8.0f} req/s  p50 {self.p50_ms:7.1f} ms  "
            f"p99 {self.p99_ms:7.1f} ms  "
            f"server CPU {self.cpu_ms:.2f} ms/req  wrk CPU {self.load_cpu_ms:.2f} ms/req  "
            + (f"PostgreSQL backends CPU {self.db_cpu_ms:.2f} ms/req  " if self.db_cpu_ms is not None else "")
            + f"errors {self.errors + self.non2xx:<5} acknowledged {self.ok:>7}  stored events {self.events:>7}  "
            f"executions {self.executions:>7}  events without execution {self.missing}  check {check}"
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(url: str) -> tuple[str, str]:
    """A tenant with the benchmark workflow and an editor key; returns (tenant id, secret)."""
    db = get_engine(url)
    migrate(db)
    with unit_of_work(db) as uow:
        tenant = services.create_tenant(uow=uow, slug=f"bench-{uuid.uuid4().hex[:6]}", name="Bench")
    actor = system_actor(tenant.id)
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=actor, data=WORKFLOW)
        _, secret = services.create_api_key(uow=uow, actor=actor, name="bench", role="editor")
    db.dispose()
    return tenant.id, secret


class Server:
    """``python -m engine api`` in its own process group (stopped with SIGTERM, then SIGKILL)."""

    def __init__(self, url: str, workers: int) -> None:
        self.port = _free_port()
        # One key stands in for every client here, so the per-key rate limit (issue 13, default
        # 6,000 a minute) is off: this measures what the server can ingest, not the limit.
        env = {**os.environ, "DATABASE_URL": url, "STUDIO_API_RATE_LIMIT": "0"}
        # The server's stderr goes to a file, not a pipe: nobody reads a pipe while the load runs, and a
        # full one (64 KB of warnings) blocks every thread of the server that logs.
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - open for the server's lifetime
        argv = [
            sys.executable,
            "-m",
            "engine",
            "--database-url",
            url,
            "api",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(workers),
        ]
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=self.log, text=True, start_new_session=True
        )
        self.base = f"http://127.0.0.1:{self.port}"
        self._wait(workers)

    def _wait(self, workers: int) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the API server exited: {self.stderr()}")
            try:
                if httpx.get(f"{self.base}/api/health", timeout=1).status_code == 200:
                    time.sleep(1.0 if workers > 1 else 0.2)  # let every worker process come up
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("the API server did not answer within 60 seconds")

    def stderr(self) -> str:
        """What the server wrote to stderr so far."""
        self.log.seek(0)
        return self.log.read()

    def cpu_seconds(self) -> float:
        """User + system CPU of every process of the server's group so far (Linux /proc)."""
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.proc.pid:  # process group id
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def load(base: str, secret: str, connections: int, duration: float, tool: str) -> Result:
    """Drive POST /api/events from a separate process."""
    return start_load(base, secret, connections, duration, tool).result()


class LoadRun:
    """A running load process (:func:`start_load`): ``result()`` waits for it and reads its figures; ``stop()``
    ends it early with SIGINT, after which both wrk and ``bench.loadgen`` print what they measured so far."""

    def __init__(self, argv: list[str], tool: str, connections: int, script: str | None = None) -> None:
        self.tool, self.connections, self.script = tool, connections, script
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)

    def result(self) -> Result:
        try:
            out, err = self.proc.communicate()
        finally:
            if self.script:
                os.unlink(self.script)
        if self.proc.returncode != 0:
            raise subprocess.CalledProcessError(self.proc.returncode, self.proc.args, out, err)
        if self.tool == "wrk":
            return _parse_wrk(out, self.connections)
        r = json.loads(out)
        return Result(
            self.connections, r["requests"], r["ok"], r["non2xx"], r["errors"], r["rps"], r["p50_ms"], r["p99_ms"]
        )


def start_load(base: str, secret: str, connections: int, duration: float, tool: str) -> LoadRun:
    """Start driving POST /api/events from a separate process for ``duration`` seconds (or until stopped)."""
    url = f"{base}/api/events"
    body = json.dumps(BODY)
    if tool == "wrk":
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write(WRK_SCRIPT.format(body=body, secret=secret))
        argv = [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{int(duration)}s",
            "--latency",
            "--timeout",
            "10s",
            "-s",
            f.name,
            url,
        ]
        return LoadRun(argv, tool, connections, script=f.name)
    argv = [
        sys.executable,
        "-m",
        "bench.loadgen",
        url,
        "--connections",
        str(connections),
        "--duration",
        str(duration),
        "--header",
        f"Authorization: Bearer {secret}",
        "--body",
        body,
    ]
    return LoadRun(argv, tool, connections)


def _found(pattern: str, text: str, *, full: bool = False) -> re.Match[str]:
    """The match of ``pattern`` in wrk's output; a clear error when wrk printed something else."""
    m = re.fullmatch(pattern, text) if full else re.search(pattern, text)
    if m is None:
        raise ValueError(f"wrk output has no {pattern!r}: {text[:200]!r}")
    return m


def _ms(text: str) -> float:
    value, unit = _found(r"([\d.]+)(us|ms|s|m)", text, full=True).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def _parse_wrk(out: str, connections: int) -> Result:
    requests = int(_found(r"(\d+) requests in", out).group(1))
    non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    errors = (
        sum(int(x) for x in m.groups())
        if (m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out))
        else 0
    )
    return Result(
        connections,
        requests,
        requests - non2xx,
        non2xx,
        errors,
        float(_found(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        _ms(_found(r"\s50%\s+(\S+)", out).group(1)),
        _ms(_found(r"\s99%\s+(\S+)", out).group(1)),
    )


def _proc_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _backend_cpu(url: str) -> dict[int, float] | None:
    """PostgreSQL on this machine: CPU seconds so far of each backend connected to the database of ``url``."""
    if not url.startswith("postgres"):
        return None
    db = get_engine(url)
    with db.connect() as conn:
        pids = (
            conn.execute(sa.text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")).scalars().all()
        )
    return {pid: _proc_cpu_seconds(pid) for pid in pids}


class _WaitSampler(threading.Thread):
    """PostgreSQL: samples ``pg_stat_activity`` of the benchmark database every 20 ms while the load runs."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.done = url, threading.Event()
        self.counts: Counter[str] = Counter()

    def run(self) -> None:
        db = get_engine(self.url)
        query = sa.text(
            "SELECT state, wait_event_type, wait_event FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle'"
        )
        with db.connect() as conn:
            while not self.done.wait(0.02):
                for state, kind, event in conn.execute(query):
                    label = "CPU (active, not waiting)" if state == "active" and kind is None else f"{kind}:{event}"
                    self.counts[label if state == "active" else f"{state} ({label})"] += 1
                conn.rollback()

    def shares(self) -> dict[str, float]:
        self.done.set()
        self.join()
        total = sum(self.counts.values()) or 1
        return {k: v / total for k, v in self.counts.most_common(6)}


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _counts(url: str, tenant_id: str) -> tuple[int, int, int]:
    """(events, executions, events without an execution) of the tenant."""
    db = get_engine(url)
    t = {"t": tenant_id}
    with db.connect() as conn:
        q = conn.execute
        events = q(sa.text("SELECT count(*) FROM events WHERE tenant_id = :t"), t).scalar()
        executions = q(
            sa.text("SELECT count(*) FROM executions WHERE tenant_id = :t AND status = 'succeeded'"), t
        ).scalar()
        missing = q(
            sa.text(
                "SELECT count(*) FROM events e WHERE e.tenant_id = :t AND NOT EXISTS "
                "(SELECT 1 FROM executions x WHERE x.event_id = e.id)"
            ),
            t,
        ).scalar()
    return int(events or 0), int(executions or 0), int(missing or 0)


def _warm_up(base: str, secret: str, workers: int) -> None:
    """A few events first, so every server process has its intent model trained and the key
    cached before the clock runs (a fresh process trains its model in the background)."""
    headers = {"Authorization": f"Bearer {secret}"}
    with httpx.Client(timeout=120) as client:
        for _ in range(8 * workers):
            client.post(f"{base}/api/events", json=BODY, headers=headers).raise_for_status()


def measure(url: str, *, workers: int, connections: list[int], duration: float, tool: str) -> list[Result]:
    """Fresh tenant, one server, one load run per connection count (counts checked after each)."""
    tenant_id, secret = prepare(url)
    results = []
    server = Server(url, workers)
    try:
        _warm_up(server.base, secret, workers)
        for c in connections:
            before = _counts(url, tenant_id)
            cpu, load_cpu, backends = server.cpu_seconds(), _children_cpu_seconds(), _backend_cpu(url)
            sampler = _WaitSampler(url) if backends is not None else None
            if sampler:
                sampler.start()
            r = load(server.base, secret, c, duration, tool)
            if sampler:
                r.db_waits = sampler.shares()
            r.load_cpu_ms = (_children_cpu_seconds() - load_cpu) * 1000 / max(r.ok, 1)
            time.sleep(0.5)  # requests still in flight when the load stopped
            r.cpu_ms = (server.cpu_seconds() - cpu) * 1000 / max(r.ok, 1)
            if backends is not None:
                after_backends = _backend_cpu(url) or {}
                r.db_cpu_ms = sum(v - backends.get(pid, 0.0) for pid, v in after_backends.items()) * 1000 / max(r.ok, 1)
            after = _counts(url, tenant_id)
            r.events, r.executions = after[0] - before[0], after[1] - before[1]
            r.missing = after[2]
            results.append(r)
    finally:
        server.stop()
    return results


def main(args) -> int:
    tool = "wrk" if shutil.which("wrk") and not args.python_load else "python"
    connections = [int(c) for c in str(args.connections).split(",")]
    print(
        f"load: {tool}, {args.duration:.0f} s per run; POST /api/events, one matching workflow; "
        f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for r in measure(
            f"sqlite:///{tmp}/bench.db", workers=1, connections=connections, duration=args.duration, tool=tool
        ):
            print(r.line("sqlite, 1 process"), flush=True)
            failed |= r.missing > 0 or r.events < r.ok
    pg = os.environ.get("DATABASE_URL", "") or os.environ.get(
        "TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    if args.pg_workers and pg.startswith(("postgres://", "postgresql")):
        rates = {}
        for workers in sorted({1, args.pg_workers}):
            admin, name, scratch = _postgres_scratch(pg)
            try:
                for r in measure(scratch, workers=workers, connections=connections, duration=args.duration, tool=tool):
                    print(r.line(f"postgresql, {workers} process{'es' if workers > 1 else ''}"), flush=True)
                    print(
                        "    busy PostgreSQL backends: "
                        + ", ".join(f"{k} {v:.0%}" for k, v in (r.db_waits or {}).items())
                    )
                    failed |= r.missing > 0 or r.events < r.ok
                    rates[(workers, r.connections)] = r.rps
            finally:
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                admin.dispose()
        for c in connections:
            if (args.pg_workers, c) in rates and args.pg_workers > 1:
                print(
                    f"[postgresql] c{c}: {args.pg_workers} processes / 1 process = "
                    f"{rates[(args.pg_workers, c)] / rates[(1, c)]:.2f}x"
                )
    return 1 if failed else 0
