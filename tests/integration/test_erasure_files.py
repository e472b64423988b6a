"""Issue 21: an erasure erases from the files, not only from the rows.

After ``contact erase`` (CLI) or ``POST /api/contacts/erase`` returns, no byte of the member's data
is in any file of the data folder (database, ``-wal``, ``-shm``, key) nor in a backup made
afterwards, in any encoding the database could have stored it in; everything the product created
there is readable by its owner only. Found on main: the phone number and texts 195 times in the
WAL right after an erasure (84 times 2.5 minutes later), and every file 0644.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from engine import services
from engine.lifecycle.backup import backup
from engine.lifecycle.privacy import erase_contact
from engine.runner import Runner
from engine.security.auth import system_actor
from engine.store.db import get_engine
from engine.uow import unit_of_work
from tests.integration.test_privacy import INTAKE, WELCOME

ROOT = Path(__file__).resolve().parents[2]

#: The member to erase: words with non-ASCII letters (stored as UTF-8, or \\u-escaped in JSON), a long
#: text that spills into overflow pages, a name, an address and a number.
MEMBER = {
    "phone": "+4915112345678",
    "name": "Erika Quängelbaum",
    "email": "erika.quaengel@example.de",
    "texts": ["Mein Knie schmerzt seit dem Lauf am Müggelsee", "Kennwort Zyxquorbel " * 300],
}
NEEDLES = ["Müggelsee", "Zyxquorbel", "Quängelbaum", "erika.quaengel@example.de", "4915112345678", "1511 2345678"]
#: Another member of the same studio, who keeps everything: the search must find them.
OTHER = {"phone": "+4917099887766", "name": "Max Flimmerquast", "email": "max@example.de", "texts": ["Probestunde?"]}
#: A third member, erased through the REST API.
THIRD = {"phone": "+4915255544433", "name": "Jana Klapperschlange", "email": "jana@example.de", "texts": ["Hallo"]}


def forms(text: str) -> set[bytes]:
    """``text`` as a database could hold it: UTF-8, UTF-16 (both byte orders), JSON-escaped."""
    escaped = json.dumps(text)[1:-1]  # "M\\u00fcggelsee"; some serializers write the hex upper-case
    upper = re.sub(r"\\u([0-9a-f]{4})", lambda m: "\\u" + m.group(1).upper(), escaped)
    return {text.encode(), text.encode("utf-16-le"), text.encode("utf-16-be"), escaped.encode(), upper.encode()}


def copies(data: bytes, needles: list[str]) -> dict[str, int]:
    found = {n: sum(data.count(f) for f in forms(n)) for n in needles}
    return {n: c for n, c in found.items() if c}


def copies_in(folder: Path, needles: list[str]) -> dict[str, dict[str, int]]:
    """Every file below ``folder``, byte by byte."""
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    hits = {str(p.relative_to(folder)): copies(p.read_bytes(), needles) for p in files}
    return {name: found for name, found in hits.items() if found}


def event(member: dict, text: str) -> dict:
    return {
        "triggerType": "whatsapp_message",
        "channel": "whatsapp",
        "from": member["phone"],
        "content": text,
        "customFields": {"name": member["name"], "email": member["email"]},
    }


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --------------------------------------------------------------------------- the product as processes


@pytest.fixture
def product(tmp_path):
    """``python -m engine`` with a data folder of its own (and its own key file in it)."""
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "STUDIO_SECRET_KEY")}
    env |= {"STUDIO_DATA_DIR": str(data), "PYTHONUNBUFFERED": "1"}

    def run(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [sys.executable, "-m", "engine", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done

    run.data, run.env = data, env
    return run


@pytest.fixture
def api(product, tmp_path):
    """The REST API as a process on a free port, with an owner key of the demo studio."""
    product("init")
    for n, wf in enumerate((INTAKE, WELCOME)):
        (tmp_path / f"wf{n}.json").write_text(json.dumps(wf))
        product("import", str(tmp_path / f"wf{n}.json"), "--tenant", "demo")
    key = product("api-key", "create", "--tenant", "demo", "--name", "erasure", "--role", "owner").stdout.strip()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "api", "--port", str(port)],
        cwd=ROOT,
        env=product.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}, timeout=60)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                client.get("/api/health")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the API did not start"
                time.sleep(0.2)
        yield client
    finally:
        client.close()
        proc.terminate()
        proc.wait(30)


@pytest.mark.slow
def test_no_byte_of_an_erased_member_in_any_file_of_the_data_folder(product, api, tmp_path):
    data = product.data
    for member in (MEMBER, OTHER, THIRD):
        for text in member["texts"]:
            r = api.post("/api/events", json=event(member, text))
            assert r.status_code == 200 and r.json()["executionIds"], r.text
    assert copies_in(data, NEEDLES)  # the search finds the member before the erasure
    product("contact", "erase", "--tenant", "demo", "--phone", "0151 12345678", "--yes")
    assert copies_in(data, NEEDLES) == {}  # right after the erasure returned: database, WAL, SHM, key
    # The other member keeps everything, and the search sees it in the files.
    assert copies_in(data, ["Flimmerquast", "4917099887766"])
    product("backup", str(tmp_path / "after-cli-erasure.db"))
    assert copies((tmp_path / "after-cli-erasure.db").read_bytes(), NEEDLES) == {}
    assert copies((tmp_path / "after-cli-erasure.db").read_bytes(), ["Flimmerquast"])
    assert mode(tmp_path / "after-cli-erasure.db") == 0o600
    # The REST API's erasure, while the API keeps its connections open.
    assert copies_in(data, ["Klapperschlange", "4915255544433"])
    r = api.post("/api/contacts/erase", json={"phone": THIRD["phone"], "confirm": True})
    assert r.status_code == 200 and r.json()["erasure"]["counts"]["leads"] == 1, r.text
    assert copies_in(data, ["Klapperschlange", "4915255544433", *NEEDLES]) == {}
    product("backup", str(data / "after-erasure.db"))
    assert copies_in(data, ["Klapperschlange", "4915255544433", *NEEDLES]) == {}
    # Everything the product created is its owner's only.
    product("contact", "export", "--tenant", "demo", "--phone", OTHER["phone"], "--out", str(tmp_path / "max.json"))
    assert mode(tmp_path / "max.json") == 0o600 and "Flimmerquast" in (tmp_path / "max.json").read_text()
    assert mode(data) == 0o700
    created = {p.name: mode(p) for p in data.iterdir()}
    assert {"studio.db", "studio.db-wal", "studio.db-shm", "secret.key", "after-erasure.db"} <= set(created)
    assert created == dict.fromkeys(created, 0o600)


# --------------------------------------------------------------------------- SQLite and PostgreSQL


def _ingest(db, tenant_factory):
    tenant = tenant_factory()
    actor = system_actor(tenant.id)
    for wf in (INTAKE, WELCOME):
        with unit_of_work(db) as uow:
            services.create_workflow(uow=uow, actor=actor, data=wf)
    runner = Runner(db)
    for member in (MEMBER, OTHER):
        for text in member["texts"]:
            runner.ingest(tenant.id, event(member, text))
    return actor


def _sql_of_dump(path: Path) -> bytes:
    """A ``pg_dump --format=custom`` file as the SQL it restores (its table data is compressed)."""
    done = subprocess.run(["pg_restore", "--file=-", str(path)], capture_output=True, timeout=120, check=True)
    return done.stdout


def test_an_erasure_leaves_no_copy_in_the_database_files_or_a_later_backup(db, tenant_factory, tmp_path):
    actor = _ingest(db, tenant_factory)
    with unit_of_work(db) as uow:
        erase_contact(uow=uow, actor=actor, phone=MEMBER["phone"])
    target = tmp_path / "backup" / "after.db"
    target.parent.mkdir()
    backup(db, target)
    if db.dialect.name == "sqlite":
        folder = Path(db.url.database).parent
        assert copies_in(folder, NEEDLES) == {}
        assert copies_in(folder, ["Flimmerquast"])
        dumped = target.read_bytes()
    else:
        if shutil.which("pg_restore") is None:
            pytest.skip("pg_restore is not installed")
        # No live row holds the member (superseded row versions are VACUUM's business: README).
        with db.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM events WHERE content LIKE '%Zyxquorbel%'")).scalar() == 0
        dumped = _sql_of_dump(target)
    assert copies(dumped, NEEDLES) == {}
    assert copies(dumped, ["Flimmerquast", "4917099887766"])
    assert mode(target) == 0o600


def test_every_sqlite_connection_zeroes_what_it_frees(sqlite_db):
    """``secure_delete`` is a per-connection setting, and not every SQLite build turns it on."""
    with sqlite_db.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
    assert mode(Path(sqlite_db.url.database)) == 0o600


def test_a_new_database_file_and_its_folder_are_private(tmp_path):
    path = tmp_path / "new" / "deeper" / "studio.db"
    db = get_engine(f"sqlite:///{path}")
    try:
        with db.connect() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x)")
            conn.commit()
        assert mode(path.parent) == mode(path.parent.parent) == 0o700
        assert {p.name: mode(p) for p in path.parent.iterdir()} == {p.name: 0o600 for p in path.parent.iterdir()}
    finally:
        db.dispose()


def _write(db, n: int) -> None:
    with db.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS filler (x TEXT)")
        conn.exec_driver_sql("INSERT INTO filler VALUES " + ",".join(["('" + "y" * 500 + "')"] * n))


def test_the_wal_is_emptied_while_other_connections_checkpoint_and_read(sqlite_db):
    """A checkpoint running elsewhere (every process's background checkpointer) makes SQLite answer
    "busy" at once, without waiting: the truncation tries again; a reader is waited for."""
    import sqlite3
    import threading
    from contextlib import closing

    from engine.store.db import reader as reader_of
    from engine.store.db import truncate_wal

    path = sqlite_db.url.database
    _write(sqlite_db, 50)
    # Another process's checkpoint holds the checkpoint lock while it waits for a writer.
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO filler VALUES ('z')")


    def checkpoint_waiting_for_the_writer() -> None:
        with closing(sqlite3.connect(path, timeout=10)) as conn:
            conn.execute("PRAGMA wal_checkpoint(FULL)").fetchall()

    other = threading.Thread(target=checkpoint_waiting_for_the_writer)
    other.start()
    time.sleep(0.3)
    threading.Timer(0.5, lambda: writer.execute("COMMIT")).start()
    assert truncate_wal(sqlite_db, timeout=10) is True
    other.join()
    writer.close()
    assert Path(f"{path}-wal").stat().st_size == 0
    _write(sqlite_db, 50)
    reader = reader_of(sqlite_db).connect()
    reader.exec_driver_sql("SELECT count(*) FROM filler").scalar()  # a read transaction that uses the log
    assert truncate_wal(sqlite_db, timeout=0.3) is False  # it held on longer than allowed
    threading.Timer(0.5, reader.close).start()
    assert truncate_wal(sqlite_db, timeout=10) is True  # waited for the reader to finish
    assert Path(f"{path}-wal").stat().st_size == 0
