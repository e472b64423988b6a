"""Settings page sections beyond channels: hours & limits, AI & knowledge, webhooks, API keys,
users. Each ``render(db, actor, tenant)`` lays out engine services; page state keys are
prefixed ``settings_``."""

from __future__ import annotations

import streamlit as st

from engine import services
from engine.errors import EngineError
from engine.services import member_admin
from engine.services import studio_settings as ss
from engine.uow import unit_of_work
from engine.workflow.business_hours import WEEKDAY_NAMES
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


def hours_section(db, actor, tenant) -> None:
    """Business hours, closed days, quiet hours and the frequency cap."""
    with unit_of_work(db, read_only=True) as uow:
        view = ss.get_studio_settings(uow=uow, actor=actor)
    with st.container(border=True, key="settings_card_hours"):
        st.subheader("Business hours")
        st.caption("Used by the condition “outside business hours” (time range → outside business hours).")
        with st.form("settings_hours_form", border=False):
            weekly = {}
            for day in DAY_ORDER:
                current = view.business_hours.get("weekly", {}).get(str(day))
                a, b, c = st.columns([2, 1, 1], vertical_alignment="bottom")
                is_open = a.checkbox(WEEKDAY_NAMES[day], value=bool(current), key=f"settings_hours_open_{day}")
                opens = b.text_input(
                    "Opens",
                    value=(current or {}).get("open", "07:00"),
                    key=f"settings_hours_from_{day}",
                    label_visibility="collapsed",
                )
                closes = c.text_input(
                    "Closes",
                    value=(current or {}).get("close", "21:00"),
                    key=f"settings_hours_to_{day}",
                    label_visibility="collapsed",
                )
                if is_open:
                    weekly[str(day)] = {"open": opens, "close": closes}
            closed = st.text_area(
                "Closed days (one date per line, e.g. 2026-12-24)",
                value="\n".join(view.business_hours.get("closedDays", [])),
                key="settings_hours_closed",
            )
            if st.form_submit_button("Save business hours", type="primary"):
                _saved(
                    db,
                    lambda uow: ss.save_business_hours(
                        uow=uow, actor=actor, hours={"weekly": weekly, "closedDays": closed.split()}
                    ),
                )
    with st.container(border=True, key="settings_card_limits"):
        st.subheader("Quiet hours and frequency cap")
        with st.form("settings_limits_form", border=False):
            a, b, c = st.columns(3)
            quiet = view.quiet_hours or {}
            start = a.text_input(
                "Quiet from (empty: off)",
                value=quiet.get("start", ""),
                key="settings_quiet_start",
                help="Automated messages in this period wait until it ends; direct replies are exempt.",
            )
            end = b.text_input("Quiet until", value=quiet.get("end", ""), key="settings_quiet_end")
            cap = c.number_input(
                "Max automated messages per contact and day (0: no cap)",
                min_value=0,
                max_value=100,
                value=int(view.frequency_cap or 0),
                key="settings_cap",
            )
            if st.form_submit_button("Save", type="primary"):
                _saved(
                    db,
                    lambda uow: (
                        ss.save_quiet_hours(uow=uow, actor=actor, start=start or None, end=end or None),
                        ss.save_frequency_cap(uow=uow, actor=actor, cap=int(cap) or None),
                    ),
                )


def ai_section(db, actor, tenant) -> None:
    """AI provider (with a test) and the knowledge base the built-in assistant answers from."""
    with unit_of_work(db, read_only=True) as uow:
        view = ss.get_studio_settings(uow=uow, actor=actor)
    with st.container(border=True, key="settings_card_ai"):
        st.subheader("AI provider")
        with st.form("settings_ai_form", border=False, clear_on_submit=True):
            choices = ["offline", "openai_compatible"]
            provider = st.radio(
                "Provider",
                choices,
                index=choices.index(view.ai.provider) if view.ai.provider in choices else 0,
                format_func={
                    "offline": "Built-in (answers from the knowledge base, nothing leaves the server)",
                    "openai_compatible": "OpenAI-compatible endpoint",
                }.get,
                key="settings_ai_provider",
            )
            a, b = st.columns(2)
            base = a.text_input(
                "Base URL", value=view.ai.base_url or "https://api.openai.com/v1", key="settings_ai_base"
            )
            model = b.text_input("Model", value=view.ai.model or "", key="settings_ai_model")
            key_label = (
                "API key ("
                + (
                    f"set on {view.ai.api_key.set_at:%d %b %Y}, type to replace"
                    if view.ai.api_key.set_at
                    else ("set, type to replace" if view.ai.api_key.set else "not set")
                )
                + ")"
            )
            api_key = st.text_input(key_label, type="password", value="", key="settings_ai_key")
            if st.form_submit_button("Save", type="primary"):
                _saved(
                    db,
                    lambda uow: ss.save_ai_provider(
                        uow=uow, actor=actor, provider=provider, base_url=base, model=model, api_key=api_key or None
                    ),
                )
        if st.button("Test the provider", key="settings_ai_test"):
            with st.spinner("Asking…"):
                with unit_of_work(db) as uow:
                    ok, answer = ss.check_ai_provider(uow=uow, actor=actor)
            (st.success if ok else st.error)(answer)
    with st.container(border=True, key="settings_card_kb"):
        st.subheader("Knowledge base")
        st.caption(
            f"{len(view.knowledge_entries)} question/answer entries. Tags are extra search words; "
            "members writing in English get the English answer where there is one."
        )
        edited = st.data_editor(
            [
                {
                    "question": e["question"],
                    "answer": e["answer"],
                    "tags": ", ".join(e.get("tags", [])),
                    "questionEn": e.get("questionEn", ""),
                    "answerEn": e.get("answerEn", ""),
                }
                for e in view.knowledge_entries
            ]
            or [{"question": "", "answer": "", "tags": "", "questionEn": "", "answerEn": ""}],
            num_rows="dynamic",
            width="stretch",
            key="settings_kb_editor",
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
            _saved(db, lambda uow: ss.save_knowledge_entries(uow=uow, actor=actor, entries=rows))
        upload = st.file_uploader(
            "Import CSV (columns question,answer,tags and optionally questionEn,answerEn; tags separated by ;)",
            type=["csv"],
            key="settings_kb_csv",
        )
        replace = st.checkbox("Replace the existing entries", key="settings_kb_replace")
        if upload is not None and st.button("Import", key="settings_kb_import"):
            _saved(
                db,
                lambda uow: ss.import_knowledge_csv(uow=uow, actor=actor, data=upload.getvalue(), replace=replace),
                "Imported.",
            )


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
        with st.form("settings_allow_form", border=False):
            allow = st.text_area(
                "Private hosts or networks webhooks may call (one per line; public addresses need no entry)",
                value="\n".join(view.webhook_allow_list),
                key="settings_allow_list",
            )
            if st.form_submit_button("Save", type="primary"):
                _saved(db, lambda uow: ss.save_webhook_allow_list(uow=uow, actor=actor, entries=allow.splitlines()))
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


def members_section(db, actor, tenant) -> None:
    """Change roles and remove members (the last owner is protected)."""
    with st.container(border=True, key="settings_card_member_admin"):
        st.subheader("Roles")
        with unit_of_work(db, read_only=True) as uow:
            members = services.list_members(uow=uow, actor=actor)
        for m in members:
            a, b, c = st.columns([4, 2, 1], vertical_alignment="center")
            a.markdown(f"**{m.email}** {('· ' + m.name) if m.name else ''}")
            roles = list(ROLE_LABELS)
            role = b.selectbox(
                "Role",
                roles,
                index=roles.index(m.role),
                format_func=lambda v: ROLE_LABELS.get(v, v),
                key=f"settings_member_role_{m.user_id}",
                label_visibility="collapsed",
            )
            if role != m.role:
                try:
                    with unit_of_work(db) as uow:
                        member_admin.change_role(uow=uow, actor=actor, user_id=m.user_id, role=role)
                except EngineError as exc:
                    b.error(exc.message)
                else:
                    st.rerun()
            if c.button("Remove", key=f"settings_member_remove_{m.user_id}"):
                _remove_dialog(db, actor, m)
