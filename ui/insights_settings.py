"""Owner settings of the Insights: whether analysts see contact details, and per workflow the
minutes saved per run and its conversion goal (stored in the studio's settings).

Saves write only what the owner changed: the switch when it is flipped, and the rows of the
table that differ from what it showed (``minutesSaved.<workflow id>``, ``goals.<workflow id>``)."""

from __future__ import annotations

from typing import Any

import streamlit as st

from engine import services
from engine.errors import EngineError
from engine.services import studio_settings as ss
from engine.services.insights import DEFAULT_MINUTES_SAVED
from engine.tenant_settings import TenantSettings, settings_of
from engine.uow import unit_of_work
from ui import settings_form

GOALS = {"": "no goal", "booking": "a booking", "lead": "a new lead"}


def _rows(settings: TenantSettings, workflows: list[Any]) -> list[dict[str, Any]]:
    minutes, goals = settings.minutes_saved, settings.goals
    return [
        {
            "id": w.id,
            "Workflow": w.name,
            "Minutes saved per run": float(minutes.get(w.id, DEFAULT_MINUTES_SAVED)),
            "Goal": goals[w.id].kind if w.id in goals else "",
            "Within days": goals[w.id].days if w.id in goals else 7,
        }
        for w in workflows
    ]


def _changes(rows: list[dict[str, Any]], shown: list[dict[str, Any]]) -> dict[str, Any]:
    """The settings paths of the rows the owner edited (a default is stored as no entry)."""
    before = {r["id"]: r for r in shown}
    changes: dict[str, Any] = {}
    for r in rows:
        old = before.get(r["id"])
        if old is None:
            continue
        minutes = r["Minutes saved per run"]
        if minutes != old["Minutes saved per run"]:
            value = None if minutes is None or float(minutes) == DEFAULT_MINUTES_SAVED else float(minutes)
            changes[f"minutesSaved.{r['id']}"] = value
        if (r["Goal"], r["Within days"]) != (old["Goal"], old["Within days"]):
            goal = {"kind": r["Goal"], "days": int(r["Within days"] or 7)}
            changes[f"goals.{r['id']}"] = goal if r["Goal"] else None
    return changes


def _toggle_contacts(db: Any, actor: Any) -> None:
    """The switch was flipped by the owner (on_change): store exactly that."""
    shown = st.session_state["settings_analysts_contacts"]
    with unit_of_work(db) as uow:
        ss.update_settings(uow=uow, actor=actor, changes={"analystsSeeContacts": shown})
    st.session_state["settings_insights_toast"] = (
        "Saved: analysts " + ("now see" if shown else "no longer see") + " contact details."
    )


def insights_settings_card(db: Any, actor: Any, tenant: Any) -> None:
    """The card on the settings page (owners only, like the page)."""
    settings = settings_of(tenant.settings)
    with st.container(border=True, key="card_insights_settings"):
        st.subheader("Insights & privacy")
        settings_form.sync("settings_insights", {"settings_analysts_contacts": settings.analysts_see_contacts})
        st.toggle(
            "Analysts see contact details",
            key="settings_analysts_contacts",
            help="Off: analysts see +49 151 ****678 and j***@example.com everywhere, exports included.",
            on_change=_toggle_contacts,
            args=(db, actor),
        )
        toast = st.session_state.pop("settings_insights_toast", None)
        if toast:
            st.toast(toast)
        with unit_of_work(db, read_only=True) as uow:
            workflows = services.list_workflows(uow=uow, actor=actor, page_size=500).items
        if not workflows:
            return
        st.caption(
            "Time saved counts each succeeded run with its minutes; a goal is what counts as a conversion "
            "(by the same contact, within the days after the run)."
        )
        shown = _rows(settings, workflows)
        version = st.session_state.setdefault("settings_insights_version", 0)  # a fresh table after each save
        edited = st.data_editor(
            shown,
            hide_index=True,
            width="stretch",
            key=f"settings_insights_table_{version}",
            disabled=["id", "Workflow"],
            column_order=["Workflow", "Minutes saved per run", "Goal", "Within days"],
            column_config={
                "Minutes saved per run": st.column_config.NumberColumn(min_value=0, max_value=600, step=0.5),
                "Goal": st.column_config.SelectboxColumn(options=list(GOALS)),
                "Within days": st.column_config.NumberColumn(min_value=1, max_value=90, step=1),
            },
        )
        if st.button("Save insights settings", key="settings_insights_save", type="primary"):
            changes = _changes(edited, shown)
            try:
                with unit_of_work(db) as uow:
                    ss.update_settings(uow=uow, actor=actor, changes=changes, area="insights")
            except EngineError as exc:
                st.error(exc.message)
            else:
                st.session_state["settings_insights_version"] = version + 1
                st.session_state["settings_insights_flash"] = (
                    f"Saved: {len(changes)} change(s)." if changes else "Nothing changed."
                )
                st.rerun()
        flash = st.session_state.pop("settings_insights_flash", None)
        if flash:
            st.success(flash, icon="✅")
