"""storage probe: one row the health check rewrites to prove that writes commit

``/api/health`` read ``SELECT 1`` and said "ok" while every write failed (a full disk, a write
lock held by another process): it now rewrites this row (engine/store/health.py).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-27 10:00:00
"""

import sqlalchemy as sa
from alembic import op

import engine.store.models

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "storage_probe",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("checked_at", engine.store.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("storage_probe")
