"""test console: is_test on events, executions and outbox; saved scenarios

Revision ID: 0007
Revises: 0002
Create Date: 2026-11-26 09:30:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

import engine.store.models

revision = "0007"
down_revision = "0009"
branch_labels = None
depends_on = None

_FLAGGED = ("events", "executions", "outbox_messages")


def upgrade() -> None:
    for table in _FLAGGED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("is_test", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_table(
        "scenarios",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("tenant_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column(
            "contact", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column(
            "steps", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column(
            "expectations",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "last_result", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("last_run_at", engine.store.models.UTCDateTime(), nullable=True),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("created_at", engine.store.models.UTCDateTime(), nullable=False),
        sa.Column("updated_at", engine.store.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "name", name="uq_scenarios_tenant_name"),
    )


def downgrade() -> None:
    op.drop_table("scenarios")
    for table in _FLAGGED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("is_test")
