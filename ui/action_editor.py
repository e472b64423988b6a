"""Step 4 of the builder: actions in order, each with its own config widgets and its target.

Wiring is sequential ("next in list") unless the user picks a target; branches pick where
to jump when their conditions hold. Delays are entered in minutes/hours/days and stored
in milliseconds.
"""

from __future__ import annotations

import json

import streamlit as st

from ui import builder_state
from ui.condition_editor import condition_list
from ui.definition import (
    UNITS,
    actions_of,
    add_action,
    format_pairs,
    is_sequential,
    join_delay,
    known_action_types,
    move_action,
    parse_pairs,
    remove_action,
    set_next,
    set_optional,
    split_delay,
    variables_with_meaning,
)
from ui.labels import CHANNELS, action_label
from ui.problems import field_slot

#: While a step card is drawn: the JSON path of its config, so each field reserves its problem slot.
PATH = "builder_action_path"

NEXT, END = "__next__", "__end__"
DEFAULT = "(default)"


def actions_editor(definition: dict, key: str) -> None:
    actions = actions_of(definition)
    definition["actions"] = actions
    if not actions:
        st.info("No actions yet. Add the first step below: for example *Wait*, then *Send WhatsApp*.", icon="👇")
    for i, action in enumerate(actions):
        with st.container(border=True, key=f"card_{key}_{i}"):
            st.session_state[PATH] = f"actions[{i}].config"
            _action_card(definition, i, action, f"{key}_{i}_{action.get('type')}")
            field_slot(f"actions[{i}]")
    st.session_state.pop(PATH, None)
    field_slot("actions")
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    kind = left.selectbox("Add an action", known_action_types(), format_func=action_label, key=f"{key}_newtype")
    if right.button("Add action", key=f"{key}_add", icon=":material/add:", type="primary", width="stretch"):
        add_action(definition, kind)
        builder_state.bump()
        st.rerun()


def _action_card(definition: dict, i: int, action: dict, key: str) -> None:
    count = len(definition["actions"])
    title, up, down, delete = st.columns([6, 1, 1, 1], vertical_alignment="center")
    title.markdown(f"**{i + 1}. {action_label(action.get('type', '?'))}** &nbsp; `{action.get('id')}`")
    if up.button("", key=f"{key}_up", icon=":material/arrow_upward:", disabled=i == 0, help="Move up"):
        _restructure(move_action, definition, i, -1)
    if down.button("", key=f"{key}_down", icon=":material/arrow_downward:", disabled=i == count - 1, help="Move down"):
        _restructure(move_action, definition, i, 1)
    if delete.button("", key=f"{key}_delete", icon=":material/delete:", help="Remove this action"):
        _restructure(remove_action, definition, i)
    config = _config if isinstance(_config := action.get("config"), dict) else {}
    action["config"] = config
    editor = CONFIG_EDITORS.get(str(action.get("type")))
    if editor is None:
        st.warning(f"Unknown action type {action.get('type')!r}: edit it in JSON mode.")
    else:
        editor(config, key, definition, i)
    _next_select(definition, i, key)
    _advanced(action, key)


def _restructure(change, definition: dict, *args) -> None:
    change(definition, *args)
    builder_state.bump()
    st.rerun()


def _others(definition: dict, i: int) -> list[str]:
    return [a.get("id") for j, a in enumerate(definition["actions"]) if j != i and isinstance(a.get("id"), str)]


def _next_select(definition: dict, i: int, key: str) -> None:
    action = definition["actions"][i]
    others = _others(definition, i)
    following = definition["actions"][i + 1].get("id") if i + 1 < len(definition["actions"]) else None
    labels = {NEXT: f"Next in list ({following})" if following else "Next in list (end of the run)", END: "End the run"}
    if is_sequential(definition, i):
        current = NEXT
    elif action.get("nextActionId") is None:
        current = END
    else:
        current = action.get("nextActionId")
    options = [NEXT, END] + others + ([current] if current not in [NEXT, END] + others else [])
    picked = st.selectbox(
        "Then",
        options,
        index=options.index(current),
        key=f"{key}_next",
        format_func=lambda o: labels.get(o, f"Go to {o}"),
    )
    set_next(definition, i, None if picked in (NEXT, END) else picked, sequential=picked == NEXT)


def _advanced(action: dict, key: str) -> None:
    with st.expander("More options"):
        label = st.text_input("Label (shown in the flow graph)", value=action.get("label") or "", key=f"{key}_label")
        set_optional(action, "label", label.strip() or None)
        options = [DEFAULT, "continue", "stop"]
        current = action.get("onError") if action.get("onError") in options else DEFAULT
        on_error = st.selectbox(
            "When this action fails",
            options,
            index=options.index(str(current)),
            key=f"{key}_onerror",
            format_func=lambda o: {"continue": "Continue with the next step", "stop": "Stop the run"}.get(
                o, "Default (continue)"
            ),
        )
        set_optional(action, "onError", None if on_error == DEFAULT else on_error)
        retry = _retry if isinstance(_retry := action.get("retry"), dict) else {}
        attempts = st.number_input(
            "Retry attempts (empty = no retries)",
            min_value=1,
            max_value=10,
            step=1,
            value=retry.get("maxAttempts"),
            key=f"{key}_retry",
        )
        set_optional(action, "retry", {**retry, "maxAttempts": int(attempts)} if attempts else None)


# --------------------------------------------------------------------------- config widgets


def _variables(definition: dict, i: int) -> None:
    with st.expander("Variables you can use here"):
        st.markdown("\n".join(f"- `{{{{{v}}}}}` {meaning}" for v, meaning in variables_with_meaning(definition, i)))
        st.caption("These come from this workflow's trigger and earlier steps. Anything else is flagged before saving.")


def _text(config: dict, field: str, label: str, key: str, *, area: bool = False, optional: bool = False, **kw) -> None:
    widget = st.text_area if area else st.text_input
    value = widget(label, value=str(config.get(field) or ""), key=f"{key}_{field}", **kw)
    if optional:
        set_optional(config, field, value.strip() or None)
    else:
        config[field] = value
    _slot(field)


def _slot(field: str) -> None:
    if st.session_state.get(PATH):
        field_slot(f"{st.session_state[PATH]}.{field}")


def _optional_select(
    config: dict, field: str, label: str, options: dict[str, str], key: str, default_label: str = DEFAULT
) -> None:
    keys = [DEFAULT] + list(options)
    current = config.get(field) if config.get(field) in keys else DEFAULT
    picked = st.selectbox(
        label,
        keys,
        index=keys.index(str(current)),
        key=f"{key}_{field}",
        format_func=lambda o: default_label if o == DEFAULT else options[o],
    )
    set_optional(config, field, None if picked == DEFAULT else picked)
    _slot(field)


def _message(config: dict, key: str, definition: dict, i: int, *, channel: bool = False, subject: bool = False) -> None:
    if subject:
        _text(config, "subject", "Subject", key, optional=True)
    _text(config, "message", "Message", key, area=True, placeholder="Hallo {{trigger.from}}! ...")
    _variables(definition, i)
    left, right = st.columns(2)
    with left:
        _text(config, "recipient", "Recipient (empty = the sender)", key, optional=True, placeholder="{{trigger.from}}")
    if channel:
        with right:
            _optional_select(config, "channel", "Channel", CHANNELS, key, "Same as the trigger")


def _ask_ai(config: dict, key: str, definition: dict, i: int) -> None:
    _text(config, "prompt", "Prompt", key, area=True, placeholder="Answer the question about {{trigger.content}}")
    _variables(definition, i)
    _optional_select(config, "channel", "Reply style for channel", CHANNELS, key, "Any")


def _workout(config: dict, key: str, definition: dict, i: int) -> None:
    st.caption("Everything is optional: missing values come from the message or the lead, else sensible defaults.")
    a, b, c = st.columns(3)
    with a:
        _text(config, "goal", "Goal", key, optional=True, placeholder="strength, mobility ...")
    with b:
        _optional_select(
            config,
            "level",
            "Level",
            {x: x.capitalize() for x in ("beginner", "intermediate", "advanced")},
            key,
            "From the request",
        )
    with c:
        _optional_select(config, "language", "Language", {"de": "Deutsch", "en": "English"}, key, "Studio default")
    d, e = st.columns(2)
    days = d.number_input("Days per week", 1, 6, value=config.get("daysPerWeek"), key=f"{key}_days")
    minutes = e.number_input(
        "Minutes per session", 15, 120, value=config.get("minutesPerSession"), step=5, key=f"{key}_minutes"
    )
    set_optional(config, "daysPerWeek", int(days) if days else None)
    set_optional(config, "minutesPerSession", int(minutes) if minutes else None)
    equipment = st.text_input(
        "Equipment (comma separated)", value=", ".join(config.get("equipment") or []), key=f"{key}_equipment"
    )
    set_optional(config, "equipment", [x.strip() for x in equipment.split(",") if x.strip()] or None)


def _delay(config: dict, key: str, label: str) -> None:
    amount, unit = split_delay(config.get("delay"))
    a, b = st.columns([1, 1])
    amount = a.number_input(label, min_value=0.0, value=float(amount), step=1.0, key=f"{key}_amount", format="%g")
    unit = b.selectbox("Unit", list(UNITS), index=list(UNITS).index(unit), key=f"{key}_unit")
    config["delay"] = join_delay(amount, unit)
    _slot("delay")


def _wait(config: dict, key: str, definition: dict, i: int) -> None:
    _delay(config, key, "Wait for")
    st.caption("The run pauses durably: a worker resumes it when the time is up, even after a restart.")


def _follow_up(config: dict, key: str, definition: dict, i: int) -> None:
    _delay(config, key, "Follow up after")
    _message(config, key, definition, i, channel=True)


def _create_lead(config: dict, key: str, definition: dict, i: int) -> None:
    _text(config, "name", "Name", key)
    a, b = st.columns(2)
    with a:
        _text(config, "email", "E-mail", key, optional=True)
        _text(config, "source", "Source", key, optional=True, placeholder="website, instagram ...")
    with b:
        _text(config, "phone", "Phone", key, optional=True, placeholder="{{trigger.from}}")
        _text(config, "notes", "Notes", key, optional=True)
    _variables(definition, i)


def _update_lead(config: dict, key: str, definition: dict, i: int) -> None:
    _text(config, "leadId", "Lead id (empty = the sender's lead)", key, optional=True, placeholder="{{trigger.leadId}}")
    text = st.text_area(
        "Updates, one per line (field: value)",
        value=format_pairs(config.get("updates")),
        key=f"{key}_updates",
        placeholder="status: trial_booked\nscore: 80",
    )
    config["updates"] = parse_pairs(text, scalars=True)
    _variables(definition, i)


def _webhook(config: dict, key: str, definition: dict, i: int) -> None:
    a, b = st.columns([3, 1])
    with a:
        _text(config, "webhookUrl", "URL", key, placeholder="https://crm.example.com/api/leads")
    with b:
        _optional_select(
            config, "method", "Method", {m: m for m in ("GET", "POST", "PUT", "PATCH", "DELETE")}, key, "Default (POST)"
        )
    headers = st.text_area(
        "Headers, one per line (Name: value)",
        value=format_pairs(config.get("headers")),
        key=f"{key}_headers",
        height=80,
        placeholder="Authorization: Bearer …",
    )
    set_optional(config, "headers", parse_pairs(headers) or None)
    _body(config, key)
    timeout = st.number_input(
        "Timeout (seconds, empty = default)",
        min_value=1.0,
        max_value=60.0,
        value=config.get("timeout"),
        key=f"{key}_timeout",
    )
    set_optional(config, "timeout", timeout)
    _variables(definition, i)


def _body(config: dict, key: str) -> None:
    body = config.get("body")
    text = "" if body is None else (body if isinstance(body, str) else json.dumps(body, indent=2, ensure_ascii=False))
    entered = st.text_area("Body (JSON; templates allowed inside strings)", value=text, key=f"{key}_body", height=120)
    if not entered.strip():
        config.pop("body", None)
        return
    try:
        config["body"] = json.loads(entered)
    except json.JSONDecodeError as exc:
        config["body"] = entered
        st.caption(f"Not JSON ({exc.msg}, line {exc.lineno}): sent as plain text.")


def _branch(config: dict, key: str, definition: dict, i: int) -> None:
    st.caption("When **all** these conditions hold, jump to the chosen step; otherwise continue with *Then* below.")
    config["conditions"] = condition_list(
        config.setdefault("conditions", []),
        f"{key}_cond",
        empty_hint="No conditions: the branch always jumps.",
        path=f"{st.session_state.get(PATH, 'actions[0].config')}.conditions",
    )
    others = [None] + _others(definition, i)
    current = config.get("nextActionId") if config.get("nextActionId") in others else None
    target = st.selectbox(
        "If they hold, jump to",
        others,
        index=others.index(current),
        key=f"{key}_target",
        format_func=lambda o: "(choose a step)" if o is None else o,
    )
    config["nextActionId"] = target


CONFIG_EDITORS = {
    "send_message": lambda c, k, d, i: _message(c, k, d, i, channel=True),
    "send_whatsapp": _message,
    "send_email": lambda c, k, d, i: _message(c, k, d, i, subject=True),
    "send_sms": _message,
    "ask_ai": _ask_ai,
    "generate_workout_plan": _workout,
    "schedule_follow_up": _follow_up,
    "create_lead": _create_lead,
    "update_lead": _update_lead,
    "call_webhook": _webhook,
    "wait": _wait,
    "branch": _branch,
}
