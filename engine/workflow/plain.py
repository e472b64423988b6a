"""Problems in plain words: pydantic's messages re-worded in the form's words, and the
checks that catch what a schema cannot (empty texts and groups, replies the trigger cannot
answer on, variables the trigger does not provide).

``engine.workflow.validation`` calls these; every message is a sentence about one field, so the
builder can show it next to that field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.workflow import templating
from engine.workflow.definitions import MESSAGE_TRIGGER_CHANNELS
from engine.workflow.variables import TRIGGER_NAMES, reference_problem

#: The form's name for a JSON key.
FIELD_LABELS: dict[str, str] = {
    "name": "Name",
    "description": "Description",
    "message": "Message",
    "prompt": "Prompt",
    "subject": "Subject",
    "recipient": "Recipient",
    "webhookUrl": "Webhook URL",
    "delay": "Delay",
    "id": "Step id",
    "label": "Step label",
    "schedule": "Schedule",
    "intent": "Intent",
    "channel": "Channel",
    "value": "Value",
    "field": "Field",
    "conditions": "Conditions",
    "condition": "Condition",
    "actions": "Steps",
    "operator": "Operator",
    "timeout": "Timeout",
    "method": "Method",
    "daysPerWeek": "Days per week",
    "minutesPerSession": "Minutes per session",
    "maxAttempts": "Attempts",
    "backoff": "First retry after",
    "maxBackoff": "Longest retry pause",
    "onError": "When this action fails",
    "nextActionId": "Then",
    "updates": "Changes",
    "leadId": "Lead",
}


def label(field: str) -> str:
    return FIELD_LABELS.get(field, field[:1].upper() + field[1:] if field else "This field")


def plain_message(err: Mapping[str, Any], field: str) -> str:
    """One pydantic error as a sentence about ``field``."""
    kind, ctx, what = err["type"], err.get("ctx") or {}, label(field)
    if kind == "string_too_short":
        return f"{what} cannot be empty."
    if kind == "too_short":
        need = ctx.get("min_length", 1)
        return f"{what} needs at least {need} item{'s' if need != 1 else ''}."
    if kind in ("string_too_long", "too_long"):
        return (
            f"{what} is too long: at most {ctx.get('max_length')} "
            f"{'characters' if kind == 'string_too_long' else 'items'}."
        )
    if kind in ("greater_than_equal", "greater_than"):
        return (
            f"{what} must be at least {ctx.get('ge', ctx.get('gt'))}."
            if kind == "greater_than_equal"
            else f"{what} must be more than {ctx.get('gt')}."
        )
    if kind in ("less_than_equal", "less_than"):
        return f"{what} can be at most {ctx.get('le', ctx.get('lt'))}."
    if kind == "string_pattern_mismatch":
        return (
            f"{what} may only use letters, digits, - and _ (no spaces)."
            if field in ("id", "nextActionId")
            else f"{what} has characters that are not allowed here (lower-case letters, digits and _)."
        )
    if kind in ("literal_error", "enum"):
        return f"{what} must be one of {ctx.get('expected', 'the listed choices')}."
    if kind in ("int_parsing", "int_type", "int_from_float", "float_parsing", "float_type"):
        return f"{what} must be a number."
    if kind in ("string_type",):
        return f"{what} must be text."
    if kind in ("bool_type", "bool_parsing"):
        return f"{what} must be on or off (true or false)."
    if kind in ("list_type",):
        return f"{what} must be a list."
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"{what} must be an object with fields."
    return f"{what}: {err['msg'].rstrip('.')}."


# --------------------------------------------------------------------------- checks a schema cannot make

TEXT_FIELDS = {
    "send_message": "message",
    "send_whatsapp": "message",
    "send_email": "message",
    "send_sms": "message",
    "schedule_follow_up": "message",
    "ask_ai": "prompt",
}
_PHONE_CHANNELS = {"whatsapp", "sms"}
#: What a trigger's sender is: a phone number, an e-mail address, or either / unknown (None).
_SENDER_KIND = {
    "voice_call": "phone",
    "whatsapp_message": "phone",
    "sms_received": "phone",
    "missed_call": "phone",
    "email_received": "email",
}


def empty_text_problems(action: dict, path: str) -> list[tuple[str, str]]:
    """An empty message or prompt: (path, message) pairs."""
    field = TEXT_FIELDS.get(str(action.get("type")))
    config = _config if isinstance(_config := action.get("config"), dict) else {}
    if field and isinstance(config.get(field), str) and not config[field].strip():
        what = (
            "prompt: tell the AI what to do" if field == "prompt" else "message: write what the member should receive"
        )
        return [(f"{path}.config.{field}", f"The {what}.")]
    return []


def empty_group_problems(cond: Any, path: str) -> list[tuple[str, str]]:
    if isinstance(cond, dict) and cond.get("type") in ("all", "any") and not cond.get("conditions"):
        word = "any of" if cond["type"] == "any" else "all of"
        return [(f"{path}.conditions", f"This “{word}” group is empty: add a condition to it or remove the group.")]
    return []


def trigger_channel_problem(trigger: Any) -> tuple[str, str] | None:
    """A message trigger filtered on another channel (a WhatsApp message never arrives by e-mail)."""
    if not isinstance(trigger, dict) or not isinstance(trigger.get("config"), dict):
        return None
    own = MESSAGE_TRIGGER_CHANNELS.get(str(trigger.get("type")))
    channel = trigger["config"].get("channel")
    if own and channel and channel != own:
        return (
            "trigger.config.channel",
            f"{TRIGGER_NAMES[str(trigger['type'])].capitalize()} always arrives on {own}; "
            f"remove the channel “{channel}”.",
        )
    return None


def reply_problem(action: dict, path: str, trigger: Any) -> tuple[str, str] | tuple[str, str, str] | None:
    """A reply to the trigger's sender on a channel that cannot reach that sender.

    (path, message) is an error; a third item ``"warning"`` marks a doubtful case that can
    still be saved. A voice call answered with ``send_message`` is fine (the phone system
    speaks it; the spec's own create example does this).
    """
    config = _config if isinstance(_config := action.get("config"), dict) else {}
    atype = str(action.get("type"))
    if atype not in TEXT_FIELDS or atype == "ask_ai":
        return None
    trigger = trigger if isinstance(trigger, dict) else {}
    ttype = str(trigger.get("type"))
    tconfig = _tconfig if isinstance(_tconfig := trigger.get("config"), dict) else {}
    channel = {"send_whatsapp": "whatsapp", "send_sms": "sms", "send_email": "email"}.get(atype) or config.get(
        "channel"
    )
    if ttype == "missed_call" and channel == "voice":
        return (
            f"{path}.config.channel",
            (
                "A missed call has no open line to speak this on: choose WhatsApp or SMS "
                "to send the caller a message they can read."
            ),
            "warning",
        )
    if config.get("recipient") or atype == "schedule_follow_up":
        return None  # a follow-up without anyone to write to becomes a task for the team
    where = f"{path}.config.recipient"
    if ttype == "time_based":
        return where, "A schedule has no sender to reply to: enter a recipient, or nobody gets this message.", "warning"
    sender = "email" if tconfig.get("channel") == "email" else _SENDER_KIND.get(ttype)
    if channel in _PHONE_CHANNELS and sender == "email":
        return where, (
            f"The sender of {TRIGGER_NAMES[ttype]} is an e-mail address, which cannot get {channel}: "
            "enter a phone number as recipient or reply by e-mail."
        )
    if channel == "email" and sender == "phone":
        return where, (
            f"The sender of {TRIGGER_NAMES[ttype]} is a phone number, which cannot get an e-mail: "
            "enter an e-mail address as recipient or reply by WhatsApp or SMS."
        )
    return None


def variable_problems(
    config: dict, path: str, *, trigger_type: str | None, actions: dict[str, Any]
) -> list[tuple[str, str]]:
    """Variables the trigger or the referenced step does not provide (warnings with a suggestion)."""
    out = []
    for sub, text in templating.iter_strings(config):
        if not templating.has_template(text) or templating.check_syntax(text):
            continue
        for ref in templating.references(text):
            message = reference_problem(ref, trigger_type=trigger_type, actions=actions)
            if message:
                out.append((f"{path}.{sub}", message))
    return out
