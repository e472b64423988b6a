"""Pure helpers over the builder's one definition dict (no Streamlit here, easy to test).

The builder writes sequential wiring explicitly (``nextActionId`` = the next action's id,
``null`` for the last), as the spec's examples do. An action whose target is its list
neighbour counts as "next in list", so adding, removing and reordering keep that wiring.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from engine.workflow.definitions import ActionType

ID_PREFIX = {
    "send_message": "send",
    "send_whatsapp": "send",
    "send_email": "email",
    "send_sms": "sms",
    "ask_ai": "ai",
    "generate_workout_plan": "plan",
    "schedule_follow_up": "followup",
    "create_lead": "lead",
    "update_lead": "lead",
    "call_webhook": "webhook",
    "wait": "wait",
    "branch": "branch",
}

#: A default config per action type: only the keys the type requires.
ACTION_DEFAULTS: dict[str, dict[str, Any]] = {
    "send_message": {"message": ""},
    "send_whatsapp": {"message": ""},
    "send_email": {"message": ""},
    "send_sms": {"message": ""},
    "ask_ai": {"prompt": ""},
    "generate_workout_plan": {},
    "schedule_follow_up": {"delay": 86_400_000, "message": ""},
    "create_lead": {"name": "{{trigger.from}}"},
    "update_lead": {"updates": {}},
    "call_webhook": {"webhookUrl": "https://"},
    "wait": {"delay": 300_000},
    "branch": {"conditions": [], "nextActionId": None},
}

TRIGGER_DEFAULTS: dict[str, dict[str, Any]] = {
    "intent_detected": {"intent": "training_plan"},
    "time_based": {"schedule": "0 9 * * *"},
}

#: Outputs an action leaves in ``results.<id>`` (the ones worth offering in templates).
RESULT_FIELDS: dict[str, tuple[str, ...]] = {
    "send_message": ("status", "recipient"),
    "send_whatsapp": ("status", "recipient"),
    "send_email": ("status", "recipient"),
    "send_sms": ("status", "recipient"),
    "ask_ai": ("text",),
    "generate_workout_plan": ("text",),
    "schedule_follow_up": ("scheduledFor",),
    "create_lead": ("leadId",),
    "update_lead": ("leadId",),
    "call_webhook": ("status", "body"),
    "wait": ("resumeAt",),
    "branch": ("matched",),
}

TRIGGER_VARIABLES = (
    "trigger.from",
    "trigger.content",
    "trigger.channel",
    "trigger.intent",
    "trigger.intentConfidence",
    "trigger.leadId",
    "trigger.bookingId",
    "trigger.customFields.<name>",
)
OTHER_VARIABLES = ("lead.name", "lead.email", "lead.phone", "tenant.name", "now")

UNITS = {"minutes": 60_000, "hours": 3_600_000, "days": 86_400_000}


def new_definition() -> dict[str, Any]:
    """A blank workflow: a draft (off until the owner turns it on) on the trigger most studios need first."""
    return {
        "name": "",
        "enabled": False,
        "trigger": {"type": "whatsapp_message", "config": {}},
        "conditions": [],
        "actions": [],
    }


def actions_of(definition: dict) -> list[dict]:
    actions = definition.get("actions")
    return [a for a in actions if isinstance(a, dict)] if isinstance(actions, list) else []


def new_action_id(definition: dict, action_type: str) -> str:
    prefix = ID_PREFIX.get(action_type, "step")
    taken = {a.get("id") for a in actions_of(definition)}
    n = 1
    while f"{prefix}-{n}" in taken:
        n += 1
    return f"{prefix}-{n}"


def _sequential_flags(actions: list[dict]) -> list[bool]:
    """Per action: does it simply continue with its list neighbour (or end, when last)?"""
    flags = []
    for i, action in enumerate(actions):
        following = actions[i + 1].get("id") if i + 1 < len(actions) else None
        flags.append("nextActionId" not in action or action.get("nextActionId") == following)
    return flags


def _rewire(actions: list[dict], flags: list[bool]) -> None:
    for i, (action, sequential) in enumerate(zip(actions, flags)):
        if sequential:
            action["nextActionId"] = actions[i + 1].get("id") if i + 1 < len(actions) else None


def add_action(definition: dict, action_type: str) -> str:
    """Append an action of this type (wired after the current last one); returns its id."""
    actions = definition.setdefault("actions", [])
    flags = _sequential_flags(actions) + [True]
    aid = new_action_id(definition, action_type)
    actions.append(
        {
            "id": aid,
            "type": action_type,
            "config": copy.deepcopy(ACTION_DEFAULTS.get(action_type, {})),
            "nextActionId": None,
        }
    )
    _rewire(actions, flags)
    return aid


def remove_action(definition: dict, index: int) -> None:
    """Remove an action; targets that pointed at it follow its own successor instead."""
    actions = definition.get("actions", [])
    flags = _sequential_flags(actions)
    removed = actions[index]
    successor = (
        removed.get("nextActionId")
        if not flags[index]
        else (actions[index + 1].get("id") if index + 1 < len(actions) else None)
    )
    del actions[index], flags[index]
    for action in actions:
        if action.get("nextActionId") == removed.get("id"):
            action["nextActionId"] = successor
        config = action.get("config")
        if (
            action.get("type") == "branch"
            and isinstance(config, dict)
            and config.get("nextActionId") == removed.get("id")
        ):
            config["nextActionId"] = None
    _rewire(actions, flags)


def move_action(definition: dict, index: int, offset: int) -> None:
    """Move an action up (-1) or down (+1); "next in list" wiring follows the new order."""
    actions = definition.get("actions", [])
    target = index + offset
    if not 0 <= target < len(actions):
        return
    flags = _sequential_flags(actions)
    actions[index], actions[target] = actions[target], actions[index]
    flags[index], flags[target] = flags[target], flags[index]
    _rewire(actions, flags)


def is_sequential(definition: dict, index: int) -> bool:
    return _sequential_flags(actions_of(definition))[index]


def set_next(definition: dict, index: int, target: str | None, *, sequential: bool) -> None:
    actions = definition["actions"]
    if sequential and "nextActionId" not in actions[index]:
        return  # implicit "next in list" (allowed by the format) stays implicit
    if sequential:
        actions[index]["nextActionId"] = actions[index + 1].get("id") if index + 1 < len(actions) else None
    else:
        actions[index]["nextActionId"] = target


def split_delay(ms: Any) -> tuple[float, str]:
    """300000 -> (5, "minutes"): the largest unit that divides the delay evenly."""
    if not isinstance(ms, (int, float)) or isinstance(ms, bool) or ms <= 0:
        return 0, "minutes"
    for unit in ("days", "hours", "minutes"):
        if ms % UNITS[unit] == 0:
            return ms // UNITS[unit], unit
    return round(ms / UNITS["minutes"], 2), "minutes"


def join_delay(amount: float, unit: str) -> int:
    return int(round(amount * UNITS[unit]))


def describe_delay(ms: Any) -> str:
    amount, unit = split_delay(ms)
    amount = int(amount) if float(amount).is_integer() else amount
    return f"{amount} {unit[:-1] if amount == 1 else unit}"


def variables_before(definition: dict, index: int) -> list[str]:
    """Template variables an action at ``index`` can use, from the same declaration the
    validator checks against (``engine.workflow.variables``): this trigger's fields, the lead, earlier results."""
    return [f"{{{{{v}}}}}" for v, _ in variables_with_meaning(definition, index)]


def variables_with_meaning(definition: dict, index: int) -> list[tuple[str, str]]:
    """(variable, what it holds) pairs for the action at ``index``."""
    from engine.workflow.variables import variables_for

    trigger = _trigger if isinstance(_trigger := definition.get("trigger"), dict) else {}
    return variables_for(trigger.get("type"), actions_of(definition)[:index])


def set_optional(config: dict, key: str, value: Any) -> None:
    """Keep optional keys out of the JSON unless the user set them."""
    if value in (None, "", [], {}):
        config.pop(key, None)
    else:
        config[key] = value


def parse_scalar(text: str) -> Any:
    """'42' -> 42, '3.5' -> 3.5, 'true' -> True, anything else stays a string."""
    stripped = text.strip()
    if re.fullmatch(r"-?\d+", stripped):
        return int(stripped)
    if re.fullmatch(r"-?\d+\.\d*", stripped):
        return float(stripped)
    if stripped.lower() in ("true", "false"):
        return stripped.lower() == "true"
    return text


def parse_pairs(text: str, *, sep: str = ":", scalars: bool = False) -> dict[str, Any]:
    """'Authorization: Bearer x' lines -> {"Authorization": "Bearer x"}."""
    out: dict[str, Any] = {}
    for line in text.splitlines():
        if sep in line:
            key, value = line.split(sep, 1)
            if key.strip():
                out[key.strip()] = parse_scalar(value.strip()) if scalars else value.strip()
    return out


def format_pairs(pairs: Any, *, sep: str = ":") -> str:
    if not isinstance(pairs, dict):
        return ""
    return "\n".join(f"{k}{sep} {str(v).lower() if isinstance(v, bool) else v}" for k, v in pairs.items())


def known_action_types() -> list[str]:
    return [t.value for t in ActionType]


_SUBJECT = {
    "keyword_match": "keyword",
    "intent_match": "intent",
    "sender_match": "sender",
    "time_range": "time",
    "day_of_week": "day",
    "confidence_threshold": "confidence",
    "channel_match": "channel",
}
_OPS = {
    "equals": "is",
    "contains": "",
    "starts_with": "starts with",
    "ends_with": "ends with",
    "in": "is one of",
    "not_in": "is none of",
    "greater_than": "after",
    "less_than": "before",
    "between": "between",
}
_DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]


def _value_text(ctype: str, value: Any) -> str:
    values = value if isinstance(value, list) else [value]
    if ctype == "day_of_week":
        return ", ".join(_DAYS[v] if isinstance(v, int) and 0 <= v < 7 else str(v) for v in values)
    if ctype == "time_range":
        return "–".join(f"{v:g}:00" if isinstance(v, (int, float)) else str(v) for v in values)
    if ctype == "intent_match":
        return " / ".join(str(v).replace("_", " ") for v in values if v is not None) or "(none picked)"
    return " / ".join(f"“{v}”" if isinstance(v, str) else str(v) for v in values)


def describe_condition(cond: Any) -> str:
    """One condition in words, groups included: ``(keyword “preis” or intent pricing)``."""
    if not isinstance(cond, dict):
        return "?"
    ctype = cond.get("type")
    if ctype in ("all", "any"):
        inner = [describe_condition(c) for c in cond.get("conditions") or []]
        return "(" + f" {'and' if ctype == 'all' else 'or'} ".join(inner) + ")" if inner else "(empty group)"
    if ctype == "not":
        return "not " + describe_condition(cond.get("condition"))
    if ctype == "custom_field":
        return (
            f"{cond.get('field') or '?'} {_OPS.get(str(cond.get('operator')), cond.get('operator'))} "
            f"{cond.get('value')!r}"
        ).replace("  ", " ")
    op = _OPS.get(str(cond.get("operator")), str(cond.get("operator")))
    subject = _SUBJECT.get(str(ctype), str(ctype))
    return " ".join(x for x in (subject, op, _value_text(str(ctype), cond.get("value"))) if x)
