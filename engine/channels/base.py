"""Channel primitives: the message to send, the result of sending it, and the adapter protocol.

Every adapter makes exactly ONE delivery attempt. Failures are raised as
:class:`~engine.errors.RetryableError` (may succeed later; the runner schedules a durable
retry) or :class:`~engine.errors.PermanentError` (do not retry). Outcomes that are not
errors (sent, deliberately suppressed, only recorded) are returned as :class:`DeliveryResult`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

logger = logging.getLogger(__name__)

#: Channels known to the engine.
CHANNELS: tuple[str, ...] = ("voice", "whatsapp", "email", "web", "sms")

#: Allowed values of :attr:`DeliveryResult.status`.
DELIVERY_STATUSES: frozenset[str] = frozenset({"sent", "failed", "suppressed", "recorded"})


@dataclass
class OutgoingMessage:
    """A rendered message ready to be handed to a channel adapter.

    ``recipient`` is an e-mail address for ``email`` and a phone number (any format
    :func:`engine.channels.phones.normalize_phone` accepts) for ``whatsapp``/``sms``.
    ``subject`` is only used by e-mail; rendering it is the caller's job.
    """

    channel: str
    recipient: str
    body: str
    subject: str | None = None


@dataclass
class DeliveryResult:
    """Outcome of one send attempt.

    ``status``: ``"sent"`` (accepted by the provider), ``"failed"``, ``"suppressed"``
    (deliberately not sent, ``error`` says why) or ``"recorded"`` (outbox only, nothing left
    the machine). ``detail`` carries adapter-specific, JSON-serialisable extra information.
    """

    status: str
    provider_message_id: str | None = None
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in DELIVERY_STATUSES:
            raise ValueError(f"status must be one of {sorted(DELIVERY_STATUSES)}, not {self.status!r}")


@runtime_checkable
class ChannelAdapter(Protocol):
    """Something that can deliver an :class:`OutgoingMessage` (one attempt per call).

    ``send`` takes keyword arguments it may ignore: ``reference`` (our own id of the message,
    which an adapter sends along where the provider echoes it back in its status reports),
    ``last_inbound_at`` and ``now``. Failures: :class:`~engine.errors.RetryableError` (not sent,
    may work later), :class:`~engine.errors.PermanentError` (not sent, will not work),
    :class:`~engine.errors.OutcomeUnknown` (the request may have reached the provider).
    """

    name: str

    def send(self, message: OutgoingMessage, **kw: Any) -> DeliveryResult:
        """Attempt delivery once; raise RetryableError/PermanentError/OutcomeUnknown on failure."""
        ...


@dataclass
class SentMessage:
    """A message the provider says it has (a look-up's answer)."""

    provider_message_id: str
    status: str | None = None
    created_at: str | None = None


@runtime_checkable
class FindsSentMessages(Protocol):
    """An adapter whose provider can list recent messages, so an unknown outcome can be settled."""

    def find_sent(self, message: OutgoingMessage, *, reference: str, since: datetime) -> SentMessage | None:
        """The provider's record of ``message`` sent since ``since``, or None when it has none.
        Raises :class:`~engine.errors.RetryableError` when the provider cannot be asked now."""
        ...


class OutboxOnlyAdapter:
    """The default adapter: records the message in the outbox, sends nothing.

    Returns ``status="recorded"``; extra keyword arguments (e.g. ``now``) are accepted and
    ignored so any caller of :class:`ChannelAdapter` can use it.
    """

    name = "outbox"

    def __init__(self, channel: str | None = None) -> None:
        self.channel = channel

    def send(self, message: OutgoingMessage, **kw: Any) -> DeliveryResult:
        """Return a ``recorded`` result without contacting anything."""
        channel = self.channel or message.channel
        logger.debug("outbox only: recorded %s message (no adapter configured)", channel)
        return DeliveryResult(status="recorded", detail={"adapter": self.name, "channel": channel})
