"""Step 2 of the builder: the trigger type and its config (channel, intent, cron schedule)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import streamlit as st

from engine.workflow.definitions import KNOWN_INTENTS, MESSAGE_TRIGGER_CHANNELS, TriggerType
from engine.workflow.schedule import describe, upcoming
from engine.workflow.validation import cron_problem
from ui.definition import TRIGGER_DEFAULTS, set_optional
from ui.labels import CHANNELS, TRIGGERS, intent_label, trigger_label
from ui.problems import field_slot

ANY = "(any)"
CRON_EXAMPLES = {
    "0 9 * * *": "every day at 09:00",
    "30 7 * * 1-5": "weekdays at 07:30",
    "0 10 * * 0": "Sundays at 10:00",
    "*/15 * * * *": "every 15 minutes",
}


def trigger_editor(definition: dict, key: str, tz_name: str) -> None:
    """Edit ``definition["trigger"]`` in place."""
    trigger = _trigger if isinstance(_trigger := definition.get("trigger"), dict) else {}
    types = [t.value for t in TriggerType]
    current = trigger.get("type") if trigger.get("type") in types else None
    if trigger.get("type") and current is None:
        st.warning(f"Unknown trigger type {trigger.get('type')!r}: pick one of the list.")
    picked = st.selectbox(
        "When this happens",
        types,
        index=types.index(current) if current else None,
        format_func=trigger_label,
        key=f"{key}_type",
        placeholder="Choose a trigger",
    )
    if picked is None:
        field_slot("trigger")
        return
    if picked != current:
        trigger = {"type": picked, "config": dict(TRIGGER_DEFAULTS.get(picked, {}))}
    config = (
        trigger.setdefault("config", {})
        if isinstance(trigger.get("config"), dict)
        else trigger.setdefault("config", {})
    )
    if not isinstance(config, dict):
        config = trigger["config"] = {}
    definition["trigger"] = trigger
    k = f"{key}_{picked}"
    if picked in MESSAGE_TRIGGER_CHANNELS:
        _message_trigger(
            config, k, required_intent=False, own_channel=str(MESSAGE_TRIGGER_CHANNELS[TriggerType(picked)])
        )
    elif picked == TriggerType.INTENT_DETECTED:
        _message_trigger(config, k, required_intent=True)
    elif picked == TriggerType.TIME_BASED:
        _schedule(config, k, tz_name)
    else:
        st.caption(f"{TRIGGERS[picked][0]} No settings: the workflow runs for every {TRIGGERS[picked][1].lower()}.")
    field_slot("trigger")


def _message_trigger(config: dict, key: str, *, required_intent: bool, own_channel: str | None = None) -> None:
    left, right = st.columns(2)
    with left:
        intents = list(KNOWN_INTENTS)
        value = config.get("intent")
        if isinstance(value, str) and value not in intents:
            intents.append(value)
        options = intents if required_intent else [ANY] + intents
        index = options.index(value) if value in options else 0
        intent = st.selectbox(
            "Intent" if required_intent else "Only for intent",
            options,
            index=index,
            key=f"{key}_intent",
            format_func=lambda i: i if i == ANY else intent_label(i),
            help="What the message is about, as the AI classifier detects it.",
        )
        set_optional(config, "intent", None if intent == ANY else intent)
    with right:
        if own_channel:
            _own_channel(config, key, own_channel)
            return
        channels = [ANY] + list(CHANNELS)
        value = config.get("channel")
        channel = st.selectbox(
            "Channel",
            channels,
            index=channels.index(value) if value in channels else 0,
            key=f"{key}_channel",
            format_func=lambda c: CHANNELS.get(c, c),
        )
        set_optional(config, "channel", None if channel == ANY else channel)


def _own_channel(config: dict, key: str, own: str) -> None:
    """A WhatsApp message always comes on WhatsApp: no channel to pick (an imported mismatch can be removed)."""
    st.text_input(
        "Channel",
        value=CHANNELS.get(own, own),
        disabled=True,
        key=f"{key}_own_channel",
        help="Set by the trigger. For several channels use the “Intent detected” trigger.",
    )
    foreign = config.get("channel") and config["channel"] != own
    if foreign and st.button(
        f"Remove the channel filter “{config['channel']}”", key=f"{key}_drop_channel", icon=":material/close:"
    ):
        config.pop("channel", None)
        st.rerun()


def _schedule(config: dict, key: str, tz_name: str) -> None:
    schedule = st.text_input(
        "Schedule (cron: minute hour day month weekday)",
        value=str(config.get("schedule", "")),
        key=f"{key}_schedule",
        help="Examples: " + "; ".join(f"`{c}` {d}" for c, d in CRON_EXAMPLES.items()),
    )
    config["schedule"] = schedule.strip()
    problem = cron_problem(schedule.strip()) if schedule.strip() else "enter a schedule"
    if problem:
        st.error(problem, icon="⚠️")
        return
    fires = upcoming(schedule.strip(), tz_name, datetime.now(UTC), 5)
    tz = ZoneInfo(tz_name)
    st.success(f"**{describe(schedule.strip())}** ({tz_name})", icon="⏰")
    st.caption("Next runs: " + " · ".join(f.astimezone(tz).strftime("%a %d %b %H:%M") for f in fires))
