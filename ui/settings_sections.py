"""Settings page sections beyond channels: hours & limits, AI & knowledge, webhooks, API keys,
users. Each ``render(db, actor, tenant)`` lays out engine services; page state keys are
prefixed ``settings_``."""

from __future__ import annotations

from typing import Any

import streamlit as st

from engine import services
from engine.errors import EngineError
from engine.services import member_admin
from engine.services import studio_settings as ss
from engine.uow import unit_of_work
from engine.workflow.business_hours import WEEKDAY_NAMES
from ui import settings_form
from ui.labels import ROLE_LABELS

DAY_ORDER = (1, 2, 3, 4, 5, 6, 0)  # Monday first on screen; stored as 0 = Sunday


def _saved(db, call, message: str = "Saved.") -> bool:
    """``call(uow)`` in one unit of work: everything it saves commits together, or nothing does."""
    try:
        with unit_of_work(db) as uow:
            call(uow)
    except EngineError as exc:
        st.error(exc.message, icon="⚠️")
        return False
    st.success(message, icon="✅")
    return True


def _hours_shown(view: ss.StudioSettingsView) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    for day in DAY_ORDER:
        current = view.business_hours.get("weekly", {}).get(str(day))
        shown[f"settings_hours_open_{day}"] = bool(current)
        shown[f"settings_hours_from_{day}"] = (current or {}).get("open", "07:00")
        shown[f"settings_hours_to_{day}"] = (current or {}).get("close", "21:00")
    shown["settings_hours_closed"] = "\n".join(view.business_hours.get("closedDays", []))
    return shown


def _save_hours(db, actor):
    def save(changed: dict[str, Any]) -> str:
        state = st.session_state
        changes: dict[str, Any] = {}
        for day in DAY_ORDER:  # a day whose checkbox or times changed: that day only
            if any(k.endswith(f"_{day}") for k in changed):
                is_open = state[f"settings_hours_open_{day}"]
                hours = {"open": state[f"settings_hours_from_{day}"], "close": state[f"settings_hours_to_{day}"]}
                changes[f"businessHours.weekly.{day}"] = hours if is_open else None
        if "settings_hours_closed" in changed:
            changes["businessHours.closedDays"] = changed["settings_hours_closed"].split()
        with unit_of_work(db) as uow:
            ss.update_settings(uow=uow, actor=actor, changes=changes, area="businessHours")
        days = [WEEKDAY_NAMES[d] for d in DAY_ORDER if f"businessHours.weekly.{d}" in changes]
        return "Saved: " + ", ".join(days + (["closed days"] if "settings_hours_closed" in changed else [])) + "."

    return save


LIMIT_LABELS = {
    "settings_quiet_start": "quiet from",
    "settings_quiet_end": "quiet until",
    "settings_cap": "frequency cap",
}


def _save_limits(db, actor):
    def save(changed: dict[str, Any]) -> str:
        state = st.session_state
        changes: dict[str, Any] = {}
        start, end = state["settings_quiet_start"].strip(), state["settings_quiet_end"].strip()
        if "settings_quiet_start" in changed or "settings_quiet_end" in changed:
            if not start and not end:
                changes["quietHours"] = None  # both emptied: quiet hours off
            else:
                changes.update(
                    {
                        f"quietHours.{k}": v
                        for k, v in (("start", start), ("end", end))
                        if f"settings_quiet_{k}" in changed
                    }
                )
        if "settings_cap" in changed:
            changes["frequencyCap"] = int(changed["settings_cap"]) or None
        with unit_of_work(db) as uow:
            ss.update_settings(uow=uow, actor=actor, changes=changes)
        return settings_form.saved(LIMIT_LABELS, changed)

    return save


def hours_section(db, actor, tenant) -> None:
    """Business hours, closed days, quiet hours and the frequency cap."""
    with unit_of_work(db, read_only=True) as uow:
        view = ss.get_studio_settings(uow=uow, actor=actor)
    with st.container(border=True, key="settings_card_hours"):
        st.subheader("Business hours")
        st.caption("Used by the condition “outside business hours” (time range → outside business hours).")
        form = "settings_hours_form"
        settings_form.sync(form, _hours_shown(view))
        with st.form(form, border=False):
            for day in DAY_ORDER:
                a, b, c = st.columns([2, 1, 1], vertical_alignment="bottom")
                a.checkbox(WEEKDAY_NAMES[day], key=f"settings_hours_open_{day}")
                b.text_input("Opens", key=f"settings_hours_from_{day}", label_visibility="collapsed")
                c.text_input("Closes", key=f"settings_hours_to_{day}", label_visibility="collapsed")
            st.text_area("Closed days (one date per line, e.g. 2026-12-24)", key="settings_hours_closed")
            settings_form.save_button(form, "Save business hours", _save_hours(db, actor))
        settings_form.result(form)
    with st.container(border=True, key="settings_card_limits"):
        st.subheader("Quiet hours and frequency cap")
        form = "settings_limits_form"
        quiet = view.quiet_hours or {}
        settings_form.sync(
            form,
            {
                "settings_quiet_start": quiet.get("start", ""),
                "settings_quiet_end": quiet.get("end", ""),
                "settings_cap": int(view.frequency_cap or 0),
            },
        )
        with st.form(form, border=False):
            a, b, c = st.columns(3)
            a.text_input(
                "Quiet from (empty: off)",
                key="settings_quiet_start",
                help="Automated messages in this period wait until it ends; direct replies are exempt.",
            )
            b.text_input("Quiet until", key="settings_quiet_end")
            c.number_input(
                "Max automated messages per contact and day (0: no cap)",
                min_value=0,
                max_value=100,
                step=1,
                key="settings_cap",
            )
            settings_form.save_button(form, "Save", _save_limits(db, actor))
        settings_form.result(form)


AI_LABELS = {
    "settings_ai_provider": "provider",
    "settings_ai_base": "base URL",
    "settings_ai_model": "model",
    "settings_ai_key": "API key",
}


def _ai_key() -> str:
    return settings_form.key("settings_ai_form", "settings_ai_key", secret=True)


def _save_ai(db, actor):
    def save(changed: dict[str, Any]) -> str:
        with unit_of_work(db) as uow:
            ss.save_ai_provider(
                uow=uow,
                actor=actor,
                provider=changed.get("settings_ai_provider"),
                base_url=changed.get("settings_ai_base"),
                model=changed.get("settings_ai_model"),
                api_key=changed.get(_ai_key()) or None,
            )
        return settings_form.saved(AI_LABELS | {_ai_key(): "API key"}, changed)

    return save


def ai_section(db, actor, tenant) -> None:
    """AI provider (with a test) and the knowledge base the built-in assistant answers from."""
    with unit_of_work(db, read_only=True) as uow:
        view = ss.get_studio_settings(uow=uow, actor=actor)
    with st.container(border=True, key="settings_card_ai"):
        st.subheader("AI provider")
        form = "settings_ai_form"
        choices = ["offline", "openai_compatible"]
        settings_form.sync(
            form,
            {
                "settings_ai_provider": view.ai.provider if view.ai.provider in choices else "offline",
                "settings_ai_base": view.ai.base_url or "",
                "settings_ai_model": view.ai.model or "",
                _ai_key(): "",
            },
        )
        with st.form(form, border=False):
            st.radio(
                "Provider",
                choices,
                format_func={
                    "offline": "Built-in (answers from the knowledge base, nothing leaves the server)",
                    "openai_compatible": "OpenAI-compatible endpoint",
                }.get,
                key="settings_ai_provider",
            )
            a, b = st.columns(2)
            a.text_input("Base URL", key="settings_ai_base", placeholder="https://api.openai.com/v1 (when empty)")
            b.text_input("Model", key="settings_ai_model")
            key_label = (
                "API key ("
                + (
                    f"set on {view.ai.api_key.set_at:%d %b %Y}, type to replace"
                    if view.ai.api_key.set_at
                    else ("set, type to replace" if view.ai.api_key.set else "not set")
                )
                + ")"
            )
            st.text_input(key_label, type="password", key=_ai_key())
            settings_form.save_button(form, "Save", _save_ai(db, actor))
        settings_form.result(form)
        if st.button("Test the provider", key="settings_ai_test"):
            with st.spinner("Asking…"):
                with unit_of_work(db) as uow:
                    ok, answer = ss.check_ai_provider(uow=uow, actor=actor)
            (st.success if ok else st.error)(answer)
    with st.container(border=True, key="settings_card_kb"):
        _knowledge_base(db, actor, view)


def _kb_rows(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "question": e["question"],
            "answer": e["answer"],
            "tags": ", ".join(e.get("tags", [])),
            "questionEn": e.get("questionEn", ""),
            "answerEn": e.get("answerEn", ""),
        }
        for e in entries
    ]


def _knowledge_base(db, actor, view: ss.StudioSettingsView) -> None:
    st.subheader("Knowledge base")
    st.caption(
        f"{len(view.knowledge_entries)} question/answer entries. Tags are extra search words; "
        "members writing in English get the English answer where there is one."
    )
    # A new editor (key) after every save: the old one's edits would be applied again to the saved rows.
    version = st.session_state.setdefault("settings_kb_version", 0)
    edited = st.data_editor(
        _kb_rows(view.knowledge_entries)
        or [{"question": "", "answer": "", "tags": "", "questionEn": "", "answerEn": ""}],
        num_rows="dynamic",
        width="stretch",
        key=f"settings_kb_editor_{version}",
        column_config={
            "question": "Question",
            "answer": "Answer",
            "tags": "Tags",
            "questionEn": "Question (English)",
            "answerEn": "Answer in English (optional)",
        },
    )
    if st.button("Save entries", key="settings_kb_save", type="primary"):
        rows = [r for r in edited if (r.get("question") or "").strip() or (r.get("answer") or "").strip()]
        if rows == _kb_rows(view.knowledge_entries):
            st.info("Nothing changed.")
        elif _saved(
            db,
            lambda uow: ss.save_knowledge_entries(uow=uow, actor=actor, entries=rows, expected=view.knowledge_entries),
        ):
            _next_editor("settings_kb_version", f"Saved: {len(rows)} entries.")
    flash = st.session_state.pop("settings_kb_flash", None)
    if flash:
        st.success(flash, icon="✅")
    upload = st.file_uploader(
        "Import CSV (columns question,answer,tags and optionally questionEn,answerEn; tags separated by ;)",
        type=["csv"],
        key="settings_kb_csv",
    )
    replace = st.checkbox("Replace the existing entries", key="settings_kb_replace")
    data = upload.getvalue() if upload is not None else b""
    imported = bool(data) and st.button("Import", key="settings_kb_import")
    if imported and _saved(
        db, lambda uow: ss.import_knowledge_csv(uow=uow, actor=actor, data=data, replace=replace), "Imported."
    ):
        _next_editor("settings_kb_version", "Imported.")


def _next_editor(version_key: str, message: str) -> None:
    """Show the stored rows in a fresh editor, and say what was saved."""
    st.session_state[version_key] = st.session_state.get(version_key, 0) + 1
    st.session_state["settings_kb_flash"] = message
    st.rerun()


@st.dialog("New signing secret")
def _rotate_dialog(db, actor) -> None:
    st.write("Outgoing webhooks will be signed with a new secret. The current one keeps working for 24 hours.")
    if "settings_new_signing_secret" in st.session_state:
        st.warning("Copy it now: it is not shown again.")
        st.code(st.session_state["settings_new_signing_secret"], language=None)
        if st.button("Done", key="settings_rotate_done"):
            del st.session_state["settings_new_signing_secret"]
            st.rerun()
    elif st.button("Rotate now", type="primary", key="settings_rotate_confirm"):
        with unit_of_work(db) as uow:
            st.session_state["settings_new_signing_secret"] = ss.rotate_signing_secret(uow=uow, actor=actor)
        st.rerun(scope="fragment")


def webhooks_section(db, actor, tenant) -> None:
    """Webhook allow-list and the signing secret."""
    with unit_of_work(db, read_only=True) as uow:
        view = ss.get_studio_settings(uow=uow, actor=actor)
    with st.container(border=True, key="settings_card_webhooks"):
        st.subheader("Outgoing webhooks")
        form = "settings_allow_form"
        settings_form.sync(form, {"settings_allow_list": "\n".join(view.webhook_allow_list)})
        with st.form(form, border=False):
            st.text_area(
                "Private hosts or networks webhooks may call, one per line, optionally with :port "
                "(e.g. crm.local, 10.0.0.0/8, 127.0.0.1:8080); public addresses need no entry",
                key="settings_allow_list",
            )

            def save(changed: dict[str, Any]) -> str:
                with unit_of_work(db) as uow:
                    saved = ss.save_webhook_allow_list(
                        uow=uow, actor=actor, entries=changed["settings_allow_list"].splitlines()
                    )
                return f"Saved: {len(saved)} allowed host(s) or network(s)."

            settings_form.save_button(form, "Save", save)
        settings_form.result(form)
        state = view.signing_secret
        st.markdown(
            "**Signing secret** (header `X-Studio-Signature`): "
            + (f"set on {state.set_at:%d %b %Y}" if state.set_at else ("set" if state.set else "not set"))
        )
        if view.previous_secret_valid_until:
            st.caption(f"The previous secret stays valid until {view.previous_secret_valid_until:%d %b %Y %H:%M} UTC.")
        if st.button("Rotate signing secret", key="settings_rotate"):
            _rotate_dialog(db, actor)


@st.dialog("Revoke API key")
def _revoke_dialog(db, actor, key) -> None:
    st.write(f"Revoke **{key.name}** ({key.prefix}…)? Programs using it stop working at once.")
    if st.button("Revoke", type="primary", key="settings_key_revoke_confirm"):
        with unit_of_work(db) as uow:
            services.revoke_api_key(uow=uow, actor=actor, key_id=key.id)
        st.rerun()


def api_keys_section(db, actor, tenant) -> None:
    """Create (shown once), list with last use, revoke."""
    with st.container(border=True, key="settings_card_keys"):
        st.subheader("API keys")
        with st.form("settings_key_form", border=False, clear_on_submit=True):
            a, b = st.columns(2)
            name = a.text_input("Name", key="settings_key_name", placeholder="e.g. Website booking form")
            role = b.selectbox(
                "Role", list(ROLE_LABELS), index=1, format_func=lambda v: ROLE_LABELS.get(v, v), key="settings_key_role"
            )
            if st.form_submit_button("Create key", type="primary"):
                try:
                    with unit_of_work(db) as uow:
                        _, secret = services.create_api_key(uow=uow, actor=actor, name=name, role=role)
                except EngineError as exc:
                    st.error(exc.message, icon="⚠️")
                else:
                    st.warning("Copy the key now: it is not shown again.")
                    st.code(secret, language=None)
        with unit_of_work(db, read_only=True) as uow:
            keys = services.list_api_keys(uow=uow, actor=actor)
        for key in keys:
            a, b = st.columns([5, 1], vertical_alignment="center")
            used = f"last used {key.last_used_at:%d %b %Y %H:%M}" if key.last_used_at else "never used"
            status = f"revoked {key.revoked_at:%d %b %Y}" if key.revoked_at else used
            a.markdown(f"**{key.name}** · `{key.prefix}…` · {ROLE_LABELS.get(key.role, key.role)} · {status}")
            if not key.revoked_at and b.button("Revoke", key=f"settings_key_revoke_{key.id}"):
                _revoke_dialog(db, actor, key)
        if not keys:
            st.caption("No keys yet.")


@st.dialog("Remove user")
def _remove_dialog(db, actor, member) -> None:
    st.write(
        f"Remove **{member.email}** from this studio? Their sessions end now; their login stays for other studios."
    )
    if st.button("Remove", type="primary", key="settings_member_remove_confirm"):
        try:
            with unit_of_work(db) as uow:
                member_admin.remove_member(uow=uow, actor=actor, user_id=member.user_id)
        except EngineError as exc:
            st.error(exc.message)
        else:
            st.rerun()


def _change_role(db, actor, member) -> None:
    """A role picked by the owner (on_change: only a change they made, never a stale widget's value)."""
    key = f"settings_member_role_{member.user_id}"
    try:
        with unit_of_work(db) as uow:
            member_admin.change_role(uow=uow, actor=actor, user_id=member.user_id, role=st.session_state[key])
    except EngineError as exc:
        st.session_state[key] = member.role  # shows the role that stayed
        st.session_state[f"settings_member_error_{member.user_id}"] = exc.message


def members_section(db, actor, tenant) -> None:
    """Change roles and remove members (the last owner is protected)."""
    with st.container(border=True, key="settings_card_member_admin"):
        st.subheader("Roles")
        with unit_of_work(db, read_only=True) as uow:
            members = services.list_members(uow=uow, actor=actor)
        settings_form.sync("settings_members", {f"settings_member_role_{m.user_id}": m.role for m in members})
        roles = list(ROLE_LABELS)
        for m in members:
            a, b, c = st.columns([4, 2, 1], vertical_alignment="center")
            a.markdown(f"**{m.email}** {('· ' + m.name) if m.name else ''}")
            b.selectbox(
                "Role",
                roles,
                format_func=lambda v: ROLE_LABELS.get(v, v),
                key=f"settings_member_role_{m.user_id}",
                label_visibility="collapsed",
                on_change=_change_role,
                args=(db, actor, m),
            )
            error = st.session_state.pop(f"settings_member_error_{m.user_id}", None)
            if error:
                b.error(error)
            if c.button("Remove", key=f"settings_member_remove_{m.user_id}"):
                _remove_dialog(db, actor, m)
