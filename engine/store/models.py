"""Tables. Every row that belongs to a studio carries ``tenant_id``; every query filters on it.

Times are stored as naive UTC (``UTCDateTime`` converts at the boundary) so SQLite and
PostgreSQL behave the same. Definitions and free data are JSON (JSONB on PostgreSQL).
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field
from sqlmodel import SQLModel as _SQLModel

if TYPE_CHECKING:

    class SQLModel(_SQLModel):
        """For the type checker only: sqlmodel does not declare the table that ``table=True`` creates."""

        __table__: ClassVar[sa.Table]

else:
    SQLModel = _SQLModel

# Execution statuses are domain values; re-exported for the store's own users.
from engine.domain import FINISHED_STATUSES as FINISHED_STATUSES
from engine.domain import ExecutionStatus as ExecutionStatus


def new_id() -> str:
    """32 hex digits, time-ordered like UUIDv7: 48 bits of milliseconds, then 80 random bits.

    Rows written together get neighbouring keys, so an insert touches the last page of each
    primary-key and foreign-key index instead of a random page (with random keys a single
    event dirtied ~15 scattered pages, and SQLite writes every dirty page whole at commit).
    80 random bits keep ids unguessable; ids from the same millisecond are unordered.
    """
    pool = getattr(_random, "pool", None)
    if not pool:
        # One getrandom() call per 256 ids (the call releases the GIL, which under load
        # costs far more than the bytes); each thread has its own pool.
        block = os.urandom(10 * 256).hex()
        pool = _random.pool = [block[i : i + 20] for i in range(0, len(block), 20)]
    return f"{time.time_ns() // 1_000_000:012x}{pool.pop()}"


_random = threading.local()


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.types.TypeDecorator):
    """Aware UTC datetimes in Python, naive UTC in the database."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        return value.replace(tzinfo=UTC) if value is not None else None


JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


def _ts(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=sa.Column(UTCDateTime(), nullable=nullable, index=index))


def _created() -> Any:
    return Field(default_factory=utcnow, sa_column=sa.Column(UTCDateTime(), nullable=False))


def _json(default=dict) -> Any:
    return Field(default_factory=default, sa_column=sa.Column(JSONType, nullable=False))


def _flag() -> Any:
    """A NOT NULL boolean, false by default (also on rows written before the column existed)."""
    return Field(default=False, sa_column=sa.Column(sa.Boolean(), nullable=False, server_default=sa.false()))


def _tenant_fk() -> Any:
    return Field(foreign_key="tenants.id", ondelete="CASCADE", max_length=32)


class Role(StrEnum):
    OWNER = "owner"  # everything, including settings and users
    EDITOR = "editor"  # build, run, enable workflows
    ANALYST = "analyst"  # read-only: workflows, executions, stats


class StepStatus(StrEnum):
    RUNNING = "running"  # started, not finished (a crash leaves this; the step is re-run)
    SUCCEEDED = "succeeded"  # output recorded
    FAILED = "failed"  # error recorded; may be retried as a new attempt
    WAITING = "waiting"  # the step parked the execution (wait, deferred message)
    SIMULATED = "simulated"  # dry run: nothing was sent or written


class DueKind(StrEnum):
    RESUME = "resume"  # continue a waiting execution (wait action, retry, deferral)
    FOLLOW_UP = "follow_up"  # send a scheduled follow-up message
    CRON = "cron"  # fire a time_based workflow
    DELIVER = "deliver"  # deliver a deferred outbox message


class DueStatus(StrEnum):
    PENDING = "pending"  # waiting for its due time
    CLAIMED = "claimed"  # a worker holds the lease until locked_until
    DONE = "done"  # finished
    FAILED = "failed"  # gave up; see error
    CANCELLED = "cancelled"  # no longer needed


class OutboxStatus(StrEnum):
    """A message's state; the moves between them are in engine/messaging/outbox_states.py (and only there)."""

    PENDING = "pending"  # queued: the worker hands it to the channel's adapter when it is due
    DEFERRED = "deferred"  # waiting for quiet hours to end
    SENDING = "sending"  # a worker is calling the provider right now (committed before the call)
    RETRYING = "retrying"  # the provider refused for now; the next attempt is at next_attempt_at
    UNKNOWN = "unknown"  # outcome unknown: the provider's answer was lost; the owner decides
    SENT = "sent"  # handed to the provider
    DELIVERED = "delivered"  # the provider reported delivery to the handset / mailbox
    READ = "read"  # the provider reported that the contact read it (WhatsApp)
    FAILED = "failed"  # provider refused or unreachable (error and attempts kept)
    SUPPRESSED = "suppressed"  # not sent on purpose (opt-out, frequency cap, 24h window, cancelled)
    RECORDED = "recorded"  # kept in the outbox only (no provider connected): nobody received it
    SIMULATED = "simulated"  # test console: never handed to a provider


class LeadStatus(StrEnum):
    NEW = "new"
    CONTACTED = "contacted"
    QUALIFIED = "qualified"
    MEMBER = "member"
    LOST = "lost"


class Tenant(SQLModel, table=True):
    __tablename__ = "tenants"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    slug: str = Field(unique=True, index=True, max_length=64)
    name: str = Field(max_length=200)
    timezone: str = Field(default="Europe/Berlin", max_length=64)
    settings: dict = _json()
    created_at: datetime = _created()


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    email: str = Field(unique=True, index=True, max_length=320)
    name: str = Field(default="", max_length=200)
    password_hash: str = Field(max_length=255)
    failed_logins: int = 0
    locked_until: datetime | None = _ts()
    created_at: datetime = _created()


class Membership(SQLModel, table=True):
    """A user's role in one tenant (a user may belong to several studios)."""

    __tablename__ = "memberships"
    __table_args__ = (sa.UniqueConstraint("user_id", "tenant_id"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    user_id: str = Field(foreign_key="users.id", ondelete="CASCADE", index=True, max_length=32)
    tenant_id: str = _tenant_fk()
    role: str = Field(default=Role.OWNER, max_length=16)


class Workflow(SQLModel, table=True):
    __tablename__ = "workflows"
    __table_args__ = (
        sa.Index("ix_workflows_match", "tenant_id", "trigger_type", "enabled"),
        sa.Index("ix_workflows_tenant_name", "tenant_id", "name"),
        # The list is ordered by lower(name): an expression index serves its pages.
        sa.Index("ix_workflows_tenant_lower_name", "tenant_id", sa.text("lower(name)"), "id"),
        sa.Index("ix_workflows_tenant_updated", "tenant_id", "updated_at"),
        sa.Index("ix_workflows_next_fire", "next_fire_at"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = _tenant_fk()
    name: str = Field(max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    enabled: bool = True
    trigger_type: str = Field(max_length=32)
    definition: dict = _json()
    version: int = 1
    created_by: str | None = Field(default=None, max_length=32)
    created_at: datetime = _created()
    updated_at: datetime = _created()
    # Counters kept by the runner so lists and stats never scan executions.
    run_count: int = 0
    success_count: int = 0
    error_count: int = 0
    last_run_at: datetime | None = _ts()
    #: For time_based workflows: the next cron fire time (UTC).
    next_fire_at: datetime | None = _ts()


class WorkflowVersion(SQLModel, table=True):
    """Every save of a workflow: who, when, the full definition."""

    __tablename__ = "workflow_versions"
    __table_args__ = (sa.UniqueConstraint("workflow_id", "version"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = _tenant_fk()
    workflow_id: str = Field(foreign_key="workflows.id", ondelete="CASCADE", index=True, max_length=32)
    version: int
    definition: dict = _json()
    created_by: str | None = Field(default=None, max_length=32)
    created_at: datetime = _created()
    note: str | None = Field(default=None, max_length=500)


class EventRecord(SQLModel, table=True):
    __tablename__ = "events"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "idempotency_key", name="uq_events_idempotency"),
        sa.Index("ix_events_tenant_received", "tenant_id", "received_at"),
        sa.Index("ix_events_tenant_sender", "tenant_id", "sender", "received_at"),
        # Covering for the Insights' first-reply sample (the period's latest inbound messages).
        sa.Index(
            "ix_events_tenant_received_cover", "tenant_id", "received_at", "channel", "depth", "is_test", "intent"
        ),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = _tenant_fk()
    trigger_type: str = Field(max_length=32)
    channel: str | None = Field(default=None, max_length=16)
    content: str | None = None
    sender: str | None = Field(default=None, max_length=320)
    intent: str | None = Field(default=None, max_length=64)
    intent_confidence: float | None = None
    custom_fields: dict = _json()
    data: dict = _json()
    received_at: datetime = _created()
    idempotency_key: str | None = Field(default=None, max_length=200)
    #: How many workflow-emitted events led here (create_lead -> lead_created ...).
    depth: int = 0
    parent_execution_id: str | None = Field(default=None, max_length=32)
    #: From the test console: never delivered, never counted (see engine/services/console.py).
    is_test: bool = _flag()


class Execution(SQLModel, table=True):
    __tablename__ = "executions"
    __table_args__ = (
        sa.Index("ix_executions_tenant_workflow_started", "tenant_id", "workflow_id", "started_at"),
        sa.Index("ix_executions_event", "event_id"),
        sa.Index("ix_executions_status_heartbeat", "status", "heartbeat_at"),
        # Keyset pages of the executions list (newest first); also every (tenant, time range) scan.
        sa.Index("ix_executions_tenant_started_id", "tenant_id", "started_at", "id"),
        sa.Index("ix_executions_tenant_status_started", "tenant_id", "status", "started_at"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = _tenant_fk()
    workflow_id: str | None = Field(default=None, foreign_key="workflows.id", ondelete="SET NULL", max_length=32)
    workflow_name: str = Field(default="", max_length=200)
    workflow_version: int = 1
    event_id: str | None = Field(default=None, foreign_key="events.id", ondelete="SET NULL", max_length=32)
    status: str = Field(default=ExecutionStatus.PENDING, max_length=16)
    #: live (from an event), manual (run now), dry_run (nothing leaves the machine).
    mode: str = Field(default="live", max_length=16)
    #: The definition as it was when the run started: edits never change a running execution.
    definition: dict = _json()
    #: trigger data, results per action, lead id: what templates see.
    context: dict = _json()
    explanation: list = _json(list)
    current_action_id: str | None = Field(default=None, max_length=64)
    #: Set by whoever is executing it; a step only commits while the token is unchanged,
    #: so a worker whose lease was taken over cannot complete a step twice.
    lease_token: str | None = Field(default=None, max_length=32)
    #: Last progress; a running execution without progress for a lease is resumed by a worker.
    heartbeat_at: datetime | None = _ts()
    depth: int = 0
    error: str | None = None
    started_at: datetime = _created()
    finished_at: datetime | None = _ts()
    actions_executed: int = 0
    #: A test-console run: its messages are never delivered, it changes no counter or cap.
    is_test: bool = _flag()
    #: The failed execution this one replays; unique, so an execution is replayed at most once.
    replay_of: str | None = Field(default=None, max_length=32, unique=True)


class StepRun(SQLModel, table=True):
    __tablename__ = "step_runs"
    __table_args__ = (sa.UniqueConstraint("execution_id", "action_id", "attempt", name="uq_step_attempt"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = _tenant_fk()
    execution_id: str = Field(foreign_key="executions.id", ondelete="CASCADE", index=True, max_length=32)
    action_id: str = Field(max_length=64)
    action_type: str = Field(max_length=32)
    attempt: int = 1
    status: str = Field(default=StepStatus.RUNNING, max_length=16)
    input: dict = _json()
    output: dict = _json()
    error: str | None = None
    started_at: datetime = _created()
    finished_at: datetime | None = _ts()


class OutboxMessage(SQLModel, table=True):
    __tablename__ = "outbox_messages"
    __table_args__ = (
        sa.Index("ix_outbox_tenant_created", "tenant_id", "created_at"),
        sa.Index("ix_outbox_tenant_recipient", "tenant_id", "recipient", "created_at"),
        # Provider status callbacks find their message by the provider's id.
        sa.Index("ix_outbox_tenant_provider_id", "tenant_id", "provider_message_id"),
        # An execution's messages (detail, first-reply times).
        sa.Index("ix_outbox_execution_created", "execution_id", "created_at"),
        # One message per step attempt: a re-run step never duplicates its message.
        sa.UniqueConstraint("step_run_id", name="uq_outbox_step"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = _tenant_fk()
    execution_id: str | None = Field(default=None, foreign_key="executions.id", ondelete="SET NULL", max_length=32)
    step_run_id: str | None = Field(default=None, max_length=80)
    channel: str = Field(max_length=16)
    recipient: str = Field(default="", max_length=320)
    subject: str | None = Field(default=None, max_length=500)
    body: str = ""
    status: str = Field(default=OutboxStatus.RECORDED, max_length=16)
    adapter: str = Field(default="outbox", max_length=32)
    provider_message_id: str | None = Field(default=None, max_length=200)
    error: str | None = None
    detail: dict = _json()
    created_at: datetime = _created()
    sent_at: datetime | None = _ts()
    deliver_after: datetime | None = _ts()
    #: Provider calls begun for this message (moves to ``sending``); the owner's retry starts again at 0.
    attempts: int = Field(default=0, sa_column=sa.Column(sa.Integer(), nullable=False, server_default="0"))
    #: ``retrying``: when the worker tries again.
    next_attempt_at: datetime | None = _ts()
    #: When the last provider call began (a look-up of an unknown outcome starts there).
    sending_at: datetime | None = _ts()
    #: Written by a test-console run: shown, never handed to an adapter, not counted by caps.
    is_test: bool = _flag()


class Lead(SQLModel, table=True):
    __tablename__ = "leads"
    __table_args__ = (
        sa.Index("ix_leads_tenant_email", "tenant_id", "email"),
        sa.Index("ix_leads_tenant_phone", "tenant_id", "phone"),
        sa.Index("ix_leads_tenant_created", "tenant_id", "created_at"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = _tenant_fk()
    name: str = Field(default="", max_length=200)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=32)
    source: str | None = Field(default=None, max_length=100)
    status: str = Field(default=LeadStatus.NEW, max_length=16)
    notes: str | None = None
    custom_fields: dict = _json()
    created_at: datetime = _created()
    updated_at: datetime = _created()


class Booking(SQLModel, table=True):
    __tablename__ = "bookings"
    __table_args__ = (
        sa.Index("ix_bookings_tenant_starts", "tenant_id", "starts_at"),
        sa.Index("ix_bookings_tenant_created", "tenant_id", "created_at"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = _tenant_fk()
    lead_id: str | None = Field(default=None, foreign_key="leads.id", ondelete="SET NULL", max_length=32)
    member_name: str = Field(max_length=200)
    member_contact: str | None = Field(default=None, max_length=320)
    class_name: str = Field(max_length=200)
    starts_at: datetime = _created()
    status: str = Field(default="confirmed", max_length=16)
    created_at: datetime = _created()


class DueWork(SQLModel, table=True):
    """Durable time: waits, follow-ups, retries, deferred messages and cron fire times."""

    __tablename__ = "due_work"
    __table_args__ = (
        sa.Index("ix_due_work_status_due", "status", "due_at"),
        sa.Index("ix_due_work_execution", "execution_id"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = _tenant_fk()
    kind: str = Field(max_length=16)
    due_at: datetime = _created()
    status: str = Field(default=DueStatus.PENDING, max_length=16)
    execution_id: str | None = Field(default=None, foreign_key="executions.id", ondelete="CASCADE", max_length=32)
    workflow_id: str | None = Field(default=None, foreign_key="workflows.id", ondelete="CASCADE", max_length=32)
    payload: dict = _json()
    attempts: int = 0
    locked_by: str | None = Field(default=None, max_length=100)
    locked_until: datetime | None = _ts()
    error: str | None = None
    created_at: datetime = _created()
    done_at: datetime | None = _ts()


class ApiKey(SQLModel, table=True):
    """A secret for the REST API, acting in one tenant with one role.

    Only the SHA-256 of the secret is stored (the secret is 32 random bytes, so a fast hash
    is enough); ``prefix`` is its first characters, to recognise a key in lists.
    """

    __tablename__ = "api_keys"
    __table_args__ = (sa.Index("ix_api_keys_tenant_created", "tenant_id", "created_at"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = _tenant_fk()
    #: Who created it (kept when the user goes, so history still has the key).
    user_id: str | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL", max_length=32)
    name: str = Field(max_length=200)
    role: str = Field(default=Role.EDITOR, max_length=16)
    key_hash: str = Field(unique=True, index=True, max_length=64)
    prefix: str = Field(max_length=16)
    created_at: datetime = _created()
    last_used_at: datetime | None = _ts()
    revoked_at: datetime | None = _ts()


class UserSession(SQLModel, table=True):
    """A signed-in browser: survives a reload or a second tab for a working day.

    The browser keeps a random 32-byte token in a cookie; only its SHA-256 is stored, so a
    database leak does not sign anyone in. Signing out, a password change or the removal of
    the user sets ``revoked_at`` (``engine.security.auth.end_sessions``).
    """

    __tablename__ = "user_sessions"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    user_id: str = Field(foreign_key="users.id", ondelete="CASCADE", index=True, max_length=32)
    #: The studio chosen in this browser (None until the user picks one).
    tenant_id: str | None = Field(default=None, foreign_key="tenants.id", ondelete="CASCADE", max_length=32)
    token_hash: str = Field(unique=True, index=True, max_length=64)
    created_at: datetime = _created()
    expires_at: datetime = _ts(nullable=False)
    revoked_at: datetime | None = _ts()


class TenantSecret(SQLModel, table=True):
    """One write-only secret of a studio (e.g. ``channels.whatsapp.accessToken``), Fernet-encrypted.

    The plaintext is only ever decrypted for the adapter or signature check that needs it;
    pages, the API and exports see ``set_at`` only.
    """

    __tablename__ = "tenant_secrets"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "name", name="uq_tenant_secrets_name"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = _tenant_fk()
    name: str = Field(max_length=100)
    ciphertext: str
    set_at: datetime = _created()
    set_by: str | None = Field(default=None, max_length=320)


class InboundEndpoint(SQLModel, table=True):
    """The unguessable id in a studio's public provider webhook URLs (``/hooks/<id>/...``)."""

    __tablename__ = "inbound_endpoints"

    id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(foreign_key="tenants.id", ondelete="CASCADE", unique=True, max_length=32)
    #: The web chat widget's public key (``data-studio`` on the script tag); public by design.
    chat_key: str = Field(unique=True, max_length=64)
    created_at: datetime = _created()


class WebChatConversation(SQLModel, table=True):
    """A web chat conversation bound to the one browser that started it: the widget makes a random
    token (``crypto.getRandomValues``) and sends it with every read and write; only SHA-256 of it
    and of the conversation id are kept, so this table names no one and holds nothing to steal."""

    __tablename__ = "web_chat_conversations"

    tenant_id: str = Field(foreign_key="tenants.id", ondelete="CASCADE", primary_key=True, max_length=32)
    conversation_hash: str = Field(primary_key=True, max_length=64)
    token_hash: str = Field(max_length=64)
    created_at: datetime = _created()


class SettingsAudit(SQLModel, table=True):
    """Who changed which studio setting when (secrets recorded as "changed", never their value)."""

    __tablename__ = "settings_audit"
    __table_args__ = (sa.Index("ix_settings_audit_tenant_at", "tenant_id", "at"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = _tenant_fk()
    at: datetime = _created()
    actor: str = Field(default="system", max_length=320)
    area: str = Field(max_length=64)
    changes: dict = _json()


class Scenario(SQLModel, table=True):
    """A saved test-console conversation and what the owner expects from it (see engine/services/scenarios.py)."""

    __tablename__ = "scenarios"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "name", name="uq_scenarios_tenant_name"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = _tenant_fk()
    name: str = Field(max_length=200)
    channel: str = Field(default="whatsapp", max_length=16)
    #: Contact profile (name, phone, email) used as a template: every run gets a fresh contact.
    contact: dict = _json()
    #: The inputs, in order: [{"kind": "message"|"missed_call"|..., ..., "at": iso or null}]
    steps: list = _json(list)
    #: What must happen: [{"kind": "ran"|"skipped"|"sent"|"intent", ...}]
    expectations: list = _json(list)
    last_result: dict = _json()
    last_run_at: datetime | None = _ts()
    created_by: str | None = Field(default=None, max_length=32)
    created_at: datetime = _created()
    updated_at: datetime = _created()


# Data lifecycle tables (issue 16) live in their own module; importing them here registers them.
import engine.store.rollups  # noqa: E402,F401  (Insights rollups, issue 11; registers its table)
from engine.store.health import StorageProbe  # noqa: E402,F401  (the health check's write probe)
from engine.store.lifecycle import ContactErasure, ContactOptOut, ExecutionRollup, RetentionMark  # noqa: E402,F401
