"""Studio settings (name, timezone) and users: owners only."""

from zoneinfo import available_timezones

import streamlit as st

from engine import services
from engine.auth import ADMIN
from engine.errors import EngineError
from ui import session
from ui.insights_settings import insights_settings_card
from ui.labels import ROLE_LABELS

actor = session.require_actor()
if not actor.can(ADMIN):
    st.info("Only owners can change studio settings and users.", icon="🔒")
    st.stop()
db = session.db()
tenant = services.get_tenant(db, actor)

st.title("Settings & users")

with st.container(border=True, key="card_settings"):
    st.subheader("Studio")
    with st.form("settings_form", border=False):
        name = st.text_input("Studio name", value=tenant.name, key="settings_name")
        zones = sorted(available_timezones())
        timezone = st.selectbox("Timezone", zones, index=zones.index(tenant.timezone) if tenant.timezone in zones else 0,
                                key="settings_timezone", help="Schedules, time-of-day and weekday conditions use this timezone.")
        if st.form_submit_button("Save settings", type="primary"):
            try:
                out = services.update_tenant_settings(db, actor, name=name, timezone=timezone)
            except EngineError as exc:
                st.error(exc.message)
            else:
                st.session_state["auth_tenant_name"] = out.name
                st.success("Saved.", icon="✅")

insights_settings_card(db, actor, tenant)

with st.container(border=True, key="card_users"):
    st.subheader("Add a user")
    st.caption("Owners can do everything; editors build, run and enable workflows; analysts only look.")
    with st.form("settings_user_form", border=False, clear_on_submit=True):
        a, b = st.columns(2)
        email = a.text_input("E-mail", key="settings_user_email")
        role = b.selectbox("Role", list(ROLE_LABELS), index=1, format_func=ROLE_LABELS.get, key="settings_user_role")
        password = st.text_input("Initial password (at least 8 characters; not needed for someone who already has a login)",
                                 type="password", key="settings_user_password")
        if st.form_submit_button("Add user", type="primary"):
            try:
                user = services.add_member(db, actor, email=email, password=password or None, role=role)
            except EngineError as exc:
                st.error(exc.message)
            else:
                st.success(f"{user.email} can now sign in as {ROLE_LABELS[role].lower()}.", icon="✅")

with st.container(border=True, key="card_members"):
    st.subheader("Members")
    st.dataframe([{"E-mail": m.email, "Name": m.name, "Role": ROLE_LABELS.get(m.role, m.role)}
                  for m in services.list_members(db, actor)], hide_index=True, use_container_width=True)
