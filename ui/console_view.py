"""Rendering of the test console: chat bubbles in each channel's look, decisions per input."""

from __future__ import annotations

import html
from datetime import datetime
from zoneinfo import ZoneInfo

import streamlit as st

from engine.services.console import (
    Conversation,
    PendingItem,
    Reply,
    TurnReport,
    WorkflowDecision,
)
from ui.step_trace import show_execution

CHANNEL_LABELS = {
    "whatsapp": "WhatsApp",
    "sms": "SMS",
    "voice": "Voice call (transcript)",
    "email": "E-mail",
    "web": "Web chat",
}
KIND_LABELS = {
    "message": "Message",
    "missed_call": "Missed call",
    "lead": "New lead",
    "booking": "Booking created",
    "schedule": "Schedule tick",
}
TRIGGER_LABELS = {
    "missed_call": "missed call",
    "lead_created": "new lead",
    "booking_created": "booking created",
    "time_based": "schedule",
    "intent_detected": "intent detected",
    "whatsapp_message": "WhatsApp",
    "sms_received": "SMS",
    "voice_call": "voice call",
    "email_received": "e-mail",
    "web_chat": "web chat",
}

_CSS = """
<style>
.sa-thread {display: flex; flex-direction: column; gap: 8px;}
.sa-b {max-width: 78%; padding: 8px 12px; border-radius: 14px; line-height: 1.35; white-space: pre-wrap;
  overflow-wrap: anywhere; font-size: 0.95rem;}
.sa-b .sa-meta {font-size: 0.72rem; color: #6E6E73; margin-top: 4px;}
.sa-in {align-self: flex-end; border-bottom-right-radius: 4px;}
.sa-out {align-self: flex-start; border-bottom-left-radius: 4px; background: #FFFFFF; border: 1px solid #E5E5EA;}
.sa-in.sa-whatsapp {background: #DCF8C6;} .sa-in.sa-sms {background: #0A84FF; color: #fff;}
.sa-in.sa-sms .sa-meta {color: #E6F1FF;} .sa-in.sa-web {background: #E6F1FF;}
.sa-in.sa-voice {background: #F5F5F7; font-style: italic;} .sa-in.sa-event {background: #FFF4E5;}
.sa-out.sa-whatsapp {background: #FFFFFF;} .sa-out.sa-sms {background: #E9E9EB;}
.sa-card {max-width: 85%; border: 1px solid #D2D2D7; border-radius: 10px; padding: 10px 14px; background: #FFFFFF;
  white-space: pre-wrap; overflow-wrap: anywhere;}
.sa-card.sa-in {background: #FAFAFC;}
.sa-card .sa-subject {font-weight: 650; border-bottom: 1px solid #E5E5EA; padding-bottom: 4px; margin-bottom: 6px;}
.sa-out.sa-held {opacity: 0.65; border: 1px dashed #8E8E93; background: #F7F7F8;}
.sa-why {font-size: 0.78rem; color: #B3261E; margin-top: 4px;}
.sa-tag {display: inline-block; font-size: 0.7rem; padding: 0 6px; border-radius: 6px; background: #F2F2F7;
  color: #3A3A3C; margin-left: 4px;}
</style>
"""


def inject_css() -> None:
    st.markdown(_CSS, unsafe_allow_html=True)


def _time(when: datetime, tz: str) -> str:
    return when.astimezone(ZoneInfo(tz)).strftime("%a %d %b, %H:%M")


def _bubble(
    text: str, *, inbound: bool, channel: str, meta: str, subject: str | None = None, why: str | None = None
) -> str:
    side = "sa-in" if inbound else "sa-out"
    if why:
        side += " sa-held"
    body = html.escape(text or "")
    meta_html = f'<div class="sa-meta">{meta}</div>' + (f'<div class="sa-why">{why}</div>' if why else "")
    if channel == "email":
        head = f'<div class="sa-subject" dir="auto">{html.escape(subject or "(no subject)")}</div>'
        return f'<div class="sa-card {side}" dir="auto">{head}{body}{meta_html}</div>'
    return f'<div class="sa-b {side} sa-{html.escape(channel)}" dir="auto">{body}{meta_html}</div>'


def inbound_html(turn: TurnReport, tz: str) -> str:
    when = _time(turn.at, tz)
    if turn.kind == "message":
        label = CHANNEL_LABELS.get(turn.channel or "", turn.channel or "")
        return _bubble(
            turn.text or "",
            inbound=True,
            channel=turn.channel or "web",
            subject=turn.subject,
            meta=f"{html.escape(label)} · {when}",
        )
    data = turn.event_data or {}
    text = {
        "missed_call": "📞 Missed call",
        "lead": f"🧲 New lead: {data.get('name', '')} ({data.get('source', '')})",
        "booking": f"📅 Booked {data.get('className', '')} for {str(data.get('startsAt', ''))[:16]}",
        "schedule": "⏰ Schedule tick",
    }.get(turn.kind, turn.trigger_type)
    return _bubble(text, inbound=True, channel="event", meta=when)


def reply_html(reply: Reply, tz: str) -> str:
    tags = [reply.status]
    if reply.workflow_name:
        tags.append(reply.workflow_name)
    if reply.ai_provider:
        tags.append(f"AI: {reply.ai_provider}")
    meta = f"{html.escape(CHANNEL_LABELS.get(reply.channel, reply.channel))} · {_time(reply.at, tz)}" + "".join(
        f'<span class="sa-tag">{html.escape(t)}</span>' for t in tags
    )
    return _bubble(reply.body, inbound=False, channel=reply.channel, subject=reply.subject, meta=meta, why=_why(reply))


#: Replies the member does not get (now): the bubble is greyed and says why.
HELD = {"suppressed": "⛔ Not sent", "deferred": "⏸ Held back", "failed": "⚠️ Failed"}


def _why(reply: Reply) -> str | None:
    if reply.status not in HELD:
        return None
    reason = reply.reason or (reply.policy or {}).get("reason") or ""
    return html.escape(f"{HELD[reply.status]}: {reason}" if reason else HELD[reply.status])


def opt_out_notices(conv: Conversation, *, live: bool) -> list[tuple[str, str]]:
    """("warning" | "info", text): the opt-out state of the mode in use, as a member would
    experience it, and a real opt-out that test mode does not follow (so it is not a surprise)."""
    out = []
    if live and conv.opted_out_live:
        out.append(("warning", f"This contact {conv.opted_out_live}. A real opt-out: live replies are suppressed."))
    if not live and conv.opted_out:
        out.append(("warning", f"This {conv.opted_out}. Replies are suppressed as a member's would be."))
    if not live and conv.opted_out_live:
        out.append(
            (
                "info",
                f"For real this contact {conv.opted_out_live} (live mode). "
                "Test mode keeps its own opt-out state and is not affected.",
            )
        )
    return out


def show_thread(conv: Conversation, tz: str) -> None:
    """The member's inputs and the replies, in time order, as bubbles (plans under their reply)."""
    if not conv.turns:
        st.info("No messages yet. Write as the member below, or fire another trigger.", icon="💬")
        return
    items: list[tuple[datetime, int, str, Reply | None]] = []
    for n, turn in enumerate(conv.turns):
        items.append((turn.at, 2 * n, inbound_html(turn, tz), None))
        for reply in turn.replies:
            items.append((reply.at, 2 * n + 1, reply_html(reply, tz), reply))
    items.sort(key=lambda i: (i[0], i[1]))
    for _, _, markup, maybe_reply in items:
        st.markdown(f'<div class="sa-thread">{markup}</div>', unsafe_allow_html=True)
        if maybe_reply is not None and maybe_reply.plan:
            with st.expander(f"🏋️ Workout plan: {maybe_reply.plan.get('summary', '')}"):
                st.markdown(maybe_reply.plan.get("text") or "")


def _decision_title(d: WorkflowDecision) -> str:
    chained = " · chained" if d.chained else ""
    if d.outcome == "ran":
        return f"✅ {d.workflow_name} — {d.status}{chained}"
    why = d.reasons[0] if d.reasons else "skipped"
    return f"⏭️ {d.workflow_name} — skipped: {why}{chained}"


def show_decisions(turn: TurnReport) -> None:
    """Intent, every workflow considered (ran with its steps, skipped with the reasons), others in one line."""
    if turn.intent:
        used = "" if turn.intent_used else " (no workflow looks at the intent)"
        st.markdown(f"**Intent:** `{turn.intent}` · confidence **{turn.intent_confidence:.0%}**{used}")
        if turn.intent_used:
            intent_wfs = [d.workflow_name for d in turn.decisions if d.trigger_type == "intent_detected"]
            if intent_wfs:
                st.caption(f"intent_detected → considered by {', '.join(intent_wfs)}")
    if turn.opt == "out":
        st.warning("Opt-out word: automated messages to this contact are suppressed until it opts in again.", icon="🛑")
    elif turn.opt == "in":
        st.success("Opt-in word: automated messages to this contact go out again.", icon="🔔")
    st.caption(
        f"{'🧪 Test mode' if turn.is_test else '📡 Live'} · event `{turn.event_id[-8:]}`"
        + (f" · {turn.server_ms:.0f} ms on the server" if turn.server_ms else "")
    )
    if not turn.decisions:
        st.warning("No workflow of this studio listens to this trigger.", icon="🔕")
    for d in turn.decisions:
        with st.expander(_decision_title(d), expanded=d.outcome == "ran" and not d.chained):
            if d.outcome == "skipped":
                for reason in d.reasons or ["skipped"]:
                    st.markdown(f"- {reason}")
            if d.fast_forwarded:
                st.caption(
                    "⏩ fast-forwarded: " + ", ".join(f"due {f.get('dueAt', '')[:16]}" for f in d.fast_forwarded)
                )
            if d.execution_id:
                show_execution(
                    {
                        **d.model_dump(),
                        "mode": "test" if turn.is_test else "live",
                        "actions_executed": len({st_.action_id for st_ in d.steps}),
                    }
                )
    if turn.other_triggers:
        parts = [f"{TRIGGER_LABELS.get(t, t)}: {', '.join(names)}" for t, names in sorted(turn.other_triggers.items())]
        st.caption("Listening to other triggers (not considered): " + " · ".join(parts))


def pending_label(item: PendingItem, tz: str) -> str:
    who = f"{item.workflow_name}: " if item.workflow_name else ""
    return f"⏳ {_time(item.due_at, tz)} — {who}{item.what}"
