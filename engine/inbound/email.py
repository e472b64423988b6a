"""Parse inbound e-mail in Postmark's inbound webhook JSON format.

Postmark posts ``{"From", "FromFull": {"Email", "Name"}, "To", "Subject", "TextBody",
"HtmlBody", "StrippedTextReply", "MessageID", "Date", "Headers": [...]}``. The same shape
is easy to produce from any other inbound-mail service or a mail-server pipe.

PROVIDERS notes (what Postmark gets back): Postmark retries a non-2xx answer up to 10 times
over about 10 hours (spaced out, not a storm) and stops at once on 403, which we keep for a
wrong URL token. An authenticated mail of an unexpected shape (no sender, no MessageID, a
field of the wrong type) is answered 422 naming the field: the mail then shows as failed in
the studio's Postmark activity with our reason and can be retried from there after a fix,
instead of being dropped silently with a 200.
"""

from __future__ import annotations

from email.utils import parseaddr
from typing import Annotated, Any

from pydantic import Field

from engine.inbound.payload import ProviderModel, UnexpectedShape, parse_as, storable

Short = Annotated[str, Field(max_length=1000)]
Body = Annotated[str, Field(max_length=1_000_000)]


class Address(ProviderModel):
    email: Annotated[Short, Field(alias="Email")] = ""
    name: Annotated[Short | None, Field(alias="Name")] = None


class InboundEmail(ProviderModel):
    sender: Annotated[Short | None, Field(alias="From")] = None
    from_full: Annotated[Address | None, Field(alias="FromFull")] = None
    to: Annotated[Short | None, Field(alias="To")] = None
    subject: Annotated[str | None, Field(alias="Subject")] = None
    message_id: Annotated[Short, Field(alias="MessageID", min_length=1)]
    text_body: Annotated[Body | None, Field(alias="TextBody")] = None
    stripped_text_reply: Annotated[Body | None, Field(alias="StrippedTextReply")] = None


def _sender(mail: InboundEmail) -> str:
    raw = (mail.from_full.email if mail.from_full else "") or mail.sender or ""
    address = parseaddr(raw)[1] or raw.strip()
    if "@" not in address:
        raise UnexpectedShape("no sender address", field="FromFull.Email")
    return address.lower()


def email_event(payload: Any) -> dict[str, Any]:
    """``email_received``; raises :class:`UnexpectedShape` naming the missing or wrong field."""
    mail = parse_as(InboundEmail, payload)
    message_id = mail.message_id.strip()
    if not message_id:
        raise UnexpectedShape("no message id", field="MessageID")
    # The reply without the quoted thread is what intent detection should read.
    text = mail.stripped_text_reply or mail.text_body or ""
    return storable(
        {
            "triggerType": "email_received",
            "channel": "email",
            "from": _sender(mail),
            "content": text[:100_000],
            "idempotencyKey": f"email:{message_id}"[:200],
            "data": {
                "subject": (mail.subject or "")[:500],
                "senderName": mail.from_full.name if mail.from_full else None,
                "providerMessageId": message_id,
                "to": mail.to,
                "provider": "postmark",
            },
        }
    )
