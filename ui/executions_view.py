"""Pieces of the Executions page: the filter bar, keyset paging state, the execution detail
(event, step timeline with durations, messages, conditions) and the replay/cancel dialogs.

Session keys carry the ``executions_`` prefix. The cursor stack (``executions_cursors``) holds
the ``after`` cursor of every page visited, so Previous goes back without OFFSET.

The open execution is kept **by id** (``executions_selected``), never as a row number: the list
shifts when executions arrive or a replay adds one on top, and a row number would then point at
another execution (with another execution's buttons). See :func:`open_execution`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import streamlit as st

from engine import domain, services
from engine.errors import EngineError
from engine.services import insights, operations
from engine.uow import unit_of_work
from engine.workflow.definitions import KNOWN_INTENTS
from ui.formatting import local
from ui.labels import CHANNELS, TRIGGERS
from ui.step_trace import show_execution, status_text

FILTER_KEYS = (
    "executions_range",
    "executions_status",
    "executions_workflow",
    "executions_trigger",
    "executions_channel",
    "executions_intent",
    "executions_contact",
)


#: The id of the execution whose detail is shown (picked in the table, opened by a replay or a link).
SELECTED = "executions_selected"


def _reset_paging() -> None:
    st.session_state["executions_cursors"] = [None]
    st.session_state.pop(SELECTED, None)  # other rows now: show the newest of them


def follow_filters() -> None:
    """Back to the first page, and the newest execution, whenever a filter changed (the workflow
    picker has no ``on_change``; a cursor or a pick from other filters would mislead)."""
    now = repr([st.session_state.get(k) for k in FILTER_KEYS])
    before = st.session_state.get("executions_filters_seen")
    st.session_state["executions_filters_seen"] = now
    if before is not None and before != now:
        _reset_paging()


def table_key(ids: list[str]) -> str:
    """The table's widget key, new whenever its rows change: Streamlit keeps a table's selection
    as a row number, which must not outlive the rows it was made on."""
    return "executions_table_" + hashlib.sha1("|".join(ids).encode()).hexdigest()[:16]


def on_pick(key: str, ids: list[str]) -> Callable[[], None]:
    """The table's ``on_select``: the picked row becomes the open execution, by its id."""

    def pick() -> None:
        rows = st.session_state[key].selection.rows
        if rows:
            st.session_state[SELECTED] = ids[rows[0]]
        else:
            st.session_state.pop(SELECTED, None)

    return pick


def open_execution(ids: list[str], link: str | None) -> str:
    """The execution to show: one a replay just made, else a link's (once), else the one picked,
    else the newest in the list."""
    opened = st.session_state.pop("executions_open", None)
    if opened:
        st.session_state[SELECTED] = opened
    elif link and link != st.session_state.get("executions_link"):
        st.session_state["executions_link"] = link  # applied once: a later pick wins over the URL
        st.session_state[SELECTED] = link
    return st.session_state.get(SELECTED) or ids[0]


def filter_bar(tz: str, workflow_picker) -> operations.ExecutionFilter:
    """Date range, status (incl. skipped and test), workflow, trigger, channel, intent, contact."""
    params = st.query_params
    c = st.columns([1.2, 1, 1, 1, 1.3])
    ranges = {"all": "All time", "today": "Today", "7d": "Last 7 days", "30d": "Last 30 days", "month": "This month"}
    rng = c[0].selectbox(
        "Date range",
        list(ranges),
        format_func=lambda v: ranges.get(v, v),
        key="executions_range",
        on_change=_reset_paging,
    )
    statuses = [None, *domain.STATUS_FILTERS]
    # (only a given one: a None set here would show the box empty, "Choose an option", not "All statuses")
    if "executions_status" not in st.session_state and params.get("status") and params.get("status") in statuses:
        st.session_state["executions_status"] = params.get("status")
    status = c[1].selectbox(
        "Status",
        statuses,
        key="executions_status",
        on_change=_reset_paging,
        format_func=lambda s: "All statuses" if s is None else ("🧪 test runs" if s == "test" else status_text(s)),
    )
    trigger = c[2].selectbox(
        "Trigger",
        [None, *TRIGGERS],
        key="executions_trigger",
        on_change=_reset_paging,
        format_func=lambda t: "Any trigger" if t is None else f"{TRIGGERS[t][0]} {TRIGGERS[t][1]}",
    )
    channel = c[3].selectbox(
        "Channel",
        [None, *CHANNELS],
        key="executions_channel",
        on_change=_reset_paging,
        format_func=lambda ch: "Any channel" if ch is None else CHANNELS[ch],
    )
    intent = c[4].selectbox(
        "Intent",
        [None, *KNOWN_INTENTS],
        key="executions_intent",
        on_change=_reset_paging,
        format_func=lambda i: "Any intent" if i is None else i,
    )
    left, right = st.columns([3, 1.3], vertical_alignment="bottom")
    with left:
        workflow_id = workflow_picker("executions_workflow", allow_none=True)
    contact = right.text_input(
        "Contact", key="executions_contact", placeholder="phone or e-mail", on_change=_reset_paging
    )
    start = end = None
    if rng != "all":
        p = insights.resolve_period(tz, rng)
        start, end = p.start, p.end
    return operations.ExecutionFilter(
        start=start,
        end=end,
        status=status,
        workflow_id=workflow_id,
        trigger=trigger,
        channel=channel,
        intent=intent,
        contact=contact or None,
    )


def rows_of(items: list[Any], tz: str, shown: str | None = None) -> list[dict[str, Any]]:
    return [
        {
            "": "▶" if e.id == shown else "",  # the row whose detail is open below
            "Started": local(e.started_at, tz),
            "Workflow": e.workflow_name,
            "Status": status_text(e.status),
            "Channel": (e.trigger or {}).get("channel") or "–",
            "Contact": (e.trigger or {}).get("from") or "–",
            "Intent": (e.trigger or {}).get("intent") or "–",
            "Mode": e.mode,
            "Error": e.error or "",
        }
        for e in items
    ]


def _duration(step: Any) -> str:
    if not step.finished_at:
        return "…"
    return f"{(step.finished_at - step.started_at).total_seconds() * 1000:.0f} ms"


def show_detail(db: Any, actor: Any, execution: Any, tz: str) -> None:
    """The triggering event, the timeline of steps, the messages sent, then the full trace."""
    trig = execution.trigger or {}
    sender = str(trig.get("from") or "–").replace("*", "\\*")  # masked contacts contain asterisks
    st.markdown(
        f"**Event** · {trig.get('type', '–')} · {trig.get('channel') or '–'} · from **{sender}**"
        + (f" · intent `{trig['intent']}`" if trig.get("intent") else "")
    )
    if execution.replay_of:
        st.caption(f"↻ Replay of execution `{execution.replay_of}`")
    if execution.replayed_by:
        st.caption(f"↻ Replayed as execution `{execution.replayed_by}` (each failed execution is replayed once)")
    if execution.is_test:
        st.caption("🧪 Test-console run: shown here, never counted.")
    if trig.get("content"):
        st.info(trig["content"], icon="💬")
    if execution.steps:
        st.dataframe(
            [
                {
                    "Step": s.action_id,
                    "Action": s.action_type,
                    "Attempt": s.attempt,
                    "Status": status_text(s.status),
                    "Started": local(s.started_at, tz),
                    "Duration": _duration(s),
                    "Error": s.error or "",
                }
                for s in execution.steps
            ],
            hide_index=True,
            width="stretch",
            key=f"executions_steps_{execution.id}",
        )
    with unit_of_work(db, read_only=True) as uow:
        messages = services.list_outbox(uow=uow, actor=actor, execution_id=execution.id, page_size=50).items
    if messages:
        st.markdown("**Messages**")  # with their status: a suppressed or failed one was not sent
        st.dataframe(
            [
                {
                    "Channel": m.channel,
                    "To": m.recipient,
                    "Status": m.status,
                    "Text": m.body[:120],
                    "Note": m.error or "",
                }
                for m in messages
            ],
            hide_index=True,
            width="stretch",
            key=f"executions_messages_{execution.id}",
        )
    show_execution(execution)


@st.dialog("Replay this execution")
def replay_dialog(db: Any, actor: Any, execution_id: str) -> None:
    st.write("A new execution runs; this one stays as it was. Each failed execution is replayed once.")
    start = st.radio(
        "Start",
        ["failed", "start"],
        format_func={"failed": "from the failed step", "start": "from the start"}.get,
        key="executions_replay_from",
    )
    version = st.radio(
        "Version",
        ["original", "current"],
        key="executions_replay_version",
        format_func={"original": "the version it ran", "current": "the current version"}.get,
    )
    if st.button("Replay now", type="primary", key="executions_replay_go"):
        try:
            with unit_of_work(db) as uow:
                out = operations.replay_execution(
                    uow=uow, actor=actor, execution_id=execution_id, from_step=start, version=version
                )
        except EngineError as exc:
            st.error(exc.message)
            return
        st.session_state["executions_flash"] = f"Replayed: the new execution {status_text(out.execution.status)}."
        st.session_state["executions_open"] = out.execution.id
        st.rerun()


@st.dialog("Cancel this execution")
def cancel_dialog(db: Any, actor: Any, execution_id: str) -> None:
    st.write("It will not resume, and its pending follow-ups will not be sent.")
    reason = st.text_input("Reason", key="executions_cancel_reason", placeholder="e.g. the member booked by phone")
    if st.button("Cancel execution", type="primary", key="executions_cancel_go"):
        try:
            with unit_of_work(db) as uow:
                operations.cancel_execution(uow=uow, actor=actor, execution_id=execution_id, reason=reason)
        except EngineError as exc:
            st.error(exc.message)
            return
        st.session_state["executions_flash"] = "Cancelled. Its follow-ups will not fire."
        st.rerun()


@st.dialog("Replay all filtered failed executions")
def bulk_dialog(db: Any, actor: Any, filters: operations.ExecutionFilter, count: int) -> None:
    st.write(
        f"**{count}** failed execution(s) match the filters and were not replayed yet. Each is replayed "
        "once, from its failed step, with the version it ran."
    )
    if st.button(f"Replay {count}", type="primary", key="executions_bulk_go", disabled=count == 0):
        bar = st.progress(0.0, text="Replaying…")

        def progress(i: int, n: int) -> None:
            bar.progress(i / n, text=f"Replayed {i} of {n}")

        with unit_of_work(db) as uow:
            result = operations.bulk_replay(
                uow=uow,
                actor=actor,
                filters=filters,
                on_progress=progress,
            )
        st.session_state["executions_flash"] = f"Replayed {len(result['replayed'])} of {result['selected']}" + (
            f"; {len(result['errors'])} could not be replayed" if result["errors"] else ""
        )
        st.rerun()


def timeline_rows(items: list[dict[str, Any]], tz: str) -> list[dict[str, Any]]:
    # "outgoing", not "sent": the Detail column says whether it was sent, suppressed or failed
    icons = {"received": "⬅️ received", "sent": "➡️ outgoing", "execution": "⚙️ execution"}
    return [
        {
            "When": i["at"].astimezone(ZoneInfo(tz)).strftime("%d %b %Y, %H:%M:%S"),
            "What": icons[i["kind"]],
            "Channel": i["channel"] or "",
            "Text": (i["text"] or "")[:140],
            "Detail": i["detail"] or "",
        }
        for i in items
    ]


def is_live(status: str) -> bool:
    return status in domain.IN_PROGRESS_STATUSES
