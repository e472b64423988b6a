"""The outbox's state machine: every status a message can have, the moves between them, and
the one function that writes a move. Every writer of ``outbox_messages.status`` goes through
:func:`move` (delivery, provider callbacks, the owner's retry and decisions, cancel); new rows
start in one of :data:`INITIAL` (``engine.messaging.delivery.queue_message``).

::

    (queued) ─► pending ──► sending ──► sent ──► delivered ──► read
        │          │  ▲        │ │ │      │           ▲
        │          │  │        │ │ └──────┴─► failed ─┘ (provider reports, never backwards)
        │          │  │        │ └─► retrying ──► sending (transient error: backoff)
        │          │  │        └─► unknown ──► sent | delivered | read | failed  (settled: callback
        │          │  │               │           with our reference, look-up, the owner)
        │          │  └── failed ◄────┘ ──► pending (the owner: "retry" / "send again")
        │          └─► suppressed | failed | recorded | simulated
        └─► deferred (quiet hours) ──► sending | suppressed | recorded | simulated | failed
        └─► recorded (no provider connected) | simulated (test console) | suppressed (opt-out, cap)

* **pending, deferred, retrying, sending** are :data:`IN_PROGRESS`: the worker owes the message
  something, and exactly one open ``deliver`` due item exists for it. When that item ends, the
  message ends in another state in the same transaction (``engine.messaging.delivery``).
* **sending** is committed *before* the provider is called. A worker that finds a message still
  ``sending`` (its sender died or lost its lease) never sends again: it marks it **unknown**.
* **unknown** is settled by a provider report that carries our reference (WhatsApp's
  ``biz_opaque_callback_data``), by a look-up where the provider offers one (Twilio's message
  list), or by the owner (mark as sent / send again) from the outbox page or the API.
* Provider reports move a message only forward in :data:`PROVIDER_RANK` (they arrive out of order).

:func:`move` is a compare-and-set on the status (``UPDATE .. WHERE id = :id AND status = :old``),
so two writers never both win, and keeps the Insights rollups (kind ``o``) in the same transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, tzinfo
from typing import Any

import sqlalchemy as sa

from engine.errors import Conflict
from engine.store import rollups
from engine.store.models import OutboxMessage, OutboxStatus

logger = logging.getLogger(__name__)

S = OutboxStatus

#: Provider calls for one message before it is marked failed (transient errors in between).
MAX_ATTEMPTS = 5

#: Where a new outbox row may start.
INITIAL: frozenset[str] = frozenset({S.PENDING, S.DEFERRED, S.RECORDED, S.SIMULATED, S.SUPPRESSED})

#: Every allowed move (old -> the statuses it may go to). Nothing else is ever written.
TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.SENDING, S.SUPPRESSED, S.FAILED, S.RECORDED, S.SIMULATED}),
    S.DEFERRED: frozenset({S.SENDING, S.SUPPRESSED, S.FAILED, S.RECORDED, S.SIMULATED}),
    S.RETRYING: frozenset({S.SENDING, S.SUPPRESSED, S.FAILED}),
    S.SENDING: frozenset({S.SENT, S.DELIVERED, S.READ, S.FAILED, S.RETRYING, S.SUPPRESSED, S.UNKNOWN}),
    S.UNKNOWN: frozenset({S.SENT, S.DELIVERED, S.READ, S.FAILED, S.PENDING}),
    S.SENT: frozenset({S.DELIVERED, S.READ, S.FAILED}),
    S.FAILED: frozenset({S.PENDING, S.DELIVERED, S.READ}),
    S.DELIVERED: frozenset({S.READ}),
    S.READ: frozenset(),
    S.SUPPRESSED: frozenset(),
    S.RECORDED: frozenset(),
    S.SIMULATED: frozenset(),
}

#: The worker still owes these messages something (one open ``deliver`` due item each).
IN_PROGRESS: frozenset[str] = frozenset({S.PENDING, S.DEFERRED, S.RETRYING, S.SENDING})
#: The worker may begin a provider call from these.
SENDABLE: frozenset[str] = frozenset({S.PENDING, S.DEFERRED, S.RETRYING})
#: The provider accepted the message (counted as sent by the frequency cap and Insights).
ACCEPTED: frozenset[str] = frozenset({S.SENT, S.DELIVERED, S.READ})

#: Provider reports move a message only forward in this order (statuses arrive out of order).
PROVIDER_RANK: dict[str, int] = {
    S.PENDING: 0,
    S.DEFERRED: 0,
    S.RETRYING: 0,
    S.SENDING: 0,
    S.UNKNOWN: 0,
    S.RECORDED: 0,
    S.SENT: 1,
    S.FAILED: 2,
    S.DELIVERED: 3,
    S.READ: 4,
}

#: How the outbox page, the API's ``statusText`` and Insights name each status.
LABELS: dict[str, str] = {
    S.PENDING: "queued",
    S.DEFERRED: "deferred (quiet hours)",
    S.SENDING: "sending",
    S.RETRYING: "retrying",
    S.UNKNOWN: "outcome unknown",
    S.SENT: "sent",
    S.DELIVERED: "delivered",
    S.READ: "read",
    S.FAILED: "failed",
    S.SUPPRESSED: "suppressed",
    S.RECORDED: "recorded (no provider connected)",
    S.SIMULATED: "simulated (test)",
}

assert set(TRANSITIONS) == set(S) == set(LABELS), "every status needs its moves and its label"


class IllegalMove(Conflict):
    """This message cannot move to that status."""


def allowed(old: str, new: str) -> bool:
    return new in TRANSITIONS.get(old, frozenset())


def check(old: str, new: str) -> None:
    """Raise :class:`IllegalMove` unless ``old -> new`` is one of :data:`TRANSITIONS`."""
    if not allowed(old, new):
        raise IllegalMove(f"an outbox message cannot go from {old} to {new}")


def check_initial(status: str) -> None:
    if status not in INITIAL:
        raise IllegalMove(f"an outbox message cannot start as {status}")


def is_forward_report(old: str, new: str) -> bool:
    """A provider report ``new`` moves a message in ``old`` on (never back, only allowed moves)."""
    return allowed(old, new) and PROVIDER_RANK.get(new, 0) > PROVIDER_RANK.get(old, 0)


# --------------------------------------------------------------------------- reading and writing

_ob = OutboxMessage.__table__.c


def load(conn: Any, outbox_id: str, *, tenant_id: str | None = None, lock: bool = False) -> dict[str, Any] | None:
    """The message's row as a dict (``FOR UPDATE`` on PostgreSQL when ``lock``), or None."""
    stmt = sa.select(OutboxMessage.__table__).where(_ob.id == outbox_id)
    if tenant_id is not None:
        stmt = stmt.where(_ob.tenant_id == tenant_id)
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).mappings().first()
    return dict(row) if row is not None else None


def move(conn: Any, row: Mapping[str, Any], to: str, **values: Any) -> bool:
    """Move one message from ``row["status"]`` to ``to`` (with further column ``values``).

    A compare-and-set: False (nothing written) when the status changed meanwhile. Raises
    :class:`IllegalMove` for a move :data:`TRANSITIONS` does not allow. The Insights rollups
    follow in the same transaction. ``row`` needs id, tenant_id, channel, status, created_at, is_test.
    """
    old = row["status"]
    check(old, to)
    conn = conn if isinstance(conn, sa.Connection) else conn.connection()
    result = conn.execute(
        sa.update(OutboxMessage.__table__).where(_ob.id == row["id"], _ob.status == old).values(status=to, **values)
    )
    if result.rowcount != 1:
        logger.info("outbox message %s was no longer %s (wanted %s)", row["id"], old, to)
        return False
    deltas = rollups.Deltas()
    deltas.outbox_status(row, to)
    rollups.apply(conn, deltas)
    return True


def update_fields(conn: Any, outbox_id: str, **values: Any) -> None:
    """Change columns other than the status (a provider id, the delivery history)."""
    if "status" in values:
        raise IllegalMove("the status changes only through engine.messaging.outbox_states.move")
    conn = conn if isinstance(conn, sa.Connection) else conn.connection()
    conn.execute(sa.update(OutboxMessage.__table__).where(_ob.id == outbox_id).values(**values))


def with_event(row: Mapping[str, Any], event: dict[str, Any], keep: int = 20) -> dict[str, Any]:
    """The row's ``detail`` with one more entry in its delivery history (the last ``keep``)."""
    detail = dict(row.get("detail") or {})
    history = list(detail.get("deliveryEvents") or [])
    history.append(event)
    detail["deliveryEvents"] = history[-keep:]
    return detail


# --------------------------------------------------------------------------- words


def describe(
    status: str,
    *,
    attempts: int = 0,
    next_attempt_at: datetime | None = None,
    tz: tzinfo | None = None,
    now: datetime | None = None,
) -> str:
    """The status as the owner reads it: "retrying (attempt 3 of 5, next at 15:42)" in the
    studio's time zone (the date too when the next attempt is not today)."""
    label = LABELS.get(status, status)
    if status == S.RETRYING and next_attempt_at is not None:
        local = next_attempt_at.astimezone(tz) if tz else next_attempt_at
        today = (now.astimezone(tz) if (now and tz) else now or local).date()
        when = local.strftime("%H:%M") if local.date() == today else local.strftime("%d %b %H:%M")
        return f"retrying (attempt {attempts + 1} of {MAX_ATTEMPTS}, next at {when})"
    if status == S.FAILED and attempts:
        return f"failed after {attempts} attempt{'s' if attempts != 1 else ''}"
    return label
