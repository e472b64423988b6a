"""A delivery-status report from a provider, and how statuses map onto the outbox."""

from __future__ import annotations

from dataclasses import dataclass

from engine.store.models import OutboxStatus

#: Provider status -> outbox status (WhatsApp and Twilio names).
STATUS_MAP: dict[str, str] = {
    "queued": OutboxStatus.SENT,
    "accepted": OutboxStatus.SENT,
    "sending": OutboxStatus.SENT,
    "sent": OutboxStatus.SENT,
    "delivered": OutboxStatus.DELIVERED,
    "read": OutboxStatus.READ,
    "failed": OutboxStatus.FAILED,
    "undelivered": OutboxStatus.FAILED,
}
#: A later report never moves a message back (statuses may arrive out of order).
RANK: dict[str, int] = {
    OutboxStatus.PENDING: 0,
    OutboxStatus.RECORDED: 0,
    OutboxStatus.DEFERRED: 0,
    OutboxStatus.SENT: 1,
    OutboxStatus.FAILED: 2,
    OutboxStatus.DELIVERED: 3,
    OutboxStatus.READ: 4,
}


@dataclass
class StatusUpdate:
    provider_message_id: str
    status: str
    error: str | None = None
    at: str | None = None
    reference: str | None = None  # our own reference echoed back by the provider (WhatsApp biz_opaque_callback_data)
