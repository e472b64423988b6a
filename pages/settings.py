"""Studio settings, channels, users and the audit log: owners only.

Each section is one entry of ``SECTIONS`` (title, render(db, actor, tenant)); a new section
is one line there.
"""

from zoneinfo import available_timezones

import streamlit as st

from engine import services
from engine.errors import EngineError
from engine.security.auth import ADMIN
from engine.uow import unit_of_work
from ui import session, settings_channels, settings_data, settings_form, settings_sections
from ui.insights_settings import insights_settings_card
from ui.labels import ROLE_LABELS

actor = session.require_actor()
if not actor.can(ADMIN):
    st.info("Only owners can change studio settings and users.", icon="🔒")
    st.stop()
db = session.db()
with unit_of_work(db, read_only=True) as uow:
    tenant = services.get_tenant(uow=uow, actor=actor)

st.title("Settings & users")


def _save_studio(db, actor):
    def save(changed: dict) -> str:
        with unit_of_work(db) as uow:
            out = services.update_tenant_settings(
                uow=uow, actor=actor, name=changed.get("settings_name"), timezone=changed.get("settings_timezone")
            )
        st.session_state["auth_tenant_name"] = out.name
        return settings_form.saved({"settings_name": "studio name", "settings_timezone": "timezone"}, changed)

    return save


def studio_section(db, actor, tenant) -> None:
    zones = sorted(available_timezones())
    with st.container(border=True, key="card_settings"):
        st.subheader("Studio")
        form = "settings_form"
        settings_form.sync(
            form,
            {
                "settings_name": tenant.name,
                "settings_timezone": tenant.timezone if tenant.timezone in zones else zones[0],
            },
        )
        with st.form(form, border=False):
            st.text_input("Studio name", key="settings_name")
            st.selectbox(
                "Timezone",
                zones,
                key="settings_timezone",
                help="Schedules, time-of-day and weekday conditions use this timezone.",
            )
            settings_form.save_button(form, "Save settings", _save_studio(db, actor))
        settings_form.result(form)


def users_section(db, actor, tenant) -> None:
    with st.container(border=True, key="card_users"):
        st.subheader("Add a user")
        st.caption("Owners can do everything; editors build, run and enable workflows; analysts only look.")
        with st.form("settings_user_form", border=False, clear_on_submit=True):
            a, b = st.columns(2)
            email = a.text_input("E-mail", key="settings_user_email")
            role = b.selectbox(
                "Role",
                list(ROLE_LABELS),
                index=1,
                format_func=lambda v: ROLE_LABELS.get(v, v),
                key="settings_user_role",
            )
            password = st.text_input(
                "Initial password (at least 8 characters; not needed for someone who already has a login)",
                type="password",
                key="settings_user_password",
            )
            if st.form_submit_button("Add user", type="primary"):
                try:
                    with unit_of_work(db) as uow:
                        user = services.add_member(
                            uow=uow, actor=actor, email=email, password=password or None, role=role
                        )
                except EngineError as exc:
                    st.error(exc.message)
                else:
                    st.success(f"{user.email} can now sign in as {ROLE_LABELS[role].lower()}.", icon="✅")

    with st.container(border=True, key="card_members"):
        st.subheader("Members")
        with unit_of_work(db, read_only=True) as uow:
            st.dataframe(
                [
                    {"E-mail": m.email, "Name": m.name, "Role": ROLE_LABELS.get(m.role, m.role)}
                    for m in services.list_members(uow=uow, actor=actor)
                ],
                hide_index=True,
                width="stretch",
            )


def all_users_section(db, actor, tenant) -> None:
    users_section(db, actor, tenant)
    settings_sections.members_section(db, actor, tenant)


SECTIONS = [
    ("Studio", studio_section),
    ("Channels", settings_channels.render),
    ("Hours & limits", settings_sections.hours_section),
    ("AI & knowledge", settings_sections.ai_section),
    ("Webhooks", settings_sections.webhooks_section),
    ("API keys", settings_sections.api_keys_section),
    ("Users", all_users_section),
    ("Insights", insights_settings_card),  # analysts see contact details; minutes saved and goals per workflow
    ("Data & privacy", lambda db, actor, tenant: settings_data.render(actor)),  # retention, a member's data, opt-outs
    ("Audit log", settings_channels.render_audit),
]

for tab, (_, render) in zip(st.tabs([title for title, _ in SECTIONS]), SECTIONS, strict=True):
    with tab:
        render(db, actor, tenant)
