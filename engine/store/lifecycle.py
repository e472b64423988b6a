"""Tables of the data lifecycle (issue 16): aggregates that outlive pruned executions,
pruning progress, members' opt-outs and the record of erasures.

Imported at the end of ``engine.store.models`` so they are part of ``SQLModel.metadata``.
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field

from engine.store.models import SQLModel, _created, _json, _tenant_fk, _ts, new_id


class ExecutionRollup(SQLModel, table=True):
    """How many executions a workflow had per day, status and mode.

    Written when summary rows are deleted (after the summary retention), so counts over
    any period stay right: live executions plus these rows.
    """

    __tablename__ = "execution_rollups"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "day", "workflow_id", "status", "mode", name="uq_execution_rollups"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = _tenant_fk()
    day: date = Field(sa_column=sa.Column(sa.Date(), nullable=False))
    #: "" when the execution had no workflow any more (the workflow was deleted).
    workflow_id: str = Field(default="", max_length=32)
    workflow_name: str = Field(default="", max_length=200)
    status: str = Field(max_length=16)
    mode: str = Field(default="live", max_length=16)
    count: int = 0
    actions_executed: int = 0


class RetentionMark(SQLModel, table=True):
    """How far pruning of one kind has come for a tenant (rows older than this are done)."""

    __tablename__ = "retention_marks"

    tenant_id: str = Field(foreign_key="tenants.id", ondelete="CASCADE", primary_key=True, max_length=32)
    kind: str = Field(primary_key=True, max_length=32)
    pruned_until: datetime | None = _ts()
    #: With ``pruned_until``, the key of the last row done (rows with equal times are told apart).
    last_id: str = Field(default="", max_length=32)
    rows_done: int = 0
    updated_at: datetime = _created()


class ContactOptOut(SQLModel, table=True):
    """A member who wrote an opt-out word: automated messages to them are suppressed."""

    __tablename__ = "contact_opt_outs"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "contact", name="uq_contact_opt_outs"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = _tenant_fk()
    #: E.164 phone number or lower-case e-mail address, as the outbox stores recipients.
    contact: str = Field(max_length=320)
    opted_out: bool = True
    word: str = Field(default="", max_length=64)
    channel: str | None = Field(default=None, max_length=16)
    changed_at: datetime = _created()


class ContactErasure(SQLModel, table=True):
    """That a member's data was erased: who, when, which contact (as a hash), how many rows."""

    __tablename__ = "contact_erasures"
    __table_args__ = (sa.Index("ix_contact_erasures_tenant_erased", "tenant_id", "erased_at"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = _tenant_fk()
    contact_hash: str = Field(max_length=64)
    kind: str = Field(max_length=8)
    erased_by: str = Field(default="", max_length=320)
    erased_at: datetime = _created()
    counts: dict = _json()


# Deleting an execution sets its messages' execution_id to NULL: ``ix_outbox_execution_created``
# (execution_id, created_at; models.py, migration 0006) keeps that from scanning the outbox.
