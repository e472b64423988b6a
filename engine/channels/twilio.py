"""Twilio Programmable Messaging (SMS) adapter."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from pydantic import Field, SecretStr

from engine.channels._http import get_once, json_or_none, post_once, raise_for_provider_error
from engine.channels._settings import ChannelSettings
from engine.channels.base import DeliveryResult, OutgoingMessage, SentMessage
from engine.channels.phones import normalize_phone
from engine.errors import InvalidRecipient, PermanentError

logger = logging.getLogger(__name__)

#: A look-up accepts messages created this long before the send began (clocks differ).
LOOKUP_SKEW = timedelta(minutes=2)
#: Twilio lists the newest first; a look-up reads this many messages to the number.
LOOKUP_PAGE = 50

#: Twilio error codes meaning "this recipient cannot receive SMS" (invalid / not mobile /
#: unsubscribed via STOP): raised as :class:`InvalidRecipient`.
RECIPIENT_ERROR_CODES = frozenset({21211, 21614, 21610, 21612})


class TwilioSettings(ChannelSettings):
    """Twilio account credentials and sender (``snake_case`` or ``camelCase`` keys)."""

    base_url: str = "https://api.twilio.com"
    account_sid: str
    auth_token: SecretStr
    from_number: str | None = None
    #: A messaging service (``MG...``) sends instead of ``from_number`` when set.
    messaging_service_sid: str | None = None
    #: Where Twilio reports the message's status (set by the engine from STUDIO_PUBLIC_URL).
    status_callback: str | None = None
    timeout: float = Field(default=10.0, gt=0)


def _sender(settings: TwilioSettings) -> dict[str, str]:
    if settings.messaging_service_sid:
        return {"MessagingServiceSid": settings.messaging_service_sid}
    if not settings.from_number:
        raise PermanentError("Twilio settings need a sender number or a messaging service SID")
    return {"From": settings.from_number}


def _describe_twilio_error(response: httpx.Response) -> tuple[str, Any]:
    data = json_or_none(response)
    if not isinstance(data, dict):
        return (response.text[:300] or response.reason_phrase), None
    code = data.get("code")
    text = str(data.get("message") or "unknown error")
    return (f"{text} (code {code})" if code is not None else text), code


class TwilioSmsAdapter:
    """Sends SMS through Twilio's Messages API (one attempt per :meth:`send`)."""

    name = "twilio"

    def __init__(self, settings: TwilioSettings, client: httpx.Client | None = None) -> None:
        self.settings = settings
        self.client = client

    @property
    def url(self) -> str:
        """The ``Messages.json`` endpoint of the configured account."""
        s = self.settings
        return f"{s.base_url.rstrip('/')}/2010-04-01/Accounts/{s.account_sid}/Messages.json"

    def _form(self, to: str, body: str) -> dict[str, str]:
        form = {"To": to, **_sender(self.settings), "Body": body}
        if self.settings.status_callback:
            form["StatusCallback"] = self.settings.status_callback
        return form

    def send(self, message: OutgoingMessage, **kw: Any) -> DeliveryResult:
        """POST ``To``/``From``/``Body`` once; return ``sent`` with Twilio's message ``sid``.

        Raises :class:`InvalidRecipient` (bad number, locally or per Twilio), :class:`RetryableError`
        (timeouts, connection errors, 408/429/5xx; ``retry_after`` from ``Retry-After``) or
        :class:`PermanentError` (other 4xx, with Twilio's message). The auth token never appears
        in errors.
        """
        to = normalize_phone(message.recipient)
        token = self.settings.auth_token.get_secret_value()
        response = post_once(
            self.client,
            self.url,
            provider="Twilio",
            timeout=self.settings.timeout,
            secrets=[token],
            data=self._form(to, message.body),
            auth=(self.settings.account_sid, token),
        )
        data = json_or_none(response)
        code = data.get("code") if isinstance(data, dict) else None
        raise_for_provider_error(
            response,
            provider="Twilio",
            secrets=[token],
            describe=_describe_twilio_error,
            permanent_class=InvalidRecipient if code in RECIPIENT_ERROR_CODES else PermanentError,
        )
        sid = data.get("sid") if isinstance(data, dict) else None
        if not sid:
            logger.warning("Twilio accepted the message but returned no sid")
        detail = {"status": data.get("status")} if isinstance(data, dict) and data.get("status") else {}
        return DeliveryResult(status="sent", provider_message_id=sid, detail=detail)

    def find_sent(self, message: OutgoingMessage, *, reference: str, since: datetime) -> SentMessage | None:
        """Twilio's record of ``message`` (same recipient and body, created since ``since``), from
        the Messages list (``GET Messages.json?To=..``, newest first), or None.

        Twilio keeps no reference of ours on a message, so the match is recipient + body + time;
        an exact body sent to the same number in the same minutes is as good as a reference."""
        to = normalize_phone(message.recipient)
        token = self.settings.auth_token.get_secret_value()
        params = {"To": to, "PageSize": str(LOOKUP_PAGE)}
        if self.settings.from_number and not self.settings.messaging_service_sid:
            params["From"] = self.settings.from_number
        response = get_once(
            self.client,
            self.url,
            provider="Twilio",
            timeout=self.settings.timeout,
            secrets=[token],
            params=params,
            auth=(self.settings.account_sid, token),
        )
        raise_for_provider_error(response, provider="Twilio", secrets=[token], describe=_describe_twilio_error)
        data = json_or_none(response)
        items = data.get("messages") if isinstance(data, dict) else None
        for item in reversed(items if isinstance(items, list) else []):  # oldest first: the first send
            if not isinstance(item, dict) or item.get("body") != message.body or not item.get("sid"):
                continue
            created = _twilio_time(item.get("date_created"))
            if created is not None and created >= since - LOOKUP_SKEW:
                return SentMessage(str(item["sid"]), status=item.get("status"), created_at=created.isoformat())
        return None


def _twilio_time(raw: Any) -> datetime | None:
    """Twilio's RFC 2822 times ("Wed, 18 Aug 2010 20:01:40 +0000")."""
    try:
        return parsedate_to_datetime(str(raw)) if raw else None
    except (TypeError, ValueError):
        return None
