"""Outbox: every message the workflows sent or recorded, its delivery status, retry, and the
owner's decision on a message whose outcome is unknown."""

import streamlit as st

from engine.errors import EngineError
from engine.security.auth import EDIT
from engine.services.outbox import OUTBOX_STATUSES, browse_outbox, mark_sent, retry_delivery, send_again
from engine.uow import unit_of_work
from ui import session

actor = session.require_actor()
db = session.db()

st.title("Outbox")
st.caption(
    "Recorded: kept here only (no provider connected), nobody received it. Queued → sending → sent → delivered → "
    "read as the provider reports it; retrying says when the next attempt is; failed keeps the provider's error; "
    "outcome unknown: the provider's answer was lost, so it is not sent again unless you say so. "
    "Suppressed and deferred say why."
)

a, b, c = st.columns(3)
status = a.selectbox("Status", ["", *OUTBOX_STATUSES], format_func=lambda s: s or "any", key="outbox_status")
channel = b.selectbox(
    "Channel", ["", "whatsapp", "sms", "email", "web", "voice"], format_func=lambda s: s or "any", key="outbox_channel"
)
recipient = c.text_input("Contact contains", key="outbox_recipient")
page_size = 50
page = int(st.query_params.get("page", 1) or 1)

try:
    with unit_of_work(db, read_only=True) as uow:
        result = browse_outbox(
            uow=uow,
            actor=actor,
            status=status or None,
            channel=channel or None,
            recipient=recipient or None,
            page=page,
            page_size=page_size,
        )
except EngineError as exc:
    st.error(exc.message)
    st.stop()

st.caption(f"{result.total} message(s)")
if not result.items:
    st.info("No messages match. Messages appear here as soon as a workflow sends or records one.", icon="📭")
    st.stop()
rows = [
    {
        "When": m.created_at,
        "Channel": m.channel,
        "Contact": m.recipient,
        "Workflow": m.workflow_name or "",
        "Status": m.status_text,
        "Reason / error": m.reason or "",
        "Provider id": m.provider_message_id or "",
        "Message": m.body[:120],
        "Execution": m.execution_id or "",
    }
    for m in result.items
]
picked = st.dataframe(
    rows, hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row", key="outbox_table"
)
pages = max(1, -(-result.total // page_size))
if pages > 1:
    new_page = st.number_input("Page", min_value=1, max_value=pages, value=min(page, pages), key="outbox_page")
    if new_page != page:
        st.query_params["page"] = str(new_page)
        st.rerun()

# A selected row, else the message named in the address (?message=<id>, a link to one message).
selected = (picked.selection.rows if picked else []) or []
linked = st.query_params.get("message")
msg = result.items[selected[0]] if selected else next((m for m in result.items if m.id == linked), None)


def _act(action, outbox_id: str, done: str) -> None:
    try:
        with unit_of_work(db) as uow:
            action(uow=uow, actor=actor, outbox_id=outbox_id)
    except EngineError as exc:
        st.error(exc.message)
    else:
        st.success(done, icon="✅")


if msg is not None:
    with st.container(border=True, key="outbox_detail"):
        st.subheader(f"{msg.channel} to {msg.recipient}")
        st.markdown(f"**Status:** {msg.status_text}")
        if msg.reason:
            st.caption(msg.reason)
        st.write(msg.body)
        if msg.delivery_events:
            st.dataframe(msg.delivery_events, hide_index=True, width="stretch")
        retry = msg.status == "failed" and actor.can(EDIT)
        if retry and st.button("Retry delivery", type="primary", key="outbox_retry"):
            _act(retry_delivery, msg.id, "Queued: the worker sends it again now.")
        if msg.status == "unknown" and actor.can(EDIT):
            st.warning(
                "The provider's answer to this send was lost: the member may or may not have it. "
                "Check with the provider or the member, then decide.",
                icon="❓",
            )
            left, right = st.columns(2)
            if left.button("Mark as sent", key="outbox_mark_sent"):
                _act(mark_sent, msg.id, "Marked as sent.")
            if right.button("Send again", type="primary", key="outbox_send_again"):
                _act(send_again, msg.id, "Queued: the worker sends it again now (the member may get it twice).")
