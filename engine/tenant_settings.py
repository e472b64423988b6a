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
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from datetime import date
from types import UnionType
from typing import Annotated, Any, ClassVar, Literal, NamedTuple, Union, get_args, get_origin

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo

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
    "known_path",
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
    """camelCase aliases (as stored), snake_case names also accepted; frozen: the engine shares it.

    Unknown keys are refused (a write names them; a stored one is left out when loading) except
    in the models that say ``extra="allow"``: there they are kept and handed on."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True, frozen=True, extra="forbid"
    )


# --------------------------------------------------------------------------- channels


def _secret(label: str, help: str = "", *, required: bool = True) -> Any:
    """A write-only field: stored encrypted in ``tenant_secrets``; here only plain text from old rows."""
    return Field(
        None,
        exclude=True,
        title=label,
        description=help,
        json_schema_extra={"x-secret": True, "x-required-when-on": required},
    )


def _field(default: Any, label: str, help: str = "", *, required: bool = False, **kw: Any) -> Any:
    return Field(default, title=label, description=help, json_schema_extra={"x-required-when-on": required}, **kw)


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
    from engine.workflow.business_hours import parse_time

    if not isinstance(value, str):
        raise ValueError("must be a time like 09:00 (text)")
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
    if not isinstance(value, str) or len(value.strip()) != 10:
        raise ValueError(f"{value!r} is not a date like 2026-12-24")
    try:
        return date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        raise ValueError(f"{value!r} is not a date like 2026-12-24") from None


def _weekday(value: Any) -> str:
    if str(value) not in {str(i) for i in range(7)}:
        raise ValueError("weekday must be 0 (Sunday) ... 6 (Saturday)")
    return str(value)


def _open_days(value: Any) -> Any:
    """A day given as null (or false, from older rows) is closed, like a missing one."""
    return {k: v for k, v in value.items() if v is not None and v is not False} if isinstance(value, Mapping) else value


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

    provider: Annotated[
        Literal["offline", "openai_compatible"],
        BeforeValidator(_provider),
        WithJsonSchema(
            {"type": "string", "description": "offline or openai_compatible (also: builtin, local, openai)"}
        ),
    ] = "offline"
    base_url: Annotated[Text, AfterValidator(_http_url)] = None
    model: Text = None
    #: Fernet ciphertext of the API key (never shown; decrypted only where the provider is built).
    api_key_encrypted: str | None = Field(None, exclude=True)
    api_key_set_at: str | None = None
    #: Plain text from before encryption (moved on the next save).
    api_key: SecretStr | None = Field(None, exclude=True)
    #: Let the provider classify messages that arrive without an intent.
    classify: bool = Field(False, strict=True)

    @property
    def key_set(self) -> bool:
        return bool(self.api_key_encrypted or self.api_key)


class KnowledgeEntry(_Part):
    """One question and answer (``questionEn``/``answerEn``: what members writing in English get)."""

    question: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
    answer: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]
    tags: list[Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=20
    )
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
    from engine.outbound.webhooks import allow_entry

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
    days: int = Field(7, ge=1, le=90, strict=True)


class Retention(_Part):
    """How long details and summaries are kept (None: the process defaults; see :mod:`engine.lifecycle.retention`)."""

    details_days: int | None = Field(None, ge=1, le=3650 * 3, strict=True)
    summary_days: int | None = Field(None, ge=1, le=3650 * 3, strict=True)

    @model_validator(mode="after")
    def _summaries_outlive_details(self) -> Retention:
        if self.details_days and self.summary_days and self.summary_days < self.details_days:
            raise ValueError("summaryDays must be at least detailsDays: details cannot outlive their summary")
        return self


def _word(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


Word = Annotated[Annotated[str, StringConstraints(min_length=1, max_length=32)], BeforeValidator(_word)]


class OptOutWords(_Part):
    """The studio's own opt-out/opt-in words (empty: the process defaults)."""

    stop_words: list[Word] = Field(default_factory=list, max_length=20)
    start_words: list[Word] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _apart(self) -> OptOutWords:
        both = set(self.stop_words) & set(self.start_words)
        if both:
            raise ValueError(f"{', '.join(sorted(both))} cannot both opt out and opt in")
        return self


class TenantSettings(_Part):
    """Everything a studio configures. Field by field: alias (stored key) = camelCase of the name."""

    model_config = ConfigDict(extra="allow")  # unknown keys: kept as stored, ignored (see module doc)

    channels: Channels = Channels()
    business_hours: BusinessHours | None = None
    quiet_hours: QuietHours | None = None
    #: At most this many automated messages per contact and day (None: no cap).
    frequency_cap: int | None = Field(None, ge=1, le=100, strict=True)
    ai: AISettings = AISettings()
    knowledge_base: KnowledgeBaseSettings | None = None
    #: Private hosts, addresses or networks webhooks may reach (``host``, ``10.0.0.0/8``, ``127.0.0.1:8080``).
    webhook_allow_list: list[AllowEntry] = Field(default_factory=list, max_length=100)
    web_chat: WebChat = WebChat()
    #: Analysts see phone numbers and e-mail addresses unmasked.
    analysts_see_contacts: bool = Field(False, strict=True)
    #: Minutes a succeeded run saves, per workflow id (Insights; default 2).
    minutes_saved: dict[str, Annotated[float, Field(ge=0, le=600, strict=True)]] = Field(default_factory=dict)
    #: Conversion goal per workflow id (Insights).
    goals: dict[str, Goal] = Field(default_factory=dict)
    retention: Retention | None = None
    opt_out: OptOutWords | None = None
    #: Set by the engine once anyone opted out (delivery only looks opt-outs up when it is set).
    opt_outs_recorded: bool = Field(False, strict=True)
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


#: Models of recently loaded JSON, by its bytes: the runner, the worker and delivery load a
#: studio's settings again and again, and a knowledge base of 2,000 entries takes milliseconds
#: to validate but a fraction of one to serialise. Frozen models, so sharing them is safe.
_LOADED: OrderedDict[bytes, TenantSettings] = OrderedDict()
_LOADED_MAX = 32
_LOADED_LOCK = threading.Lock()


def _load(raw: Mapping[str, Any]) -> TenantSettings:
    try:
        key = orjson.dumps(raw)
    except TypeError:  # not JSON (a caller's Python objects): validated, not kept
        return _validate(raw)
    found = _LOADED.get(key)
    if found is None:
        found = _validate(raw)
        with _LOADED_LOCK:  # the API's threads load at the same time
            _LOADED[key] = found
            while len(_LOADED) > _LOADED_MAX:
                _LOADED.popitem(last=False)
    return found


def _validate(raw: Mapping[str, Any]) -> TenantSettings:
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
    _warn(tuple(sorted(set(dropped))))
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


def _warn(paths: tuple[str, ...]) -> None:
    """Once per stored JSON while its model is kept (see _LOADED), not at every load."""
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
    for path, value in zip(written, changes.values()):
        # store what the model made of the change ("8:00" -> "08:00", trimmed, E.164); secrets are
        # no part of a dump: stored as given, also inside a changed object (a whole channel block)
        if not _write_only(path):
            _set(data, path.split("."), _with_write_only(_get(clean, path.split(".")), value, path))
    return data, model


def _with_write_only(clean: Any, given: Any, path: str) -> Any:
    """``clean`` with the write-only values of ``given`` (under ``path``) put back as given."""
    if not isinstance(clean, Mapping) or not isinstance(given, Mapping):
        return clean
    out = dict(clean)
    for key, value in given.items():
        sub = f"{path}.{key}"
        if _write_only(sub):
            if value is not None:
                out[key] = value
        elif key in out:
            out[key] = _with_write_only(out[key], value, sub)
    return out


def _get(node: Any, parts: list[str]) -> Any:
    for part in parts:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _within(path: str, written: list[str]) -> bool:
    """Whether an error at ``path`` is the caller's: in or above a changed value, or beside one in
    the same object (a partial change must leave its object whole: ``quietHours.end`` missing)."""
    parent = path.rsplit(".", 1)[0] if "." in path else ""
    parent = parent if not path.endswith("]") else path[: path.rindex("[")]
    return any(_under(path, w) or _under(w, path) or bool(parent and _under(w, parent)) for w in written)


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith((top + ".", top + "["))


def _message(error: Any) -> str:
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if error["type"] == "extra_forbidden":
        return "unknown setting"
    if error["type"] == "missing":
        return "is required"
    return message


def _child(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """(the model a value of this type is, whether the value is a map of them) for a field's type."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _child(args[0])
    if origin in (Union, UnionType):
        return next(
            (found for a in args if a is not type(None) and (found := _child(a)) != (None, False)), (None, False)
        )
    if origin is dict:
        return _child(args[1])[0], True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


class _Step(NamedTuple):
    key: str  # the stored key (the alias of a field)
    info: FieldInfo | None  # None: a key of a map, inside a free value, or unknown to ``holder``
    holder: type[BaseModel] | None  # the model whose field it is (or would be)


def _walk(parts: list[str]) -> list[_Step]:
    """Each part of a path as the model sees it."""
    steps: list[_Step] = []
    model: type[BaseModel] | None = TenantSettings
    map_of: type[BaseModel] | None = None
    in_map = False
    for part in parts:
        if in_map:  # a map's key (a workflow id, a weekday): its value is of the map's type
            steps.append(_Step(part, None, None))
            model, in_map = map_of, False
            continue
        found = next(((a, i) for a, i in model.model_fields.items() if part in (a, i.alias)), None) if model else None
        if found is None:
            steps.append(_Step(part, None, model))
            model = None
            continue
        attr, info = found
        steps.append(_Step(info.alias or attr, info, model))
        sub, in_map = _child(info.annotation)
        model, map_of = (None, sub) if in_map else (sub, None)
    return steps


def _write_only(path: str) -> bool:
    return any(step.info is not None and step.info.exclude for step in _walk(path.split(".")))


def known_path(path: str) -> bool:
    """Whether ``path`` names a setting: a field of the model, or a key inside a free value (a map
    per workflow, an object that hands extra keys on such as ``knowledgeBase.prices``). A new
    top-level key is never known: stored unknown keys stay, the API may not invent them."""
    for step in _walk(path.split(".")):
        if step.info is None and step.holder is not None:
            return step.holder is not TenantSettings and step.holder.model_config.get("extra") == "allow"
    return True


def _set(data: dict[str, Any], parts: list[str], value: Any) -> str:
    """Write ``value`` at ``parts`` in ``data`` under the stored keys; the stored path it wrote."""
    steps = _walk(parts)
    node = data
    for i, (part, step) in enumerate(zip(parts, steps)):
        for spelling in {part, *(_names(step) if step.info else ())} - {step.key}:
            node.pop(spelling, None)  # the snake_case spelling of an older row: one key per field
        if i == len(steps) - 1:
            if value is None:
                node.pop(step.key, None)
            else:
                node[step.key] = value
            break
        child = node.get(step.key)
        node[step.key] = child = dict(child) if isinstance(child, Mapping) else {}
        node = child
    return ".".join(step.key for step in steps)


def _names(step: _Step) -> set[str]:
    assert step.holder is not None
    return {a for a, i in step.holder.model_fields.items() if i is step.info}


# --------------------------------------------------------------------------- the API's schema


def patch_schema(read_only: Iterable[str] = ()) -> dict[str, Any]:
    """The JSON Schema of a merge patch of the settings (``PATCH /api/settings``), from the model:
    every property optional and nullable (``null`` removes a setting), arrays whole, ``read_only``
    paths and write-only fields left out (but for ``ai.apiKey``, which the service encrypts)."""
    schema = TenantSettings.model_json_schema(by_alias=True, mode="validation")
    defs = schema.pop("$defs", {})
    out = _patchable(schema, defs, merge=True)
    out["additionalProperties"] = False  # stored unknown keys stay, but the API writes none
    skip = set(read_only) | {"webhookSecret", "ai.apiKeyEncrypted"}
    for path in skip:
        *parents, last = path.split(".")
        node = out
        for part in parents:
            node = _object_of(node["properties"][part])
        node["properties"].pop(last, None)
    return out


def _object_of(prop: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in prop.get("anyOf", [prop]) if s.get("type") == "object")


def _patchable(node: Any, defs: dict[str, Any], *, merge: bool) -> Any:
    """Resolve ``$ref``s; objects reached through properties lose ``required`` and take ``null``."""
    if isinstance(node, list):
        return [_patchable(n, defs, merge=merge) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _patchable(copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]]), defs, merge=merge)
    out = {k: v for k, v in node.items() if k != "title"}
    if node.get("type") == "object" or "properties" in node:
        if "properties" in node:
            if "additionalProperties" not in node:
                out["additionalProperties"] = False  # the model's fields only (extra="allow" models say true)
            out["properties"] = {k: _patchable(v, defs, merge=merge) for k, v in node["properties"].items()}
            if merge:  # in a patch every property may be left out, or null to remove the setting
                out.pop("required", None)
                out["properties"] = {k: _nullable(v) for k, v in out["properties"].items()}
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):  # a map (per workflow, per weekday): an entry is patched like a property
            value = _patchable(extra, defs, merge=merge)
            out["additionalProperties"] = _nullable(value) if merge else value
        return out
    for key in ("items", "anyOf", "oneOf", "allOf", "prefixItems"):
        if key in node:
            out[key] = _patchable(node[key], defs, merge=merge and key != "items")
    return out


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    options = schema.get("anyOf", [schema])
    if any(o.get("type") == "null" for o in options):
        return schema
    return {"anyOf": [*options, {"type": "null"}]} if "anyOf" in schema else {"anyOf": [schema, {"type": "null"}]}
