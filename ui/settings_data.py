"""Settings, data lifecycle part: retention, a member's data (export, erase), opt-outs.

``render(actor)`` is called at the end of ``pages/settings.py``. Session keys start with
``privacy_``. All logic lives in engine/lifecycle/retention.py, engine/lifecycle/privacy.py and
engine/messaging/optout.py.
"""

from __future__ import annotations

import json

import streamlit as st

from engine.errors import EngineError
from engine.lifecycle import privacy, retention
from engine.messaging import optout
from engine.security.auth import ADMIN, Actor
from engine.uow import unit_of_work
from ui import session, settings_form

TABLE_LABELS = {
    "events": "Inbound events",
    "executions": "Executions",
    "step_runs": "Steps",
    "outbox_messages": "Messages",
    "leads": "Leads",
    "bookings": "Bookings",
    "due_work": "Scheduled follow-ups",
    "contact_opt_outs": "Opt-outs",
}


def render(actor: Actor) -> None:
    """The three data cards of the settings page (owners only)."""
    if not actor.can(ADMIN):
        return
    db = session.db()
    _retention_card(db, actor)
    _member_card(db, actor)
    _opt_out_card(db, actor)
    _show_open_dialog(db, actor)


# --------------------------------------------------------------------------- retention


def _retention_card(db, actor: Actor) -> None:
    with unit_of_work(db, read_only=True) as uow:
        current = retention.get_retention(uow=uow, actor=actor)
    with st.container(border=True, key="privacy_card_retention"):
        st.subheader("Data retention")
        st.caption(
            "Details are what a run saw and wrote: steps' input and output, message texts, event payloads. "
            "Summaries are the rows themselves (status, time, workflow, channel). Counts in insights and "
            "workflow statistics stay correct after both are removed. The worker prunes in small batches."
        )
        form = "privacy_retention_form"
        settings_form.sync(
            form, {"privacy_details_days": current.details_days, "privacy_summary_days": current.summary_days}
        )
        with st.form(form, border=False):
            a, b = st.columns(2)
            a.number_input(
                "Keep details (days)", min_value=1, max_value=retention.MAX_DAYS, step=1, key="privacy_details_days"
            )
            b.number_input(
                "Keep summaries (days)", min_value=1, max_value=retention.MAX_DAYS, step=1, key="privacy_summary_days"
            )
            settings_form.save_button(form, "Save retention", _save_retention(db, actor))
        settings_form.result(form)
        status = retention.pruning_status(db, actor)
        done = status["marks"].get("execution_details")
        if done or status["rolledUpExecutions"]:
            until = (
                f"details removed up to {done['prunedUntil']:%Y-%m-%d}"
                if done and done["prunedUntil"]
                else "no details removed yet"
            )
            st.caption(
                f"Pruning so far: {until}; {status['rolledUpExecutions']:,} old executions kept as daily counts."
            )


def _save_retention(db, actor: Actor):
    def save(changed: dict) -> str:
        with unit_of_work(db) as uow:  # the other number as stored now, not as this page last showed it
            now = retention.get_retention(uow=uow, actor=actor)
            out = retention.set_retention(
                uow=uow,
                actor=actor,
                details_days=int(changed.get("privacy_details_days", now.details_days)),
                summary_days=int(changed.get("privacy_summary_days", now.summary_days)),
            )
        return f"Saved: details for {out.details_days} days, summaries for {out.summary_days} days."

    return save


# --------------------------------------------------------------------------- a member's data


def _member_card(db, actor: Actor) -> None:
    with st.container(border=True, key="privacy_card_member"):
        st.subheader("A member's data")
        st.caption(
            "Answer a request to see (GDPR art. 15) or delete (art. 17) what the studio stores about one person: "
            "events, executions, messages, leads and bookings with their phone number or e-mail address."
        )
        kind = st.segmented_control("Find by", ["Phone", "E-mail"], default="Phone", key="privacy_kind")
        value = st.text_input(
            "Phone number" if kind != "E-mail" else "E-mail address",
            key="privacy_contact",
            placeholder="+49 151 1234567" if kind != "E-mail" else "name@example.com",
        )
        contact = {"email": value} if kind == "E-mail" else {"phone": value}
        look, erase = st.columns(2)
        if look.button("Find and export", key="privacy_find", icon=":material/download:", width="stretch"):
            _find(db, actor, contact)
        if erase.button("Erase…", key="privacy_erase", icon=":material/delete_forever:", width="stretch"):
            try:
                with unit_of_work(db, read_only=True) as uow:
                    st.session_state["privacy_erase_counts"] = privacy.contact_counts(uow=uow, actor=actor, **contact)
                st.session_state["privacy_erase_contact"] = contact
                st.rerun()
            except EngineError as exc:
                st.error(exc.message)
        found = st.session_state.get("privacy_export")
        if found:
            _show_export(found)
        flash = st.session_state.pop("privacy_flash", None)
        if flash:
            st.success(flash, icon="✅")
        with unit_of_work(db, read_only=True) as uow:
            records = privacy.list_erasures(uow=uow, actor=actor, limit=20)
        if records:
            st.markdown("**Erasures done** (the contact is kept only as a hash)")
            st.dataframe(
                [
                    {
                        "When": r.erased_at,
                        "By": r.erased_by,
                        "Kind": r.kind,
                        "Contact hash": r.contact_hash[:16] + "…",
                        "Rows": sum(r.counts.values()),
                    }
                    for r in records
                ],
                hide_index=True,
                width="stretch",
            )


def _find(db, actor: Actor, contact: dict) -> None:
    with st.spinner("Searching every table…"):
        try:
            with unit_of_work(db, read_only=True) as uow:
                st.session_state["privacy_export"] = privacy.export_contact(uow=uow, actor=actor, **contact)
        except EngineError as exc:
            st.session_state.pop("privacy_export", None)
            st.error(exc.message)


def _show_export(doc: dict) -> None:
    counts = doc["counts"]
    total = sum(counts.values())
    st.markdown(
        f"**{doc['contact']['value']}**: {total} stored row(s)"
        if total
        else f"Nothing stored about **{doc['contact']['value']}**."
    )
    if total:
        st.dataframe(
            [{"What": TABLE_LABELS.get(k, k), "Rows": v} for k, v in counts.items() if v],
            hide_index=True,
            width="stretch",
        )
        st.download_button(
            "Download JSON",
            json.dumps(doc, indent=2, ensure_ascii=False),
            key="privacy_download",
            file_name=f"member-data-{doc['contact']['kind']}-{doc['exportedAt'][:10]}.json",
            mime="application/json",
            icon=":material/file_download:",
        )


def _close_dialog() -> None:
    st.session_state.pop("privacy_erase_counts", None)
    st.session_state.pop("privacy_erase_contact", None)


@st.dialog("Erase this member's data?", on_dismiss=_close_dialog)
def _confirm_erase(db, actor: Actor, contact: dict, counts: dict) -> None:
    shown = contact.get("phone") or contact.get("email")
    total = sum(counts.values())
    st.markdown(
        f"Every row about **{shown}** will be anonymised: phone, e-mail, names and what they wrote. "
        "Counts stay. The erasure is recorded with a hash of the contact. **This cannot be undone.**"
    )
    if total:
        st.dataframe(
            [{"What": TABLE_LABELS.get(k, k), "Rows": v} for k, v in counts.items() if v],
            hide_index=True,
            width="stretch",
        )
    else:
        st.info("Nothing is stored about this contact; the request is still recorded.")
    sure = st.checkbox(
        "I have exported what the member asked for, or they only asked for deletion", key="privacy_erase_sure"
    )
    cancel, go = st.columns(2)
    if cancel.button("Cancel", key="privacy_erase_cancel", width="stretch"):
        _close_dialog()
        st.rerun()
    if go.button("Erase", type="primary", key="privacy_erase_confirm", disabled=not sure, width="stretch"):
        with unit_of_work(db) as uow:
            record = privacy.erase_contact(uow=uow, actor=actor, **contact)
        _close_dialog()
        st.session_state.pop("privacy_export", None)
        st.session_state["privacy_flash"] = f"Erased {sum(record.counts.values())} row(s). Record {record.id}."
        st.rerun()


def _show_open_dialog(db, actor: Actor) -> None:
    counts = st.session_state.get("privacy_erase_counts")
    if counts is not None:
        _confirm_erase(db, actor, st.session_state["privacy_erase_contact"], counts)


# --------------------------------------------------------------------------- opt-outs


def _save_words(db, actor: Actor):
    def save(changed: dict) -> str:
        from engine import services

        with unit_of_work(db) as uow:  # the other list as stored now, not as this page last showed it
            stop, start = optout.opt_words(services.get_tenant(uow=uow, actor=actor).settings)
            optout.set_opt_words(
                uow=uow,
                actor=actor,
                stop_words=changed.get("privacy_stop_words", ", ".join(sorted(stop))),
                start_words=changed.get("privacy_start_words", ", ".join(sorted(start))),
            )
        labels = {"privacy_stop_words": "opt-out words", "privacy_start_words": "opt-in words"}
        return settings_form.saved(labels, changed)

    return save


def _opt_out_card(db, actor: Actor) -> None:
    tenant_settings = {}
    try:
        from engine import services

        with unit_of_work(db, read_only=True) as uow:
            tenant_settings = services.get_tenant(uow=uow, actor=actor).settings
    except EngineError:
        pass
    stop, start = optout.opt_words(tenant_settings)
    with st.container(border=True, key="privacy_card_optout"):
        st.subheader("Opt-outs")
        st.caption(
            "A member who writes one of these words as a whole message, on any channel, gets no more automated "
            "messages until they write an opt-in word. Suppressed messages show the reason in the outbox."
        )
        form = "privacy_words_form"
        settings_form.sync(
            form, {"privacy_stop_words": ", ".join(sorted(stop)), "privacy_start_words": ", ".join(sorted(start))}
        )
        with st.form(form, border=False):
            a, b = st.columns(2)
            a.text_input("Opt-out words", key="privacy_stop_words")
            b.text_input("Opt-in words", key="privacy_start_words")
            settings_form.save_button(form, "Save words", _save_words(db, actor))
        settings_form.result(form)
        with unit_of_work(db, read_only=True) as uow:
            rows = optout.list_opt_outs(uow=uow, actor=actor)
        if rows:
            st.dataframe(
                [
                    {"Contact": r.contact, "Word": r.word, "Channel": r.channel or "", "Since": r.changed_at}
                    for r in rows
                ],
                hide_index=True,
                width="stretch",
            )
        else:
            st.caption("Nobody has opted out.")
        with st.form("privacy_manual_form", border=False, clear_on_submit=True):
            a, b = st.columns([3, 1])
            who = a.text_input("Phone or e-mail", key="privacy_manual_contact")
            mode = b.selectbox("Set", ["Opted out", "Opted in"], key="privacy_manual_mode")
            if st.form_submit_button("Apply"):
                try:
                    with unit_of_work(db) as uow:
                        out = optout.set_opt_out(
                            uow=uow, actor=actor, contact=who, opted_out=mode == "Opted out", note="by staff"
                        )
                except EngineError as exc:
                    st.error(exc.message)
                else:
                    st.success(f"{out.contact} is now {'opted out' if out.opted_out else 'opted in'}.", icon="✅")
