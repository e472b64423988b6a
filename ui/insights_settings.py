"""Owner settings of the Insights: whether analysts see contact details, and per workflow the
minutes saved per run and its conversion goal (stored in the studio's settings)."""

from __future__ import annotations

from typing import Any

import streamlit as st

from engine import services
from engine.errors import EngineError
from engine.messaging import masking
from engine.services.insights import DEFAULT_MINUTES_SAVED
from engine.uow import unit_of_work

GOALS = {"": "no goal", "booking": "a booking", "lead": "a new lead"}


def _rows(settings: dict[str, Any], workflows: list[Any]) -> list[dict[str, Any]]:
    minutes, goals = settings.get("minutesSaved") or {}, settings.get("goals") or {}
    return [
        {
            "id": w.id,
            "Workflow": w.name,
            "Minutes saved per run": float(minutes.get(w.id, DEFAULT_MINUTES_SAVED)),
            "Goal": (goals.get(w.id) or {}).get("kind", ""),
            "Within days": int((goals.get(w.id) or {}).get("days", 7)),
        }
        for w in workflows
    ]


def _changes(rows: list[dict[str, Any]]) -> dict[str, Any]:
    minutes = {
        r["id"]: float(r["Minutes saved per run"])
        for r in rows
        if r["Minutes saved per run"] is not None and float(r["Minutes saved per run"]) != DEFAULT_MINUTES_SAVED
    }
    goals = {r["id"]: {"kind": r["Goal"], "days": int(r["Within days"] or 7)} for r in rows if r["Goal"]}
    return {"minutesSaved": minutes, "goals": goals}


def insights_settings_card(db: Any, actor: Any, tenant: Any) -> None:
    """The card on the settings page (owners only, like the page)."""
    settings = tenant.settings or {}
    with st.container(border=True, key="card_insights_settings"):
        st.subheader("Insights & privacy")
        shown = st.toggle(
            "Analysts see contact details",
            value=bool(settings.get(masking.SETTING)),
            key="settings_analysts_contacts",
            help="Off: analysts see +49 151 ****678 and j***@example.com everywhere, exports included.",
        )
        if shown != bool(settings.get(masking.SETTING)):
            with unit_of_work(db) as uow:
                services.update_tenant_settings(uow=uow, actor=actor, settings={masking.SETTING: shown})
            st.toast("Saved: analysts " + ("now see" if shown else "no longer see") + " contact details.")
        with unit_of_work(db, read_only=True) as uow:
            workflows = services.list_workflows(uow=uow, actor=actor, page_size=500).items
        if not workflows:
            return
        st.caption(
            "Time saved counts each succeeded run with its minutes; a goal is what counts as a conversion "
            "(by the same contact, within the days after the run)."
        )
        edited = st.data_editor(
            _rows(settings, workflows),
            hide_index=True,
            width="stretch",
            key="settings_insights_table",
            disabled=["id", "Workflow"],
            column_order=["Workflow", "Minutes saved per run", "Goal", "Within days"],
            column_config={
                "Minutes saved per run": st.column_config.NumberColumn(min_value=0, max_value=600, step=0.5),
                "Goal": st.column_config.SelectboxColumn(options=list(GOALS)),
                "Within days": st.column_config.NumberColumn(min_value=1, max_value=90, step=1),
            },
        )
        if st.button("Save insights settings", key="settings_insights_save", type="primary"):
            try:
                with unit_of_work(db) as uow:
                    services.update_tenant_settings(uow=uow, actor=actor, settings=_changes(edited))
            except EngineError as exc:
                st.error(exc.message)
            else:
                st.success("Saved.", icon="✅")
