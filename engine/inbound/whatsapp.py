"""Parse WhatsApp Cloud API webhook payloads (``object: whatsapp_business_account``).

Messages become ``whatsapp_message`` events (text, button and interactive replies as their
text; media as its type and caption), statuses become delivery updates of outbox messages.
Reference: Meta "Webhooks > messages" payload (entry[].changes[].value.{messages,statuses,contacts}).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from engine.inbound.updates import StatusUpdate

logger = logging.getLogger(__name__)

MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")


def _text_of(msg: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    kind = msg.get("type") or "unknown"
    extra: dict[str, Any] = {"messageType": kind}
    if kind == "text":
        return str((msg.get("text") or {}).get("body") or ""), extra
    if kind == "button":
        button = msg.get("button") or {}
        extra["buttonPayload"] = button.get("payload")
        return str(button.get("text") or ""), extra
    if kind == "interactive":
        inter = msg.get("interactive") or {}
        reply = inter.get("button_reply") or inter.get("list_reply") or {}
        extra.update(replyId=reply.get("id"), interactiveType=inter.get("type"))
        return str(reply.get("title") or ""), extra
    if kind in MEDIA_TYPES:
        media = msg.get(kind) or {}
        extra.update(mediaId=media.get("id"), mimeType=media.get("mime_type"))
        caption = media.get("caption") or media.get("filename") or ""
        return (f"[{kind}] {caption}".strip()), extra
    if kind == "location":
        loc = msg.get("location") or {}
        extra.update(latitude=loc.get("latitude"), longitude=loc.get("longitude"))
        return f"[location] {loc.get('name') or ''}".strip(), extra
    return f"[{kind}]", extra


def _when(raw: Any) -> str | None:
    try:
        return datetime.fromtimestamp(int(raw), UTC).isoformat()
    except (TypeError, ValueError, OverflowError):
        return None


def parse(payload: Any) -> tuple[list[dict[str, Any]], list[StatusUpdate]]:
    """Events and status updates in one webhook delivery (unknown parts are skipped)."""
    events: list[dict[str, Any]] = []
    updates: list[StatusUpdate] = []
    if not isinstance(payload, dict):
        return events, updates
    for entry in payload.get("entry") or []:
        for change in (entry or {}).get("changes") or []:
            value = (change or {}).get("value") or {}
            names = {
                c.get("wa_id"): (c.get("profile") or {}).get("name")
                for c in value.get("contacts") or []
                if isinstance(c, dict)
            }
            for msg in value.get("messages") or []:
                if not isinstance(msg, dict) or not msg.get("id") or not msg.get("from"):
                    continue
                content, extra = _text_of(msg)
                events.append(
                    {
                        "triggerType": "whatsapp_message",
                        "channel": "whatsapp",
                        "from": "+" + str(msg["from"]).lstrip("+"),
                        "content": content[:100_000],
                        "receivedAt": _when(msg.get("timestamp")),
                        "idempotencyKey": f"whatsapp:{msg['id']}"[:200],
                        "data": {
                            **extra,
                            "providerMessageId": msg["id"],
                            "contactName": names.get(msg["from"]),
                            "provider": "whatsapp_cloud",
                        },
                    }
                )
            for st in value.get("statuses") or []:
                if not isinstance(st, dict) or not st.get("id"):
                    continue
                errors = st.get("errors") or []
                error = None
                if errors and isinstance(errors[0], dict):
                    e = errors[0]
                    detail = (
                        (e.get("error_data") or {}).get("details") if isinstance(e.get("error_data"), dict) else None
                    )
                    error = " ".join(
                        str(x) for x in (e.get("title") or e.get("message"), detail, f"(code {e.get('code')})") if x
                    )
                updates.append(
                    StatusUpdate(
                        provider_message_id=str(st["id"]),
                        status=str(st.get("status") or ""),
                        error=error,
                        at=_when(st.get("timestamp")),
                        reference=str(st["biz_opaque_callback_data"]) if st.get("biz_opaque_callback_data") else None,
                    )
                )
    for event in events:
        if event["receivedAt"] is None:
            del event["receivedAt"]  # the engine stamps the arrival time
    return events, updates
