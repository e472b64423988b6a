"""Parse Twilio webhook form posts: inbound SMS, call status, transcription, message status.

Reference: Twilio "Messaging webhooks" (MessageSid, From, To, Body, NumMedia), "Call status
callbacks" (CallSid, CallStatus, From, To), "<Record transcribe>" callbacks
(TranscriptionSid, TranscriptionText, TranscriptionStatus, CallSid, From) and message status
callbacks (MessageSid, MessageStatus, ErrorCode).
"""

from __future__ import annotations

from typing import Any

from engine.inbound.updates import StatusUpdate

#: A call that ended with one of these never reached anyone: a missed call.
MISSED_CALL_STATUSES = frozenset({"no-answer", "busy", "failed", "canceled"})


def sms_event(form: dict[str, str]) -> dict[str, Any] | None:
    """``sms_received`` for an inbound SMS (None without MessageSid/From)."""
    sid, sender = form.get("MessageSid") or form.get("SmsSid"), form.get("From")
    if not sid or not sender:
        return None
    media = int(form.get("NumMedia") or 0) if str(form.get("NumMedia") or "0").isdigit() else 0
    return {
        "triggerType": "sms_received",
        "channel": "sms",
        "from": sender,
        "content": form.get("Body") or "",
        "idempotencyKey": f"twilio:{sid}"[:200],
        "data": {"providerMessageId": sid, "to": form.get("To"), "numMedia": media, "provider": "twilio"},
    }


def call_status_event(form: dict[str, str]) -> dict[str, Any] | None:
    """``missed_call`` for a call that ended no-answer/busy/failed/canceled; None otherwise."""
    status, sid, caller = form.get("CallStatus"), form.get("CallSid"), form.get("From")
    if status not in MISSED_CALL_STATUSES or not sid or not caller:
        return None
    return {
        "triggerType": "missed_call",
        "channel": "voice",
        "from": caller,
        "idempotencyKey": f"twilio-call:{sid}"[:200],
        "data": {"callSid": sid, "callStatus": status, "to": form.get("To"), "provider": "twilio"},
    }


def transcription_event(form: dict[str, str]) -> dict[str, Any] | None:
    """``voice_call`` with the transcript (None when the transcription failed or is empty)."""
    sid = form.get("TranscriptionSid") or form.get("RecordingSid") or form.get("CallSid")
    text = form.get("TranscriptionText")
    if not sid or form.get("TranscriptionStatus", "completed") != "completed" or not text:
        return None
    return {
        "triggerType": "voice_call",
        "channel": "voice",
        "from": form.get("From"),
        "content": text,
        "idempotencyKey": f"twilio-transcription:{sid}"[:200],
        "data": {"callSid": form.get("CallSid"), "recordingUrl": form.get("RecordingUrl"), "provider": "twilio"},
    }


def message_status(form: dict[str, str]) -> StatusUpdate | None:
    """A delivery update of an SMS we sent."""
    sid, status = form.get("MessageSid") or form.get("SmsSid"), form.get("MessageStatus") or form.get("SmsStatus")
    if not sid or not status:
        return None
    code = form.get("ErrorCode")
    error = f"Twilio error {code}" + (f": {form['ErrorMessage']}" if form.get("ErrorMessage") else "") if code else None
    return StatusUpdate(provider_message_id=sid, status=status, error=error)
