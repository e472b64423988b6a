"""Delivery outcomes of one execution's messages (for the execution detail)."""

from __future__ import annotations

import streamlit as st

from engine.services.outbox import browse_outbox


def show_deliveries(db, actor, execution_id: str) -> None:
    """The execution's outbox messages with their latest provider status, linked to the Outbox page."""
    rows = browse_outbox(db, actor, execution_id=execution_id, page_size=50).items
    if not rows:
        return
    st.markdown("**Messages and delivery**")
    st.dataframe([{"Channel": m.channel, "Contact": m.recipient, "Status": m.status, "Reason / error": m.reason or "",
                   "Provider id": m.provider_message_id or "",
                   "Last report": (m.delivery_events[-1].get("at", "") if m.delivery_events else "")} for m in rows],
                 hide_index=True, width="stretch")
    st.page_link("pages/outbox.py", label="Open the outbox", icon=":material/outbox:")
