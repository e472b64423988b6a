"""Executions: what ran, when, with which result; open one for its conditions and step trace."""

import streamlit as st

from engine import services
from engine.errors import EngineError
from ui import session
from ui.formatting import local
from ui.delivery_outcomes import show_deliveries
from ui.step_trace import show_execution, status_text
from ui.workflow_picker import workflow_picker

PAGE_SIZE = 25
actor = session.require_actor()
db = session.db()
tz = session.tenant_timezone()

st.title("Executions")
st.caption("Every run of every workflow, including the skipped ones and why they were skipped.")

stats = services.workflow_stats(db, actor)
m = st.columns(3)
m[0].metric("Runs", stats.total_executions)
m[1].metric("Success rate", f"{stats.success_rate * 100:.0f}%" if stats.total_executions else "–")
m[2].metric("Enabled workflows", f"{stats.enabled_workflows} / {stats.total_workflows}")

if not hasattr(services, "list_executions"):
    st.info("Executions arrive with the runtime.", icon="🚧")
    st.stop()

left, right = st.columns([3, 1], vertical_alignment="bottom")
with left:
    workflow_id = workflow_picker("executions_workflow", allow_none=True)
statuses = [None, "succeeded", "failed", "skipped", "waiting", "running", "pending", "cancelled"]
status = right.selectbox("Status", statuses, key="executions_status", format_func=lambda s: "All statuses" if s is None else status_text(s))
page_no = st.session_state.setdefault("executions_page", 1)
try:
    result = services.list_executions(db, actor, workflow_id=workflow_id, status=status, page=page_no, page_size=PAGE_SIZE)
except EngineError as exc:
    st.error(exc.message)
    st.stop()

if not result.items:
    st.info("No executions yet. Run a workflow from the Workflows page (Run now) or send an event.", icon="📭")
    st.stop()

rows = [{"Started": local(e.started_at, tz), "Workflow": e.workflow_name, "Status": status_text(e.status), "Mode": e.mode,
         "Actions": e.actions_executed, "Error": e.error or ""} for e in result.items]
picked = st.dataframe(rows, hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row", key="executions_table")
pages = max(1, -(-result.total // PAGE_SIZE))
prev, info, nxt = st.columns([1, 3, 1], vertical_alignment="center")
if prev.button("Previous", key="executions_prev", disabled=page_no <= 1, icon=":material/chevron_left:"):
    st.session_state["executions_page"] = page_no - 1
    st.rerun()
info.caption(f"Page {page_no} of {pages} · {result.total} executions")
if nxt.button("Next", key="executions_next", disabled=page_no >= pages, icon=":material/chevron_right:"):
    st.session_state["executions_page"] = page_no + 1
    st.rerun()

selection = getattr(getattr(picked, "selection", None), "rows", None) or []
index = selection[0] if selection else 0
chosen = result.items[min(index, len(result.items) - 1)]
with st.container(border=True, key="card_execution_detail"):
    st.markdown(f"**{chosen.workflow_name}** · {local(chosen.started_at, tz)}")
    show_execution(services.get_execution(db, actor, chosen.id))
    show_deliveries(db, actor, chosen.id)
