"""The rest of a studio's settings (owners only), each validated with the field named and
recorded in the settings audit log: business hours, quiet hours, frequency cap, AI provider,
knowledge base (with CSV import), webhook allow-list and signing-secret rotation.

Secrets: the AI provider's key is kept Fernet-encrypted inside ``settings.ai.apiKeyEncrypted``
(the runner decrypts it where it builds the provider); the webhook signing secret lives in
``tenant_secrets`` (``webhook.signingSecret`` and, for 24 hours after a rotation,
``webhook.previousSigningSecret``). Neither is ever returned, except a new signing secret
once, by :func:`rotate_signing_secret`.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import logging
import re
import secrets as _random
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_camel
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from engine.errors import InvalidInput, NotFound
from engine.security.auth import ADMIN, Actor
from engine.security.secrets import decrypt, encrypt
from engine.services.channel_settings import SecretState, record_audit
from engine.store.models import Tenant, TenantSecret, utcnow
from engine.uow import UnitOfWork

logger = logging.getLogger(__name__)

ROTATION_GRACE = timedelta(hours=24)
MAX_KB_ENTRIES = 2000
MAX_CSV_BYTES = 1_000_000
SIGNING = "webhook.signingSecret"
PREVIOUS_SIGNING = "webhook.previousSigningSecret"
HOST_RE = re.compile(r"^(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$")


class AISettingsView(BaseModel):
    provider: str
    base_url: str | None
    model: str | None
    api_key: SecretState


class StudioSettingsView(BaseModel):
    business_hours: dict[str, Any]
    quiet_hours: dict[str, str] | None
    frequency_cap: int | None
    ai: AISettingsView
    knowledge_entries: list[dict[str, Any]]
    webhook_allow_list: list[str]
    signing_secret: SecretState
    previous_secret_valid_until: datetime | None


def _tenant(s: Session, actor: Actor) -> Tenant:
    tenant = s.get(Tenant, actor.tenant_id)
    if tenant is None:
        raise NotFound("tenant not found")
    return tenant


def _update(uow: UnitOfWork, actor: Actor, area: str, key: str, value: Any, *, audit_value: Any = None) -> None:
    actor.require(ADMIN)
    s = uow.session
    tenant = _tenant(s, actor)
    old = (tenant.settings or {}).get(key)
    settings = dict(tenant.settings or {})
    if value is None:
        settings.pop(key, None)
    else:
        settings[key] = value
    tenant.settings = settings
    s.add(tenant)
    if old != value:
        record_audit(
            uow=uow,
            actor=actor,
            area=area,
            changes={key: audit_value if audit_value is not None else {"from": old, "to": value}},
        )


def get_studio_settings(*, uow: UnitOfWork, actor: Actor) -> StudioSettingsView:
    """Everything the settings page shows (secrets as set/not set only)."""
    actor.require(ADMIN)
    s = uow.session
    settings = dict(_tenant(s, actor).settings or {})
    rows = {
        r.name: r
        for r in s.exec(
            select(TenantSecret).where(
                TenantSecret.tenant_id == actor.tenant_id, col(TenantSecret.name).in_([SIGNING, PREVIOUS_SIGNING])
            )
        ).all()
    }
    ai = settings.get("ai") or {}
    signing = rows.get(SIGNING)
    previous_until = rows[SIGNING].set_at + ROTATION_GRACE if PREVIOUS_SIGNING in rows and signing else None
    legacy = bool(settings.get("webhookSecret"))
    return StudioSettingsView(
        business_hours=settings.get("businessHours") or {"weekly": {}, "closedDays": []},
        quiet_hours=settings.get("quietHours"),
        frequency_cap=settings.get("frequencyCap"),
        ai=AISettingsView(
            provider=ai.get("provider") or "offline",
            base_url=ai.get("baseUrl"),
            model=ai.get("model"),
            api_key=SecretState(set=bool(ai.get("apiKeyEncrypted") or ai.get("apiKey")), set_at=ai.get("apiKeySetAt")),
        ),
        knowledge_entries=list((settings.get("knowledgeBase") or {}).get("entries") or []),
        webhook_allow_list=list(settings.get("webhookAllowList") or []),
        signing_secret=SecretState(
            set=bool(signing) or legacy,
            set_at=signing.set_at if signing else None,
            set_by=signing.set_by if signing else None,
        ),
        previous_secret_valid_until=previous_until if previous_until and previous_until > uow.now() else None,
    )


# --------------------------------------------------------------------------- hours and limits


def save_business_hours(*, uow: UnitOfWork, actor: Actor, hours: dict[str, Any]) -> dict[str, Any]:
    """Opening hours per weekday (0 = Sunday) and closed days; see :mod:`engine.workflow.business_hours`."""
    from engine.workflow.business_hours import validate

    clean = validate(hours)
    _update(uow, actor, "businessHours", "businessHours", clean)
    return clean


def _hhmm(value: str, field: str) -> str:
    from engine.workflow.business_hours import parse_time

    return parse_time(value, field).strftime("%H:%M")


def save_quiet_hours(*, uow: UnitOfWork, actor: Actor, start: str | None, end: str | None) -> dict[str, str] | None:
    """No automated messages between ``start`` and ``end`` (deferred to ``end``); both None: off."""
    if not start and not end:
        _update(uow, actor, "quietHours", "quietHours", None)
        return None
    value = {"start": _hhmm(start or "", "quietHours.start"), "end": _hhmm(end or "", "quietHours.end")}
    if value["start"] == value["end"]:
        raise InvalidInput("must differ from the start", field="quietHours.end")
    _update(uow, actor, "quietHours", "quietHours", value)
    return value


def save_frequency_cap(*, uow: UnitOfWork, actor: Actor, cap: int | None) -> int | None:
    """At most ``cap`` automated messages per contact and day (None: no cap)."""
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= 100):
        raise InvalidInput("must be a whole number from 1 to 100 (or empty for no cap)", field="frequencyCap")
    _update(uow, actor, "frequencyCap", "frequencyCap", cap)
    return cap


# --------------------------------------------------------------------------- AI provider


def save_ai_provider(
    *,
    uow: UnitOfWork,
    actor: Actor,
    provider: str,
    base_url: str | None = None,
    model: str | None = None,
    api_key: str | None = None,
) -> AISettingsView:
    """Built-in (offline) or an OpenAI-compatible endpoint; ``api_key`` None/"" keeps the stored one."""
    from engine.ai.providers import ProviderSettings

    actor.require(ADMIN)
    s = uow.session
    old = dict((_tenant(s, actor).settings or {}).get("ai") or {})
    value: dict[str, Any] = {k: v for k, v in old.items() if k in ("classify",)}
    value["provider"] = provider
    if provider != "offline":
        value.update(baseUrl=(base_url or "").strip() or None, model=(model or "").strip() or None)
        if api_key:
            value.update(apiKeyEncrypted=encrypt(api_key), apiKeySetAt=uow.now().isoformat())
        elif old.get("apiKeyEncrypted"):
            value.update(apiKeyEncrypted=old["apiKeyEncrypted"], apiKeySetAt=old.get("apiKeySetAt"))
        if not value.get("apiKeyEncrypted"):
            raise InvalidInput("is required for an OpenAI-compatible provider", field="ai.apiKey")
        if not value.get("model"):
            raise InvalidInput("is required for an OpenAI-compatible provider", field="ai.model")
    try:
        ProviderSettings.model_validate({k: v for k, v in value.items() if v is not None and k != "apiKeyEncrypted"})
    except ValidationError as exc:  # field names and messages only, never values
        error = exc.errors()[0]
        where = to_camel(str(error["loc"][0])) if error["loc"] else "provider"
        raise InvalidInput(error["msg"], field=f"ai.{where}") from None
    changes: dict[str, Any] = {
        k: {"from": old.get(k), "to": value.get(k)}
        for k in ("provider", "baseUrl", "model")
        if old.get(k) != value.get(k)
    }
    if api_key:
        changes["apiKey"] = "changed"
    s = uow.session
    tenant = _tenant(s, actor)
    tenant.settings = {**(tenant.settings or {}), "ai": value}
    s.add(tenant)
    if changes:
        record_audit(uow=uow, actor=actor, area="ai", changes=changes)
    return get_studio_settings(uow=uow, actor=actor).ai


def check_ai_provider(*, uow: UnitOfWork, actor: Actor, client: Any = None) -> tuple[bool, str]:
    """Ask the configured provider one question; (ok, the answer or the error)."""
    from engine.ai import provider_for_tenant
    from engine.errors import EngineError

    actor.require(ADMIN)
    s = uow.session
    tenant = _tenant(s, actor)
    ctx = {"name": tenant.name, "settings": dict(tenant.settings or {})}
    try:
        provider = provider_for_tenant(ctx, client=client)
        answer = provider.answer("Answer briefly.", question="Wann habt ihr geöffnet?")
    except EngineError as exc:
        return False, exc.message
    return True, answer.text


# --------------------------------------------------------------------------- knowledge base


def _clean_entry(raw: dict[str, Any], where: str) -> dict[str, Any]:
    question = str(raw.get("question") or "").strip()
    answer = str(raw.get("answer") or "").strip()
    if not question:
        raise InvalidInput("question is empty", field=f"{where}.question")
    if not answer:
        raise InvalidInput("answer is empty", field=f"{where}.answer")
    if len(question) > 500 or len(answer) > 4000:
        raise InvalidInput("question (500) or answer (4000 characters) is too long", field=where)
    tags = raw.get("tags") or []
    if isinstance(tags, str):
        tags = list(re.split(r"[;,|]", tags))
    entry = {"question": question, "answer": answer, "tags": [t.strip() for t in tags if str(t).strip()][:20]}
    for key in ("questionEn", "answerEn"):  # the English question and answer (members writing in English)
        text = str(raw.get(key) or raw.get(key.lower()) or "").strip()  # CSV headers arrive lower-case
        if len(text) > (500 if key == "questionEn" else 4000):
            raise InvalidInput(f"{key} is too long", field=f"{where}.{key}")
        if text:
            entry[key] = text
    return entry


def save_knowledge_entries(*, uow: UnitOfWork, actor: Actor, entries: list[dict[str, Any]]) -> int:
    """Replace the knowledge base's question/answer entries (opening hours and prices are kept)."""
    clean = [_clean_entry(e, f"knowledgeBase.entries[{i}]") for i, e in enumerate(entries)]
    if len(clean) > MAX_KB_ENTRIES:
        raise InvalidInput(f"at most {MAX_KB_ENTRIES} entries", field="knowledgeBase.entries")
    actor.require(ADMIN)
    s = uow.session
    tenant = _tenant(s, actor)
    kb = dict((tenant.settings or {}).get("knowledgeBase") or {"studioName": tenant.name})
    before = len(kb.get("entries") or [])
    kb["entries"] = clean
    tenant.settings = {**(tenant.settings or {}), "knowledgeBase": kb}
    s.add(tenant)
    record_audit(uow=uow, actor=actor, area="knowledgeBase", changes={"entries": {"from": before, "to": len(clean)}})
    return len(clean)


def import_knowledge_csv(*, uow: UnitOfWork, actor: Actor, data: bytes | str, replace: bool = False) -> int:
    """Import ``question,answer,tags[,questionEn,answerEn]`` rows (header required; tags split by ``;``).

    Every row is checked first; one bad row stores nothing and the error names its line.
    Returns the number of entries after the import.
    """
    actor.require(ADMIN)
    if isinstance(data, bytes):
        if len(data) > MAX_CSV_BYTES:
            raise InvalidInput("the file is larger than 1 MB", field="file")
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidInput("the file is not UTF-8 text", field="file") from None
    try:
        dialect = csv.Sniffer().sniff(data[:2048], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(data), dialect=dialect)
    header = [h.strip().lower() for h in reader.fieldnames or []]
    if "question" not in header or "answer" not in header:
        raise InvalidInput("the first line must name the columns question,answer[,tags]", field="file")
    rows = []
    for line, row in enumerate(reader, start=2):
        row = {(k or "").strip().lower(): v for k, v in row.items()}
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue
        rows.append(_clean_entry(row, f"line {line}"))
    if not rows:
        raise InvalidInput("no entries found", field="file")
    existing = [] if replace else get_studio_settings(uow=uow, actor=actor).knowledge_entries
    return save_knowledge_entries(uow=uow, actor=actor, entries=existing + rows)


# --------------------------------------------------------------------------- webhooks


def save_webhook_allow_list(*, uow: UnitOfWork, actor: Actor, entries: list[str]) -> list[str]:
    """Hosts, IPs or networks that ``call_webhook`` may reach even if private (e.g. an on-site CRM)."""
    clean = []
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            if not HOST_RE.match(entry) or len(entry) > 253:
                raise InvalidInput(
                    f"{entry!r} is not a host name, IP address or network", field="webhookAllowList"
                ) from None
        clean.append(entry)
    _update(uow, actor, "webhookAllowList", "webhookAllowList", clean or None)
    return clean


def rotate_signing_secret(*, uow: UnitOfWork, actor: Actor) -> str:
    """A new webhook signing secret, returned ONCE; the previous one keeps signing for 24 hours.

    During the grace period every webhook carries both signatures (``v1=<new>,v1=<old>``), so
    receivers can switch at their own pace.
    """
    actor.require(ADMIN)
    new = "whsec_" + _random.token_hex(24)
    now = uow.now()
    s = uow.session
    tenant = _tenant(s, actor)
    rows = {
        r.name: r
        for r in s.exec(
            select(TenantSecret).where(
                TenantSecret.tenant_id == actor.tenant_id, col(TenantSecret.name).in_([SIGNING, PREVIOUS_SIGNING])
            )
        ).all()
    }
    current = decrypt(rows[SIGNING].ciphertext) if SIGNING in rows else (tenant.settings or {}).get("webhookSecret")
    previous = rows.get(PREVIOUS_SIGNING)
    if current:
        previous = previous or TenantSecret(tenant_id=actor.tenant_id, name=PREVIOUS_SIGNING, ciphertext="")
        previous.ciphertext, previous.set_at, previous.set_by = encrypt(current), now, actor.email or "system"
        s.add(previous)
    row = rows.get(SIGNING) or TenantSecret(tenant_id=actor.tenant_id, name=SIGNING, ciphertext="")
    row.ciphertext, row.set_at, row.set_by = encrypt(new), now, actor.email or "system"
    s.add(row)
    if "webhookSecret" in (tenant.settings or {}):
        tenant.settings = {k: v for k, v in tenant.settings.items() if k != "webhookSecret"}
        s.add(tenant)
    record_audit(
        uow=uow,
        actor=actor,
        area="webhookSigning",
        changes={"signingSecret": "changed", "previousValidUntil": (now + ROTATION_GRACE).isoformat()},
    )
    return new


def signing_secrets(db: Engine, tenant_id: str, settings: dict[str, Any], *, now: datetime | None = None) -> list[str]:
    """The secrets outgoing webhooks are signed with: the current one, plus the previous one
    for 24 hours after a rotation (engine use only)."""
    now = now or utcnow()
    if db is None:
        return [settings["webhookSecret"]] if settings.get("webhookSecret") else []
    with Session(db) as s:
        rows = {
            r.name: r
            for r in s.exec(
                select(TenantSecret).where(
                    col(TenantSecret.tenant_id) == tenant_id, col(TenantSecret.name).in_([SIGNING, PREVIOUS_SIGNING])
                )
            ).all()
        }
    if SIGNING not in rows:
        return [settings["webhookSecret"]] if settings.get("webhookSecret") else []
    out = [decrypt(rows[SIGNING].ciphertext)]
    if PREVIOUS_SIGNING in rows and now < rows[SIGNING].set_at + ROTATION_GRACE:
        out.append(decrypt(rows[PREVIOUS_SIGNING].ciphertext))
    return out
