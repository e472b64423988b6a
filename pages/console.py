"""Test console: write as a member (or fire a trigger), see every workflow's decision, skip
waits, and keep conversations as scenarios. Owners and editors send; analysts see scenarios."""

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import streamlit as st

from engine.errors import EngineError
from engine.security.auth import EDIT
from engine.services import console, scenarios
from engine.services.console import ConsoleInput, TestContact
from engine.services.workflows import list_workflows
from engine.uow import unit_of_work
from ui import session
from ui.console_view import (
    CHANNEL_LABELS,
    KIND_LABELS,
    inject_css,
    opt_out_notices,
    pending_label,
    show_decisions,
    show_thread,
)

actor = session.require_actor()
db = session.db()
tz = session.tenant_timezone()
can_send = actor.can(EDIT)
inject_css()


@st.cache_resource(show_spinner="Loading the intent classifier…")
def _warm_classifier() -> bool:
    """Train the built-in classifier once per process, not inside the first console message."""
    from engine.runner import builtin_classifier

    classify = builtin_classifier()
    if classify is not None:
        classify("Hallo")
    return True


_warm_classifier()

st.title("Test console")
st.caption(
    "Talk to your automations like a member. Every workflow's decision is shown; in test mode nothing "
    "leaves the machine and nothing counts."
)


def contact() -> TestContact:
    if "console_contact" not in st.session_state:
        st.session_state["console_contact"] = console.new_contact().model_dump()
    return TestContact.model_validate(st.session_state["console_contact"])


def new_conversation() -> None:
    st.session_state["console_contact"] = console.new_contact().model_dump()
    st.session_state.pop("console_turn", None)
    st.session_state["console_flash"] = "New conversation with a fresh test contact (clean caps and 24-hour window)."


def do_send(inp: ConsoleInput, *, live: bool) -> None:
    try:
        with unit_of_work(db) as uow:
            report = console.send(
                uow=uow,
                actor=actor,
                contact=contact(),
                inp=inp,
                live=live,
                real_calls=bool(st.session_state.get("console_real")),
            )
    except EngineError as exc:
        st.session_state["console_error"] = exc.message
        return
    st.session_state["console_turn"] = report.event_id
    st.session_state["console_last_ms"] = report.server_ms


def close_dialogs() -> None:
    for key in ("console_live_pending", "console_sc_open", "console_sc_delete_id"):
        st.session_state.pop(key, None)


@st.dialog("Send for real?", on_dismiss=close_dialogs)
def confirm_live(inp: ConsoleInput) -> None:
    st.warning(
        "Live mode sends through the configured channels to the contact below, runs webhooks and AI, "
        "and counts in stats and caps.",
        icon="📡",
    )
    st.markdown(f"To **{contact().phone}** / **{contact().email}**")
    cancel, go = st.columns(2)
    if cancel.button("Cancel", key="console_live_cancel", width="stretch"):
        close_dialogs()
        st.rerun()
    if go.button("Send for real", type="primary", key="console_live_go", width="stretch"):
        close_dialogs()
        do_send(inp, live=True)
        st.rerun()


def submit(inp: ConsoleInput) -> None:
    if st.session_state.get("console_live"):
        st.session_state["console_live_pending"] = inp.model_dump()
        st.rerun()
    else:
        do_send(inp, live=False)
        st.rerun()


def simulated_at() -> datetime | None:
    if not st.session_state.get("console_as_if"):
        return None
    day = st.session_state.get("console_as_if_date")
    clock = st.session_state.get("console_as_if_time")
    if day is None or clock is None:
        return None
    return datetime.combine(day, clock, tzinfo=ZoneInfo(tz))


# --------------------------------------------------------------------------- the conversation

if can_send:
    top = st.columns([2, 2, 2, 2])
    top[0].toggle("Live mode", key="console_live", help="Off: test mode (nothing leaves the machine, nothing counts).")
    top[1].checkbox(
        "Call webhooks / AI for real", key="console_real", disabled=bool(st.session_state.get("console_live"))
    )
    top[2].button("New conversation", key="console_new", icon=":material/restart_alt:", on_click=new_conversation)
    with top[3].popover("Test contact", icon=":material/person:"):
        c = contact()
        name = st.text_input("Name", value=c.name, key="console_contact_name")
        phone = st.text_input("Phone", value=c.phone, key="console_contact_phone")
        email = st.text_input("E-mail", value=c.email, key="console_contact_email")
        if st.button("Use this contact", key="console_contact_save"):
            try:
                checked = console.checked_contact(TestContact(name=name, phone=phone, email=email))
            except EngineError as exc:
                st.error(exc.message)
            else:
                st.session_state["console_contact"] = checked.model_dump()
                st.session_state.pop("console_turn", None)
                st.rerun()

if st.session_state.get("console_flash"):
    st.success(st.session_state.pop("console_flash"), icon="✅")
if st.session_state.get("console_error"):
    st.error(st.session_state.pop("console_error"), icon="⛔")

if can_send:
    with unit_of_work(db, read_only=True) as uow:
        conv = console.conversation(uow=uow, actor=actor, contact=contact())
    left, right = st.columns([5, 6], gap="large")
    with left:
        st.subheader(f"Conversation · {conv.contact.name}")
        st.caption(f"{conv.contact.phone} · {conv.contact.email}")
        for level, notice in opt_out_notices(conv, live=bool(st.session_state.get("console_live"))):
            (st.warning if level == "warning" else st.info)(notice, icon="🛑" if level == "warning" else "ℹ️")
        with st.container(height=460, key="console_thread"):
            show_thread(conv, tz)
        if conv.pending:
            st.markdown("**Waiting**")
            for item in conv.pending:
                st.caption(pending_label(item, tz))
            a, b = st.columns(2)
            if a.button("Skip to next", key="console_skip_next", icon=":material/skip_next:", width="stretch"):
                with unit_of_work(db) as uow:
                    done = console.fast_forward(uow=uow, actor=actor, contact=contact())
                st.session_state["console_flash"] = f"Fast-forwarded {len(done)} item(s)."
                st.rerun()
            if b.button("Skip all", key="console_skip_all", icon=":material/fast_forward:", width="stretch"):
                with unit_of_work(db) as uow:
                    done = console.fast_forward(uow=uow, actor=actor, contact=contact(), all_items=True)
                st.session_state["console_flash"] = f"Fast-forwarded {len(done)} item(s)."
                st.rerun()

        kind = (
            st.segmented_control(
                "Send",
                list(KIND_LABELS),
                format_func=lambda v: KIND_LABELS.get(v, v),
                default="message",
                key="console_kind",
            )
            or "message"
        )
        with st.form("console_form", border=True):
            values: dict = {"kind": kind}
            if kind == "message":
                values["channel"] = st.selectbox(
                    "Channel",
                    list(CHANNEL_LABELS),
                    format_func=lambda v: CHANNEL_LABELS.get(v, v),
                    key="console_channel",
                )
                values["subject"] = st.text_input("Subject (e-mail)", key="console_subject") or None
                values["text"] = st.text_area(
                    "Message", key="console_text", placeholder="Ich möchte einen Trainingsplan", height=90
                )
            elif kind == "lead":
                values["lead_name"] = st.text_input("Name", value=contact().name, key="console_lead_name")
                values["lead_email"] = st.text_input("E-mail", value=contact().email, key="console_lead_email")
                values["lead_phone"] = st.text_input("Phone", value=contact().phone, key="console_lead_phone")
                values["lead_source"] = st.text_input("Source", value="website", key="console_lead_source")
            elif kind == "booking":
                values["class_name"] = st.text_input("Class", value="Vinyasa Yoga", key="console_class")
                d = st.date_input(
                    "Class date", value=datetime.now(ZoneInfo(tz)).date() + timedelta(days=1), key="console_class_date"
                )
                t = st.time_input("Class time", value=time(18, 0), key="console_class_time")
                values["starts_at"] = datetime.combine(d, t, tzinfo=ZoneInfo(tz))
            elif kind == "schedule":
                with unit_of_work(db, read_only=True) as uow:
                    scheduled = list_workflows(uow=uow, actor=actor, trigger_type="time_based", page_size=100).items
                values["workflow_id"] = st.selectbox(
                    "Scheduled workflow",
                    [w.id for w in scheduled],
                    format_func=lambda v: {w.id: w.name for w in scheduled}.get(v, v),
                    key="console_schedule_wf",
                    placeholder="No scheduled workflows" if not scheduled else None,
                )
            st.checkbox("Send as if at …", key="console_as_if")
            c1, c2 = st.columns(2)
            c1.date_input("Date", key="console_as_if_date", value=datetime.now(ZoneInfo(tz)).date())
            c2.time_input("Time", key="console_as_if_time", value=time(22, 0), step=timedelta(minutes=15))
            sent = st.form_submit_button("Send", type="primary", icon=":material/send:")
        if sent:
            try:
                inp = ConsoleInput(**values, at=simulated_at())
            except ValueError as exc:
                st.error(str(exc).splitlines()[0])
            else:
                submit(inp)

    with right:
        st.subheader("Decisions")
        if not conv.turns:
            st.caption("Send something to see which workflows run and why the others do not.")
        else:
            ids = [t.event_id for t in conv.turns]
            labels = {
                t.event_id: f"{n}. {KIND_LABELS.get(t.kind, t.kind)}" + (f": {t.text[:40]}" if t.text else "")
                for n, t in enumerate(conv.turns, 1)
            }
            current = st.session_state.get("console_turn")
            index = ids.index(current) if current in ids else len(ids) - 1
            # Keyed by the newest input, so a new message selects itself.
            picked = st.selectbox(
                "Input", ids, index=index, format_func=lambda v: labels.get(v, v), key=f"console_pick_{ids[-1]}"
            )
            turn = conv.turns[ids.index(picked)]
            if picked == current and st.session_state.get("console_last_ms"):
                turn.server_ms = st.session_state["console_last_ms"]
            show_decisions(turn)

# --------------------------------------------------------------------------- scenarios


@st.dialog("Save as scenario", width="large", on_dismiss=close_dialogs)
def save_dialog() -> None:
    with unit_of_work(db, read_only=True) as uow:
        conv = console.conversation(uow=uow, actor=actor, contact=contact())
    offered = scenarios.expectations_from(conv)
    st.caption(
        "Tick what must keep happening. The conversation's inputs and their times are kept; "
        "each run uses a fresh contact."
    )
    name = st.text_input("Name", key="console_sc_name", placeholder="Hallo on WhatsApp")
    chosen = []
    for n, exp in enumerate(offered):
        label = scenarios.Expectation.model_validate(exp).describe()
        if st.checkbox(label, value=exp["kind"] in ("ran", "sent", "intent"), key=f"console_sc_exp_{n}"):
            chosen.append(exp)
    if st.button("Save scenario", type="primary", key="console_sc_save"):
        try:
            with unit_of_work(db) as uow:
                out = scenarios.save_scenario(
                    uow=uow,
                    actor=actor,
                    data={
                        "name": name,
                        "channel": (conv.turns[0].channel or "whatsapp"),
                        "contactName": conv.contact.name,
                        "steps": scenarios.steps_from(conv),
                        "expectations": chosen,
                    },
                )
        except EngineError as exc:
            st.error(exc.message)
        else:
            close_dialogs()
            st.session_state["console_flash"] = f"Saved scenario “{out.name}”."
            st.rerun()


@st.dialog("Delete scenario?", on_dismiss=close_dialogs)
def confirm_delete(sc) -> None:
    st.markdown(f"The scenario **{sc.name}** and its last result will be deleted. This cannot be undone.")
    cancel, go = st.columns(2)
    if cancel.button("Cancel", key="console_sc_del_cancel", width="stretch"):
        close_dialogs()
        st.rerun()
    if go.button("Delete", type="primary", key="console_sc_del_go", width="stretch"):
        close_dialogs()
        with unit_of_work(db) as uow:
            scenarios.delete_scenario(uow=uow, actor=actor, scenario_id=sc.id)
        st.session_state["console_flash"] = f"Deleted scenario “{sc.name}”."
        st.rerun()


st.divider()
st.subheader("Scenarios")
with unit_of_work(db, read_only=True) as uow:
    items = scenarios.list_scenarios(uow=uow, actor=actor)
if can_send:
    b1, b2, _ = st.columns([2, 2, 4])
    with unit_of_work(db, read_only=True) as uow:
        has_turns = can_send and bool(console.conversation(uow=uow, actor=actor, contact=contact()).turns)
    if b1.button("Save as scenario", key="console_save", icon=":material/bookmark_add:", disabled=not has_turns):
        close_dialogs()
        st.session_state["console_sc_open"] = True
    if b2.button("Run all", key="console_run_all", icon=":material/play_arrow:", disabled=not items):
        with st.spinner("Replaying every scenario in test mode…"):
            with unit_of_work(db) as uow:
                results = scenarios.run_all(uow=uow, actor=actor)
        failed = [r for r in results if not r.passed]
        st.session_state["console_flash"] = (
            f"{len(results) - len(failed)} pass, {len(failed)} fail." if results else "No scenarios yet."
        )
        st.rerun()
if not items:
    st.caption(
        "No scenarios yet. "
        + (
            "Have a conversation above, then “Save as scenario”."
            if can_send
            else "Owners and editors save them from their conversations."
        )
    )
for sc in items:
    icon = {"pass": "✅", "fail": "❌"}.get(sc.status, "⚪")
    when = sc.last_run_at.astimezone(ZoneInfo(tz)).strftime("%d %b %H:%M") if sc.last_run_at else "never run"
    title = f"{icon} {sc.name} · {sc.status}" + (f" · {when}" if sc.last_run_at else "")
    with st.expander(title, expanded=sc.status == "fail"):
        for failure in sc.last_result.get("failures", []):
            st.error(failure, icon="❌")
        st.markdown(
            "**Expects:** " + "; ".join(scenarios.Expectation.model_validate(e).describe() for e in sc.expectations)
        )
        st.caption(
            "Inputs: "
            + " → ".join(
                KIND_LABELS.get(s.get("kind"), "Skip all") + (f" “{s['text'][:30]}”" if s.get("text") else "")
                for s in sc.steps
            )
        )
        if can_send and st.button("Delete", key=f"console_sc_del_{sc.id}", icon=":material/delete:"):
            close_dialogs()
            st.session_state["console_sc_delete_id"] = sc.id

# --------------------------------------------------------------------------- open dialogs (kept across reruns)

if can_send and st.session_state.get("console_live_pending"):
    confirm_live(ConsoleInput.model_validate(st.session_state["console_live_pending"]))
elif can_send and st.session_state.get("console_sc_open"):
    save_dialog()
elif can_send and st.session_state.get("console_sc_delete_id"):
    doomed = next((sc for sc in items if sc.id == st.session_state["console_sc_delete_id"]), None)
    if doomed is not None:
        confirm_delete(doomed)
