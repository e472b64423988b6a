"""outbox states: attempts, next attempt and send start on each message; stuck rows repaired

``attempts``, ``next_attempt_at`` and ``sending_at`` back the outbox state machine
(``engine/messaging/outbox_states.py``): "retrying (attempt 3 of 5, next at 15:42)", "failed after 5
attempts", and the start of the last provider call (a look-up of an unknown outcome begins there).

Before this revision the worker marked a ``deliver`` item failed (five attempts, or a permanent
error such as HTTP 401) but left its message ``pending`` with no error for ever. Those messages
become ``failed`` with the item's error, and the Insights rollups move with them.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-27 10:00:00
"""

import sqlalchemy as sa
from alembic import op

import engine.store.models

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("next_attempt_at", engine.store.models.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("sending_at", engine.store.models.UTCDateTime(), nullable=True))
    _fail_stuck_messages(op.get_bind())


def _fail_stuck_messages(conn: sa.Connection) -> None:
    """Messages still pending or deferred whose deliver item failed: failed, with its error."""
    from engine.store import rollups
    from engine.store.models import DueWork, OutboxMessage

    due, ob = DueWork.__table__, OutboxMessage.__table__
    errors: dict[str, str] = {}
    for payload, error in conn.execute(
        sa.select(due.c.payload, due.c.error).where(due.c.kind == "deliver", due.c.status == "failed")
    ):
        outbox_id = (payload or {}).get("outboxId")
        if outbox_id:
            errors[str(outbox_id)] = error or "delivery failed"
    ids = sorted(errors)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        rows = conn.execute(
            sa.select(ob.c.id, ob.c.tenant_id, ob.c.channel, ob.c.status, ob.c.created_at, ob.c.is_test).where(
                ob.c.id.in_(chunk), ob.c.status.in_(("pending", "deferred"))
            )
        ).mappings()
        deltas = rollups.Deltas()
        for row in rows:
            conn.execute(sa.update(ob).where(ob.c.id == row["id"]).values(status="failed", error=errors[row["id"]]))
            deltas.outbox_status(row, "failed")
        rollups.apply(conn, deltas)


def downgrade() -> None:
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.drop_column("sending_at")
        batch_op.drop_column("next_attempt_at")
        batch_op.drop_column("attempts")
