"""Executions: what ran, when, with which result; filter, open one, replay or cancel it."""

import streamlit as st

from engine import domain, services
from engine.errors import EngineError, NotFound
from engine.security.auth import EDIT
from engine.services import operations
from engine.uow import unit_of_work
from ui import executions_view as view
from ui import session
from ui.formatting import local
from ui.step_trace import status_text
from ui.workflow_picker import workflow_picker


def _csv(db, actor, filters) -> str:
    """The filtered executions as CSV, read in one read-only unit of work when the button is clicked."""
    with unit_of_work(db, read_only=True) as uow:
        return "".join(operations.iter_executions_csv(uow=uow, actor=actor, filters=filters))


def _open(execution_id: str, items) -> tuple[str, str]:
    """The execution to show and its status (read when it is not on this page, e.g. a replay the
    filters hide); the newest of the page when it is gone (erased, pruned, another studio's)."""
    for e in items:
        if e.id == execution_id:
            return e.id, e.status
    try:
        with unit_of_work(db, read_only=True) as uow:
            return execution_id, services.get_execution(uow=uow, actor=actor, execution_id=execution_id).status
    except NotFound:
        st.session_state.pop(view.SELECTED, None)
        st.warning(f"Execution {execution_id} was not found (removed, or not this studio's); showing the newest.")
        return items[0].id, items[0].status


PAGE_SIZE = 25
actor = session.require_actor()
db = session.db()
tz = session.tenant_timezone()
can_edit = actor.can(EDIT)

st.title("Executions")
st.caption(
    "Every run of every workflow, including the skipped ones and why they were skipped. "
    "Counts follow one rule everywhere: test and dry runs never count."
)
if flash := st.session_state.pop("executions_flash", None):
    st.success(flash, icon="✅")

with unit_of_work(db, read_only=True) as uow:
    stats = services.workflow_stats(uow=uow, actor=actor)
m = st.columns(4)
m[0].metric("Runs", stats.total_executions, border=True)
m[1].metric("Success rate", f"{stats.success_rate * 100:.0f}%" if stats.succeeded + stats.failed else "–", border=True)
m[2].metric("Skipped", stats.skipped, border=True)
m[3].metric("Waiting or running", stats.in_progress, border=True)

tab_list, tab_contact = st.tabs(["Executions", "Contact timeline"])
with tab_list:
    filters = view.filter_bar(tz, workflow_picker)
    view.follow_filters()
    cursors = st.session_state.setdefault("executions_cursors", [None])
    try:
        with unit_of_work(db, read_only=True) as uow:
            page = operations.search_executions(
                uow=uow, actor=actor, filters=filters, after=cursors[-1], page_size=PAGE_SIZE
            )
    except EngineError as exc:
        st.error(exc.message)
        st.stop()

    tools = st.columns([1, 1, 2], vertical_alignment="center")
    tools[0].download_button(
        "Export CSV (all filtered)",
        lambda: _csv(db, actor, filters),
        file_name="executions.csv",
        mime="text/csv",
        icon=":material/download:",
        key="executions_export",
        on_click="ignore",
    )
    if (
        can_edit
        and filters.status in (None, domain.ExecutionStatus.FAILED)
        and tools[1].button("Replay failed…", icon=":material/replay:", key="executions_bulk")
    ):
        with unit_of_work(db, read_only=True) as uow:
            replayable = operations.count_replayable(uow=uow, actor=actor, filters=filters)
        view.bulk_dialog(db, actor, filters, replayable)

    if not page.items:
        st.info(
            "No executions match. Run a workflow from the Workflows page, send an event, or widen the filters.",
            icon="📭",
        )
    else:
        ids = [e.id for e in page.items]
        link = st.query_params.get("execution") or st.query_params.get("id")  # /executions?id=... from elsewhere
        chosen_id, chosen_status = _open(view.open_execution(ids, link), page.items)
        table = view.table_key(ids)
        st.dataframe(
            view.rows_of(page.items, tz, chosen_id),
            hide_index=True,
            width="stretch",
            on_select=view.on_pick(table, ids),
            selection_mode="single-row",
            key=table,
        )
        prev, info, nxt = st.columns([1, 3, 1], vertical_alignment="center")
        if prev.button("Newer", key="executions_prev", disabled=len(cursors) <= 1, icon=":material/chevron_left:"):
            cursors.pop()
            st.session_state.pop(view.SELECTED, None)
            st.rerun()
        info.caption(f"Page {len(cursors)} · {PAGE_SIZE} per page, newest first")
        if nxt.button(
            "Older", key="executions_next", disabled=page.next_cursor is None, icon=":material/chevron_right:"
        ):
            cursors.append(page.next_cursor)
            st.session_state.pop(view.SELECTED, None)
            st.rerun()

        @st.fragment(run_every=3 if view.is_live(chosen_status) else None)
        def detail(execution_id: str) -> None:
            try:
                with unit_of_work(db, read_only=True) as uow:
                    ex = services.get_execution(uow=uow, actor=actor, execution_id=execution_id)
            except EngineError as exc:
                st.error(exc.message)
                return
            with st.container(border=True, key="card_execution_detail"):
                head, act1, act2 = st.columns([4, 1, 1], vertical_alignment="center")
                head.markdown(f"**{ex.workflow_name}** · {local(ex.started_at, tz)} · {status_text(ex.status)}")
                if ex.replayed_by:  # replayed once already: offer the replay, not a second one
                    if act1.button("Open replay", icon=":material/arrow_upward:", key="executions_open_replay"):
                        st.session_state[view.SELECTED] = ex.replayed_by
                        st.rerun()
                elif (
                    can_edit
                    and ex.status == domain.ExecutionStatus.FAILED
                    and act1.button("Replay", icon=":material/replay:", key="executions_replay")
                ):
                    view.replay_dialog(db, actor, ex.id)
                if (
                    can_edit
                    and ex.status in operations.CANCELLABLE
                    and act2.button("Cancel", icon=":material/cancel:", key="executions_cancel")
                ):
                    view.cancel_dialog(db, actor, ex.id)
                if view.is_live(ex.status):
                    st.caption("Refreshes by itself every 3 s while it waits or runs.")
                view.show_detail(db, actor, ex, tz)

        detail(chosen_id)

with tab_contact:
    contact = st.text_input(
        "Phone number or e-mail of the member",
        key="executions_timeline_contact",
        placeholder="+49 151 … or name@example.com",
    )
    if contact:
        try:
            with unit_of_work(db, read_only=True) as uow:
                items = operations.contact_timeline(uow=uow, actor=actor, contact=contact)
        except EngineError as exc:
            st.error(exc.message)
        else:
            if items:
                st.dataframe(view.timeline_rows(items, tz), hide_index=True, width="stretch", key="executions_timeline")
            else:
                st.info("Nothing from or to this contact yet.", icon="📭")
