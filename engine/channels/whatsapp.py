"""WhatsApp Business Cloud API adapter (Meta Graph API).

Recipient format: Meta's send-message reference uses the country code plus number with no
``+`` (e.g. ``"16505551234"``); its phone-number guide says ``+``, spaces, hyphens and
parentheses are also tolerated. We always send the E.164 digits WITHOUT ``+``, which is the
form Meta uses in its examples and in the ``wa_id`` of inbound webhooks.

Meta only allows free-form messages within 24 hours of the contact's last inbound message
("customer service window"); outside it only an approved template may be sent.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pydantic import Field, SecretStr

from engine.channels._http import json_or_none, post_once, raise_for_provider_error
from engine.channels._settings import ChannelSettings
from engine.channels.base import DeliveryResult, OutgoingMessage
from engine.channels.phones import normalize_phone

logger = logging.getLogger(__name__)

SERVICE_WINDOW = timedelta(hours=24)
NO_TEMPLATE_ERROR = "outside the 24-hour customer service window and no approved template configured"

#: Graph API error codes that are throttling / temporary even when the HTTP status is 4xx:
#: 4 app rate limit, 80007 WABA rate limit, 130429 throughput limit, 131056 pair rate limit,
#: 131016 service unavailable, 1/2 unknown error / temporary service problem.
RETRYABLE_META_CODES = frozenset({1, 2, 4, 80007, 130429, 131016, 131056})


class WhatsAppSettings(ChannelSettings):
    """Cloud API credentials and options (``snake_case`` or ``camelCase`` keys)."""

    base_url: str = "https://graph.facebook.com"
    api_version: str = "v21.0"
    phone_number_id: str
    access_token: SecretStr
    template_name: str | None = None
    template_language: str = "de"
    timeout: float = Field(default=10.0, gt=0)


def _describe_meta_error(response: httpx.Response) -> tuple[str, Any]:
    data = json_or_none(response)
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return (response.text[:300] or response.reason_phrase), None
    parts = [str(error.get("message") or "unknown error")]
    details = (error.get("error_data") or {}).get("details") if isinstance(error.get("error_data"), dict) else None
    if details:
        parts.append(str(details))
    code = error.get("code")
    if code is not None:
        parts.append(f"(code {code})")
    return " ".join(parts), code


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def in_service_window(last_inbound_at: datetime | None, now: datetime) -> bool:
    """True if the contact wrote to us less than 24 hours before ``now`` (aware datetimes)."""
    if last_inbound_at is None:
        return False
    _require_aware(last_inbound_at, "last_inbound_at")
    _require_aware(now, "now")
    return now - last_inbound_at < SERVICE_WINDOW


class WhatsAppCloudAdapter:
    """Sends WhatsApp messages through Meta's Cloud API (one attempt per :meth:`send`)."""

    name = "whatsapp_cloud"

    def __init__(self, settings: WhatsAppSettings, client: httpx.Client | None = None) -> None:
        self.settings = settings
        self.client = client

    @property
    def url(self) -> str:
        """The ``/messages`` endpoint for the configured phone number id."""
        s = self.settings
        return f"{s.base_url.rstrip('/')}/{s.api_version}/{s.phone_number_id}/messages"

    def send(
        self,
        message: OutgoingMessage,
        *,
        last_inbound_at: datetime | None = None,
        now: datetime | None = None,
        reference: str | None = None,
        **kw: Any,
    ) -> DeliveryResult:
        """Send ``message`` once.

        Free text if ``last_inbound_at`` is within 24 h of ``now`` (aware datetimes; ``now``
        defaults to the current UTC time); otherwise the configured template (``detail`` says
        so) or, without one, a ``suppressed`` result. Raises :class:`InvalidRecipient`,
        :class:`RetryableError` (timeouts, connection errors, 408/429/5xx, Meta throttling codes;
        ``retry_after`` from ``Retry-After``) or :class:`PermanentError` (other 4xx, with Meta's
        error message), or :class:`OutcomeUnknown` (no answer: Meta may have sent it). The access
        token never appears in errors. ``reference`` goes along as ``biz_opaque_callback_data``,
        which Meta echoes in every status report of the message, so a status settles a message
        whose answer was lost.
        """
        now = now or datetime.now(UTC)
        to = normalize_phone(message.recipient).lstrip("+")
        if in_service_window(last_inbound_at, now):
            payload: dict[str, Any] = {
                "messaging_product": "whatsapp",
                "to": to,
                "type": "text",
                "text": {"body": message.body},
            }
            detail: dict[str, Any] = {"type": "text"}
        elif self.settings.template_name:
            payload = {
                "messaging_product": "whatsapp",
                "to": to,
                "type": "template",
                "template": {
                    "name": self.settings.template_name,
                    "language": {"code": self.settings.template_language},
                },
            }
            detail = {
                "type": "template",
                "template": self.settings.template_name,
                "reason": "outside the 24-hour customer service window"
                + ("" if last_inbound_at else " (no inbound message from this contact)"),
            }
        else:
            logger.info("whatsapp message suppressed: outside service window, no template")
            return DeliveryResult(status="suppressed", error=NO_TEMPLATE_ERROR, detail={"type": "none"})
        if reference:
            payload["biz_opaque_callback_data"] = reference[:512]  # Meta's limit
        return self._post(payload, detail)

    def _post(self, payload: dict[str, Any], detail: dict[str, Any]) -> DeliveryResult:
        token = self.settings.access_token.get_secret_value()
        response = post_once(
            self.client,
            self.url,
            provider="WhatsApp Cloud API",
            timeout=self.settings.timeout,
            secrets=[token],
            json=payload,
            headers={"Authorization": f"Bearer {token}"},
        )
        raise_for_provider_error(
            response,
            provider="WhatsApp Cloud API",
            secrets=[token],
            describe=_describe_meta_error,
            retryable_codes=RETRYABLE_META_CODES,
        )
        data = json_or_none(response)
        message_id = None
        if isinstance(data, dict) and isinstance(data.get("messages"), list) and data["messages"]:
            message_id = data["messages"][0].get("id")
        if message_id is None:
            logger.warning("WhatsApp Cloud API accepted the message but returned no message id")
        return DeliveryResult(status="sent", provider_message_id=message_id, detail=detail)
