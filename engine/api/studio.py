"""Owner routes for the studio's settings (one typed model: engine/tenant_settings.py), channel
settings (secrets write-only), test messages, the settings audit log, retrying a failed outbox
delivery and settling one whose outcome is unknown (editors and owners).

Writes change only what the request names: ``PATCH /api/settings`` is a JSON merge patch, and a
channel's ``PUT`` keeps the fields it leaves out. A refused value is a 422 naming the field."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from engine.api.deps import CurrentActor, ReadUow, Uow
from engine.services import channel_settings as cs
from engine.services import outbox
from engine.services import studio_settings as ss
from engine.tenant_settings import patch_schema

router = APIRouter(prefix="/api", tags=["settings"])

ChannelName = Annotated[Literal["whatsapp", "sms", "email"], Path(description="whatsapp, sms (Twilio) or email (SMTP)")]
_OWNER: dict[int | str, dict[str, Any]] = {
    401: {"description": "No or revoked API key"},
    403: {"description": "Only owners"},
    422: {"description": "Invalid field (named in error.field)"},
}


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True)


class SecretStateOut(_Camel):
    set: bool
    set_at: str | None = None
    set_by: str | None = None


class ChannelOut(_Camel):
    success: bool = True
    channel: str
    enabled: bool
    adapter: str
    values: dict[str, Any]
    secrets: dict[str, SecretStateOut] = Field(
        description="Never the values: only whether and when each secret was set"
    )


def _names(*, secret: bool) -> list[Any]:
    """Every channel's field names of one kind (the channel in the path narrows them further)."""
    return sorted({f.name for _, fields in cs.CHANNEL_FIELDS.values() for f in fields if f.secret == secret})


class ChannelIn(_Camel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    enabled: bool | None = Field(None, description="Send through the provider; left out: as it is")
    values: dict[str, str | int | None] = Field(
        default_factory=dict,
        description="Non-secret fields to change (which ones depends on the channel); fields left out keep "
        "their stored value, null clears one",
        json_schema_extra={"propertyNames": {"enum": _names(secret=False)}},
    )
    secrets: dict[str, Annotated[str, Field(max_length=4000)] | None] = Field(
        default_factory=dict,
        description="Secrets to replace; omitted or empty keeps the stored one",
        json_schema_extra={"propertyNames": {"enum": _names(secret=True)}},
    )


class SettingsOut(_Camel):
    success: bool = True
    settings: dict[str, Any] = Field(
        description="Every setting as stored (camelCase, see PATCH for the fields); never a secret"
    )
    secrets: dict[str, SecretStateOut] = Field(description="aiApiKey, signingSecret: only whether and when set")


#: Settings with a door of their own, or kept by the engine: not in the PATCH body.
_READ_ONLY = ["channels", "optOutsRecorded", "ai.apiKeySetAt"]


class TestMessageIn(_Camel):
    recipient: Annotated[str, Field(min_length=1, max_length=320)]


class TestMessageOut(_Camel):
    success: bool = True
    ok: bool
    status: str
    provider_message_id: str | None = None
    answer: str


class AuditEntryOut(_Camel):
    at: str
    actor: str
    area: str
    changes: dict[str, Any]


class AuditOut(_Camel):
    success: bool = True
    entries: list[AuditEntryOut]


class RetryOut(_Camel):
    success: bool = True
    id: str
    status: str
    status_text: str = ""


def _channel_out(view: cs.ChannelView) -> ChannelOut:
    return ChannelOut(
        channel=view.channel,
        enabled=view.enabled,
        adapter=view.adapter,
        values=view.values,
        secrets={
            k: SecretStateOut(set=v.set, set_at=v.set_at.isoformat() if v.set_at else None, set_by=v.set_by)
            for k, v in view.secrets.items()
        },
    )


def _settings_out(view: ss.StudioSettingsView) -> SettingsOut:
    def state(v: cs.SecretState) -> SecretStateOut:
        return SecretStateOut(set=v.set, set_at=v.set_at.isoformat() if v.set_at else None, set_by=v.set_by)

    return SettingsOut(
        settings=view.settings,
        secrets={"aiApiKey": state(view.ai.api_key), "signingSecret": state(view.signing_secret)},
    )


@router.get("/settings", response_model=SettingsOut, responses=_OWNER, summary="The studio's settings")
def read_studio_settings(uow: ReadUow, actor: CurrentActor) -> SettingsOut:
    """Every setting as stored (camelCase), with its default where none is stored; secrets only as set/not set."""
    return _settings_out(ss.get_studio_settings(uow=uow, actor=actor))


_PATCH_BODY = {
    "requestBody": {
        "required": True,
        "description": "A JSON merge patch (RFC 7396): objects merge key by key, null removes a setting "
        "(its default applies), anything else replaces; what the patch leaves out stays as stored. "
        "ai.apiKey is stored encrypted and never shown.",
        "content": {"application/json": {"schema": patch_schema(_READ_ONLY)}},
    }
}


@router.patch(
    "/settings",
    response_model=SettingsOut,
    responses=_OWNER,
    summary="Change some of the studio's settings",
    openapi_extra=_PATCH_BODY,
)
def change_studio_settings(uow: Uow, actor: CurrentActor, body: Annotated[dict[str, Any], Body()]) -> SettingsOut:
    """Only what the patch names changes, checked by the same model the engine reads; a refused
    value is a 422 naming its field (``quietHours.start``), and then nothing is written."""
    ss.patch_settings(uow=uow, actor=actor, body=body)
    return _settings_out(ss.get_studio_settings(uow=uow, actor=actor))


@router.get("/settings/channels/{channel}", response_model=ChannelOut, responses=_OWNER, summary="A channel's settings")
def get_channel(uow: ReadUow, actor: CurrentActor, channel: ChannelName) -> ChannelOut:
    return _channel_out(cs.get_channel(uow=uow, actor=actor, channel=channel))


@router.put(
    "/settings/channels/{channel}",
    response_model=ChannelOut,
    responses=_OWNER,
    summary="Change a channel's settings (fields left out keep their value)",
)
def put_channel(uow: Uow, actor: CurrentActor, channel: ChannelName, body: ChannelIn) -> ChannelOut:
    return _channel_out(
        cs.save_channel(
            uow=uow, actor=actor, channel=channel, enabled=body.enabled, values=body.values, secrets=body.secrets
        )
    )


@router.post(
    "/settings/channels/{channel}/test",
    response_model=TestMessageOut,
    responses=_OWNER,
    summary="Send a test message now and return the provider's answer",
)
def test_channel(uow: Uow, actor: CurrentActor, channel: ChannelName, body: TestMessageIn) -> TestMessageOut:
    result = cs.send_test_message(uow=uow, actor=actor, channel=channel, recipient=body.recipient)
    return TestMessageOut(
        ok=result.ok, status=result.status, provider_message_id=result.provider_message_id, answer=result.answer
    )


@router.get("/settings/audit", response_model=AuditOut, responses=_OWNER, summary="Settings changes, newest first")
def audit(uow: ReadUow, actor: CurrentActor) -> AuditOut:
    return AuditOut(
        entries=[
            AuditEntryOut(at=a.at.isoformat(), actor=a.actor, area=a.area, changes=a.changes)
            for a in cs.list_audit(uow=uow, actor=actor)
        ]
    )


@router.post(
    "/outbox/{message_id}/retry",
    response_model=RetryOut,
    responses={
        401: _OWNER[401],
        403: {"description": "Analysts may not retry"},
        404: {"description": "Unknown message"},
        409: {"description": "Not failed, or the channel has no provider"},
    },
    summary="Queue a failed delivery for another attempt",
)
def retry(uow: Uow, actor: CurrentActor, message_id: Annotated[str, Path(max_length=64)]) -> RetryOut:
    row = outbox.retry_delivery(uow=uow, actor=actor, outbox_id=message_id)
    return RetryOut(id=row.id, status=row.status, status_text=row.status_text)


_UNKNOWN_ONLY: dict[int | str, dict[str, Any]] = {
    401: _OWNER[401],
    403: {"description": "Analysts may not decide"},
    404: {"description": "Unknown message"},
    409: {"description": "The message's outcome is not unknown"},
}


@router.post(
    "/outbox/{message_id}/mark-sent",
    response_model=RetryOut,
    responses=_UNKNOWN_ONLY,
    summary="Settle a message whose outcome is unknown as sent (the member got it)",
)
def mark_sent(uow: Uow, actor: CurrentActor, message_id: Annotated[str, Path(max_length=64)]) -> RetryOut:
    row = outbox.mark_sent(uow=uow, actor=actor, outbox_id=message_id)
    return RetryOut(id=row.id, status=row.status, status_text=row.status_text)


@router.post(
    "/outbox/{message_id}/send-again",
    response_model=RetryOut,
    responses={**_UNKNOWN_ONLY, 409: {"description": "The outcome is not unknown, or the channel has no provider"}},
    summary="Send a message whose outcome is unknown once more (the member may get it twice)",
)
def send_again(uow: Uow, actor: CurrentActor, message_id: Annotated[str, Path(max_length=64)]) -> RetryOut:
    row = outbox.send_again(uow=uow, actor=actor, outbox_id=message_id)
    return RetryOut(id=row.id, status=row.status, status_text=row.status_text)
