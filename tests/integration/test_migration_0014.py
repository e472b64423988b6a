"""Migration 0014 repairs the messages the old worker left pending for ever: a message whose
deliver item had failed (five attempts, or HTTP 401 at once) becomes failed with the item's
error, and the Insights rollups move with it. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command

from engine.store import rollups
from engine.store.db import alembic_config
from engine.store.models import DueWork, OutboxMessage, new_id

AT = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def _alembic(db, action, revision: str) -> None:
    cfg = alembic_config(db.url.render_as_string(hide_password=False))
    with db.begin() as conn:
        cfg.attributes["connection"] = conn
        action(cfg, revision)


def test_messages_left_pending_by_a_failed_delivery_become_failed(db, tenant):
    _alembic(db, command.downgrade, "0011")
    try:
        # Only columns that exist at 0011 (the model tables' JSON types serialise the payloads).
        outbox, due = OutboxMessage.__table__, DueWork.__table__
        stuck, fine = new_id(), new_id()
        rows = [
            {"id": i, "tenant_id": tenant.id, "channel": "whatsapp", "recipient": "+4917612345678", "body": "Hallo"}
            | {"status": "pending", "adapter": "whatsapp_cloud", "detail": {}, "created_at": AT, "is_test": False}
            for i in (stuck, fine)
        ]
        items = [
            {"id": new_id(), "tenant_id": tenant.id, "kind": "deliver", "due_at": AT, "status": status}
            | {"payload": {"outboxId": outbox_id}, "attempts": n, "error": error, "created_at": AT}
            for outbox_id, status, n, error in (
                (stuck, "failed", 1, "WhatsApp Cloud API returned HTTP 401: Invalid OAuth access token"),
                (fine, "pending", 0, None),
            )
        ]
        with db.begin() as conn:
            conn.execute(outbox.insert(), rows)
            conn.execute(due.insert(), items)
            deltas = rollups.Deltas()
            for r in rows:
                deltas.outbox(r)
            rollups.apply(conn, deltas)
    finally:
        _alembic(db, command.upgrade, "head")
    with db.connect() as conn:
        found = {
            r.id: (r.status, r.error, r.attempts)
            for r in conn.execute(sa.text("SELECT id, status, error, attempts FROM outbox_messages"))
        }
        assert found == {
            stuck: ("failed", "WhatsApp Cloud API returned HTTP 401: Invalid OAuth access token", 0),
            fine: ("pending", None, 0),  # its delivery is still to come
        }
        assert rollups.stored(conn) == rollups.from_rows(conn)
