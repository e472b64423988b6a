"""Workflows: every workflow with trigger, status, runs, success rate and last run; search,
filters and paging in SQL; per workflow edit, run, duplicate, export, history, delete."""

import json
from html import escape

import streamlit as st

from engine import services
from engine.errors import EngineError
from engine.security.auth import EDIT
from engine.uow import unit_of_work
from engine.workflow.definitions import TriggerType
from ui import builder_state, console_builder, session, style
from ui.formatting import ago, percent
from ui.labels import trigger_label
from ui.run_panel import run_panel

PAGE_SIZE = 20
actor = session.require_actor()
db = session.db()
can_edit = actor.can(EDIT)
tz_name = session.tenant_timezone()


def reset_page() -> None:
    st.session_state["workflows_page"] = 1


def on_toggle(workflow_id: str, key: str) -> None:
    if st.session_state[key] and console_builder.failing_when_enabled(db, actor, workflow_id):
        st.session_state[key] = False  # ask first (test-console scenarios fail with it on)
        st.session_state["workflows_enable_id"] = workflow_id
        return
    try:
        with unit_of_work(db) as uow:
            out = services.set_enabled(uow=uow, actor=actor, workflow_id=workflow_id, enabled=st.session_state[key])
        st.toast(f"“{out.name}” {'enabled' if out.enabled else 'disabled'}", icon="✅")
    except EngineError as exc:
        st.toast(exc.message, icon="⛔")


def close_dialogs() -> None:
    st.session_state.pop("workflows_delete_id", None)
    st.session_state.pop("workflows_run_id", None)
    st.session_state.pop("workflows_enable_id", None)
    st.session_state.pop("workflows_export_id", None)


@st.dialog("Delete workflow?", on_dismiss=close_dialogs)
def confirm_delete(workflow) -> None:
    st.markdown(
        f"**{escape(workflow.name)}** will be deleted, with its pending waits and follow-ups. "
        "Past executions stay in the history. This cannot be undone."
    )
    cancel, delete = st.columns(2)
    if cancel.button("Cancel", key="workflows_delete_cancel", width="stretch"):
        close_dialogs()
        st.rerun()
    if delete.button(
        "Delete", type="primary", key="workflows_delete_confirm", icon=":material/delete:", width="stretch"
    ):
        with unit_of_work(db) as uow:
            services.delete_workflow(uow=uow, actor=actor, workflow_id=workflow.id)
        close_dialogs()
        st.session_state["workflows_flash"] = f"Deleted “{workflow.name}”."
        st.rerun()


@st.dialog("Run workflow", width="large", on_dismiss=close_dialogs)
def run_dialog(workflow) -> None:
    st.markdown(f"**{escape(workflow.name)}**")
    run_panel(workflow, "workflows_run")


def open_dialog(kind: str, workflow_id: str) -> None:
    close_dialogs()
    st.session_state[f"workflows_{kind}_id"] = workflow_id


@st.dialog("Export workflow", width="large", on_dismiss=close_dialogs)
def export_dialog(workflow) -> None:
    text = json.dumps(workflow.definition, indent=2, ensure_ascii=False)
    st.download_button(
        "Download JSON",
        text,
        file_name=f"{workflow.name}.json",
        mime="application/json",
        icon=":material/download:",
        key="workflows_export_download",
        on_click="ignore",
        type="primary",
    )
    st.code(text, language="json", height=360)


@st.dialog("Switch on with failing scenarios?", on_dismiss=close_dialogs)
def confirm_enable(workflow) -> None:
    names = console_builder.failing_when_enabled(db, actor, workflow.id)
    st.warning(
        f"With **{escape(workflow.name)}** on, these test-console scenarios fail: "
        + ", ".join(names)
        + ". Switch it on anyway?",
        icon="❌",
    )
    cancel, go = st.columns(2)
    if cancel.button("Leave it off", key="workflows_enable_cancel", width="stretch"):
        close_dialogs()
        st.rerun()
    if go.button("Switch on", type="primary", key="workflows_enable_confirm", width="stretch"):
        with unit_of_work(db) as uow:
            services.set_enabled(uow=uow, actor=actor, workflow_id=workflow.id, enabled=True)
        close_dialogs()
        st.session_state["workflows_flash"] = f"“{workflow.name}” enabled."
        st.rerun()


def show_open_dialog() -> None:
    for kind, dialog in (
        ("run", run_dialog),
        ("delete", confirm_delete),
        ("enable", confirm_enable),
        ("export", export_dialog),
    ):
        workflow_id = st.session_state.get(f"workflows_{kind}_id")
        if workflow_id:
            try:
                with unit_of_work(db, read_only=True) as uow:
                    dialog(services.get_workflow(uow=uow, actor=actor, workflow_id=workflow_id))
            except EngineError:
                close_dialogs()


MENU_ICONS = {
    "Edit": "edit",
    "Run now": "play_arrow",
    "Duplicate": "content_copy",
    "Export JSON": "download",
    "Version history": "history",
    "Delete": "delete",
}


def on_menu(wf) -> None:
    """The "⋯" menu's choice. A menu button closes itself in the browser when an item is picked
    (a popover's open state is round-tripped and could stay open over the dialog it opened)."""
    choice = st.session_state.get(f"workflows_menu_{wf.id}")
    if choice in ("Run now", "Delete", "Export JSON"):
        open_dialog({"Run now": "run", "Delete": "delete", "Export JSON": "export"}[choice], wf.id)
    elif choice == "Duplicate":
        with unit_of_work(db) as uow:
            copy = services.duplicate_workflow(uow=uow, actor=actor, workflow_id=wf.id)
        st.session_state["workflows_flash"] = f"Created “{copy.name}” (disabled)."


def actions_menu(wf) -> None:
    items = (
        ["Edit", "Run now", "Duplicate", "Export JSON", "Version history", "Delete"]
        if can_edit
        else ["Export JSON", "Version history"]
    )
    choice = st.menu_button(
        "",
        items,
        key=f"workflows_menu_{wf.id}",
        icon=":material/more_horiz:",
        help="More actions",
        on_click=on_menu,
        args=(wf,),
        format_func=lambda item: f":material/{MENU_ICONS[item]}: {item}",
    )
    if choice == "Edit":
        builder_state.open_in_builder(wf.definition, wf.id)
    elif choice == "Version history":
        st.session_state["history_workflow_id"] = wf.id
        st.switch_page("pages/history.py")


def workflow_row(wf) -> None:
    with st.container(border=True, key=f"card_wf_{wf.id}"):
        name, trigger, runs, rate, last, enabled, menu = st.columns(
            [3.2, 1.8, 0.8, 0.9, 1.1, 0.9, 0.5], vertical_alignment="center"
        )
        name.markdown(
            f'<div class="sa-title">{escape(wf.name)}</div>'
            f'<div class="sa-muted">{escape(wf.description or "") or "&nbsp;"}</div>',
            unsafe_allow_html=True,
        )
        trigger.markdown(style.pill(trigger_label(wf.trigger.get("type", "?")), "accent"), unsafe_allow_html=True)
        runs.markdown(f"**{wf.run_count}**<br><span class='sa-muted'>runs</span>", unsafe_allow_html=True)
        rate.markdown(
            f"**{percent(wf.success_rate)}**<br><span class='sa-muted'>success</span>", unsafe_allow_html=True
        )
        last.markdown(
            f"{ago(wf.last_run_at, tz_name=tz_name)}<br><span class='sa-muted'>last run</span>", unsafe_allow_html=True
        )
        with enabled:
            if can_edit:
                key = f"workflows_enabled_{wf.id}_{wf.version}"
                st.toggle(
                    "On" if wf.enabled else "Off", value=wf.enabled, key=key, on_change=on_toggle, args=(wf.id, key)
                )
            else:
                st.markdown(
                    style.pill("Enabled", "on") if wf.enabled else style.pill("Disabled", "off"), unsafe_allow_html=True
                )
        with menu:
            actions_menu(wf)


head, buttons = st.columns([3, 2], vertical_alignment="bottom")
head.title("Workflows")
head.caption(f"{session.tenant_name()} · when something happens, if it matches, do these steps.")
if can_edit:
    with buttons.container(horizontal=True, horizontal_alignment="right"):
        if st.button("Templates", icon=":material/apps:", key="workflows_templates"):
            st.switch_page("pages/templates.py")
        if st.button("New workflow", type="primary", icon=":material/add:", key="workflows_new"):
            builder_state.start_new()
            st.switch_page("pages/builder.py")

if st.session_state.get("workflows_flash"):
    st.success(st.session_state.pop("workflows_flash"), icon="✅")

with unit_of_work(db, read_only=True) as uow:
    stats = services.workflow_stats(uow=uow, actor=actor)
m = st.columns(4)
m[0].metric("Workflows", stats.total_workflows)
m[1].metric("Enabled", stats.enabled_workflows)
m[2].metric("Runs", stats.total_executions)
m[3].metric("Success rate", percent(stats.success_rate) if stats.total_executions else "–")

search_col, trigger_col, status_col = st.columns([2.6, 1.8, 1.9], vertical_alignment="bottom")
search = search_col.text_input(
    "Search",
    key="workflows_search",
    placeholder="Search by name",
    on_change=reset_page,
    icon=":material/search:",
    label_visibility="collapsed",
)
triggers = [None] + [t.value for t in TriggerType]
trigger_type = trigger_col.selectbox(
    "Trigger",
    triggers,
    key="workflows_trigger",
    on_change=reset_page,
    label_visibility="collapsed",
    format_func=lambda t: "All triggers" if t is None else trigger_label(t),
)
status = status_col.segmented_control(
    "Status",
    ["All", "Enabled", "Disabled"],
    default="All",
    key="workflows_status",
    on_change=reset_page,
    label_visibility="collapsed",
    required=True,
)
enabled = {"Enabled": True, "Disabled": False}.get(status)

page_no = st.session_state.setdefault("workflows_page", 1)
with unit_of_work(db, read_only=True) as uow:
    result = services.list_workflows(
        uow=uow,
        actor=actor,
        search=search or None,
        trigger_type=trigger_type,
        enabled=enabled,
        page=page_no,
        page_size=PAGE_SIZE,
    )
if result.total and page_no > result.pages:
    st.session_state["workflows_page"] = result.pages
    st.rerun()

if not result.items:
    st.info(
        "No workflows match."
        if (search or trigger_type or enabled is not None)
        else "No workflows yet. Start from a template or build one.",
        icon="🔍",
    )
for wf in result.items:
    workflow_row(wf)

show_open_dialog()

if result.total > PAGE_SIZE:
    prev, info, nxt = st.columns([1, 3, 1], vertical_alignment="center")
    if prev.button("Previous", icon=":material/chevron_left:", key="workflows_prev", disabled=page_no <= 1):
        st.session_state["workflows_page"] = page_no - 1
        st.rerun()
    info.caption(f"Page {page_no} of {result.pages} · {result.total} workflows")
    if nxt.button("Next", icon=":material/chevron_right:", key="workflows_next", disabled=page_no >= result.pages):
        st.session_state["workflows_page"] = page_no + 1
        st.rerun()
else:
    st.caption(f"{result.total} workflow{'s' if result.total != 1 else ''}")
