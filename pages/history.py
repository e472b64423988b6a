"""Version history: every save is a version; who and when, a diff against the current one, roll back."""

import difflib
import json

import streamlit as st

from engine import services
from engine.errors import EngineError
from engine.security.auth import EDIT
from engine.uow import unit_of_work
from ui import session
from ui.formatting import local
from ui.workflow_picker import workflow_picker

actor = session.require_actor()
db = session.db()
tz = session.tenant_timezone()

st.title("Version history")
st.caption(
    "Each save is a version. Compare any version with the current one and roll back: "
    "a rollback is a new version, nothing is lost."
)


with unit_of_work(db, read_only=True) as uow:
    MEMBERS = {m.user_id: m.email for m in services.list_members(uow=uow, actor=actor)}


def who(user_id: str | None) -> str:
    if user_id is None:
        return "the system"
    return "you" if user_id == actor.user_id else MEMBERS.get(user_id, "a former member")


def pretty(definition: dict) -> list[str]:
    return json.dumps(definition, indent=2, ensure_ascii=False, sort_keys=False).splitlines()


workflow_id = workflow_picker("history_workflow_id")
if workflow_id is None:
    st.stop()
with unit_of_work(db, read_only=True) as uow:
    current = services.get_workflow(uow=uow, actor=actor, workflow_id=workflow_id)
    versions = services.list_versions(uow=uow, actor=actor, workflow_id=workflow_id)
st.markdown(f"**{current.name}** is at version **{current.version}** · last changed {local(current.updated_at, tz)}")

if st.session_state.get("history_flash"):
    st.success(st.session_state.pop("history_flash"), icon="✅")

listing, diff_col = st.columns([2, 3], gap="large")
with listing:
    for v in versions:
        with st.container(border=True, key=f"card_version_{v.version}"):
            tag = " · current" if v.version == current.version else ""
            st.markdown(f"**Version {v.version}**{tag}")
            st.caption(f"{local(v.created_at, tz)} · by {who(v.created_by)}" + (f" · {v.note}" if v.note else ""))
            left, right = st.columns(2)
            if left.button(
                "Compare", key=f"history_compare_{v.version}", icon=":material/difference:", width="stretch"
            ):
                st.session_state["history_compare"] = (workflow_id, v.version)
            if (
                actor.can(EDIT)
                and v.version != current.version
                and right.button(
                    "Roll back", key=f"history_rollback_{v.version}", icon=":material/undo:", width="stretch"
                )
            ):
                try:
                    with unit_of_work(db) as uow:
                        out = services.rollback_workflow(
                            uow=uow, actor=actor, workflow_id=workflow_id, version=v.version
                        )
                except EngineError as exc:
                    st.error(exc.message)
                else:
                    st.session_state["history_flash"] = (
                        f"Rolled back to version {v.version} (now version {out.version})."
                    )
                    st.rerun()

with diff_col:
    compare = st.session_state.get("history_compare")
    chosen = next(
        (v for v in versions if compare == (workflow_id, v.version)),
        versions[min(1, len(versions) - 1)] if versions else None,
    )
    if chosen is None:
        st.stop()
    st.markdown(f"**Version {chosen.version} → current (version {current.version})**")
    diff = list(
        difflib.unified_diff(
            pretty(chosen.definition),
            pretty(current.definition),
            f"version {chosen.version}",
            f"current (version {current.version})",
            lineterm="",
        )
    )
    if diff:
        st.code("\n".join(diff), language="diff", height=520)
    else:
        st.info("No differences: this version is the same as the current one.", icon="🟰")
