"""insights and operations: test-run flags, replay link, indexes for keyset pages and stats

``is_test`` on events, executions and outbox_messages comes from 0007 (test console).

Revision ID: 0006
Revises: 0007
Create Date: 2026-11-26 09:30:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0006"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("replay_of", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_executions_replay_of"), ["replay_of"])
        batch_op.create_index(
            "ix_executions_tenant_started_id",
            ["tenant_id", "started_at", "id", "status", "is_test", "mode", "workflow_id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_executions_tenant_status_started", ["tenant_id", "status", "started_at"], unique=False
        )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_events_tenant_received_cover",
            ["tenant_id", "received_at", "channel", "depth", "is_test", "intent"],
            unique=False,
        )
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_execution_created", ["execution_id", "created_at"], unique=False)
        batch_op.create_index(
            "ix_outbox_tenant_created_cover", ["tenant_id", "created_at", "channel", "status", "is_test"], unique=False
        )
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.create_index("ix_leads_tenant_created", ["tenant_id", "created_at"], unique=False)
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.create_index("ix_bookings_tenant_created", ["tenant_id", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.drop_index("ix_bookings_tenant_created")
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_index("ix_leads_tenant_created")
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_tenant_created_cover")
        batch_op.drop_index("ix_outbox_execution_created")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_tenant_received_cover")
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.drop_index("ix_executions_tenant_status_started")
        batch_op.drop_index("ix_executions_tenant_started_id")
        batch_op.drop_constraint(batch_op.f("uq_executions_replay_of"), type_="unique")
        batch_op.drop_column("replay_of")
