"""The builder's state: ONE definition dict in ``st.session_state["builder_def"]``.

The form and the JSON editor both edit that dict. Widget keys carry a revision
(``builder_rev``); anything that changes the dict's shape from outside the widgets (JSON
mode, a template, add/remove/reorder) bumps it, so widgets start again from the dict.
"""

from __future__ import annotations

import copy

import streamlit as st

from engine.uow import unit_of_work
from ui.definition import new_definition

DEF, REV, WORKFLOW_ID, MODE = "builder_def", "builder_rev", "builder_workflow_id", "builder_mode"


def definition() -> dict:
    if not isinstance(st.session_state.get(DEF), dict):
        st.session_state[DEF] = new_definition()
    return st.session_state[DEF]


def revision() -> int:
    return st.session_state.setdefault(REV, 0)


def bump() -> None:
    st.session_state[REV] = revision() + 1


def replace(new: dict, *, workflow_id: str | None = None) -> None:
    """Load a definition (a template, a stored workflow, the JSON editor's text)."""
    st.session_state[DEF] = copy.deepcopy(new)
    st.session_state[WORKFLOW_ID] = workflow_id
    bump()


def start_new() -> None:
    """A blank draft; the address loses its ``?id=`` so a reload does not bring the old one back."""
    replace(new_definition())
    st.query_params.pop("id", None)


def follow_link(db, actor) -> None:
    """Open the workflow named in the address (``/builder?id=...``), once per change of the id.

    Raises ``NotFound`` for an id that is not in the actor's studio (another studio's
    workflow looks exactly like a missing one).
    """
    from engine import services

    wanted = st.query_params.get("id")
    if not wanted or wanted == workflow_id():
        if (current := workflow_id()) and not wanted:
            st.query_params["id"] = current  # keep the address pointing at what is open
        return
    try:
        with unit_of_work(db, read_only=True) as uow:
            found = services.get_workflow(uow=uow, actor=actor, workflow_id=wanted)
    except Exception:
        st.query_params.pop("id", None)
        start_new()
        raise
    replace(found.definition, workflow_id=found.id)


def workflow_id() -> str | None:
    return st.session_state.get(WORKFLOW_ID)


def open_in_builder(new: dict, workflow_id: str | None = None) -> None:
    """From another page: load this definition and go to the builder."""
    replace(new, workflow_id=workflow_id)
    st.session_state[MODE] = "Form"
    st.switch_page("pages/builder.py", query_params={"id": workflow_id} if workflow_id else None)
