"""trim indexes the Insights rollups made redundant: fewer index entries written per event

Insights count from ``insight_rollups`` (0010), so the covering indexes 0006 added for counting
rows are no longer read: ``ix_outbox_tenant_created_cover`` goes, and
``ix_executions_tenant_started_id`` keeps only the executions list's keyset
``(tenant_id, started_at, id)``; ``ix_executions_tenant_started`` was its prefix and goes too.
Every event wrote an entry into each of them. ``ix_events_tenant_received_cover`` stays: the
first-reply sample filters the period's latest messages by channel, depth and test flag from it
(without it PostgreSQL took 578 ms instead of ~200 ms for the 30-day numbers at 1M executions).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26 16:40:00
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_outbox_tenant_created_cover", table_name="outbox_messages")
    op.drop_index("ix_executions_tenant_started", table_name="executions")
    op.drop_index("ix_executions_tenant_started_id", table_name="executions")
    op.create_index("ix_executions_tenant_started_id", "executions", ["tenant_id", "started_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_executions_tenant_started_id", table_name="executions")
    op.create_index(
        "ix_executions_tenant_started_id",
        "executions",
        ["tenant_id", "started_at", "id", "status", "is_test", "mode", "workflow_id"],
    )
    op.create_index("ix_executions_tenant_started", "executions", ["tenant_id", "started_at"])
    op.create_index(
        "ix_outbox_tenant_created_cover", "outbox_messages", ["tenant_id", "created_at", "channel", "status", "is_test"]
    )
