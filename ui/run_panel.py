"""Run now: a small form for trigger data, dry-run option, and the result with its step trace."""

from __future__ import annotations

from typing import Any

import streamlit as st

from engine import services
from engine.errors import EngineError
from engine.uow import unit_of_work
from engine.workflow.definitions import KNOWN_INTENTS, MESSAGE_TRIGGER_CHANNELS
from ui import session
from ui.definition import parse_pairs
from ui.labels import CHANNELS, intent_label, trigger_label
from ui.step_trace import show_execution


def trigger_data_form(trigger: dict, key: str) -> tuple[dict, bool, bool] | None:
    """The trigger data, dry-run and bypass flags when submitted, else None."""
    ttype = trigger.get("type", "")
    channel = MESSAGE_TRIGGER_CHANNELS.get(ttype)
    with st.form(f"{key}_form", border=False):
        st.caption(f"Simulates {trigger_label(ttype)}. Fill in what the trigger would carry.")
        a, b = st.columns(2)
        sender = a.text_input("From", value="+4917012345678", key=f"{key}_from")
        channels = list(CHANNELS)
        picked = b.selectbox(
            "Channel",
            channels,
            index=channels.index(str(channel)) if channel else 1,
            key=f"{key}_channel",
            format_func=lambda v: CHANNELS.get(v, v),
        )
        content = st.text_area(
            "Message", value="Hallo, ich hätte gern einen Trainingsplan.", key=f"{key}_content", height=80
        )
        c, d = st.columns(2)
        intent = c.selectbox(
            "Intent",
            ["(none)"] + list(KNOWN_INTENTS),
            key=f"{key}_intent",
            index=1 + list(KNOWN_INTENTS).index(trigger.get("config", {}).get("intent", "training_plan"))
            if trigger.get("config", {}).get("intent") in KNOWN_INTENTS
            else 0,
            format_func=lambda i: i if i == "(none)" else intent_label(i),
        )
        confidence = d.slider("Intent confidence", 0.0, 1.0, 0.9, 0.05, key=f"{key}_confidence")
        custom = st.text_area("Custom fields (field: value per line)", key=f"{key}_custom", height=68)
        e, f = st.columns(2)
        dry_run = e.checkbox("Dry run (nothing is sent, waits are skipped)", value=True, key=f"{key}_dry")
        bypass = f.checkbox("Ignore the conditions", value=False, key=f"{key}_bypass")
        submitted = st.form_submit_button("Run now", type="primary", icon=":material/play_arrow:")
    if not submitted:
        return None
    data: dict[str, Any] = {
        "from": sender,
        "channel": picked,
        "content": content,
        "customFields": parse_pairs(custom, scalars=True),
    }
    if intent != "(none)":
        data.update(intent=intent, intentConfidence=confidence)
    return data, dry_run, bypass


def run_panel(workflow, key: str) -> None:
    submitted = trigger_data_form(workflow.trigger, key)
    if submitted is None:
        return
    data, dry_run, bypass = submitted
    try:
        with st.spinner("Running…"):
            with unit_of_work(session.db()) as uow:
                execution = services.run_workflow(
                    uow=uow,
                    actor=session.require_actor(),
                    workflow_id=workflow.id,
                    trigger_data=data,
                    bypass_conditions=bypass,
                    dry_run=dry_run,
                )
    except EngineError as exc:
        st.error(exc.message, icon="⛔")
        return
    show_execution(execution)
