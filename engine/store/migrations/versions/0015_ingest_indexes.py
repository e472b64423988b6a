"""ingest indexes: fewer B-tree inserts per event (issue 15)

Every ingested event writes a row to events, executions and outbox_messages, and each index
of those tables costs a B-tree insert per row. Issue 11 added covering indexes so the
Insights counts could read indexes only; Insights moves to rollup tables (issue 11), and the
lists need less:

* ``ix_executions_tenant_started_id`` (7 columns) becomes ``ix_executions_tenant_started_key``
  ``(tenant_id, started_at, id)``: exactly the executions list's keyset order (newest first,
  ties by id); it also makes ``ix_executions_tenant_started`` ``(tenant_id, started_at)``, its
  prefix, redundant, which goes too. Status filters keep ``ix_executions_tenant_status_started``,
  workflow filters ``ix_executions_tenant_workflow_started``.
* ``ix_events_tenant_received_cover`` and ``ix_outbox_tenant_created_cover``: Insights only;
  ``ix_events_tenant_received`` and ``ix_outbox_tenant_created`` serve the lists and ranges.
* kept: ``ix_outbox_execution_created`` (an execution's messages; deleting an execution sets
  its messages' ``execution_id`` to NULL and must not scan the outbox).

Revision ID: 0015
Revises: 0006
Create Date: 2026-11-26 13:20:00
"""
from alembic import op


revision = '0015'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('executions', schema=None) as batch_op:
        batch_op.create_index('ix_executions_tenant_started_key', ['tenant_id', 'started_at', 'id'], unique=False)
        batch_op.drop_index('ix_executions_tenant_started_id')
        batch_op.drop_index('ix_executions_tenant_started')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_tenant_received_cover')
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_tenant_created_cover')


def downgrade() -> None:
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_tenant_created_cover',
                              ['tenant_id', 'created_at', 'channel', 'status', 'is_test'], unique=False)
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index('ix_events_tenant_received_cover',
                              ['tenant_id', 'received_at', 'channel', 'depth', 'is_test', 'intent'], unique=False)
    with op.batch_alter_table('executions', schema=None) as batch_op:
        batch_op.create_index('ix_executions_tenant_started', ['tenant_id', 'started_at'], unique=False)
        batch_op.create_index('ix_executions_tenant_started_id',
                              ['tenant_id', 'started_at', 'id', 'status', 'is_test', 'mode', 'workflow_id'], unique=False)
        batch_op.drop_index('ix_executions_tenant_started_key')
