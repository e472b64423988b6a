"""Step 3 of the builder (and branch actions): conditions with only their allowed operators.

Each condition type gets a fitting value widget: hour pickers (and from/until for
``between``), weekday names (0 = Sunday), a confidence slider, intent and channel selects.
Groups (all / any / not) nest. Widget keys carry the condition's path *and* type, so
changing a type starts that row's widgets afresh.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from engine.workflow.definitions import KNOWN_INTENTS, OPERATORS
from ui import builder_state
from ui.definition import parse_scalar
from ui.labels import (
    CHANNELS,
    CONDITIONS,
    OPERATOR_LABELS,
    WEEKDAYS,
    hour_label,
    intent_label,
)
from ui.problems import field_slot

GROUP_TITLES = {"all": "All of these must hold", "any": "Any one of these is enough"}

LEAF_DEFAULTS: dict[str, dict[str, Any]] = {
    "keyword_match": {"operator": "contains", "value": ""},
    "intent_match": {"operator": "equals", "value": None},  # the owner picks; nothing pre-picked
    "sender_match": {"operator": "contains", "value": ""},
    "time_range": {"operator": "between", "value": [9, 18]},
    "day_of_week": {"operator": "in", "value": [1, 2, 3, 4, 5]},
    "confidence_threshold": {"operator": "greater_than", "value": 0.8},
    "channel_match": {"operator": "equals", "value": "whatsapp"},
    "custom_field": {"operator": "equals", "field": "", "value": ""},
}
LIST_OPERATORS = {"in", "not_in"}
HOURS = list(range(0, 25))


def default_condition(ctype: str) -> dict:
    if ctype in ("all", "any"):
        return {"type": ctype, "conditions": []}
    if ctype == "not":
        return {"type": "not", "condition": {"type": "keyword_match", **LEAF_DEFAULTS["keyword_match"]}}
    return {"type": ctype, **{k: (list(v) if isinstance(v, list) else v) for k, v in LEAF_DEFAULTS[ctype].items()}}


def condition_list(
    conditions: list, key: str, *, empty_hint: str, path: str = "conditions", nested: bool = False
) -> list:
    """Edit a list of conditions in place; returns it. One "add" control per level, at its end."""
    if not conditions:
        st.caption(empty_hint)
    remove = None
    for i, cond in enumerate(conditions):
        with st.container(border=True, key=f"card_{key}_{i}"):
            conditions[i] = condition_editor(cond, f"{key}_{i}", path=f"{path}[{i}]")
            if st.button("Remove condition", key=f"{key}_{i}_remove", icon=":material/delete:", type="tertiary"):
                remove = i
    if remove is not None:
        del conditions[remove]
        builder_state.bump()  # rows shifted: widgets must start again from the dict
        st.rerun()
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    label = "Add a condition to this group" if nested else "Add a condition"
    kind = left.selectbox(label, list(CONDITIONS), format_func=lambda v: CONDITIONS.get(v, v), key=f"{key}_newtype")
    if right.button("Add", key=f"{key}_add", icon=":material/add:", width="stretch"):
        conditions.append(default_condition(kind))
        st.rerun()
    return conditions


def _group(cond: dict, ctype: str, key: str, path: str) -> None:
    """A group's conditions, indented under its title, with its own add control."""
    st.markdown(f"**{GROUP_TITLES[ctype]}:**")
    gutter, body = st.columns([0.04, 0.96])
    gutter.markdown(
        "<div style='border-left:3px solid #0A84FF;height:100%;min-height:3rem'></div>", unsafe_allow_html=True
    )
    with body:
        cond["conditions"] = condition_list(
            cond.setdefault("conditions", []),
            key,
            nested=True,
            path=f"{path}.conditions",
            empty_hint="Empty: add at least one condition, or remove the group.",
        )
        field_slot(f"{path}.conditions")


def condition_editor(cond: Any, key: str, *, path: str = "conditions[0]") -> dict:
    cond = cond if isinstance(cond, dict) else {}
    types = list(CONDITIONS)
    current = cond.get("type") if cond.get("type") in types else None
    picked = st.selectbox(
        "Condition",
        types,
        index=types.index(current) if current else None,
        format_func=lambda v: CONDITIONS.get(v, v),
        key=f"{key}_type",
        placeholder="Choose a condition",
    )
    if picked is None:
        return cond
    if picked != current:
        cond = default_condition(picked)
    k = f"{key}_{picked}"
    if picked in ("all", "any"):
        _group(cond, picked, k, path)
    elif picked == "not":
        st.caption("True when this condition is false:")
        cond["condition"] = condition_editor(cond.get("condition"), f"{k}_inner", path=f"{path}.condition")
    else:
        _leaf(cond, picked, k)
        field_slot(path)
    return cond


def _leaf(cond: dict, ctype: str, key: str) -> None:
    operators = list(OPERATORS[ctype])
    op_col, value_col = st.columns([1, 2])
    current = cond.get("operator") if cond.get("operator") in operators else operators[0]
    with op_col:
        if ctype == "custom_field":
            cond["field"] = st.text_input(
                "Field", value=str(cond.get("field", "")), key=f"{key}_field", placeholder="membership"
            )
        op = str(
            st.selectbox(
                "Operator",
                operators,
                index=operators.index(str(current)),
                format_func=lambda v: OPERATOR_LABELS.get(v, v),
                key=f"{key}_op",
            )
        )
    cond["operator"] = op
    if op.endswith("business_hours"):  # no value: the studio's hours from Settings > Hours & limits
        cond.pop("value", None)
        value_col.caption("Uses the business hours and closed days in Settings > Hours & limits.")
        return
    value = _reshape(cond.get("value"), ctype, op)
    with value_col:
        cond["value"] = VALUE_WIDGETS[ctype](value, op, f"{key}_{op}_value")
    if ctype == "keyword_match":
        if st.checkbox("Case-sensitive", value=bool(cond.get("caseSensitive")), key=f"{key}_case"):
            cond["caseSensitive"] = True
        else:
            cond.pop("caseSensitive", None)


def _reshape(value: Any, ctype: str, op: str) -> Any:
    """Adapt the value when the operator changes between one value and a list."""
    wants_list = (
        op in LIST_OPERATORS
        or (ctype == "time_range" and op == "between")
        or (ctype == "day_of_week" and op == "in")
        or (ctype == "channel_match" and op == "in")
    )
    if wants_list and not isinstance(value, list):
        return [] if value in (None, "") else [value]
    if not wants_list and isinstance(value, list):
        return value[0] if value else None
    return value


def _keyword(value: Any, op: str, key: str) -> Any:
    text = ", ".join(value) if isinstance(value, list) else str(value or "")
    entered = st.text_input(
        "Keyword(s)", value=text, key=key, help="Several keywords separated by commas mean: any of them."
    )
    words = [w.strip() for w in entered.split(",") if w.strip()]
    return words[0] if len(words) == 1 else (words or "")


def _intent(value: Any, op: str, key: str) -> Any:
    options = list(KNOWN_INTENTS) + [
        v
        for v in (value if isinstance(value, list) else [value])
        if isinstance(v, str) and v and v not in KNOWN_INTENTS
    ]
    if op in LIST_OPERATORS:
        return st.multiselect(
            "Intents", options, default=[v for v in value if v in options], key=key, format_func=intent_label
        )
    return st.selectbox(
        "Intent",
        options,
        index=options.index(value) if value in options else None,
        key=key,
        format_func=intent_label,
        placeholder="Choose an intent",
    )


def _sender(value: Any, op: str, key: str) -> str:
    return st.text_input("Sender (phone, e-mail or id)", value=str(value or ""), key=key, placeholder="+49 170 ...")


def _hours(value: Any, op: str, key: str) -> Any:
    if op == "between":
        start, end = (value + [9, 18])[:2] if isinstance(value, list) else (9, 18)
        a, b = st.columns(2)
        start = a.selectbox("From", HOURS, index=_hour_index(start), key=f"{key}_from", format_func=hour_label)
        end = b.selectbox(
            "Until",
            HOURS,
            index=_hour_index(end),
            key=f"{key}_to",
            format_func=hour_label,
            help="Until is exclusive; from 18 until 9 wraps past midnight.",
        )
        return [start, end]
    label = "After (hour)" if op == "greater_than" else "Before (hour)"
    return st.selectbox(
        label,
        HOURS,
        index=_hour_index(value),
        key=key,
        format_func=hour_label,
        help="The hour of day in the studio's timezone.",
    )


def _hour_index(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and 0 <= value <= 24 else 9


def _weekdays(value: Any, op: str, key: str) -> Any:
    days = list(range(7))
    if op == "in":
        return st.multiselect(
            "Days", days, default=[d for d in value if d in days], key=key, format_func=WEEKDAYS.__getitem__
        )
    return st.selectbox("Day", days, index=value if value in days else 1, key=key, format_func=WEEKDAYS.__getitem__)


def _confidence(value: Any, op: str, key: str) -> float:
    start = float(value) if isinstance(value, (int, float)) and 0 <= value <= 1 else 0.8
    return st.slider("Confidence", 0.0, 1.0, start, 0.05, key=key, help="How sure the AI is about the intent (0-1).")


def _channel(value: Any, op: str, key: str) -> Any:
    options = list(CHANNELS)
    if op == "in":
        return st.multiselect(
            "Channels",
            options,
            default=[v for v in value if v in options],
            key=key,
            format_func=lambda v: CHANNELS.get(v, v),
        )
    return st.selectbox(
        "Channel",
        options,
        index=options.index(value) if value in options else 0,
        key=key,
        format_func=lambda v: CHANNELS.get(v, v),
    )


def _custom(value: Any, op: str, key: str) -> Any:
    text = str(value).lower() if isinstance(value, bool) else ("" if value is None else str(value))
    entered = st.text_input("Value", value=text, key=key, help="Numbers and true/false are compared as such.")
    return parse_scalar(entered)


VALUE_WIDGETS = {
    "keyword_match": _keyword,
    "intent_match": _intent,
    "sender_match": _sender,
    "time_range": _hours,
    "day_of_week": _weekdays,
    "confidence_threshold": _confidence,
    "channel_match": _channel,
    "custom_field": _custom,
}
