"""Channel settings of a studio: provider fields, write-only encrypted secrets, the public
webhook id, "send a test message", and the settings audit log (owners only).

Non-secret fields live in ``tenants.settings["channels"][channel]`` (typed by the channel
blocks of :mod:`engine.tenant_settings`, which also give the form its fields, labels and
defaults); a save writes only the fields it is given. Secrets live Fernet-encrypted in ``tenant_secrets`` under
``channels.<channel>.<field>`` and are merged in only by :func:`resolved_tenant_settings`
(delivery, test messages) and :func:`secret_value` (signature checks). Nothing returned to a
page or the API contains a secret: only "set on <date>".
"""

from __future__ import annotations

import logging
import secrets as _random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel
from sqlmodel import Session, col, select

from engine.errors import InvalidInput, NotFound
from engine.security.auth import ADMIN, Actor
from engine.security.secrets import decrypt, encrypt
from engine.store.models import (
    InboundEndpoint,
    SettingsAudit,
    Tenant,
    TenantSecret,
)
from engine.tenant_settings import (
    ChannelBlock,
    EmailChannel,
    SmsChannel,
    TenantSettings,
    WhatsAppChannel,
    patched,
    settings_of,
)
from engine.uow import UnitOfWork

logger = logging.getLogger(__name__)

__all__ = [
    "CHANNEL_FIELDS",
    "AuditOut",
    "ChannelView",
    "FieldSpec",
    "SecretState",
    "TestMessageResult",
    "callback_urls",
    "email_inbound_token",
    "get_channel",
    "list_audit",
    "record_audit",
    "resolved_tenant_settings",
    "save_channel",
    "secret_value",
    "send_test_message",
    "tenant_for_webhook",
    "webhook_id",
]


@dataclass(frozen=True)
class FieldSpec:
    """One field of a channel's settings form (read off the typed model, :mod:`engine.tenant_settings`)."""

    name: str
    label: str
    secret: bool = False
    required: bool = False
    help: str = ""
    choices: tuple[str, ...] = ()
    default: Any = None
    attr: str = ""


CHANNEL_MODELS: dict[str, type[ChannelBlock]] = {"whatsapp": WhatsAppChannel, "sms": SmsChannel, "email": EmailChannel}


def _field_specs(model: type[ChannelBlock]) -> tuple[FieldSpec, ...]:
    specs = []
    for attr, info in model.model_fields.items():
        if attr == "adapter":
            continue
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        choices = tuple(get_args(info.annotation)) if get_origin(info.annotation) is Literal else ()
        specs.append(
            FieldSpec(
                name=info.alias or attr,
                label=info.title or attr,
                secret=bool(extra.get("x-secret")),
                required=bool(extra.get("x-required-when-on")),
                help=info.description or "",
                choices=tuple(str(c) for c in choices),
                default=info.default,
                attr=attr,
            )
        )
    return tuple(specs)


#: channel -> (adapter name, fields), in the form's order. ``required`` applies once the channel is switched on.
CHANNEL_FIELDS: dict[str, tuple[str, tuple[FieldSpec, ...]]] = {
    channel: (model.ADAPTER, _field_specs(model)) for channel, model in CHANNEL_MODELS.items()
}


class SecretState(BaseModel):
    """What may be shown about a secret: whether and when it was set, never its value."""

    set: bool
    set_at: datetime | None = None
    set_by: str | None = None


class ChannelView(BaseModel):
    """A channel's settings as a page or the API may see them."""

    channel: str
    enabled: bool
    adapter: str
    values: dict[str, Any]
    secrets: dict[str, SecretState]


class AuditOut(BaseModel):
    at: datetime
    actor: str
    area: str
    changes: dict[str, Any]


class TestMessageResult(BaseModel):
    ok: bool
    status: str
    provider_message_id: str | None = None
    answer: str


def _secret_name(channel: str, field: str) -> str:
    return f"channels.{channel}.{field}"


def _spec(channel: str) -> tuple[str, tuple[FieldSpec, ...]]:
    if channel not in CHANNEL_FIELDS:
        raise InvalidInput(f"unknown channel {channel!r} (expected {', '.join(CHANNEL_FIELDS)})", field="channel")
    return CHANNEL_FIELDS[channel]


def _secret_rows(s: Session, tenant_id: str, prefix: str) -> dict[str, TenantSecret]:
    rows = s.exec(
        select(TenantSecret).where(TenantSecret.tenant_id == tenant_id, col(TenantSecret.name).startswith(prefix))
    ).all()
    return {r.name: r for r in rows}


def locked_tenant(uow: UnitOfWork, tenant_id: str) -> Tenant:
    """The tenant row, locked for the rest of the unit of work on PostgreSQL (SQLite's writers
    hold the database lock from their first statement), so two saves of different settings at
    once both keep their change: each reads the JSON the other committed."""
    tenant = uow.session.get(Tenant, tenant_id, with_for_update=True, populate_existing=True)
    if tenant is None:
        raise NotFound("tenant not found")
    return tenant


def get_channel(*, uow: UnitOfWork, actor: Actor, channel: str) -> ChannelView:
    """The channel's fields (secrets as set/not set with the date)."""
    actor.require(ADMIN)
    adapter, fields = _spec(channel)
    s = uow.session
    tenant = s.get(Tenant, actor.tenant_id)
    if tenant is None:
        raise NotFound("tenant not found")
    return _view(s, actor.tenant_id, channel, settings_of(tenant.settings))


def _block(settings: TenantSettings, channel: str) -> ChannelBlock:
    block = settings.channels.block(channel)
    if block is None:
        raise InvalidInput(f"unknown channel {channel!r} (expected {', '.join(CHANNEL_FIELDS)})", field="channel")
    return block


def _view(s: Session, tenant_id: str, channel: str, settings: TenantSettings) -> ChannelView:
    adapter, fields = _spec(channel)
    block = _block(settings, channel)
    rows = _secret_rows(s, tenant_id, f"channels.{channel}.")
    values = {f.name: getattr(block, f.attr) for f in fields if not f.secret}
    states = {}
    for f in fields:
        if f.secret:
            row = rows.get(_secret_name(channel, f.name))
            legacy = getattr(block, f.attr) is not None  # plain text from before encryption; moved on the next save
            states[f.name] = SecretState(
                set=row is not None or legacy, set_at=row.set_at if row else None, set_by=row.set_by if row else None
            )
    return ChannelView(channel=channel, enabled=block.enabled, adapter=adapter, values=values, secrets=states)


def _changes(channel: str, fields: tuple[FieldSpec, ...], values: dict[str, Any], enabled: bool | None) -> dict:
    """The settings paths a save writes: the fields given (None or "" clears one) and the switch."""
    by_name = {f.name: f for f in fields}
    changes: dict[str, Any] = {}
    for key, value in values.items():
        spec = by_name.get(key)
        if spec is None:
            raise InvalidInput(f"unknown field {key!r}", field=f"channels.{channel}.{key}")
        if spec.secret:
            raise InvalidInput("is a secret: pass it in secrets", field=f"channels.{channel}.{key}")
        if isinstance(value, str) and not value.strip():
            value = None
        if value is not None and not isinstance(value, str | int | float | bool):
            raise InvalidInput("must be text or a number", field=f"channels.{channel}.{key}")
        changes[f"channels.{channel}.{key}"] = value
    if enabled is not None:
        changes[f"channels.{channel}.adapter"] = CHANNEL_MODELS[channel].ADAPTER if enabled else "outbox"
    return changes


def _check_on(channel: str, fields: tuple[FieldSpec, ...], block: ChannelBlock, have_secret: set[str]) -> None:
    """A switched-on channel has what its provider needs."""
    for f in fields:
        have = f.name in have_secret if f.secret else getattr(block, f.attr)
        if f.required and not have:
            raise InvalidInput("is required to switch this channel on", field=f"channels.{channel}.{f.name}")
    if isinstance(block, SmsChannel) and not (block.from_number or block.messaging_service_sid):
        raise InvalidInput("give a sender number or a messaging service SID", field="channels.sms.fromNumber")


def save_channel(
    *,
    uow: UnitOfWork,
    actor: Actor,
    channel: str,
    enabled: bool | None = None,
    values: dict[str, Any] | None = None,
    secrets: Mapping[str, str | None] | None = None,
) -> ChannelView:
    """Change a channel's settings: only the fields in ``values`` (``None`` or ``""`` clears one),
    the switch when ``enabled`` is given, and the secrets given (``None`` or ``""`` keeps the
    stored one). Everything else stays as stored, so a save never writes back what it did not mean to.

    Validates everything before writing (one transaction: settings, secrets and the audit
    row together). Raises :class:`InvalidInput` naming the field.
    """
    actor.require(ADMIN)
    adapter, fields = _spec(channel)
    given: dict[str, str] = {k: v for k, v in (secrets or {}).items() if v}
    secret_fields = {f.name: f for f in fields if f.secret}
    for key, value in given.items():
        if key not in secret_fields:
            raise InvalidInput(f"unknown field {key!r}", field=f"channels.{channel}.{key}")
        if not isinstance(value, str) or len(value) > 4000:
            raise InvalidInput("must be text of at most 4000 characters", field=f"channels.{channel}.{key}")
    changes = _changes(channel, fields, dict(values or {}), enabled)
    tenant = locked_tenant(uow, actor.tenant_id)
    s = uow.session
    existing = _secret_rows(s, actor.tenant_id, f"channels.{channel}.")
    before = settings_of(tenant.settings)
    old_block = _block(before, channel)
    for name, f in secret_fields.items():  # plain-text secrets from older settings move into encrypted storage
        legacy = getattr(old_block, f.attr)
        if legacy is not None:
            if name not in given and _secret_name(channel, name) not in existing:
                given[name] = legacy.get_secret_value()
            changes[f"channels.{channel}.{name}"] = None
    raw, after = patched(tenant.settings, changes)
    block = _block(after, channel)
    if block.enabled:
        _check_on(
            channel, fields, block, set(given) | {n for n in secret_fields if _secret_name(channel, n) in existing}
        )
    tenant.settings = raw
    s.add(tenant)
    _store_secrets(uow, actor, channel, given, existing)
    audit: dict[str, Any] = {
        k: {"from": old, "to": new}
        for k, old, new in [("adapter", old_block.adapter, block.adapter)]
        + [(f.name, getattr(old_block, f.attr), getattr(block, f.attr)) for f in fields if not f.secret]
        if old != new
    }
    audit.update(dict.fromkeys(given, "changed"))
    if audit:
        record_audit(uow=uow, actor=actor, area=f"channels.{channel}", changes=audit)
    logger.info("channel %s settings saved for tenant %s (%d secret(s) replaced)", channel, actor.tenant_id, len(given))
    return _view(s, actor.tenant_id, channel, after)


def _store_secrets(
    uow: UnitOfWork, actor: Actor, channel: str, secrets: dict[str, str], existing: dict[str, TenantSecret]
) -> None:
    now, by = uow.now(), actor.email or "system"
    for key, value in secrets.items():
        row = existing.get(_secret_name(channel, key))
        if row is None:
            row = TenantSecret(tenant_id=actor.tenant_id, name=_secret_name(channel, key), ciphertext="")
        row.ciphertext, row.set_at, row.set_by = encrypt(value or ""), now, by
        uow.session.add(row)


def secret_value(*, uow: UnitOfWork, tenant_id: str, name: str) -> str | None:
    """Decrypt one secret for the engine's own use (signature checks); None when not set."""
    s = uow.session
    row = s.exec(select(TenantSecret).where(TenantSecret.tenant_id == tenant_id, TenantSecret.name == name)).first()
    return decrypt(row.ciphertext) if row else None


def resolved_tenant_settings(session: Session, tenant_id: str, settings: Any) -> dict[str, Any]:
    """The channel blocks as the adapters take them (``{"channels": {...}}``), each with its
    decrypted secrets merged in (for adapters only; never show it). ``settings``: the stored
    JSON or the model."""
    model = settings_of(settings)
    channels: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (model.channels.model_extra or {}).items()}
    for name in CHANNEL_MODELS:
        block = _block(model, name)
        channels[name] = block.model_dump(mode="json", by_alias=True, exclude_none=True)
        for f in CHANNEL_FIELDS[name][1]:  # plain text from before encryption, until the next save moves it
            legacy = getattr(block, f.attr) if f.secret else None
            if legacy is not None:
                channels[name][f.name] = legacy.get_secret_value()
    for secret_name, row in _secret_rows(session, tenant_id, "channels.").items():
        _, channel, field = secret_name.split(".", 2)
        if channel in channels:
            channels[channel][field] = decrypt(row.ciphertext)
    _add_status_callback(session, tenant_id, channels)
    return {"channels": channels}


def _add_status_callback(session: Session, tenant_id: str, channels: dict[str, dict[str, Any]]) -> None:
    """With ``STUDIO_PUBLIC_URL`` set, Twilio is told per message where to report its status."""
    from engine.settings import get_settings

    base = get_settings().public_url
    if not base or "sms" not in channels or channels["sms"].get("statusCallback"):
        return
    hook = session.exec(select(InboundEndpoint.id).where(InboundEndpoint.tenant_id == tenant_id)).first()
    if hook:
        channels["sms"]["statusCallback"] = f"{base.rstrip('/')}/hooks/{hook}/twilio/message-status"


# --------------------------------------------------------------------------- public webhook id


def webhook_id(*, uow: UnitOfWork, actor: Actor) -> str:
    """The studio's public webhook id (created on first use; 32 random url-safe characters)."""
    actor.require(ADMIN)
    s = uow.session
    row = s.exec(select(InboundEndpoint).where(InboundEndpoint.tenant_id == actor.tenant_id)).first()
    if row is None:
        row = _new_endpoint(actor.tenant_id)
        s.add(row)
    return row.id


def _new_endpoint(tenant_id: str) -> InboundEndpoint:
    return InboundEndpoint(
        id=_random.token_urlsafe(24), tenant_id=tenant_id, chat_key="wc_" + _random.token_urlsafe(18)
    )


def chat_key(*, uow: UnitOfWork, actor: Actor) -> str:
    """The web chat widget's public key of the studio (created on first use)."""
    actor.require(ADMIN)
    webhook_id(uow=uow, actor=actor)
    s = uow.session
    return s.exec(select(InboundEndpoint.chat_key).where(InboundEndpoint.tenant_id == actor.tenant_id)).one()


def tenant_for_chat_key(*, uow: UnitOfWork, key: str) -> str:
    """The tenant behind a web chat key; :class:`NotFound` when unknown."""
    if not key or len(key) > 64:
        raise NotFound("unknown chat key")
    s = uow.session
    found = s.exec(select(InboundEndpoint.tenant_id).where(InboundEndpoint.chat_key == key)).first()
    if found is None:
        raise NotFound("unknown chat key")
    return found


def tenant_for_webhook(*, uow: UnitOfWork, hook_id: str) -> str:
    """The tenant id behind a public webhook id; :class:`NotFound` when unknown."""
    if not hook_id or len(hook_id) > 64:
        raise NotFound("unknown webhook")
    s = uow.session
    row = s.get(InboundEndpoint, hook_id)
    if row is None:
        raise NotFound("unknown webhook")
    return row.tenant_id


def email_inbound_token(*, uow: UnitOfWork, actor: Actor) -> str:
    """The secret in the inbound e-mail URL (created on first use; owners only)."""
    actor.require(ADMIN)
    name = "inbound.emailToken"
    current = secret_value(uow=uow, tenant_id=actor.tenant_id, name=name)
    if current:
        return current
    token = _random.token_urlsafe(24)
    s = uow.session
    s.add(TenantSecret(tenant_id=actor.tenant_id, name=name, ciphertext=encrypt(token), set_by=actor.email or "system"))
    return token


def callback_urls(*, uow: UnitOfWork, actor: Actor, base_url: str) -> dict[str, str]:
    """The URLs to paste into Meta's, Twilio's and the mail service's consoles."""
    hook = webhook_id(uow=uow, actor=actor)
    base = f"{base_url.rstrip('/')}/hooks/{hook}"
    return {
        "whatsapp": f"{base}/whatsapp",
        "twilio_sms": f"{base}/twilio/sms",
        "twilio_message_status": f"{base}/twilio/message-status",
        "twilio_call_status": f"{base}/twilio/call-status",
        "twilio_transcription": f"{base}/twilio/transcription",
        "email": f"{base}/email/{email_inbound_token(uow=uow, actor=actor)}",
        "widget": f"{base_url.rstrip('/')}/widget.js",
    }


# --------------------------------------------------------------------------- the webhook endpoint


class EndpointStatus(BaseModel):
    """Whether the REST API that receives provider webhooks answers, as the Channels tab says it."""

    reachable: bool
    api_url: str
    #: The base providers must reach (``STUDIO_PUBLIC_URL``); None: not set, see :func:`expected_urls`.
    public_url: str | None
    message: str


def webhook_endpoint(*, api_url: str, public_url: str | None, client: Any = None) -> EndpointStatus:
    """Ask the API's ``/api/health`` at ``api_url`` (``STUDIO_API_URL``) whether it is up.

    Nothing receives a provider's messages unless that process runs; the answer says how to start it.
    """
    import httpx

    base = api_url.rstrip("/")
    start = f"Start the API: `python -m engine api --port {_port(base)}` (or `bash scripts/start.sh`, which runs it)."
    try:
        if client is None:
            with httpx.Client(timeout=2.0, trust_env=False) as own:
                response = own.get(f"{base}/api/health")
        else:
            response = client.get(f"{base}/api/health")
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        why = type(exc).__name__ if not str(exc) else str(exc).splitlines()[0][:200]
        return EndpointStatus(
            reachable=False,
            api_url=base,
            public_url=public_url,
            message=f"The webhook endpoint (the REST API) does not answer at {base} ({why}): "
            f"providers' messages and the web chat reach nothing. {start}",
        )
    if not isinstance(body, dict) or "status" not in body:
        return EndpointStatus(
            reachable=False,
            api_url=base,
            public_url=public_url,
            message=f"{base} answers HTTP {response.status_code}, but it is not the Studio Automations API "
            f"(STUDIO_API_URL points elsewhere). {start}",
        )
    if body.get("status") != "ok":
        return EndpointStatus(
            reachable=True,
            api_url=base,
            public_url=public_url,
            message=f"The API at {base} answers, but reports a problem: {body}",
        )
    where = (
        f" Providers must reach it at {public_url.rstrip('/')} (STUDIO_PUBLIC_URL): that is checked from outside only."
        if public_url
        else ""
    )
    return EndpointStatus(
        reachable=True, api_url=base, public_url=public_url, message=f"The webhook endpoint is up at {base}.{where}"
    )


def _port(base: str) -> int:
    from urllib.parse import urlsplit

    parts = urlsplit(base)
    try:
        return parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return 8000


# --------------------------------------------------------------------------- test message


def send_test_message(
    *, uow: UnitOfWork, actor: Actor, channel: str, recipient: str, client: Any = None
) -> TestMessageResult:
    """Send one message through the channel's adapter now and report the provider's answer.

    Nothing is written to the outbox; errors come back as ``ok=False`` with the provider's
    message (secrets are never part of it).
    """
    actor.require(ADMIN)
    from engine.channels.base import OutgoingMessage
    from engine.channels.registry import adapter_for
    from engine.errors import EngineError
    from engine.messaging.delivery import normalize_recipient
    from engine.settings import get_settings

    _spec(channel)
    if not (recipient or "").strip():
        raise InvalidInput("give a phone number or e-mail address to send the test to", field="recipient")
    s = uow.session
    tenant = s.get(Tenant, actor.tenant_id)
    if tenant is None:
        raise NotFound("tenant not found")
    stored = settings_of(tenant.settings)
    settings = resolved_tenant_settings(s, actor.tenant_id, stored)
    name = tenant.name
    try:
        to = normalize_recipient(channel, recipient, {"settings": stored})
        adapter = adapter_for(channel, settings, client, allow_base_url_override=get_settings().allow_provider_base_url)
        message = OutgoingMessage(
            channel=channel,
            recipient=to,
            subject=f"Test message from {name}",
            body=f"This is a test message from {name} (Studio Automations).",
        )
        result = adapter.send(message, last_inbound_at=uow.now(), now=uow.now())
    except EngineError as exc:
        return TestMessageResult(ok=False, status="failed", answer=exc.message)
    answer = f"{result.status}" + (f" (provider id {result.provider_message_id})" if result.provider_message_id else "")
    if result.error:
        answer += f": {result.error}"
    return TestMessageResult(
        ok=result.status in ("sent", "recorded"),
        status=result.status,
        provider_message_id=result.provider_message_id,
        answer=answer,
    )


# --------------------------------------------------------------------------- audit


def record_audit(*, uow: UnitOfWork, actor: Actor, area: str, changes: dict[str, Any]) -> None:
    """Add a row to the settings audit log (callers pass secrets as "changed")."""
    s = uow.session
    s.add(SettingsAudit(tenant_id=actor.tenant_id, actor=actor.email or "system", area=area, changes=changes))


def list_audit(*, uow: UnitOfWork, actor: Actor, limit: int = 200) -> list[AuditOut]:
    """The newest settings changes first (owners only)."""
    actor.require(ADMIN)
    s = uow.session
    rows = s.exec(
        select(SettingsAudit)
        .where(SettingsAudit.tenant_id == actor.tenant_id)
        .order_by(col(SettingsAudit.at).desc())
        .limit(max(1, min(limit, 1000)))
    ).all()
    return [AuditOut(at=r.at, actor=r.actor, area=r.area, changes=r.changes) for r in rows]
