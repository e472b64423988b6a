"""A studio's settings as ONE typed model: :class:`TenantSettings` (the JSON column ``tenants.settings``).

Not to be confused with :mod:`engine.settings`, the process configuration (environment variables).

Every reader goes through this model: the engine (runner, delivery, opt-out, webhooks, AI),
the services behind the Settings page and the REST API, so they agree on every field and its
default. Keys are stored in camelCase, as they always were (``quietHours``, ``frequencyCap``);
attributes are snake_case.

Reading (:meth:`TenantSettings.of`) never fails: stored JSON from older versions loads as it
is, and a stored value this version refuses (written by hand, by an older release without a
check) is left out of the model with a warning naming its path, so its default applies and
the studio keeps working.

Writing (:func:`patched`) applies only the fields a caller changes to the STORED JSON, checks
exactly those strictly (an error names the field: ``quietHours.start``,
``knowledgeBase.entries[3].answer``), and leaves every other key as it was stored, byte for
byte. So a save never writes back a value it did not mean to change, and nothing is lost
between versions.

Unknown keys, deliberately: a key this model does not know (from a newer release, or set by
an operator) is kept as stored and ignored by the engine; the API refuses to write one (422
naming it), so typos cannot creep in.

Secrets are no part of the stored JSON: channel secrets, the webhook signing secret and the
AI key live encrypted (``tenant_secrets``, ``ai.apiKeyEncrypted``). Plain-text secrets from
before encryption still load (``webhookSecret``, a channel's ``accessToken`` ...) and are
moved on the next save; they are excluded from every dump of the model.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Mapping
from datetime import date
from functools import lru_cache
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    field_validator,
)
from pydantic.alias_generators import to_camel

from engine.errors import InvalidInput

logger = logging.getLogger(__name__)

__all__ = [
    "AISettings",
    "BusinessHours",
    "ChannelBlock",
    "Channels",
    "EmailChannel",
    "Goal",
    "KnowledgeBaseSettings",
    "KnowledgeEntry",
    "OptOutWords",
    "QuietHours",
    "Retention",
    "SmsChannel",
    "TenantSettings",
    "WebChat",
    "WhatsAppChannel",
    "field_path",
    "patched",
    "settings_of",
]

MAX_TEXT = 500


def _blank_none(value: Any) -> Any:
    """An empty form field means "not set"."""
    return None if isinstance(value, str) and not value.strip() else value


#: An optional one-line text: "" and whitespace are None, surrounding spaces go.
Text = Annotated[
    Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_TEXT)] | None, BeforeValidator(_blank_none)
]


class _Part(BaseModel):
    """camelCase aliases (as stored), snake_case names also accepted; frozen: the engine shares it."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True, frozen=True, extra="ignore"
    )


# --------------------------------------------------------------------------- channels


def _secret(label: str, help: str = "", *, required: bool = True) -> Any:
    """A write-only field: stored encrypted in ``tenant_secrets``; here only plain text from old rows."""
    return Field(
        None, exclude=True, title=label, description=help, json_schema_extra={"secret": True, "required": required}
    )


def _field(default: Any, label: str, help: str = "", *, required: bool = False, **kw: Any) -> Any:
    return Field(default, title=label, description=help, json_schema_extra={"required": required}, **kw)


class ChannelBlock(_Part):
    """``settings.channels.<channel>``: the adapter (``outbox`` = only recorded) and its non-secret fields.

    Extra keys are kept and handed to the adapter (operator-level: ``timeout``, ``apiVersion``,
    ``subjectTemplate``; ``baseUrl`` only where the process allows it).
    """

    model_config = ConfigDict(extra="allow")

    #: The adapter that sends when the channel is switched on.
    ADAPTER: ClassVar[str] = "outbox"

    adapter: str = "outbox"

    @property
    def enabled(self) -> bool:
        return self.adapter == self.ADAPTER and self.ADAPTER != "outbox"


class WhatsAppChannel(ChannelBlock):
    ADAPTER: ClassVar[str] = "whatsapp_cloud"

    phone_number_id: Text = _field(None, "Phone number id", "Meta app > WhatsApp > API setup", required=True)
    access_token: SecretStr | None = _secret("Access token", "A permanent system-user token")
    app_secret: SecretStr | None = _secret(
        "App secret", "Meta app > Settings > Basic; checks the X-Hub-Signature-256 of inbound webhooks"
    )
    verify_token: SecretStr | None = _secret("Verify token", "Any string; paste the same into Meta's webhook set-up")
    template_name: Text = _field(None, "Approved template", "Sent outside the 24-hour window")
    template_language: Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=10)] = _field(
        "de", "Template language"
    )


def _account_sid(value: str | None) -> str | None:
    if value and not value.startswith("AC"):
        raise ValueError("a Twilio account SID starts with AC")
    return value


def _phone(value: str | None) -> str | None:
    if not value:
        return value
    from engine.channels.phones import normalize_phone

    try:
        return normalize_phone(value)
    except Exception:  # noqa: BLE001 - any parse failure is the same message
        raise ValueError("is not a phone number (use +49...)") from None


class SmsChannel(ChannelBlock):
    ADAPTER: ClassVar[str] = "twilio"

    account_sid: Annotated[Text, AfterValidator(_account_sid)] = _field(
        None, "Account SID", "Starts with AC", required=True
    )
    auth_token: SecretStr | None = _secret("Auth token", "Also checks the X-Twilio-Signature of inbound webhooks")
    from_number: Annotated[Text, AfterValidator(_phone)] = _field(
        None, "Sender number", "E.164, e.g. +4930123456 (or give a messaging service)"
    )
    messaging_service_sid: Text = _field(
        None, "Messaging service SID", "Starts with MG; used instead of the sender number"
    )


def _address(value: str | None) -> str | None:
    if value and "@" not in value:
        raise ValueError("is not an e-mail address")
    return value


class EmailChannel(ChannelBlock):
    ADAPTER: ClassVar[str] = "smtp"

    host: Text = _field(None, "SMTP host", required=True)
    port: int = _field(587, "Port", gt=0, lt=65536)
    security: Literal["starttls", "tls", "none"] = _field("starttls", "Security")
    username: Text = _field(None, "User")
    password: SecretStr | None = _secret("Password", required=False)
    from_address: Annotated[Text, AfterValidator(_address)] = _field(None, "From address", required=True)
    from_name: Text = _field(None, "From name")


class Channels(_Part):
    """``settings.channels``: one block per channel with a provider; others (web, voice) are outbox-only."""

    model_config = ConfigDict(extra="allow")

    whatsapp: WhatsAppChannel = WhatsAppChannel()
    sms: SmsChannel = SmsChannel()
    email: EmailChannel = EmailChannel()

    def block(self, channel: str) -> ChannelBlock | None:
        """The channel's block (None for a channel without one)."""
        found = getattr(self, channel, None) if channel in type(self).model_fields else None
        return found if isinstance(found, ChannelBlock) else None


# --------------------------------------------------------------------------- hours and limits


def _hhmm(value: Any) -> str:
    from engine.business_hours import parse_time

    try:
        return parse_time(value, "time").strftime("%H:%M")
    except InvalidInput:
        raise ValueError(f"{value!r} is not a time like 09:00") from None


HHMM = Annotated[str, BeforeValidator(_hhmm)]


class DayHours(_Part):
    open: HHMM
    close: HHMM

    @field_validator("close")
    @classmethod
    def _not_same(cls, value: str, info: Any) -> str:
        if value == info.data.get("open"):
            raise ValueError("opening and closing time are the same")
        return value


def _iso_day(value: Any) -> str:
    try:
        return date.fromisoformat(str(value).strip()).isoformat()
    except ValueError:
        raise ValueError(f"{value!r} is not a date like 2026-12-24") from None


def _weekday(value: Any) -> str:
    if str(value) not in {str(i) for i in range(7)}:
        raise ValueError("weekday must be 0 (Sunday) ... 6 (Saturday)")
    return str(value)


def _open_days(value: Any) -> Any:
    return {k: v for k, v in value.items() if v} if isinstance(value, Mapping) else value


class BusinessHours(_Part):
    """Opening hours per weekday (``"0"`` = Sunday ... ``"6"``; a missing day is closed) and closed days."""

    weekly: Annotated[dict[Annotated[str, BeforeValidator(_weekday)], DayHours], BeforeValidator(_open_days)] = Field(
        default_factory=dict
    )
    closed_days: Annotated[
        list[Annotated[str, BeforeValidator(_iso_day)]], AfterValidator(lambda v: sorted(set(v)))
    ] = Field(default_factory=list)


class QuietHours(_Part):
    """No automated messages from ``start`` to ``end`` (the studio's wall clock); deferred to ``end``."""

    start: HHMM
    end: HHMM

    @field_validator("end")
    @classmethod
    def _differs(cls, value: str, info: Any) -> str:
        if value == info.data.get("start"):
            raise ValueError("must differ from the start")
        return value


# --------------------------------------------------------------------------- AI and knowledge


def _provider(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    name = value.strip().lower().replace("-", "_")
    return {"builtin": "offline", "local": "offline", "openai": "openai_compatible"}.get(name, name)


def _http_url(value: str | None) -> str | None:
    import re

    if value and not re.match(r"^https?://[^\s/]+", value):
        raise ValueError("must be an http(s) URL such as https://api.openai.com/v1")
    return value


class AISettings(_Part):
    """``settings.ai``: the built-in assistant (offline) or an OpenAI-compatible endpoint."""

    model_config = ConfigDict(extra="allow")  # timeout, temperature: operator-level, handed to the provider

    provider: Annotated[Literal["offline", "openai_compatible"], BeforeValidator(_provider)] = "offline"
    base_url: Annotated[Text, AfterValidator(_http_url)] = None
    model: Text = None
    #: Fernet ciphertext of the API key (never shown; decrypted only where the provider is built).
    api_key_encrypted: str | None = Field(None, exclude=True)
    api_key_set_at: str | None = None
    #: Plain text from before encryption (moved on the next save).
    api_key: SecretStr | None = Field(None, exclude=True)
    #: Let the provider classify messages that arrive without an intent.
    classify: bool = False

    @property
    def key_set(self) -> bool:
        return bool(self.api_key_encrypted or self.api_key)


def _tags(value: Any) -> Any:
    import re

    if isinstance(value, str):
        value = re.split(r"[;,|]", value)
    if isinstance(value, list):
        return [t.strip() for t in value if isinstance(t, str) and t.strip()][:20]
    return value


class KnowledgeEntry(_Part):
    """One question and answer (``questionEn``/``answerEn``: what members writing in English get)."""

    question: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
    answer: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]
    tags: Annotated[list[str], BeforeValidator(_tags)] = Field(default_factory=list)
    question_en: Text = None
    answer_en: Annotated[
        Annotated[str, StringConstraints(strip_whitespace=True, max_length=4000)] | None, BeforeValidator(_blank_none)
    ] = None


class KnowledgeBaseSettings(_Part):
    """``settings.knowledgeBase``: what the assistant may tell members (see :mod:`engine.ai.knowledge`)."""

    model_config = ConfigDict(extra="allow")  # openingHours, prices: read by engine.ai.knowledge.KnowledgeBase

    studio_name: str | None = None
    entries: Annotated[list[KnowledgeEntry], Field(max_length=2000)] = Field(default_factory=list)


# --------------------------------------------------------------------------- the rest


def _allow_entry(value: Any) -> str:
    from engine.webhooks import allow_entry

    if not isinstance(value, str):
        raise ValueError("must be text")
    return allow_entry(value)


AllowEntry = Annotated[str, BeforeValidator(_allow_entry)]


def _origin(value: Any) -> str:
    import re

    origin = str(value).strip().rstrip("/")
    if not re.match(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$", origin):
        raise ValueError(f"{origin!r} is not an origin like https://www.example.com (no path)")
    return origin


class WebChat(_Part):
    """``settings.webChat``: the websites allowed to embed the chat widget."""

    allowed_origins: list[Annotated[str, BeforeValidator(_origin)]] = Field(default_factory=list)


class Goal(_Part):
    """A workflow's conversion goal: the same contact books (or becomes a lead) within ``days``."""

    kind: Literal["booking", "lead"]
    days: int = Field(7, ge=1, le=90)


class Retention(_Part):
    """How long details and summaries are kept (None: the process defaults; see :mod:`engine.retention`)."""

    details_days: int | None = Field(None, ge=1, le=3650 * 3)
    summary_days: int | None = Field(None, ge=1, le=3650 * 3)


def _word(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


Word = Annotated[Annotated[str, StringConstraints(min_length=1, max_length=32)], BeforeValidator(_word)]


class OptOutWords(_Part):
    """The studio's own opt-out/opt-in words (empty: the process defaults)."""

    stop_words: list[Word] = Field(default_factory=list, max_length=20)
    start_words: list[Word] = Field(default_factory=list, max_length=20)


class TenantSettings(_Part):
    """Everything a studio configures. Field by field: alias (stored key) = camelCase of the name."""

    model_config = ConfigDict(extra="allow")  # unknown keys: kept as stored, ignored (see module doc)

    channels: Channels = Channels()
    business_hours: BusinessHours | None = None
    quiet_hours: QuietHours | None = None
    #: At most this many automated messages per contact and day (None: no cap).
    frequency_cap: int | None = Field(None, ge=1, le=100)
    ai: AISettings = AISettings()
    knowledge_base: KnowledgeBaseSettings | None = None
    #: Private hosts, addresses or networks webhooks may reach (``host``, ``10.0.0.0/8``, ``127.0.0.1:8080``).
    webhook_allow_list: list[AllowEntry] = Field(default_factory=list, max_length=100)
    web_chat: WebChat = WebChat()
    #: Analysts see phone numbers and e-mail addresses unmasked.
    analysts_see_contacts: bool = False
    #: Minutes a succeeded run saves, per workflow id (Insights; default 2).
    minutes_saved: dict[str, Annotated[float, Field(ge=0, le=600)]] = Field(default_factory=dict)
    #: Conversion goal per workflow id (Insights).
    goals: dict[str, Goal] = Field(default_factory=dict)
    retention: Retention | None = None
    opt_out: OptOutWords | None = None
    #: Set by the engine once anyone opted out (delivery only looks opt-outs up when it is set).
    opt_outs_recorded: bool = False
    #: Region for phone numbers written without a country code.
    default_region: Annotated[str, AfterValidator(str.upper), Field(pattern=r"^[A-Za-z]{2}$")] = "DE"
    #: The studio's language for AI answers when a member's is unknown.
    language: Literal["de", "en"] = "de"
    #: Plain-text signing secret from before encryption (moved into tenant_secrets on rotation).
    webhook_secret: SecretStr | None = Field(None, exclude=True)

    @classmethod
    def of(cls, value: TenantSettings | Mapping[str, Any] | None) -> TenantSettings:
        """The model for stored JSON (or a model, returned as it is); never raises: see the module doc."""
        if isinstance(value, TenantSettings):
            return value
        return _load(value or {})

    def stored(self) -> dict[str, Any]:
        """The JSON as it would be stored (aliases; secrets left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


settings_of = TenantSettings.of


# --------------------------------------------------------------------------- loading


def _load(raw: Mapping[str, Any]) -> TenantSettings:
    try:
        return TenantSettings.model_validate(raw)
    except ValidationError as exc:
        data = copy.deepcopy(dict(raw))
        dropped = _drop_invalid(data, exc)
    for _ in range(5):  # dropping a value can only remove errors; a few rounds settle any shape
        try:
            model = TenantSettings.model_validate(data)
            break
        except ValidationError as exc:
            dropped += _drop_invalid(data, exc)
    else:
        model = TenantSettings()
    _warn_once(tuple(sorted(set(dropped))))
    return model


def _drop_invalid(data: dict[str, Any], exc: ValidationError) -> list[str]:
    """Remove each refused value (the deepest part of its path that exists) from ``data``."""
    dropped = []
    for error in exc.errors(include_url=False, include_input=False):
        parent: Any = None
        node: Any = data
        key: Any = None
        for part in error["loc"]:
            if not _has(node, part):
                break
            parent, key, node = node, part, node[part]
        if parent is None:
            continue
        if isinstance(parent, list):
            parent[key] = None  # keep the other items' positions for the errors still to drop
        else:
            del parent[key]
        dropped.append(field_path(error["loc"]))
    _compact(data)
    return dropped


def _has(node: Any, part: Any) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def _compact(node: Any) -> None:
    """Lists lose the items :func:`_drop_invalid` blanked."""
    if isinstance(node, dict):
        for value in node.values():
            _compact(value)
    elif isinstance(node, list):
        node[:] = [v for v in node if v is not None]
        for value in node:
            _compact(value)


@lru_cache(maxsize=256)
def _warn_once(paths: tuple[str, ...]) -> None:
    if paths:
        logger.warning("stored tenant settings ignored (invalid, defaults apply): %s", ", ".join(paths))


# --------------------------------------------------------------------------- writing


def field_path(loc: Iterable[Any]) -> str:
    """``("knowledgeBase", "entries", 3, "answer")`` -> ``knowledgeBase.entries[3].answer``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part != "[key]" and not str(part).startswith(
            ("function-", "union[", "json-or-python")
        ):  # pydantic's steps
            out += ("." if out else "") + str(part)
    return out


def _alias(model: type[BaseModel], name: str) -> tuple[str, type[BaseModel] | None]:
    """The stored key of ``name`` (attribute or alias) in ``model``, and its model type if it is one."""
    for attr, info in model.model_fields.items():
        alias = info.alias or attr
        if name in (attr, alias):
            sub = info.annotation
            args = getattr(sub, "__args__", ())
            found = next((a for a in (sub, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
            return alias, found
    return name, None


def patched(raw: Mapping[str, Any] | None, changes: Mapping[str, Any]) -> tuple[dict[str, Any], TenantSettings]:
    """``raw`` (the stored JSON) with ``changes`` applied, and the model of the result.

    ``changes`` maps dotted paths (``"quietHours"``, ``"channels.sms.messagingServiceSid"``;
    attribute names work too) to the new JSON value; ``None`` removes the key (its default
    applies). Only the changed paths are checked: :class:`InvalidInput` names the first
    refused field. Unchanged keys, unknown keys included, stay exactly as stored.
    """
    data = copy.deepcopy(dict(raw or {}))
    written: list[str] = []
    for path, value in changes.items():
        written.append(_set(data, path.split("."), value))
    try:
        model = TenantSettings.model_validate(data)
    except ValidationError as exc:
        mine = [e for e in exc.errors(include_url=False) if _within(field_path(e["loc"]), written)]
        if mine:
            error = mine[0]
            raise InvalidInput(_message(error), field=field_path(error["loc"]) or written[0]) from None
        model = _load(data)  # stored values refused elsewhere: the owner's change is fine, keep them as they are
    clean = model.stored()
    for path in written:  # store what the model made of the change ("8:00" -> "08:00", trimmed, E.164)
        if not _write_only(path):  # (secrets are no part of a dump: stored as given)
            _set(data, path.split("."), _get(clean, path.split(".")))
    return data, model


def _write_only(path: str) -> bool:
    model: type[BaseModel] | None = TenantSettings
    for part in path.split("."):
        if model is None:
            return False
        info = next((i for a, i in model.model_fields.items() if part in (a, i.alias)), None)
        if info is None:
            return False
        if info.exclude:
            return True
        model = _alias(model, part)[1]
    return False


def _get(node: Any, parts: list[str]) -> Any:
    for part in parts:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _within(path: str, written: list[str]) -> bool:
    return any(path == w or path.startswith((w + ".", w + "[")) or w.startswith(path + ".") for w in written)


def _message(error: Any) -> str:
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if error["type"] == "extra_forbidden":
        return "unknown setting"
    return message


def _set(data: dict[str, Any], parts: list[str], value: Any) -> str:
    """Write ``value`` at ``parts`` (stored keys) in ``data``; the stored path it wrote."""
    model: type[BaseModel] | None = TenantSettings
    node = data
    keys = []
    for i, part in enumerate(parts):
        key, sub = _alias(model, part) if model is not None else (part, None)
        if model is not None and key != part and part in node:
            del node[part]  # the snake_case spelling of an older row: one key per field
        snake = _snake(model, key)
        if snake and snake != key and snake in node:
            del node[snake]
        keys.append(key)
        if i == len(parts) - 1:
            if value is None:
                node.pop(key, None)
            else:
                node[key] = value
            break
        child = node.get(key)
        node[key] = child = dict(child) if isinstance(child, Mapping) else {}
        node, model = child, sub
    return ".".join(keys)


def _snake(model: type[BaseModel] | None, key: str) -> str | None:
    if model is None:
        return None
    for attr, info in model.model_fields.items():
        if (info.alias or attr) == key:
            return attr
    return None
