"""What a template may use: the fields each trigger type provides and each action's outputs.

One declaration serves the validator (``{{trigger.name}}`` on a WhatsApp trigger is a
warning with a suggestion) and the builder's "Variables you can use here" list, so the two
never disagree. Trigger fields mirror ``engine.runner.trigger_data``; action outputs mirror
the executors in ``engine/actions``.
"""

from __future__ import annotations

import difflib
from typing import Any

#: Fields every event carries (see ``engine.runner.trigger_data``), with what they hold.
COMMON_FIELDS: dict[str, str] = {
    "type": "the trigger type",
    "receivedAt": "when it arrived (ISO time)",
    "eventId": "the event's id",
    "customFields": "extra fields sent with the event (trigger.customFields.<name>)",
}
MESSAGE_FIELDS: dict[str, str] = {
    "from": "the sender (phone number, e-mail address or chat id)",
    "content": "the message text",
    "channel": "the channel it came in on",
    "intent": "what the message is about, as the AI detected it",
    "intentConfidence": "how sure the AI is about the intent (0-1)",
    "language": "the member's language (de or en) when the text shows it",
    "leadId": "the lead's id, when the sender is a known lead",
}

TRIGGER_FIELDS: dict[str, dict[str, str]] = {
    "voice_call": {
        **MESSAGE_FIELDS,
        "content": "what the caller said (transcript)",
        "from": "the caller's phone number",
    },
    "whatsapp_message": {**MESSAGE_FIELDS, "from": "the sender's WhatsApp number"},
    "email_received": {**MESSAGE_FIELDS, "from": "the sender's e-mail address", "subject": "the e-mail's subject"},
    "web_chat": {**MESSAGE_FIELDS, "from": "the visitor's chat id or e-mail"},
    "sms_received": {**MESSAGE_FIELDS, "from": "the sender's phone number"},
    "intent_detected": dict(MESSAGE_FIELDS),
    "time_based": {"scheduledFor": "the scheduled time it fired for"},
    "missed_call": {"from": "the caller's phone number", "channel": "voice", "leadId": "the lead's id, when known"},
    "lead_created": {
        "leadId": "the new lead's id",
        "from": "the lead's phone or e-mail",
        "name": "the lead's name",
        "email": "the lead's e-mail",
        "phone": "the lead's phone",
        "source": "where the lead came from",
    },
    "booking_created": {
        "bookingId": "the booking's id",
        "leadId": "the member's lead id, when known",
        "from": "the member's phone or e-mail",
        "memberName": "the member's name",
        "className": "the class booked",
        "startsAt": "when the class starts (ISO time)",
    },
}

TRIGGER_NAMES: dict[str, str] = {
    "voice_call": "a voice call",
    "whatsapp_message": "a WhatsApp message",
    "email_received": "an e-mail",
    "web_chat": "a web chat",
    "sms_received": "an SMS",
    "intent_detected": "a detected intent",
    "time_based": "a schedule",
    "missed_call": "a missed call",
    "lead_created": "a new lead",
    "booking_created": "a new booking",
}

LEAD_FIELDS: dict[str, str] = {
    "id": "the lead's id",
    "name": "name",
    "email": "e-mail",
    "phone": "phone",
    "source": "source",
    "status": "status",
    "notes": "notes",
    "customFields": "custom fields (lead.customFields.<name>)",
}
TENANT_FIELDS: dict[str, str] = {
    "id": "the studio's id",
    "name": "the studio's name",
    "slug": "short name",
    "timezone": "the studio's timezone",
}

#: What each action leaves in ``results.<action id>``.
ACTION_OUTPUTS: dict[str, dict[str, str]] = {
    **{
        t: {
            "status": "delivery status",
            "recipient": "who it went to",
            "channel": "the channel used",
            "messageId": "the outbox message id",
        }
        for t in ("send_message", "send_whatsapp", "send_email", "send_sms")
    },
    "ask_ai": {
        "text": "the AI's answer",
        "handoff": "true when the AI handed over to the team",
        "sources": "knowledge-base entries used",
        "provider": "which AI answered",
    },
    "generate_workout_plan": {
        "text": "the whole plan as text, in the member's language",
        "summary": "one line",
        "days": "the training days",
        "profile": "goal, level, days, equipment",
    },
    "schedule_follow_up": {"scheduledFor": "when it will be sent", "recipient": "who gets it", "channel": "channel"},
    "create_lead": {"leadId": "the lead's id", "created": "false when an existing lead was updated"},
    "update_lead": {"leadId": "the lead's id", "changed": "the fields that changed"},
    "call_webhook": {"status": "HTTP status code", "body": "the response body", "headers": "response headers"},
    "wait": {"resumeAt": "when the workflow went on", "delayMs": "the pause in milliseconds"},
    "branch": {"matched": "whether the branch's conditions held", "target": "where it jumped"},
}

#: Open-ended maps: anything below them is allowed.
_OPEN = {"customFields", "body", "headers", "days", "profile", "sources", "changed"}


def trigger_fields(trigger_type: str | None) -> dict[str, str]:
    """The fields ``{{trigger.*}}`` offers for this trigger type (common ones included)."""
    own = TRIGGER_FIELDS.get(trigger_type or "", {})
    return {**own, **COMMON_FIELDS}


def variables_for(trigger_type: str | None, earlier_actions: list[dict]) -> list[tuple[str, str]]:
    """(variable, meaning) pairs a template can use after ``earlier_actions``."""
    out = [(f"trigger.{k}", v) for k, v in trigger_fields(trigger_type).items()]
    out += [(f"lead.{k}", v) for k, v in LEAD_FIELDS.items() if k != "id"]
    out += [("tenant.name", TENANT_FIELDS["name"]), ("now", "the current time in the studio's timezone")]
    for action in earlier_actions:
        for k, v in ACTION_OUTPUTS.get(str(action.get("type")), {}).items():
            out.append((f"results.{action.get('id')}.{k}", v))
    return out


def _suggest(word: str, options: list[str], prefix: str) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.5)
    synonyms = {
        "name": "from",
        "sender": "from",
        "phone": "from",
        "text": "content",
        "message": "content",
        "body": "content",
        "vorname": "name",
        "nachname": "name",
        "mail": "email",
        "telefon": "phone",
    }
    if not close and synonyms.get(word.casefold()) in options:
        close = [synonyms[word.casefold()]]
    return f" Did you mean {prefix}.{close[0]}?" if close else ""


def reference_problem(ref: tuple[str, ...], *, trigger_type: str | None, actions: dict[str, Any]) -> str | None:
    """Why ``ref`` (e.g. ``("trigger", "name")``) will be empty at run time, or ``None``.

    ``actions`` maps action id -> type. The message names the source and suggests a close
    match ("did you mean trigger.from?").
    """
    if len(ref) < 2:
        return None
    root, field = ref[0], ref[1]
    if root == "trigger":
        fields = trigger_fields(trigger_type)
        if field in fields:
            return None
        return (
            f"“{'.'.join(ref[:2])}” is not something {TRIGGER_NAMES.get(trigger_type or '', 'this trigger')} provides, "
            "so it would be empty." + _suggest(field, list(fields), "trigger")
        )
    if root == "lead" and field not in LEAD_FIELDS:
        return (
            f"A lead has no field “{field}”."
            + _suggest(field, list(LEAD_FIELDS), "lead")
            + " Custom fields are lead.customFields.<name>."
        )
    if root == "tenant" and field not in TENANT_FIELDS:
        return f"The studio has no field “{field}”." + _suggest(field, list(TENANT_FIELDS), "tenant")
    if root == "results" and len(ref) >= 3 and field in actions:
        outputs = ACTION_OUTPUTS.get(str(actions[field]), {})
        if outputs and ref[2] not in outputs and ref[2] not in _OPEN:
            return f"Step “{field}” has no output “{ref[2]}”." + _suggest(ref[2], list(outputs), f"results.{field}")
    return None
