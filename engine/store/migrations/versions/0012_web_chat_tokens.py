"""web chat conversations bound to the browser's random token (SHA-256 of conversation id and token)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 18:00:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import engine.store.models

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_chat_conversations",
        sa.Column("tenant_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("conversation_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("token_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", engine.store.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("tenant_id", "conversation_hash"),
    )


def downgrade() -> None:
    op.drop_table("web_chat_conversations")
