"""Backups while events are being ingested, on SQLite and PostgreSQL: the copy restores, holds
every row committed before it began, and is consistent (no execution without its event)."""

from __future__ import annotations

import threading
import uuid

import pytest
import sqlalchemy as sa

from engine import services
from engine.lifecycle.backup import BackupFailed, backup, restore_postgres
from engine.runner import Runner
from engine.security.auth import system_actor
from engine.store.db import get_engine
from engine.store.models import SQLModel
from engine.uow import unit_of_work
from tests.conftest import PG_ADMIN_URL

REPLY = {
    "name": "Reply",
    "trigger": {"type": "whatsapp_message", "config": {}},
    "conditions": [],
    "actions": [{"id": "r", "type": "send_whatsapp", "config": {"message": "Hallo {{trigger.content}}"}}],
}


def ids(engine, table: str) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.text(f"SELECT id FROM {table}")).scalars())


class Ingesting:
    """Threads that ingest events until stopped."""

    def __init__(self, db, tenant_id: str, threads: int = 2) -> None:
        self.stop, self.count, self.errors = threading.Event(), [0], []
        runner = Runner(db)

        def loop(n: int) -> None:
            i = 0
            while not self.stop.is_set():
                try:
                    runner.ingest(
                        tenant_id,
                        {
                            "triggerType": "whatsapp_message",
                            "channel": "whatsapp",
                            "from": "+4915112345678",
                            "content": f"t{n}-{i}",
                        },
                    )
                    self.count[0] += 1
                except Exception as exc:  # noqa: BLE001 - reported by the test
                    self.errors.append(exc)
                i += 1

        self.threads = [threading.Thread(target=loop, args=(n,), daemon=True) for n in range(threads)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


def restored_engine(db, path, request):
    if db.dialect.name == "sqlite":
        return get_engine(f"sqlite:///{path}")
    admin = sa.create_engine(
        PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    name = f"sa_restore_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    restore_postgres(url, path)

    def drop():
        get_engine(url).dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    request.addfinalizer(drop)
    return get_engine(url)


def test_backup_while_ingesting_restores_every_row(db, tenant_factory, tmp_path, request):
    tenant = tenant_factory()
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=system_actor(tenant.id), data=REPLY)
    runner = Runner(db)
    for i in range(20):
        runner.ingest(
            tenant.id,
            {
                "triggerType": "whatsapp_message",
                "channel": "whatsapp",
                "from": "+4915112345678",
                "content": f"before {i}",
            },
        )
    target = tmp_path / "studio-backup.db"
    with Ingesting(db, tenant.id) as ingest:
        while ingest.count[0] < 10:  # ingest is running
            threading.Event().wait(0.01)
        before = {t: ids(db, t) for t in ("events", "executions", "step_runs", "outbox_messages")}
        result = backup(db, target)
        during = ingest.count[0]
    assert not ingest.errors and during >= 10
    assert result.bytes > 0 and target.exists()
    copy = restored_engine(db, target, request)
    after = {t: ids(db, t) for t in before}
    for table, rows in before.items():
        restored = ids(copy, table)
        assert rows <= restored, f"{table}: {len(rows - restored)} rows committed before the backup are missing"
        assert restored <= after[table]
    with copy.connect() as conn:
        # Consistent: every execution has its event, every message its execution.
        assert (
            conn.execute(
                sa.text("SELECT count(*) FROM executions e LEFT JOIN events v ON v.id = e.event_id WHERE v.id IS NULL")
            ).scalar()
            == 0
        )
        assert (
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM outbox_messages m LEFT JOIN executions e ON e.id = m.execution_id "
                    "WHERE e.id IS NULL"
                )
            ).scalar()
            == 0
        )
        # Every table of the schema is there, with the same tenants and workflows.
        tables = set(sa.inspect(conn).get_table_names())
        assert {t.name for t in SQLModel.metadata.sorted_tables} <= tables
        assert conn.execute(sa.text("SELECT count(*) FROM workflows")).scalar() == 1
    copy.dispose()


def test_backup_never_overwrites_by_accident(sqlite_db, tmp_path):
    target = tmp_path / "b.db"
    target.write_text("keep me")
    with pytest.raises(BackupFailed, match="exists already"):
        backup(sqlite_db, target)
    assert target.read_text() == "keep me"
    with pytest.raises(BackupFailed, match="not a directory"):
        backup(sqlite_db, tmp_path / "missing" / "b.db")
