"""Pick one workflow by name (searching in SQL, so it stays fast with thousands)."""

from __future__ import annotations

import streamlit as st

from engine import services
from engine.errors import NotFound
from engine.uow import unit_of_work
from ui import session
from ui.labels import trigger_label


def workflow_picker(key: str, *, allow_none: bool = False) -> str | None:
    """A search box and a select; the choice lives in ``st.session_state[key]``."""
    db, actor = session.db(), session.require_actor()
    search_col, select_col = st.columns([1, 2], vertical_alignment="bottom")
    search = search_col.text_input(
        "Find a workflow", key=f"{key}_search", placeholder="Search by name", icon=":material/search:"
    )
    with unit_of_work(db, read_only=True) as uow:
        page = services.list_workflows(uow=uow, actor=actor, search=search or None, page_size=50)
    options = {w.id: f"{w.name} · {trigger_label(w.trigger.get('type', '?'))}" for w in page.items}
    chosen = st.session_state.get(key)
    if chosen and chosen not in options:
        try:
            with unit_of_work(db, read_only=True) as uow:
                wf = services.get_workflow(uow=uow, actor=actor, workflow_id=chosen)
            options = {wf.id: f"{wf.name} · {trigger_label(wf.trigger.get('type', '?'))}", **options}
        except NotFound:
            st.session_state[key] = None
    ids = ([None] if allow_none else []) + list(options)
    if not ids:
        select_col.info("No workflow matches.", icon="🔍")
        return None
    return select_col.selectbox(
        "Workflow", ids, key=key, format_func=lambda i: "All workflows" if i is None else options[i]
    )
