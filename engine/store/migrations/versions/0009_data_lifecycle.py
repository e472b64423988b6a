"""data lifecycle: execution rollups, pruning marks, opt-outs, erasure records; outbox index by execution

Revision ID: 0009
Revises: 0002
Create Date: 2026-11-26 09:30:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

import engine.store.models

revision = "0009"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "contact_erasures",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("tenant_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("contact_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("erased_by", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
        sa.Column("erased_at", engine.store.models.UTCDateTime(), nullable=False),
        sa.Column(
            "counts", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_contact_erasures_tenant_erased", "contact_erasures", ["tenant_id", "erased_at"], unique=False)
    op.create_table(
        "contact_opt_outs",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("tenant_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("contact", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
        sa.Column("opted_out", sa.Boolean(), nullable=False),
        sa.Column("word", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
        sa.Column("changed_at", engine.store.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "contact", name="uq_contact_opt_outs"),
    )
    op.create_table(
        "execution_rollups",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("tenant_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("workflow_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("workflow_name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("mode", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("actions_executed", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "day", "workflow_id", "status", "mode", name="uq_execution_rollups"),
    )
    op.create_table(
        "retention_marks",
        sa.Column("tenant_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("pruned_until", engine.store.models.UTCDateTime(), nullable=True),
        sa.Column("last_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("rows_done", sa.Integer(), nullable=False),
        sa.Column("updated_at", engine.store.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("tenant_id", "kind"),
    )


def downgrade() -> None:
    op.drop_table("retention_marks")
    op.drop_table("execution_rollups")
    op.drop_table("contact_opt_outs")
    op.drop_index("ix_contact_erasures_tenant_erased", table_name="contact_erasures")
    op.drop_table("contact_erasures")
