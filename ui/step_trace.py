"""An execution's result: why it ran (or not) and what each step did."""

from __future__ import annotations

from typing import Any

import streamlit as st

from ui.formatting import localize
from ui.labels import action_label

STATUS_ICONS = {
    "succeeded": "✅",
    "success": "✅",
    "completed": "✅",
    "failed": "⛔",
    "error": "⛔",
    "skipped": "⏭️",
    "waiting": "⏳",
    "running": "▶️",
    "pending": "🕒",
    "cancelled": "✖️",
    "simulated": "🧪",
}


BADGE_COLORS = {
    "succeeded": "green",
    "failed": "red",
    "skipped": "orange",
    "waiting": "blue",
    "running": "blue",
    "cancelled": "gray",
    "pending": "gray",
}


def _get(obj: Any, name: str, default: Any = None) -> Any:
    return obj.get(name, default) if isinstance(obj, dict) else getattr(obj, name, default)


def status_text(status: Any) -> str:
    status = str(getattr(status, "value", status) or "unknown")
    return f"{STATUS_ICONS.get(status, '•')} {status}"


def show_execution(execution: Any, tz_name: str | None = None) -> None:
    """The execution's conditions and step trace; times in the studio's timezone."""
    if tz_name is None:
        from ui import session

        tz_name = session.tenant_timezone()
    status = str(getattr(_get(execution, "status"), "value", _get(execution, "status")) or "unknown")
    color = BADGE_COLORS.get(status, "gray")
    mode = str(_get(execution, "mode") or "–").replace("_", " ")
    st.markdown(
        f":{color}-badge[{status_text(status)}] :gray-badge[{mode}] "
        f":gray-badge[{_get(execution, 'actions_executed', 0) or 0} actions run] "
        f":gray-badge[{len(_get(execution, 'steps') or [])} steps]"
    )
    if _get(execution, "error"):
        st.error(_get(execution, "error"), icon="⛔")
    removed = _get(execution, "details_removed")
    if removed:
        st.caption(
            "The member's data in this run was erased on request."
            if removed == "erased"
            else f"Details (steps' input and output, trigger data) were removed on {removed[:10]} by the studio's "
            "retention; the summary stays."
        )
    explanation = _get(execution, "explanation") or []
    if explanation:
        st.markdown("**Conditions**")
        st.dataframe(
            [
                {
                    "": "✅" if _get(e, "passed") else "❌",
                    "condition": _get(e, "condition"),
                    "actual": str(_get(e, "actual")),
                    "expected": str(_get(e, "expected")),
                    "why": _get(e, "message"),
                }
                for e in explanation
            ],
            hide_index=True,
            width="stretch",
        )
    steps = _get(execution, "steps") or []
    if steps:
        st.markdown("**Step trace**")
    for n, step in enumerate(steps, 1):
        title = (
            f"{n}. {status_text(_get(step, 'status'))} · {action_label(str(_get(step, 'action_type')))} "
            f"`{_get(step, 'action_id')}`"
        )
        if (_get(step, "attempt") or 1) > 1:
            title += f" · attempt {_get(step, 'attempt')}"
        with st.expander(title, expanded=bool(_get(step, "error"))):
            if _get(step, "error"):
                st.error(_get(step, "error"))
            left, right = st.columns(2)
            left.caption("Input")
            left.json(localize(_get(step, "input") or {}, tz_name), expanded=1)
            right.caption(f"Output (times in {tz_name})")
            right.json(localize(_get(step, "output") or {}, tz_name), expanded=1)
