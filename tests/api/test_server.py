"""``python -m engine api`` as a real process: keys from the CLI, calls over real HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from engine.demo.seed import demo_workflows

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cli(tmp_path):
    """Run ``python -m engine --database-url <tmp sqlite> ...``; ``cli.popen`` starts a long-running one."""
    url = f"sqlite:///{tmp_path / 'studio.db'}"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {"STUDIO_DATA_DIR": str(tmp_path)}
    argv = [sys.executable, "-m", "engine", "--database-url", url]

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            argv + list(args), check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )

    run.popen = lambda *args: subprocess.Popen(
        argv + list(args), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert run("init").returncode == 0
    return run


def _wait_until_up(base: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the API server exited early: {proc.stdout.read()}")
        try:
            httpx.get(f"{base}/api/health", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    pytest.fail("the API server did not answer within 30 seconds")


def test_api_key_commands_create_list_and_revoke(cli):
    created = cli("api-key", "create", "--tenant", "demo", "--name", "CRM", "--role", "editor")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert secret.startswith("sa_") and "shown only this once" in created.stderr
    listed = cli("api-key", "list", "--tenant", "demo").stdout
    assert "CRM" in listed and "editor" in listed and secret[:8] in listed and secret not in listed
    key_id = listed.split()[0]
    assert cli("api-key", "revoke", "--tenant", "demo", key_id).returncode == 0
    assert "revoked" in cli("api-key", "list", "--tenant", "demo").stdout
    missing = cli("api-key", "revoke", "--tenant", "demo", "nope")
    assert missing.returncode == 1 and "not found" in missing.stderr


@pytest.mark.slow
def test_the_real_server_answers_health_and_the_spec_list_over_http(cli):
    secret = cli("api-key", "create", "--tenant", "demo", "--name", "smoke", "--role", "analyst").stdout.strip()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = cli.popen("api", "--port", str(port))
    try:
        _wait_until_up(base, proc)
        health = httpx.get(f"{base}/api/health", timeout=5)
        assert health.status_code == 200 and health.json()["database"] == "ok"
        headers = {"Authorization": f"Bearer {secret}"}
        listed = httpx.get(f"{base}/api/workflows/list", params={"includeStats": "true"}, headers=headers, timeout=10)
        assert listed.status_code == 200, listed.text
        assert listed.json()["stats"]["totalWorkflows"] == len(demo_workflows())  # the demo studio's workflows
        assert httpx.get(f"{base}/api/workflows/list", timeout=5).status_code == 401
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        proc.stdout.close()
    assert proc.returncode is not None
