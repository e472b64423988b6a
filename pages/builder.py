"""Workflow builder: five steps (basics, trigger, conditions, actions, review & save) or JSON,
with a live JSON preview and flow graph beside it. One definition dict in session state."""

import streamlit as st

from engine import services
from engine.errors import EngineError, NotFound, ValidationFailed
from engine.security.auth import EDIT
from engine.uow import unit_of_work
from engine.workflow.validation import validate
from ui import builder_state, console_builder, session
from ui.action_editor import actions_editor
from ui.builder_form import basics_editor, ordered, review
from ui.condition_editor import condition_list
from ui.flow_graph import to_dot
from ui.json_editor import json_editor, pretty
from ui.problems import begin_slots, fill_slots, show_problems
from ui.trigger_editor import trigger_editor

actor = session.require_actor()
if not actor.can(EDIT):
    st.info("Your role can look at workflows but not build them.", icon="🔒")
    st.stop()

try:
    builder_state.follow_link(session.db(), actor)
except NotFound:
    st.error(
        "That workflow does not exist in this studio (it may have been deleted). Here is a new one instead.", icon="🔎"
    )

definition = builder_state.definition()
key = f"builder_{builder_state.revision()}"
editing = builder_state.workflow_id()
begin_slots()

head, tools = st.columns([3, 2], vertical_alignment="bottom")
head.title(f"Edit · {definition.get('name') or 'workflow'}" if editing else "New workflow")
with tools.container(horizontal=True, horizontal_alignment="right"):
    mode = st.segmented_control(
        "Mode",
        ["Form", "JSON"],
        default="Form",
        key=builder_state.MODE,
        on_change=builder_state.bump,
        label_visibility="collapsed",
        required=True,
    )
    if st.button(
        "New workflow",
        icon=":material/add:",
        key="builder_new",
        type="primary",
        help="Put this one aside (saved versions stay) and start a blank draft",
    ):
        builder_state.start_new()
        st.rerun()

form_col, side_col = st.columns([3, 2], gap="large")
with form_col:
    if mode == "JSON":
        json_editor()
    else:
        basics, trigger, conditions, actions, save_step = st.tabs(
            ["① Basics", "② Trigger", "③ Conditions", "④ Actions", "⑤ Review & save"], key="builder_step"
        )
        with basics:
            basics_editor(definition, f"{key}_basics")
        with trigger:
            trigger_editor(definition, f"{key}_trigger", session.tenant_timezone())
        with conditions:
            st.caption("The workflow only runs when **all** of these hold. Use a group for *any of* or *not*.")
            conds = definition.get("conditions")
            definition["conditions"] = condition_list(
                conds if isinstance(conds, list) else [],
                f"{key}_cond",
                empty_hint="No conditions: the workflow runs for every matching trigger.",
            )
        with actions:
            actions_editor(definition, f"{key}_actions")
        ordered(definition)

definition = builder_state.definition()
problems = validate(definition)
errors = [p for p in problems if p.severity == "error"]
if mode == "Form":
    fill_slots(problems)  # each problem next to its field; the summary lists them all again


def save_controls(button_key: str) -> None:
    note = st.text_input("Note for this version (optional)", key=f"{button_key}_note", placeholder="What changed?")
    if not errors:
        console_builder.show_status(session.db(), actor, editing, definition, button_key)
    if st.button(
        "Save workflow", type="primary", key=button_key, icon=":material/check:", disabled=bool(errors), width="stretch"
    ):
        if console_builder.failing(session.db(), actor, editing, definition):
            st.session_state["builder_sc_confirm"] = note or ""
            st.rerun()
        save(note)


@st.dialog("Save with failing scenarios?", on_dismiss=lambda: st.session_state.pop("builder_sc_confirm", None))
def confirm_save() -> None:
    st.warning("Some test-console scenarios fail against this version (see “What differs”). Save anyway?", icon="❌")
    cancel, go = st.columns(2)
    if cancel.button("Keep editing", key="builder_sc_cancel", width="stretch"):
        st.session_state.pop("builder_sc_confirm", None)
        st.rerun()
    if go.button("Save anyway", type="primary", key="builder_sc_go", width="stretch"):
        save(st.session_state.pop("builder_sc_confirm", None))


def save(note: str | None) -> None:
    try:
        if editing:
            with unit_of_work(session.db()) as uow:
                out = services.update_workflow(
                    uow=uow, actor=actor, workflow_id=editing, changes=definition, note=note or None
                )
        else:
            with unit_of_work(session.db()) as uow:
                out = services.create_workflow(uow=uow, actor=actor, data=definition, note=note or None)
    except ValidationFailed as exc:
        show_problems(exc.problems)
    except EngineError as exc:
        st.error(exc.message)
    else:
        st.session_state[builder_state.WORKFLOW_ID] = out.id
        st.query_params["id"] = out.id
        state = (
            "It is on and runs from now on."
            if out.enabled
            else "It is off (a draft): turn it on in the Workflows list or under ① Basics."
        )
        st.session_state["builder_saved"] = f"Saved “{out.name}” as version {out.version}. {state}"
        st.rerun()


if mode == "Form":
    with save_step:
        review(definition)
        show_problems(problems, definition=definition)
        save_controls("builder_save")

with side_col:
    if st.session_state.get("builder_saved"):
        st.success(st.session_state.pop("builder_saved"), icon="✅")
    flow, preview = st.tabs(["Flow", "JSON preview"])
    with flow:
        st.graphviz_chart(to_dot(definition))
    with preview:
        st.code(pretty(definition), language="json", height=460)
    show_problems(problems, definition=definition)
    if mode == "JSON":
        save_controls("builder_save_json")

if st.session_state.get("builder_sc_confirm") is not None and not errors:
    confirm_save()
