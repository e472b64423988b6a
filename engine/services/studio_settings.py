"""The rest of a studio's settings (owners only), each validated with the field named and
recorded in the settings audit log: business hours, quiet hours, frequency cap, AI provider,
knowledge base (with CSV import), webhook allow-list and signing-secret rotation.

Every save goes through :func:`update_settings`: the typed model (:mod:`engine.tenant_settings`)
checks exactly the settings a caller changes and writes only those, so a form or an API call
never writes back a value it did not mean to change.

Secrets: the AI provider's key is kept Fernet-encrypted inside ``settings.ai.apiKeyEncrypted``
(the runner decrypts it where it builds the provider); the webhook signing secret lives in
``tenant_secrets`` (``webhook.signingSecret`` and, for 24 hours after a rotation,
``webhook.previousSigningSecret``). Neither is ever returned, except a new signing secret
once, by :func:`rotate_signing_secret`.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import secrets as _random
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from engine.errors import Conflict, InvalidInput, NotFound
from engine.security.auth import ADMIN, Actor
from engine.security.secrets import decrypt, encrypt
from engine.services.channel_settings import SecretState, locked_tenant, record_audit
from engine.store.models import Tenant, TenantSecret, utcnow
from engine.tenant_settings import TenantSettings, field_path, known_path, patched, settings_of
from engine.uow import UnitOfWork

logger = logging.getLogger(__name__)

ROTATION_GRACE = timedelta(hours=24)
MAX_KB_ENTRIES = 2000
MAX_CSV_BYTES = 1_000_000
SIGNING = "webhook.signingSecret"
PREVIOUS_SIGNING = "webhook.previousSigningSecret"


class AISettingsView(BaseModel):
    provider: str
    base_url: str | None
    model: str | None
    classify: bool = False
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
    #: Every setting as stored (camelCase; secrets left out): what the API's GET /api/settings shows.
    settings: dict[str, Any] = {}


def _tenant(s: Session, actor: Actor) -> Tenant:
    tenant = s.get(Tenant, actor.tenant_id)
    if tenant is None:
        raise NotFound("tenant not found")
    return tenant


#: Settings the engine keeps itself, or that have their own door (channels: secrets and checks).
NOT_WRITABLE = {
    "channels": "use the channel settings (PUT /api/settings/channels/{channel})",
    "optOutsRecorded": "is kept by the engine",
    "webhookSecret": "rotate the signing secret instead",
    "ai.apiKeyEncrypted": "give ai.apiKey; it is stored encrypted",
    "ai.apiKeySetAt": "is kept by the engine",
}


def update_settings(
    *,
    uow: UnitOfWork,
    actor: Actor,
    changes: Mapping[str, Any],
    area: str | None = None,
    audit: dict[str, Any] | None = None,
) -> TenantSettings:
    """Change only the settings in ``changes`` (dotted paths in stored spelling, ``None`` removes
    one so its default applies); every other setting stays as stored.

    Checked by the typed model (:mod:`engine.tenant_settings`): :class:`InvalidInput` names the
    field and nothing is written. The change is recorded in the audit log (``audit`` replaces the
    from/to of each path, e.g. to count entries instead of listing them).
    """
    actor.require(ADMIN)
    if not changes:
        return settings_of(_tenant(uow.session, actor).settings)
    tenant = locked_tenant(uow, actor.tenant_id)
    before, old_raw = settings_of(tenant.settings), tenant.settings or {}
    raw, after = patched(tenant.settings, changes)
    tenant.settings = raw
    uow.session.add(tenant)
    diff = _audit(changes, before.stored(), after.stored(), old_raw, raw)
    if diff:
        tops = {path.split(".")[0] for path in changes}  # the paths in ``changes`` say the rest
        record_audit(
            uow=uow, actor=actor, area=area or (tops.pop() if len(tops) == 1 else "settings"), changes=audit or diff
        )
    return after


#: Paths holding secrets: the audit says "changed" under the name given (None: not at all), never a value.
SECRET_PATHS = {"ai.apiKeyEncrypted": "ai.apiKey", "ai.apiKey": None, "ai.apiKeySetAt": None, "webhookSecret": None}


def _audit(changes: Mapping[str, Any], old: Any, new: Any, old_raw: Any, new_raw: Any) -> dict[str, Any]:
    diff: dict[str, Any] = {}
    for path in changes:
        if path in SECRET_PATHS:
            if SECRET_PATHS[path] and _at(old_raw, path) != _at(new_raw, path):
                diff[str(SECRET_PATHS[path])] = "changed"
        elif _at(old, path) != _at(new, path):
            diff[path] = {"from": _at(old, path), "to": _at(new, path)}
    return diff


def _at(node: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def merge_patch(body: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A JSON merge patch (RFC 7396: objects merge key by key, ``null`` removes, anything else
    replaces; an empty object changes nothing) as the dotted paths :func:`update_settings` takes.
    Keys the model does not know and keys the engine keeps are refused, naming them."""
    out: dict[str, Any] = {}
    for key, value in body.items():
        path = f"{prefix}{key}"
        if not isinstance(key, str) or not key.strip() or "." in key:
            raise InvalidInput("is not a setting name (no dots, not empty)", field=path or "settings")
        if path in NOT_WRITABLE:
            raise InvalidInput(NOT_WRITABLE[path], field=path)
        if not known_path(path):
            raise InvalidInput("unknown setting", field=path)
        if isinstance(value, Mapping):
            out.update(merge_patch(value, prefix=f"{path}."))
        else:
            out[path] = value
    return out


def patch_settings(*, uow: UnitOfWork, actor: Actor, body: Any) -> TenantSettings:
    """The REST API's change of settings: a JSON merge patch of the stored settings (camelCase, as
    ``GET /api/settings`` shows them); ``ai.apiKey`` is encrypted, never stored as given. Only
    what the patch names changes; a bad value is refused naming its field and nothing is written."""
    actor.require(ADMIN)
    if not isinstance(body, Mapping):
        raise InvalidInput("must be a JSON object of settings", field="settings")
    changes = merge_patch(body)
    if "ai.apiKey" in changes:
        key = changes.pop("ai.apiKey")
        if key is not None and (not isinstance(key, str) or not key.strip()):
            raise InvalidInput("must be the key as text (null keeps the stored one)", field="ai.apiKey")
        changes.update(ai_changes(uow=uow, api_key=key))
    after = patched(_tenant(uow.session, actor).settings, changes)[1]
    if any(p.startswith("ai.") for p in changes):
        _check_ai(after.ai)
        _check_provider(after)
    if any(p.startswith("knowledgeBase") for p in changes):
        _check_knowledge_base(after)
    return update_settings(uow=uow, actor=actor, changes=changes)


def _check_provider(settings: TenantSettings) -> None:
    """The AI settings as the provider reads them (timeout, temperature ... are its own)."""
    from pydantic import ValidationError
    from pydantic.alias_generators import to_camel

    from engine.ai.providers import ProviderSettings

    try:
        ProviderSettings.model_validate(settings.ai.model_dump(mode="json", by_alias=True, exclude_none=True))
    except ValidationError as exc:  # field names and messages only, never values
        error = exc.errors()[0]
        where = to_camel(str(error["loc"][0])) if error["loc"] else "provider"
        raise InvalidInput(error["msg"], field=f"ai.{where}") from None


def _check_knowledge_base(settings: TenantSettings) -> None:
    """The knowledge base as the assistant reads it (opening hours, prices are its own)."""
    from pydantic import ValidationError

    from engine.ai.knowledge import KnowledgeBase

    if settings.knowledge_base is None:
        return
    try:
        KnowledgeBase.model_validate(settings.knowledge_base.model_dump(mode="json", by_alias=True, exclude_none=True))
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        raise InvalidInput(str(error["msg"]), field=field_path(("knowledgeBase", *error["loc"]))) from None


def get_studio_settings(*, uow: UnitOfWork, actor: Actor) -> StudioSettingsView:
    """Everything the settings page shows (secrets as set/not set only)."""
    actor.require(ADMIN)
    s = uow.session
    settings = settings_of(_tenant(s, actor).settings)
    rows = {
        r.name: r
        for r in s.exec(
            select(TenantSecret).where(
                TenantSecret.tenant_id == actor.tenant_id, col(TenantSecret.name).in_([SIGNING, PREVIOUS_SIGNING])
            )
        ).all()
    }
    stored = settings.stored()
    ai = settings.ai
    signing = rows.get(SIGNING)
    previous_until = rows[SIGNING].set_at + ROTATION_GRACE if PREVIOUS_SIGNING in rows and signing else None
    kb = settings.knowledge_base
    return StudioSettingsView(
        business_hours=stored.get("businessHours") or {"weekly": {}, "closedDays": []},
        quiet_hours=stored.get("quietHours"),
        frequency_cap=settings.frequency_cap,
        ai=AISettingsView(
            provider=ai.provider,
            base_url=ai.base_url,
            model=ai.model,
            classify=ai.classify,
            api_key=SecretState(set=ai.key_set, set_at=ai.api_key_set_at),
        ),
        knowledge_entries=[e.model_dump(mode="json", by_alias=True, exclude_none=True) for e in kb.entries]
        if kb
        else [],
        webhook_allow_list=list(settings.webhook_allow_list),
        signing_secret=SecretState(
            set=bool(signing) or settings.webhook_secret is not None,
            set_at=signing.set_at if signing else None,
            set_by=signing.set_by if signing else None,
        ),
        previous_secret_valid_until=previous_until if previous_until and previous_until > uow.now() else None,
        settings=stored,
    )


# --------------------------------------------------------------------------- hours and limits


def save_business_hours(*, uow: UnitOfWork, actor: Actor, hours: dict[str, Any]) -> dict[str, Any]:
    """Opening hours per weekday (0 = Sunday) and closed days; see :mod:`engine.workflow.business_hours`."""
    if not isinstance(hours, Mapping):
        raise InvalidInput("must be an object with weekly and closedDays", field="businessHours")
    after = update_settings(uow=uow, actor=actor, changes={"businessHours": dict(hours)})
    return after.stored().get("businessHours") or {"weekly": {}, "closedDays": []}


def save_quiet_hours(*, uow: UnitOfWork, actor: Actor, start: str | None, end: str | None) -> dict[str, str] | None:
    """No automated messages between ``start`` and ``end`` (deferred to ``end``); both None: off."""
    value = None if not start and not end else {"start": start or "", "end": end or ""}
    after = update_settings(uow=uow, actor=actor, changes={"quietHours": value})
    return after.stored().get("quietHours")


def save_frequency_cap(*, uow: UnitOfWork, actor: Actor, cap: int | None) -> int | None:
    """At most ``cap`` automated messages per contact and day (None: no cap)."""
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= 100):
        raise InvalidInput("must be a whole number from 1 to 100 (or empty for no cap)", field="frequencyCap")
    return update_settings(uow=uow, actor=actor, changes={"frequencyCap": cap}).frequency_cap


# --------------------------------------------------------------------------- AI provider


def ai_changes(
    *,
    uow: UnitOfWork,
    provider: str | None = None,
    base_url: str | None = None,
    model: str | None = None,
    api_key: str | None = None,
    classify: bool | None = None,
) -> dict[str, Any]:
    """The ``ai.*`` paths a save writes: the arguments given (None keeps a stored value, "" clears it);
    a new key is encrypted here and never stored in plain text."""
    changes: dict[str, Any] = {}
    for path, value in (("provider", provider), ("baseUrl", base_url), ("model", model), ("classify", classify)):
        if value is not None:
            changes[f"ai.{path}"] = value
    if api_key:
        if not isinstance(api_key, str) or len(api_key) > 4000:
            raise InvalidInput("must be text of at most 4000 characters", field="ai.apiKey")
        changes.update(
            {"ai.apiKeyEncrypted": encrypt(api_key), "ai.apiKeySetAt": uow.now().isoformat(), "ai.apiKey": None}
        )
    return changes


def _check_ai(ai: Any) -> None:
    if ai.provider == "offline":
        return
    if not ai.key_set:
        raise InvalidInput("is required for an OpenAI-compatible provider", field="ai.apiKey")
    if not ai.model:
        raise InvalidInput("is required for an OpenAI-compatible provider", field="ai.model")


def save_ai_provider(
    *,
    uow: UnitOfWork,
    actor: Actor,
    provider: str | None = None,
    base_url: str | None = None,
    model: str | None = None,
    api_key: str | None = None,
    classify: bool | None = None,
) -> AISettingsView:
    """Built-in (offline) or an OpenAI-compatible endpoint. Only what is given changes (None keeps
    the stored value, "" clears it); ``api_key`` None/"" keeps the stored key."""
    actor.require(ADMIN)
    changes = ai_changes(uow=uow, provider=provider, base_url=base_url, model=model, api_key=api_key, classify=classify)
    after = patched(_tenant(uow.session, actor).settings, changes)[1]
    _check_ai(after.ai)
    _check_provider(after)
    update_settings(uow=uow, actor=actor, changes=changes, area="ai")
    return get_studio_settings(uow=uow, actor=actor).ai


def check_ai_provider(*, uow: UnitOfWork, actor: Actor, client: Any = None) -> tuple[bool, str]:
    """Ask the configured provider one question; (ok, the answer or the error)."""
    from engine.ai import provider_for_tenant
    from engine.errors import EngineError

    actor.require(ADMIN)
    s = uow.session
    tenant = _tenant(s, actor)
    ctx = {"name": tenant.name, "settings": settings_of(tenant.settings)}
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


def save_knowledge_entries(
    *, uow: UnitOfWork, actor: Actor, entries: list[dict[str, Any]], expected: list[dict[str, Any]] | None = None
) -> int:
    """Replace the knowledge base's question/answer entries (opening hours and prices are kept).

    ``expected``: the entries the editor started from; when the stored ones differ (saved
    meanwhile in another tab or through the API) nothing is written (:class:`Conflict`), so
    an edit never silently undoes someone else's.
    """
    clean = [_clean_entry(e, f"knowledgeBase.entries[{i}]") for i, e in enumerate(entries)]
    if len(clean) > MAX_KB_ENTRIES:
        raise InvalidInput(f"at most {MAX_KB_ENTRIES} entries", field="knowledgeBase.entries")
    actor.require(ADMIN)
    tenant = locked_tenant(uow, actor.tenant_id)
    current = settings_of(tenant.settings).knowledge_base
    stored = [e.model_dump(mode="json", by_alias=True, exclude_none=True) for e in current.entries] if current else []
    if expected is not None and expected != stored:
        raise Conflict(
            "the knowledge base was changed meanwhile (another tab or the API); your edit was not saved, "
            "reload to see the current entries",
            field="knowledgeBase.entries",
        )
    changes: dict[str, Any] = {"knowledgeBase.entries": clean}
    if current is None or not current.studio_name:
        changes["knowledgeBase.studioName"] = tenant.name
    update_settings(
        uow=uow,
        actor=actor,
        changes=changes,
        area="knowledgeBase",
        audit={"entries": {"from": len(stored), "to": len(clean)}},
    )
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
    """Hosts, IPs or networks, each optionally with ``:port``, that ``call_webhook`` may reach even
    if private (e.g. an on-site CRM); the formats :mod:`engine.outbound.webhooks` documents. Blank lines go."""
    clean = [e.strip() for e in entries if isinstance(e, str) and e.strip()]
    if any(not isinstance(e, str) for e in entries):
        raise InvalidInput("each entry must be text", field="webhookAllowList")
    after = update_settings(uow=uow, actor=actor, changes={"webhookAllowList": clean or None})
    return list(after.webhook_allow_list)


def rotate_signing_secret(*, uow: UnitOfWork, actor: Actor) -> str:
    """A new webhook signing secret, returned ONCE; the previous one keeps signing for 24 hours.

    During the grace period every webhook carries both signatures (``v1=<new>,v1=<old>``), so
    receivers can switch at their own pace.
    """
    actor.require(ADMIN)
    new = "whsec_" + _random.token_hex(24)
    now = uow.now()
    s = uow.session
    tenant = locked_tenant(uow, actor.tenant_id)
    legacy = settings_of(tenant.settings).webhook_secret
    rows = {
        r.name: r
        for r in s.exec(
            select(TenantSecret).where(
                TenantSecret.tenant_id == actor.tenant_id, col(TenantSecret.name).in_([SIGNING, PREVIOUS_SIGNING])
            )
        ).all()
    }
    current = decrypt(rows[SIGNING].ciphertext) if SIGNING in rows else (legacy and legacy.get_secret_value())
    previous = rows.get(PREVIOUS_SIGNING)
    if current:
        previous = previous or TenantSecret(tenant_id=actor.tenant_id, name=PREVIOUS_SIGNING, ciphertext="")
        previous.ciphertext, previous.set_at, previous.set_by = encrypt(current), now, actor.email or "system"
        s.add(previous)
    row = rows.get(SIGNING) or TenantSecret(tenant_id=actor.tenant_id, name=SIGNING, ciphertext="")
    row.ciphertext, row.set_at, row.set_by = encrypt(new), now, actor.email or "system"
    s.add(row)
    if legacy is not None:  # no longer kept in plain text
        tenant.settings = patched(tenant.settings, {"webhookSecret": None})[0]
        s.add(tenant)
    record_audit(
        uow=uow,
        actor=actor,
        area="webhookSigning",
        changes={"signingSecret": "changed", "previousValidUntil": (now + ROTATION_GRACE).isoformat()},
    )
    return new


def signing_secrets(
    db: Engine, tenant_id: str, settings: TenantSettings | Mapping[str, Any] | None, *, now: datetime | None = None
) -> list[str]:
    """The secrets outgoing webhooks are signed with: the current one, plus the previous one
    for 24 hours after a rotation (engine use only)."""
    now = now or utcnow()
    legacy = settings_of(settings).webhook_secret
    plain = [legacy.get_secret_value()] if legacy and legacy.get_secret_value() else []
    if db is None:
        return plain
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
        return plain
    out = [decrypt(rows[SIGNING].ciphertext)]
    if PREVIOUS_SIGNING in rows and now < rows[SIGNING].set_at + ROTATION_GRACE:
        out.append(decrypt(rows[PREVIOUS_SIGNING].ciphertext))
    return out
