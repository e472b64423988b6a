"""Studio Automations admin app: page config, login gate, tenant context and navigation."""

import streamlit as st

from engine.security.auth import ADMIN, EDIT
from ui import session, style
from ui.labels import ROLE_LABELS

st.set_page_config(page_title="Studio Automations", page_icon="⚡", layout="wide")
style.apply()

session.db()  # the database and its secret key first: without the key the app refuses, naming its path
actor = session.actor()
session.write_cookie()


def app_pages(can) -> dict[str, list]:
    """The navigation for a role (``can(permission)``)."""
    pages = {
        "Automations": [
            st.Page("pages/workflows.py", title="Workflows", icon=":material/bolt:", default=True),
            *(
                [
                    st.Page("pages/builder.py", title="Builder", icon=":material/construction:"),
                    st.Page("pages/templates.py", title="Templates", icon=":material/apps:"),
                ]
                if can(EDIT)
                else []
            ),
            st.Page("pages/history.py", title="Version history", icon=":material/history:"),
            st.Page("pages/console.py", title="Test console", icon=":material/forum:"),
        ],
        "Insights": [
            st.Page("pages/insights.py", title="Insights", icon=":material/insights:"),
            st.Page("pages/executions.py", title="Executions", icon=":material/monitoring:"),
            st.Page("pages/outbox.py", title="Outbox", icon=":material/outbox:"),
        ],
    }
    if can(ADMIN):
        pages["Studio"] = [st.Page("pages/settings.py", title="Settings & users", icon=":material/settings:")]
    return pages


if actor is None:
    # Every page's address shows the sign-in form, so a direct link (/builder,
    # /executions?id=...) opens that page once signed in instead of "Page not found".
    paths = [p.url_path for group in app_pages(lambda _: True).values() for p in group if p.url_path]
    sign_in = [st.Page("pages/login.py", title="Sign in", icon=":material/login:", default=True)]
    sign_in += [st.Page("pages/login.py", title="Sign in", icon=":material/login:", url_path=path) for path in paths]
    st.navigation(sign_in, position="hidden").run()
    st.stop()

pages = app_pages(actor.can)

with st.sidebar:
    st.markdown(f"**{session.tenant_name()}**")
    st.caption(f"{actor.email or 'signed in'} · {ROLE_LABELS.get(str(actor.role), actor.role)}")
    tenants = st.session_state.get("auth_tenants", [])
    if len(tenants) > 1:
        ids = [t["id"] for t in tenants]
        names = {t["id"]: f"{t['name']} ({ROLE_LABELS.get(t['role'], t['role'])})" for t in tenants}
        picked = st.selectbox(
            "Studio",
            ids,
            index=ids.index(actor.tenant_id),
            format_func=lambda v: names.get(v, v),
            key="auth_switch_tenant",
        )
        if picked != actor.tenant_id:
            session.choose_tenant(picked)
            st.rerun()
    if st.button("Log out", icon=":material/logout:", key="auth_logout"):
        session.logout()
        st.rerun()

st.navigation(pages).run()
