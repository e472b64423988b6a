"""Parse WhatsApp Cloud API webhook payloads (``object: whatsapp_business_account``).

Messages become ``whatsapp_message`` events (text, button and interactive replies as their
text; media as its type and caption), statuses become delivery updates of outbox messages.
Reference: Meta "Webhooks > messages" payload (entry[].changes[].value.{messages,statuses,contacts}).

PROVIDERS notes (what Meta gets back): Meta retries every non-2xx delivery for up to seven
days and may disable a subscription that keeps failing, and a retry of the same signed bytes
can never parse differently. So a correctly signed delivery of an unexpected shape is answered
200 with ``ignored`` counted and a log line naming where it differs (:class:`Ignored`); one
message of a batch that the runner would refuse is skipped the same way, the rest stored.
Only a bad signature is refused (403), as Meta documents.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import Field

from engine.inbound.payload import ProviderModel, UnexpectedShape, parse_as, storable
from engine.inbound.updates import StatusUpdate

logger = logging.getLogger(__name__)

MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")
#: Short strings Meta sends (ids, types, numbers); texts are bounded by the event's own limits.
Short = Annotated[str, Field(max_length=1000)]


class Text(ProviderModel):
    body: str = ""


class Button(ProviderModel):
    text: str = ""
    payload: Short | None = None


class Reply(ProviderModel):
    id: Short | None = None
    title: str = ""


class Interactive(ProviderModel):
    type: Short | None = None
    button_reply: Reply | None = None
    list_reply: Reply | None = None


class Media(ProviderModel):
    id: Short | None = None
    mime_type: Short | None = None
    caption: str | None = None
    filename: str | None = None


class Location(ProviderModel):
    latitude: Annotated[float, Field(allow_inf_nan=False)] | None = None
    longitude: Annotated[float, Field(allow_inf_nan=False)] | None = None
    name: str | None = None


class Message(ProviderModel):
    """One inbound message; ``from`` is the member's WhatsApp id (their number's digits)."""

    sender: Annotated[str, Field(alias="from", pattern=r"^\+?[0-9]{1,32}$")]
    id: Annotated[str, Field(min_length=1, max_length=190)]
    timestamp: Short | None = None
    type: Short = "unknown"
    text: Text | None = None
    button: Button | None = None
    interactive: Interactive | None = None
    image: Media | None = None
    audio: Media | None = None
    video: Media | None = None
    document: Media | None = None
    sticker: Media | None = None
    location: Location | None = None


class Profile(ProviderModel):
    name: Short | None = None


class Contact(ProviderModel):
    wa_id: Short | None = None
    profile: Profile | None = None


class ErrorData(ProviderModel):
    details: Short | None = None


class StatusError(ProviderModel):
    code: int | None = None
    title: Short | None = None
    message: Short | None = None
    error_data: ErrorData | None = None

    def describe(self) -> str:
        detail = self.error_data.details if self.error_data else None
        code = f"(code {self.code})" if self.code is not None else None
        return " ".join(x for x in (self.title or self.message, detail, code) if x)


class Status(ProviderModel):
    """A delivery report of a message we sent (``id`` is its wamid)."""

    id: Annotated[str, Field(min_length=1, max_length=200)]
    status: Short
    timestamp: Short | None = None
    recipient_id: Short | None = None
    #: Our own reference, sent with the message and echoed back by Meta.
    biz_opaque_callback_data: Annotated[str, Field(max_length=512)] | None = None
    errors: list[StatusError] = []


class Value(ProviderModel):
    messaging_product: Short | None = None
    contacts: list[Contact] = []
    messages: list[Message] = []
    statuses: list[Status] = []


class Change(ProviderModel):
    #: ``messages`` for messages and statuses; an app may send other fields (template, quality,
    #: account updates) to the same URL, each with a value of its own shape.
    kind: Annotated[Short | None, Field(alias="field")] = None
    value: dict[str, Any] = {}


class Entry(ProviderModel):
    id: Short | None = None
    changes: list[Change] = []


class Webhook(ProviderModel):
    object: Short | None = None
    entry: list[Entry] = []


@dataclass
class Parsed:
    """What one delivery holds: events to ingest, status updates, and what was skipped."""

    events: list[dict[str, Any]] = field(default_factory=list)
    updates: list[StatusUpdate] = field(default_factory=list)
    #: ``where: why`` of each skipped part (for the log; never a value from the payload).
    ignored: list[str] = field(default_factory=list)


def _text_of(msg: Message) -> tuple[str, dict[str, Any]]:
    kind = msg.type
    extra: dict[str, Any] = {"messageType": kind}
    if kind == "text":
        return (msg.text.body if msg.text else ""), extra
    if kind == "button":
        button = msg.button or Button()
        extra["buttonPayload"] = button.payload
        return button.text, extra
    if kind == "interactive":
        inter = msg.interactive or Interactive()
        reply = inter.button_reply or inter.list_reply or Reply()
        extra.update(replyId=reply.id, interactiveType=inter.type)
        return reply.title, extra
    if kind in MEDIA_TYPES:
        media = getattr(msg, kind) or Media()
        extra.update(mediaId=media.id, mimeType=media.mime_type)
        return (f"[{kind}] {media.caption or media.filename or ''}".strip()), extra
    if kind == "location":
        loc = msg.location or Location()
        extra.update(latitude=loc.latitude, longitude=loc.longitude)
        return f"[location] {loc.name or ''}".strip(), extra
    return f"[{kind}]", extra


def _when(raw: str | None) -> str | None:
    try:
        return datetime.fromtimestamp(int(raw or ""), UTC).isoformat()
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _event(msg: Message, names: dict[str | None, str | None]) -> dict[str, Any]:
    content, extra = _text_of(msg)
    event: dict[str, Any] = {
        "triggerType": "whatsapp_message",
        "channel": "whatsapp",
        "from": "+" + msg.sender.lstrip("+"),
        "content": content[:100_000],
        "idempotencyKey": f"whatsapp:{msg.id}"[:200],
        "data": {
            **extra,
            "providerMessageId": msg.id,
            "contactName": names.get(msg.sender),
            "provider": "whatsapp_cloud",
        },
    }
    received = _when(msg.timestamp)
    if received is not None:  # else the engine stamps the arrival time
        event["receivedAt"] = received
    return event


def _update(st: Status) -> StatusUpdate:
    return StatusUpdate(
        provider_message_id=st.id,
        status=st.status,
        error=(st.errors[0].describe() or None) if st.errors else None,
        at=_when(st.timestamp),
        reference=st.biz_opaque_callback_data,
    )


def parse(payload: Any) -> Parsed:
    """Events and status updates in one webhook delivery.

    A delivery of another shape raises :class:`UnexpectedShape`; a message the runner would
    refuse (a timestamp centuries away, a NUL in its text) is skipped and listed in ``ignored``.
    """
    hook = parse_as(Webhook, payload)
    out = Parsed()
    if hook.object not in (None, "whatsapp_business_account"):
        out.ignored.append("object: not a WhatsApp Business Account delivery")
        return out
    for e, entry in enumerate(hook.entry):
        for c, change in enumerate(entry.changes):
            if change.kind not in (None, "messages"):
                continue  # nothing for the engine
            value = parse_as(Value, change.value, at=("entry", e, "changes", c, "value"))
            names = {ct.wa_id: ct.profile.name if ct.profile else None for ct in value.contacts}
            for m, msg in enumerate(value.messages):
                try:
                    out.events.append(storable(_event(msg, names)))
                except UnexpectedShape as exc:
                    out.ignored.append(f"entry[{e}].changes[{c}].value.messages[{m}]: {exc.message}")
            out.updates.extend(_update(st) for st in value.statuses)
    return out
