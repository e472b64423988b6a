"""Parse Twilio webhook form posts: inbound SMS, call status, transcription, message status.

Reference: Twilio "Messaging webhooks" (MessageSid, From, To, Body, NumMedia), "Call status
callbacks" (CallSid, CallStatus, From, To), "<Record transcribe>" callbacks
(TranscriptionSid, TranscriptionText, TranscriptionStatus, CallSid, From) and message status
callbacks (MessageSid, MessageStatus, ErrorCode).

PROVIDERS notes (what Twilio gets back): Twilio does not retry a webhook that answered 4xx
(only connection failures, unless the URL asks for more with ``#rp=``); it records the answer
as error 11200 in the account's Debugger and calls the number's Fallback URL if one is set.
So a correctly signed form without the documented fields (or with values the runner would
refuse) is answered 422 naming the field: the owner sees exactly what went wrong in Twilio's
console, and nothing is retried. A documented form that asks nothing of us (an answered call,
a failed transcription, a status we do not track) gets the empty TwiML 200 as before.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AliasChoices, Field

from engine.inbound.payload import ProviderModel, parse_as, storable
from engine.inbound.updates import StatusUpdate

#: A call that ended with one of these never reached anyone: a missed call.
MISSED_CALL_STATUSES = frozenset({"no-answer", "busy", "failed", "canceled"})

Sid = Annotated[str, Field(min_length=1, max_length=64)]
Address = Annotated[str, Field(min_length=1, max_length=320)]
Short = Annotated[str, Field(max_length=1000)]
Body = Annotated[str, Field(max_length=100_000)]


class InboundSms(ProviderModel):
    message_sid: Annotated[Sid, Field(validation_alias=AliasChoices("MessageSid", "SmsSid"))]
    sender: Annotated[Address, Field(alias="From")]
    to: Annotated[Address | None, Field(alias="To")] = None
    body: Annotated[Body, Field(alias="Body")] = ""
    #: Twilio takes at most 10 media per message.
    num_media: Annotated[int, Field(alias="NumMedia", ge=0, le=10)] = 0


class CallStatus(ProviderModel):
    call_sid: Annotated[Sid, Field(alias="CallSid")]
    call_status: Annotated[Short, Field(alias="CallStatus")]
    sender: Annotated[Address, Field(alias="From")]
    to: Annotated[Address | None, Field(alias="To")] = None
    #: ``inbound`` for calls to the studio; ``outbound-api``/``outbound-dial`` for calls it made.
    direction: Annotated[Short | None, Field(alias="Direction")] = None


class Transcription(ProviderModel):
    transcription_sid: Annotated[Sid | None, Field(alias="TranscriptionSid")] = None
    recording_sid: Annotated[Sid | None, Field(alias="RecordingSid")] = None
    call_sid: Annotated[Sid | None, Field(alias="CallSid")] = None
    text: Annotated[Body | None, Field(alias="TranscriptionText")] = None
    status: Annotated[Short, Field(alias="TranscriptionStatus")] = "completed"
    sender: Annotated[Address | None, Field(alias="From")] = None
    recording_url: Annotated[Short | None, Field(alias="RecordingUrl")] = None


class MessageStatus(ProviderModel):
    message_sid: Annotated[Sid, Field(validation_alias=AliasChoices("MessageSid", "SmsSid"))]
    status: Annotated[Short, Field(validation_alias=AliasChoices("MessageStatus", "SmsStatus"), min_length=1)]
    error_code: Annotated[Short | None, Field(alias="ErrorCode")] = None
    error_message: Annotated[Short | None, Field(alias="ErrorMessage")] = None


def sms_event(form: dict[str, str]) -> dict[str, Any]:
    """``sms_received`` for an inbound SMS; :class:`UnexpectedShape` for another form."""
    sms = parse_as(InboundSms, form)
    return storable(
        {
            "triggerType": "sms_received",
            "channel": "sms",
            "from": sms.sender,
            "content": sms.body,
            "idempotencyKey": f"twilio:{sms.message_sid}",
            "data": {
                "providerMessageId": sms.message_sid,
                "to": sms.to,
                "numMedia": sms.num_media,
                "provider": "twilio",
            },
        }
    )


def call_status_event(form: dict[str, str]) -> dict[str, Any] | None:
    """``missed_call`` for an inbound call that ended no-answer/busy/failed/canceled; None otherwise."""
    call = parse_as(CallStatus, form)
    inbound = call.direction is None or call.direction.startswith("inbound")
    if call.call_status not in MISSED_CALL_STATUSES or not inbound:
        return None
    return storable(
        {
            "triggerType": "missed_call",
            "channel": "voice",
            "from": call.sender,
            "idempotencyKey": f"twilio-call:{call.call_sid}",
            "data": {"callSid": call.call_sid, "callStatus": call.call_status, "to": call.to, "provider": "twilio"},
        }
    )


def transcription_event(form: dict[str, str]) -> dict[str, Any] | None:
    """``voice_call`` with the transcript (None when the transcription failed or is empty)."""
    tr = parse_as(Transcription, form)
    sid = tr.transcription_sid or tr.recording_sid or tr.call_sid
    if not sid or tr.status != "completed" or not tr.text:
        return None
    return storable(
        {
            "triggerType": "voice_call",
            "channel": "voice",
            "from": tr.sender,
            "content": tr.text,
            "idempotencyKey": f"twilio-transcription:{sid}",
            "data": {"callSid": tr.call_sid, "recordingUrl": tr.recording_url, "provider": "twilio"},
        }
    )


def message_status(form: dict[str, str]) -> StatusUpdate:
    """A delivery update of an SMS we sent; :class:`UnexpectedShape` for another form."""
    st = parse_as(MessageStatus, form)
    error = None
    if st.error_code:
        error = f"Twilio error {st.error_code}" + (f": {st.error_message}" if st.error_message else "")
    return StatusUpdate(provider_message_id=st.message_sid, status=st.status, error=error)
