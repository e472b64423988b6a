"""``python -m engine start`` (what ``bash scripts/start.sh`` runs, engine/supervisor.py): the app,
the API and a worker together; one that dies is restarted, a crash loop backs off, and a SIGTERM
to the supervisor leaves no process behind. Real processes on free ports of 127.0.0.1."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from engine import services
from engine.errors import InvalidInput
from engine.security import auth
from engine.store.db import get_engine
from engine.supervisor import FIRST_DELAY, MAX_DELAY, STEADY_SECONDS, Supervisor, addresses_from_env
from engine.uow import unit_of_work
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
WAIT_THEN_SEND = {
    "name": "Wait then send",
    "trigger": {"type": "sms_received", "config": {}},
    "conditions": [],
    "actions": [
        {"id": "wait-1", "type": "wait", "config": {"delay": 1000}},
        {"id": "send-1", "type": "send_sms", "config": {"message": "Danke"}},
    ],
}


def _poll(condition, deadline: float, what: str):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {deadline}s waiting for {what}")


def _get(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None


def _children(pid: int) -> dict[str, int]:
    """The supervisor's live children by role (from /proc)."""
    out = {}
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            cmd = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        words = [w.decode() for w in cmd]
        role = "app" if "streamlit" in words else "api" if "api" in words else "worker" if "worker" in words else "?"
        out[role] = int(child)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_start_runs_app_api_and_worker_restarts_one_that_dies_and_stops_them_all(tmp_path):
    url = f"sqlite:///{tmp_path / 'studio.db'}"
    app_port, api_port = free_port(), free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "STUDIO_DATA_DIR": str(tmp_path),
        "STUDIO_PORT": str(app_port),
        "STUDIO_API_PORT": str(api_port),
        "STUDIO_POLL_INTERVAL": "0.2",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("STUDIO_API_URL", None)
    log = tmp_path / "start.log"
    with log.open("w") as out:
        sup = subprocess.Popen(
            [sys.executable, "-m", "engine", "start"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    seen: set[int] = set()
    try:
        app, api = f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{api_port}"
        _poll(lambda: _get(f"{app}/_stcore/health") == 200, 120, "the app")
        _poll(lambda: _get(f"{api}/api/health") == 200, 60, "the API")
        kids = _poll(lambda: (k := _children(sup.pid)) and len(k) == 3 and k, 30, "three children")
        seen |= set(kids.values())
        text = log.read_text()
        assert f"Open {app}" in text and f"API  {api}" in text
        # The app is told where the API is (the settings page checks it answers).
        environ = Path(f"/proc/{kids['app']}/environ").read_bytes().split(b"\0")
        assert f"STUDIO_API_URL={api}".encode() in environ

        # The worker works: an SMS through the API waits 1 s, then the worker finishes it.
        db = get_engine(url)
        with unit_of_work(db) as uow:
            owner = auth.system_actor(services.find_tenant(uow=uow, slug_or_id="demo").id)
            services.create_workflow(uow=uow, actor=owner, data=WAIT_THEN_SEND)
            _, key = services.create_api_key(uow=uow, actor=owner, name="test", role="editor")
        r = httpx.post(
            f"{api}/api/events",
            json={"triggerType": "sms_received", "channel": "sms", "from": "+4915112345678", "content": "Hallo"},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        [execution_id] = r.json()["executionIds"]

        def finished():
            with unit_of_work(db, read_only=True) as uow:
                return services.get_execution(uow=uow, actor=owner, execution_id=execution_id).status == "succeeded"

        _poll(finished, 30, "the worker to finish the wait")

        # kill -9 the API: it is restarted, with a log line, and answers again.
        os.kill(kids["api"], signal.SIGKILL)
        new = _poll(lambda: (k := _children(sup.pid)).get("api") not in (None, kids["api"]) and k, 30, "a new API")
        seen |= set(new.values())
        _poll(lambda: _get(f"{api}/api/health") == 200, 60, "the restarted API")
        assert f"api (pid {kids['api']}) was killed by SIGKILL" in log.read_text()
        assert new["app"] == kids["app"] and new["worker"] == kids["worker"]  # the others ran on

        # SIGTERM to the supervisor: every child stops, nothing answers any more.
        sup.send_signal(signal.SIGTERM)
        assert sup.wait(timeout=60) == 0
        assert not [pid for pid in seen if _alive(pid)]
        assert _get(f"{app}/_stcore/health") is None and _get(f"{api}/api/health") is None
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait()
        for pid in seen:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_crash_loop_backs_off_and_a_steady_run_resets_the_wait(caplog):
    now = [1000.0]
    sup = Supervisor({"crash": [sys.executable, "-c", "raise SystemExit(3)"]}, clock=lambda: now[0])
    [child] = sup.children
    sup.start_all()
    delays = []
    with caplog.at_level(logging.WARNING, logger="engine.supervisor"):
        for _ in range(8):
            child.proc.wait(timeout=30)
            sup.check()  # it died at once: wait longer each time
            delays.append(child.delay)
            now[0] = child.restart_at
            sup.check()  # due: started again
            assert child.restart_at is None
        child.proc.wait(timeout=30)
        now[0] += STEADY_SECONDS  # as if it had run steadily before it died
        sup.check()
    assert delays == [FIRST_DELAY * 2**n for n in range(6)] + [MAX_DELAY, MAX_DELAY]
    assert child.delay == FIRST_DELAY and child.restarts == 8
    assert "crash (pid" in caplog.text and "exited with code 3 after 0 s; restarting in 2 s" in caplog.text
    sup.stop()


def test_stop_kills_a_child_that_ignores_sigterm_after_the_grace_period(tmp_path):
    ready = tmp_path / "ready"
    ignore = (
        "import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "pathlib.Path(sys.argv[1]).touch(); time.sleep(60)"
    )
    sup = Supervisor({"stubborn": [sys.executable, "-c", ignore, str(ready)]}, grace=1.0)
    sup.start_all()
    proc = sup.children[0].proc
    _poll(ready.exists, 30, "the child to ignore SIGTERM")
    started = time.monotonic()
    sup.stop()
    assert proc.returncode == -signal.SIGKILL and time.monotonic() - started < 10


def test_bad_ports_are_refused_naming_the_variable():
    with pytest.raises(InvalidInput) as exc:
        addresses_from_env({"STUDIO_API_PORT": "80a"})
    assert exc.value.field == "STUDIO_API_PORT"
    where = addresses_from_env({"STUDIO_ADDRESS": "0.0.0.0", "STUDIO_API_PORT": "9000"})
    assert where.api_url == "http://127.0.0.1:9000" and where.app_url == "http://127.0.0.1:8501"
    done = subprocess.run(
        [sys.executable, "-m", "engine", "start"],
        cwd=ROOT,
        env={**os.environ, "STUDIO_PORT": "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "STUDIO_PORT must be a port number" in done.stderr
