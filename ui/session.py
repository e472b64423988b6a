"""Login state, the tenant context and the process-wide DB engine.

Session keys (prefix ``auth_``):
``auth_actor`` the :class:`engine.auth.Actor` of the chosen tenant (None = logged out),
``auth_user`` {"id", "email", "name"}, ``auth_tenants`` [{"id", "name", "role"}].
"""

from __future__ import annotations

import streamlit as st
from sqlalchemy.engine import Engine

from engine import auth, services
from engine.auth import Actor
from engine.settings import get_settings
from engine.store.db import get_engine


@st.cache_resource(show_spinner=False)
def _engine(url: str) -> Engine:
    return get_engine(url)


def db() -> Engine:
    """The one SQLAlchemy engine of this process (per database URL)."""
    return _engine(get_settings().resolved_database_url())


def actor() -> Actor | None:
    return st.session_state.get("auth_actor")


def require_actor() -> Actor:
    current = actor()
    if current is None:
        st.stop()
    return current


def login(email: str, password: str) -> None:
    """Check the password; choose the tenant when there is only one. Raises LoginFailed/LoginThrottled."""
    user, memberships = auth.authenticate(db(), email, password)
    st.session_state["auth_user"] = {"id": user.id, "email": user.email, "name": user.name}
    st.session_state["auth_tenants"] = [{"id": t.id, "name": t.name, "role": str(role)} for t, role in memberships]
    if len(memberships) == 1:
        choose_tenant(memberships[0][0].id)


def choose_tenant(tenant_id: str) -> None:
    user = st.session_state["auth_user"]
    tenant = next(t for t in st.session_state["auth_tenants"] if t["id"] == tenant_id)
    st.session_state["auth_actor"] = Actor(tenant_id=tenant["id"], user_id=user["id"], role=tenant["role"], email=user["email"])
    st.session_state["auth_tenant_name"] = tenant["name"]


def logout() -> None:
    for key in list(st.session_state.keys()):
        del st.session_state[key]


def tenant_name() -> str:
    name = st.session_state.get("auth_tenant_name")
    if not name and actor() is not None:
        name = services.get_tenant(db(), actor()).name
        st.session_state["auth_tenant_name"] = name
    return name or ""


def tenant_timezone() -> str:
    current = actor()
    if current is None:
        return "UTC"
    try:
        return services.get_tenant(db(), current).timezone
    except Exception:  # noqa: BLE001 - a preview falls back to UTC rather than failing the page
        return "UTC"
