"""Choose the channel adapter for a tenant from its settings.

Tenant settings shape (keys of the adapter block may be ``snake_case`` or ``camelCase``)::

    {"channels": {
        "email":    {"adapter": "smtp", "host": "...", "port": 587, "fromAddress": "...", ...},
        "whatsapp": {"adapter": "whatsapp_cloud", "phoneNumberId": "...", "accessToken": "...", ...},
        "sms":      {"adapter": "twilio", "accountSid": "...", "authToken": "...", "fromNumber": "..."},
    }}

A missing channel block, or ``"adapter": "outbox"``, gives :class:`OutboxOnlyAdapter`; ``web``
and ``voice`` are always outbox-only. ``base_url`` (provider endpoint) may only be set when the
caller passes ``allow_base_url_override=True`` (tests, operator-level config): a tenant-editable
base URL would let a tenant send provider credentials and requests to arbitrary hosts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

from engine.channels.base import CHANNELS, ChannelAdapter, OutboxOnlyAdapter
from engine.channels.smtp import SmtpAdapter, SmtpSettings
from engine.channels.twilio import TwilioSettings, TwilioSmsAdapter
from engine.channels.whatsapp import WhatsAppCloudAdapter, WhatsAppSettings
from engine.errors import InvalidInput

logger = logging.getLogger(__name__)

OUTBOX = "outbox"
OUTBOX_ONLY_CHANNELS = frozenset({"web", "voice"})

#: channel -> adapter name -> (settings model, factory(settings, client))
ADAPTERS: dict[str, dict[str, tuple[type[BaseModel], Callable[[Any, httpx.Client | None], ChannelAdapter]]]] = {
    "email": {"smtp": (SmtpSettings, lambda s, client: SmtpAdapter(s))},
    "whatsapp": {"whatsapp_cloud": (WhatsAppSettings, lambda s, client: WhatsAppCloudAdapter(s, client))},
    "sms": {"twilio": (TwilioSettings, lambda s, client: TwilioSmsAdapter(s, client))},
}


def _settings_error(channel: str, adapter: str, exc: ValidationError) -> InvalidInput:
    # Only field names and messages: pydantic's default text would echo values (secrets).
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors())
    return InvalidInput(f"invalid {adapter} settings for {channel}: {problems}", field=f"channels.{channel}")


def adapter_for(
    channel: str,
    tenant_settings: Mapping[str, Any] | None,
    client: httpx.Client | None = None,
    *,
    allow_base_url_override: bool = False,
) -> ChannelAdapter:
    """Return the adapter configured for ``channel`` in ``tenant_settings`` (default: outbox only).

    ``client`` is passed to HTTP-based adapters (WhatsApp, Twilio). Raises :class:`InvalidInput`
    for an unknown channel or adapter, invalid settings (message names fields, never values) or
    a ``base_url`` without ``allow_base_url_override``.
    """
    if channel not in CHANNELS:
        raise InvalidInput(f"unknown channel {channel!r} (expected one of {', '.join(CHANNELS)})", field="channel")
    config = ((tenant_settings or {}).get("channels") or {}).get(channel)
    if channel in OUTBOX_ONLY_CHANNELS or not config:
        return OutboxOnlyAdapter(channel)
    if not isinstance(config, Mapping):
        raise InvalidInput(f"settings for {channel} must be an object", field=f"channels.{channel}")
    adapter = str(config.get("adapter") or OUTBOX)
    if adapter == OUTBOX:
        return OutboxOnlyAdapter(channel)
    choices = ADAPTERS.get(channel, {})
    if adapter not in choices:
        known = ", ".join([OUTBOX, *choices])
        raise InvalidInput(f"unknown adapter {adapter!r} for {channel} (expected {known})", field=f"channels.{channel}")
    fields = {k: v for k, v in config.items() if k != "adapter"}
    if not allow_base_url_override and ({"base_url", "baseUrl"} & fields.keys()):
        raise InvalidInput(f"base_url may not be set in tenant settings for {channel}", field=f"channels.{channel}")
    model, factory = choices[adapter]
    try:
        settings = model.model_validate(fields)
    except ValidationError as exc:
        raise _settings_error(channel, adapter, exc) from None
    logger.debug("channel %s uses adapter %s", channel, adapter)
    return factory(settings, client)
