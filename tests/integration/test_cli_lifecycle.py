"""``python -m engine contact export|erase``, ``backup`` and ``prune`` as real processes."""

from __future__ import annotations

import json

from engine import services
from engine.runner import Runner
from engine.security.auth import system_actor
from engine.uow import unit_of_work
from tests.integration.test_cli import run_cli, url_of

PHONE = "+4915112345678"
REPLY = {
    "name": "Reply",
    "trigger": {"type": "whatsapp_message", "config": {}},
    "conditions": [],
    "actions": [{"id": "r", "type": "send_whatsapp", "config": {"message": "Du schriebst: {{trigger.content}}"}}],
}


def seeded(db, tenant_factory):
    tenant = tenant_factory("cli-studio")
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=system_actor(tenant.id), data=REPLY)
    Runner(db).ingest(
        tenant.id,
        {"triggerType": "whatsapp_message", "channel": "whatsapp", "from": PHONE, "content": "Mein Knie tut weh"},
    )
    return tenant


def test_contact_export_then_erase(db, tenant_factory, tmp_path):
    seeded(db, tenant_factory)
    out = tmp_path / "erika.json"
    r = run_cli(
        "contact",
        "export",
        "--tenant",
        "cli-studio",
        "--phone",
        "0151 12345678",
        "--out",
        str(out),
        database_url=url_of(db),
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert doc["contact"]["value"] == PHONE and "Mein Knie tut weh" in out.read_text()
    r = run_cli("contact", "erase", "--tenant", "cli-studio", "--phone", PHONE, database_url=url_of(db))
    assert r.returncode == 2 and "--yes" in r.stderr  # nothing erased without confirmation
    r = run_cli("contact", "erase", "--tenant", "cli-studio", "--phone", PHONE, "--yes", database_url=url_of(db))
    assert r.returncode == 0, r.stderr
    assert "erased (" in r.stdout and "events 1" in r.stdout and "contact hash" in r.stdout
    r = run_cli("contact", "export", "--tenant", "cli-studio", "--phone", PHONE, database_url=url_of(db))
    assert "Knie" not in r.stdout and json.loads(r.stdout)["counts"]["events"] == 0


def test_contact_needs_one_valid_contact(db, tenant_factory):
    seeded(db, tenant_factory)
    r = run_cli("contact", "export", "--tenant", "cli-studio", "--phone", "12", database_url=url_of(db))
    assert r.returncode == 1 and "phone:" in r.stderr
    r = run_cli(
        "contact", "export", "--tenant", "cli-studio", "--phone", PHONE, "--email", "a@b.de", database_url=url_of(db)
    )
    assert r.returncode == 2 and "not allowed with" in r.stderr


def test_backup_and_prune(sqlite_db, tmp_path):
    db = sqlite_db
    with unit_of_work(db) as uow:
        services.create_tenant(uow=uow, slug="b", name="B")
    target = tmp_path / "copy.db"
    r = run_cli("backup", str(target), database_url=url_of(db))
    assert r.returncode == 0, r.stderr
    assert "backup written" in r.stdout and target.stat().st_size > 0
    r = run_cli("backup", str(target), database_url=url_of(db))
    assert r.returncode == 1 and "exists already" in r.stderr
    r = run_cli("prune", database_url=url_of(db))
    assert r.returncode == 0 and "details removed: none" in r.stdout
