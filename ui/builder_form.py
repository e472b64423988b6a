"""Step 1 (basics) and step 5 (review) of the builder."""

from __future__ import annotations

import streamlit as st

from ui.definition import actions_of, describe_condition, describe_delay
from ui.labels import action_label, trigger_label
from ui.problems import field_slot

KEY_ORDER = ("name", "description", "enabled", "trigger", "conditions", "actions")


def basics_editor(definition: dict, key: str) -> None:
    definition["name"] = st.text_input(
        "Name",
        value=str(definition.get("name") or ""),
        key=f"{key}_name",
        placeholder="e.g. Welcome new leads",
        max_chars=200,
    )
    description = st.text_area(
        "Description (optional)",
        value=str(definition.get("description") or ""),
        key=f"{key}_description",
        height=90,
        placeholder="What does this workflow do, and why?",
    )
    if description.strip():
        definition["description"] = description
    else:
        definition.pop("description", None)
    field_slot("name")
    definition["enabled"] = st.toggle(
        "Turn on when saved",
        value=bool(definition.get("enabled", False)),
        key=f"{key}_enabled",
        help="Off (a draft): saved but never runs. Turn it on when you have tried it.",
    )


def ordered(definition: dict) -> None:
    """Put the top-level keys in the spec's order (in place: the session keeps the same dict)."""
    items = [(k, definition.pop(k)) for k in KEY_ORDER if k in definition]
    rest = list(definition.items())
    definition.clear()
    definition.update(items + rest)


def review(definition: dict) -> None:
    trigger = _trigger if isinstance(_trigger := definition.get("trigger"), dict) else {}
    st.markdown(f"#### {definition.get('name') or 'Unnamed workflow'}")
    if definition.get("description"):
        st.caption(definition["description"])
    st.markdown(
        f"**When** {trigger_label(trigger.get('type', '?'))}"
        + "".join(f" · `{k}: {v}`" for k, v in (trigger.get("config") or {}).items())
    )
    conditions = definition.get("conditions") or []
    if conditions:
        st.markdown("**If** " + " **and** ".join(describe_condition(c) for c in conditions if isinstance(c, dict)))
    steps = []
    for n, action in enumerate(actions_of(definition), 1):
        extra = (
            f" ({describe_delay(action['config'].get('delay'))})"
            if action.get("type") in ("wait", "schedule_follow_up") and isinstance(action.get("config"), dict)
            else ""
        )
        steps.append(f"{n}. {action_label(action.get('type', '?'))}{extra} `{action.get('id')}`")
    st.markdown("**Do**\n\n" + ("\n".join(steps) if steps else "_nothing yet_"))
    st.caption(
        "On: it runs as soon as it is saved."
        if definition.get("enabled", False)
        else "Off (a draft): saved, but it will not run until you turn it on."
    )
