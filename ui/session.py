"""Login state, the tenant context and the process-wide DB engine.

Session keys (prefix ``auth_``):
``auth_actor`` the :class:`engine.security.auth.Actor` of the chosen tenant (None = logged out),
``auth_user`` {"id", "email", "name"}, ``auth_tenants`` [{"id", "name", "role"}],
``auth_token`` this browser's session token (also in the ``sa_session`` cookie).

A reload or a second tab starts a new Streamlit session: :func:`actor` then resumes the
server-side session named by the cookie (``engine.security.auth.resume_session``). Each run re-checks
the token at most every ``RECHECK_SECONDS``, so signing out elsewhere, a password change or
the removal of the user ends this tab too.
"""

from __future__ import annotations

import json
import time

import streamlit as st
from sqlalchemy.engine import Engine

from engine import services
from engine.security import auth
from engine.security.auth import Actor
from engine.security.secrets import SecretKeyMissing, ensure_key
from engine.settings import get_settings
from engine.store.db import get_engine
from engine.uow import unit_of_work


@st.cache_resource(show_spinner=False)
def _engine(url: str) -> Engine:
    engine = get_engine(url)
    ensure_key(engine)  # refuses (not cached) when stored secrets have no key: never makes a new one
    return engine


def db() -> Engine:
    """The one SQLAlchemy engine of this process (per database URL)."""
    try:
        return _engine(get_settings().resolved_database_url())
    except SecretKeyMissing as exc:
        st.error(exc.message)
        st.stop()
        raise  # st.stop() raises; this keeps type checkers sure db() never returns None


COOKIE = "sa_session"
RECHECK_SECONDS = 15


def actor() -> Actor | None:
    """The signed-in actor of this tab, resumed from the session cookie after a reload."""
    if st.session_state.get("auth_user") is None:
        _resume(_cookie_token())
    elif (
        st.session_state.get("auth_token")
        and time.monotonic() - st.session_state.get("auth_checked", 0) > RECHECK_SECONDS
    ):
        with unit_of_work(db(), read_only=True) as uow:
            if auth.resume_session(uow=uow, token=st.session_state["auth_token"]) is None:
                _clear_state()
                st.session_state["auth_cookie"] = None
            else:
                st.session_state["auth_checked"] = time.monotonic()
    return st.session_state.get("auth_actor")


def _cookie_token() -> str | None:
    try:
        token = st.context.cookies.get(COOKIE)
    except Exception:  # noqa: BLE001 - no request context (bare script runs): nothing to resume
        return None
    return token if isinstance(token, str) and token else None


def _resume(token: str | None) -> None:
    with unit_of_work(db(), read_only=True) as uow:
        found = auth.resume_session(uow=uow, token=token) if token else None
    if found is None:
        return
    user, memberships, chosen = found
    _remember(user, memberships, token)
    if chosen or len(memberships) == 1:
        choose_tenant(chosen or memberships[0][0].id)


def _remember(user, memberships, token: str | None) -> None:
    st.session_state["auth_user"] = {"id": user.id, "email": user.email, "name": user.name}
    st.session_state["auth_tenants"] = [{"id": t.id, "name": t.name, "role": str(role)} for t, role in memberships]
    st.session_state["auth_token"] = token
    st.session_state["auth_checked"] = time.monotonic()


def write_cookie() -> None:
    """Store (or delete) the session cookie in the browser after a sign-in or sign-out."""
    if "auth_cookie" not in st.session_state:
        return
    token = st.session_state.pop("auth_cookie")
    age = auth.SESSION_HOURS * 3600 if token else 0
    st.html(
        f"<script>document.cookie = {json.dumps(COOKIE)} + '=' + {json.dumps(token or '')}"
        f" + '; path=/; max-age={age}; SameSite=Strict';</script>",
        unsafe_allow_javascript=True,
    )


def require_actor() -> Actor:
    current = actor()
    if current is None:
        st.stop()
    return current


def login(email: str, password: str) -> None:
    """Check the password; choose the tenant when there is only one. Raises LoginFailed/LoginThrottled."""
    with unit_of_work(db()) as uow:
        user, memberships = auth.authenticate(uow=uow, email=email, password=password)
        token = auth.start_session(uow=uow, user_id=user.id)
    _remember(user, memberships, token)
    st.session_state["auth_cookie"] = token
    if len(memberships) == 1:
        choose_tenant(memberships[0][0].id)


def choose_tenant(tenant_id: str) -> None:
    user = st.session_state["auth_user"]
    tenant = next(t for t in st.session_state["auth_tenants"] if t["id"] == tenant_id)
    st.session_state["auth_actor"] = Actor(
        tenant_id=tenant["id"], user_id=user["id"], role=tenant["role"], email=user["email"]
    )
    st.session_state["auth_tenant_name"] = tenant["name"]
    if st.session_state.get("auth_token"):
        with unit_of_work(db()) as uow:
            auth.choose_session_tenant(uow=uow, token=st.session_state["auth_token"], tenant_id=tenant["id"])


def logout() -> None:
    """Sign this browser out: the server forgets the session and the cookie is deleted."""
    with unit_of_work(db()) as uow:
        auth.end_session(uow=uow, token=st.session_state.get("auth_token"))
    _clear_state()
    st.session_state["auth_cookie"] = None


def _clear_state() -> None:
    for key in list(st.session_state.keys()):
        del st.session_state[key]


def tenant_name() -> str:
    name = st.session_state.get("auth_tenant_name")
    who = actor()
    if not name and who is not None:
        with unit_of_work(db(), read_only=True) as uow:
            name = services.get_tenant(uow=uow, actor=who).name
        st.session_state["auth_tenant_name"] = name
    return name or ""


def tenant_timezone() -> str:
    current = actor()
    if current is None:
        return "UTC"
    try:
        with unit_of_work(db(), read_only=True) as uow:
            return services.get_tenant(uow=uow, actor=current).timezone
    except Exception:  # noqa: BLE001 - a preview falls back to UTC rather than failing the page
        return "UTC"
