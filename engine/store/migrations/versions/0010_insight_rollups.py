"""insight rollups: hourly counts for Insights, backfilled from the existing rows

The backfill is ``engine.store.rollups.backfill`` (``INSERT .. SELECT .. GROUP BY`` per kind,
SQLite and PostgreSQL); from here on the writers keep the counts in their own transactions.

Revision ID: 0010
Revises: 0006
Create Date: 2026-11-26 16:00:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import engine.store.models

revision = "0010"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "insight_rollups",
        sa.Column("tenant_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=1), nullable=False),
        sa.Column("hour", engine.store.models.UTCDateTime(), nullable=False),
        sa.Column("k1", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("k2", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("tenant_id", "kind", "hour", "k1", "k2"),
    )
    from engine.store.rollups import backfill

    backfill(op.get_bind())


def downgrade() -> None:
    op.drop_table("insight_rollups")
