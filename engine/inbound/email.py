"""Parse inbound e-mail in Postmark's inbound webhook JSON format.

Postmark posts ``{"From", "FromFull": {"Email", "Name"}, "To", "Subject", "TextBody",
"HtmlBody", "StrippedTextReply", "MessageID", "Date", "Headers": [...]}``. The same shape
is easy to produce from any other inbound-mail service or a mail-server pipe.
"""

from __future__ import annotations

from typing import Any

from engine.errors import InvalidInput


def email_event(payload: Any) -> dict[str, Any]:
    """``email_received``; raises :class:`InvalidInput` naming the missing field."""
    if not isinstance(payload, dict):
        raise InvalidInput("expected a JSON object", field="body")
    full = _full if isinstance(_full := payload.get("FromFull"), dict) else {}
    sender = (full.get("Email") or payload.get("From") or "").strip()
    if "<" in sender and sender.endswith(">"):
        sender = sender.rsplit("<", 1)[1][:-1]
    if "@" not in sender:
        raise InvalidInput("no sender address", field="FromFull.Email")
    message_id = str(payload.get("MessageID") or "").strip()
    if not message_id:
        raise InvalidInput("no message id", field="MessageID")
    text = payload.get("StrippedTextReply") or payload.get("TextBody") or ""
    return {
        "triggerType": "email_received",
        "channel": "email",
        "from": sender.lower(),
        "content": str(text)[:100_000],
        "idempotencyKey": f"email:{message_id}"[:200],
        "data": {
            "subject": str(payload.get("Subject") or "")[:500],
            "senderName": full.get("Name"),
            "providerMessageId": message_id,
            "to": payload.get("To"),
            "provider": "postmark",
        },
    }
