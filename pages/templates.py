"""Templates: start from the spec's examples or a studio template; import workflows from a JSON file."""

from html import escape

import streamlit as st

from engine import services
from engine.errors import EngineError, ValidationFailed
from engine.security.auth import EDIT
from engine.uow import unit_of_work
from ui import builder_state, session
from ui.labels import CONDITIONS, action_label, trigger_label
from ui.problems import show_problems
from ui.templates import as_draft, gallery, parse_upload

actor = session.require_actor()
if not actor.can(EDIT):
    st.info("Your role can look at workflows but not create them.", icon="🔒")
    st.stop()
db = session.db()

st.title("Templates")
st.caption(
    "Ready-made workflows for studios. Open one in the builder to adapt it, or add it as a draft: "
    "drafts are off until you turn them on."
)
added = st.session_state.get("templates_added")
if added:
    with st.container(border=True, key="card_templates_added"):
        st.success(
            f"Added “{added['name']}” as a draft: it is **off** and will not run until you turn it on.", icon="✅"
        )
        st.page_link(
            "pages/builder.py",
            label="Open it in the builder",
            icon=":material/construction:",
            query_params={"id": added["id"]},
        )


def template_card(n: int, source: str, definition: dict) -> None:
    with st.container(border=True, key=f"card_template_{n}", height="stretch"):
        st.caption(f"{trigger_label(definition['trigger']['type'])} · {source}")
        st.markdown(f"**{definition['name']}**")
        st.markdown(
            f"<span class='sa-muted'>{escape(definition.get('description', ''))}</span>", unsafe_allow_html=True
        )
        steps = " → ".join(action_label(a["type"]) for a in definition["actions"])
        conditions = ", ".join(CONDITIONS.get(c["type"], c["type"]) for c in definition.get("conditions", []))
        st.caption(steps + (f"  \nIf: {conditions}" if conditions else ""))
        use, add = st.columns(2)
        if use.button("Customise", key=f"templates_use_{n}", icon=":material/edit:", type="primary", width="stretch"):
            builder_state.open_in_builder(definition)
        if add.button(
            "Add as draft",
            key=f"templates_add_{n}",
            icon=":material/add:",
            width="stretch",
            help="Saved switched off: nothing runs until you turn it on.",
        ):
            try:
                with unit_of_work(db) as uow:
                    out = services.import_workflows(uow=uow, actor=actor, items=[as_draft(definition)])[0]
            except EngineError as exc:
                st.error(exc.message)
            else:
                st.session_state["templates_added"] = {"id": out.id, "name": out.name}
                st.rerun()


templates = gallery()
for start in range(0, len(templates), 3):
    cols = st.columns(3)
    for offset, (source, definition) in enumerate(templates[start : start + 3]):
        with cols[offset]:
            template_card(start + offset, source, definition)

st.subheader("Import from a file")
st.caption(
    "A workflow JSON object, a list of them, or an export of this app. "
    "All or nothing: one invalid workflow imports none."
)
upload = st.file_uploader("Workflow JSON", type=["json"], key="templates_upload")
if upload is not None and st.button("Import", type="primary", key="templates_import", icon=":material/upload:"):
    try:
        items = parse_upload(upload.getvalue())
        with unit_of_work(db) as uow:
            imported = services.import_workflows(uow=uow, actor=actor, items=items)
    except ValueError as exc:
        st.error(f"{upload.name}: {exc}", icon="⛔")
    except ValidationFailed as exc:
        st.error(f"{upload.name} was not imported:", icon="⛔")
        show_problems(exc.problems)
    except EngineError as exc:
        st.error(exc.message, icon="⛔")
    else:
        st.success(
            f"Imported {len(imported)} workflow{'s' if len(imported) != 1 else ''}: "
            + ", ".join(w.name for w in imported),
            icon="✅",
        )
