"""Channel settings of a studio: provider fields, write-only encrypted secrets, the public
webhook id, "send a test message", and the settings audit log (owners only).

Non-secret fields live in ``tenants.settings["channels"][channel]`` (where the adapters
already look); secrets live Fernet-encrypted in ``tenant_secrets`` under
``channels.<channel>.<field>`` and are merged in only by :func:`resolved_tenant_settings`
(delivery, test messages) and :func:`secret_value` (signature checks). Nothing returned to a
page or the API contains a secret: only "set on <date>".
"""

from __future__ import annotations

import logging
import secrets as _random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

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
    """One field of a channel's settings form."""

    name: str
    label: str
    secret: bool = False
    required: bool = False
    help: str = ""
    choices: tuple[str, ...] = ()
    default: Any = None


#: channel -> (adapter name, fields). ``required`` applies once the channel is switched on.
CHANNEL_FIELDS: dict[str, tuple[str, tuple[FieldSpec, ...]]] = {
    "whatsapp": (
        "whatsapp_cloud",
        (
            FieldSpec("phoneNumberId", "Phone number id", required=True, help="Meta app > WhatsApp > API setup"),
            FieldSpec("accessToken", "Access token", secret=True, required=True, help="A permanent system-user token"),
            FieldSpec(
                "appSecret",
                "App secret",
                secret=True,
                required=True,
                help="Meta app > Settings > Basic; checks the X-Hub-Signature-256 of inbound webhooks",
            ),
            FieldSpec(
                "verifyToken",
                "Verify token",
                secret=True,
                required=True,
                help="Any string; paste the same into Meta's webhook set-up",
            ),
            FieldSpec("templateName", "Approved template", help="Sent outside the 24-hour window"),
            FieldSpec("templateLanguage", "Template language", default="de"),
        ),
    ),
    "sms": (
        "twilio",
        (
            FieldSpec("accountSid", "Account SID", required=True, help="Starts with AC"),
            FieldSpec(
                "authToken",
                "Auth token",
                secret=True,
                required=True,
                help="Also checks the X-Twilio-Signature of inbound webhooks",
            ),
            FieldSpec("fromNumber", "Sender number", help="E.164, e.g. +4930123456 (or give a messaging service)"),
            FieldSpec(
                "messagingServiceSid", "Messaging service SID", help="Starts with MG; used instead of the sender number"
            ),
        ),
    ),
    "email": (
        "smtp",
        (
            FieldSpec("host", "SMTP host", required=True),
            FieldSpec("port", "Port", default=587),
            FieldSpec("security", "Security", choices=("starttls", "tls", "none"), default="starttls"),
            FieldSpec("username", "User"),
            FieldSpec("password", "Password", secret=True),
            FieldSpec("fromAddress", "From address", required=True),
            FieldSpec("fromName", "From name"),
        ),
    ),
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


def get_channel(*, uow: UnitOfWork, actor: Actor, channel: str) -> ChannelView:
    """The channel's fields (secrets as set/not set with the date)."""
    actor.require(ADMIN)
    adapter, fields = _spec(channel)
    s = uow.session
    tenant = s.get(Tenant, actor.tenant_id)
    if tenant is None:
        raise NotFound("tenant not found")
    conf = dict(((tenant.settings or {}).get("channels") or {}).get(channel) or {})
    rows = _secret_rows(s, actor.tenant_id, f"channels.{channel}.")
    values = {f.name: conf.get(f.name, f.default) for f in fields if not f.secret}
    states = {}
    for f in fields:
        if f.secret:
            row = rows.get(_secret_name(channel, f.name))
            legacy = bool(conf.get(f.name))  # plain text from before encryption; moved on the next save
            states[f.name] = SecretState(
                set=row is not None or legacy, set_at=row.set_at if row else None, set_by=row.set_by if row else None
            )
    enabled = conf.get("adapter") == adapter
    return ChannelView(channel=channel, enabled=enabled, adapter=adapter, values=values, secrets=states)


def _clean_value(channel: str, spec: FieldSpec, value: Any) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if spec.name == "port":
        try:
            port = int(value)
        except (TypeError, ValueError):
            raise InvalidInput("must be a whole number", field=f"channels.{channel}.port") from None
        if not 0 < port < 65536:
            raise InvalidInput("must be between 1 and 65535", field=f"channels.{channel}.port")
        return port
    value = str(value).strip()
    if spec.choices and value not in spec.choices:
        raise InvalidInput(f"must be one of {', '.join(spec.choices)}", field=f"channels.{channel}.{spec.name}")
    if len(value) > 500:
        raise InvalidInput("is too long (at most 500 characters)", field=f"channels.{channel}.{spec.name}")
    return value


def _check_specific(channel: str, values: dict[str, Any]) -> None:
    if channel == "sms":
        if values.get("accountSid") and not str(values["accountSid"]).startswith("AC"):
            raise InvalidInput("a Twilio account SID starts with AC", field="channels.sms.accountSid")
        if not values.get("fromNumber") and not values.get("messagingServiceSid"):
            raise InvalidInput("give a sender number or a messaging service SID", field="channels.sms.fromNumber")
        if values.get("fromNumber"):
            from engine.channels.phones import normalize_phone

            try:
                values["fromNumber"] = normalize_phone(values["fromNumber"])
            except Exception:  # noqa: BLE001 - any parse failure is the same message
                raise InvalidInput("is not a phone number (use +49...)", field="channels.sms.fromNumber") from None
    if channel == "email" and values.get("fromAddress") and "@" not in str(values["fromAddress"]):
        raise InvalidInput("is not an e-mail address", field="channels.email.fromAddress")


def save_channel(
    *,
    uow: UnitOfWork,
    actor: Actor,
    channel: str,
    enabled: bool,
    values: dict[str, Any],
    secrets: dict[str, str | None] | None = None,
) -> ChannelView:
    """Save a channel's fields; a secret given as ``None`` or ``""`` keeps the stored one.

    Validates everything before writing (one transaction: settings, secrets and the audit
    row together). Raises :class:`InvalidInput` naming the field.
    """
    actor.require(ADMIN)
    adapter, fields = _spec(channel)
    secrets = {k: v for k, v in (secrets or {}).items() if v not in (None, "")}
    names = {f.name for f in fields}
    for key in [*values, *secrets]:
        if key not in names:
            raise InvalidInput(f"unknown field {key!r}", field=f"channels.{channel}.{key}")
    clean = {}
    for f in fields:
        if f.secret:
            if f.name in values:
                raise InvalidInput("is a secret: pass it in secrets", field=f"channels.{channel}.{f.name}")
            continue
        clean[f.name] = _clean_value(channel, f, values.get(f.name, f.default))
    for key, value in secrets.items():
        if not isinstance(value, str) or len(value) > 4000:
            raise InvalidInput("must be text of at most 4000 characters", field=f"channels.{channel}.{key}")
    s = uow.session
    tenant = s.get(Tenant, actor.tenant_id)
    if tenant is None:
        raise NotFound("tenant not found")
    existing = _secret_rows(s, actor.tenant_id, f"channels.{channel}.")
    old = dict(((tenant.settings or {}).get("channels") or {}).get(channel) or {})
    for f in fields:  # plain-text secrets from older settings move into encrypted storage
        legacy = old.get(f.name)
        if (
            f.secret
            and isinstance(legacy, str)
            and legacy
            and f.name not in secrets
            and _secret_name(channel, f.name) not in existing
        ):
            secrets[f.name] = legacy
    if enabled:
        _check_specific(channel, clean)
        for f in fields:
            have = (
                clean.get(f.name) if not f.secret else (f.name in secrets or _secret_name(channel, f.name) in existing)
            )
            if f.required and not have:
                raise InvalidInput("is required to switch this channel on", field=f"channels.{channel}.{f.name}")
    new = {"adapter": adapter if enabled else "outbox", **{k: v for k, v in clean.items() if v is not None}}
    channels = dict((tenant.settings or {}).get("channels") or {})
    channels[channel] = new
    tenant.settings = {**(tenant.settings or {}), "channels": channels}
    s.add(tenant)
    now = uow.now()
    by = actor.email or "system"
    for key, value in secrets.items():
        row = existing.get(_secret_name(channel, key))
        if row is None:
            row = TenantSecret(tenant_id=actor.tenant_id, name=_secret_name(channel, key), ciphertext="")
        row.ciphertext, row.set_at, row.set_by = encrypt(value or ""), now, by
        s.add(row)
    secret_names = {f.name for f in fields if f.secret}
    changes: dict[str, Any] = {
        k: {"from": old.get(k), "to": new.get(k)}
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k) and k not in secret_names
    }
    changes.update(dict.fromkeys(secrets, "changed"))
    if changes:
        s.add(SettingsAudit(tenant_id=actor.tenant_id, actor=by, area=f"channels.{channel}", changes=changes))
    logger.info(
        "channel %s settings saved for tenant %s (%d secret(s) replaced)", channel, actor.tenant_id, len(secrets)
    )
    return get_channel(uow=uow, actor=actor, channel=channel)


def secret_value(*, uow: UnitOfWork, tenant_id: str, name: str) -> str | None:
    """Decrypt one secret for the engine's own use (signature checks); None when not set."""
    s = uow.session
    row = s.exec(select(TenantSecret).where(TenantSecret.tenant_id == tenant_id, TenantSecret.name == name)).first()
    return decrypt(row.ciphertext) if row else None


def resolved_tenant_settings(session: Session, tenant_id: str, settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with each channel's decrypted secrets merged in (for adapters only; never show it)."""
    rows = _secret_rows(session, tenant_id, "channels.")
    if not rows:
        return settings
    channels = {k: dict(v or {}) for k, v in (settings.get("channels") or {}).items()}
    for name, row in rows.items():
        _, channel, field = name.split(".", 2)
        if channel in channels:
            channels[channel][field] = decrypt(row.ciphertext)
    _add_status_callback(session, tenant_id, channels)
    return {**settings, "channels": channels}


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
    settings = resolved_tenant_settings(s, actor.tenant_id, dict(tenant.settings or {}))
    name = tenant.name
    try:
        to = normalize_recipient(channel, recipient, {"settings": settings})
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
