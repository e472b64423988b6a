"""Issue 13: ``python -m engine tenant create / list`` (set-up without Python)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _cli(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        # The session's key (tests/conftest.py), so the checkout's data/secret.key is never made.
        env={"DATABASE_URL": url, "PATH": "/usr/bin:/bin", "STUDIO_SECRET_KEY": os.environ["STUDIO_SECRET_KEY"]},
        timeout=120,
    )


def test_tenant_create_and_list(db):
    url = db.url.render_as_string(hide_password=False)
    made = _cli(url, "tenant", "create", "--slug", "yoga-nord", "--name", "Yoga Nord", "--timezone", "Europe/Vienna")
    assert made.returncode == 0, made.stderr
    assert "created tenant yoga-nord" in made.stdout and "api-key create --tenant yoga-nord" in made.stderr
    listed = json.loads(_cli(url, "tenant", "list", "--json").stdout)
    assert [(t["slug"], t["name"], t["timezone"]) for t in listed] == [("yoga-nord", "Yoga Nord", "Europe/Vienna")]
    assert "yoga-nord" in _cli(url, "tenant", "list").stdout
    key = _cli(url, "api-key", "create", "--tenant", "yoga-nord", "--name", "crm", "--role", "owner")
    assert key.returncode == 0 and key.stdout.strip().startswith("sa_")


def test_tenant_create_refuses_bad_input_with_a_clear_message(db):
    url = db.url.render_as_string(hide_password=False)
    assert _cli(url, "tenant", "create", "--slug", "dup", "--name", "A").returncode == 0
    cases = [
        (["--slug", "dup", "--name", "B"], "already exists"),
        (["--slug", "Bad Slug", "--name", "B"], "slug"),
        (["--slug", "ok", "--name", " "], "name"),
        (["--slug", "ok", "--name", "B", "--timezone", "Mars/Base"], "timezone"),
    ]
    for args, words in cases:
        r = _cli(url, "tenant", "create", *args)
        assert r.returncode == 1 and words in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    assert [t["slug"] for t in json.loads(_cli(url, "tenant", "list", "--json").stdout)] == ["dup"]
