"""Sign in with e-mail and password; a user in several studios picks one."""

import streamlit as st

from engine.security.auth import LoginFailed, LoginThrottled
from ui import session
from ui.labels import ROLE_LABELS

_, middle, _ = st.columns([1, 1.2, 1])
with middle:
    st.space("large")
    st.markdown("## ⚡ Studio Automations")
    st.caption("Workflows for your fitness and yoga studio: when something happens, if it matches, do these steps.")
    tenants = st.session_state.get("auth_tenants")
    if tenants:
        with st.container(border=True, key="card_pick_tenant"):
            st.markdown("**Choose a studio**")
            ids = [t["id"] for t in tenants]
            labels = {t["id"]: f"{t['name']} · {ROLE_LABELS.get(t['role'], t['role'])}" for t in tenants}
            picked = st.radio(
                "Studio", ids, format_func=lambda v: labels.get(v, v), key="login_tenant", label_visibility="collapsed"
            )
            if st.button("Continue", type="primary", key="login_continue", width="stretch"):
                session.choose_tenant(picked)
                st.rerun()
            if st.button("Use another account", key="login_back", type="tertiary"):
                session.logout()
                st.rerun()
    else:
        with st.container(border=True, key="card_login"):
            with st.form("login_form", border=False):
                email = st.text_input("E-mail", key="login_email", placeholder="you@studio.com")
                password = st.text_input("Password", type="password", key="login_password")
                submitted = st.form_submit_button("Sign in", type="primary", width="stretch")
            if submitted:
                try:
                    session.login(email, password)
                except LoginThrottled as exc:
                    st.warning(exc.message, icon="⏳")
                except LoginFailed:
                    st.error("Wrong e-mail or password. Please try again.", icon="🔒")
                else:
                    st.rerun()
