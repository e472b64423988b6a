"""Studio Automations admin app (placeholder until the UI issue lands): lists the demo workflows."""

import streamlit as st

from engine import services
from engine.auth import system_actor
from engine.store.db import get_engine

st.set_page_config(page_title="Studio Automations", page_icon="⚡", layout="wide")


@st.cache_resource
def db():
    return get_engine()


st.title("Studio Automations")
tenant = services.find_tenant(db(), "demo")
page = services.list_workflows(db(), system_actor(tenant.id), include_stats=True)
st.caption(f"{tenant.name} · {page.stats.total_workflows} workflows, {page.stats.enabled_workflows} enabled")
for wf in page.items:
    st.markdown(f"**{wf.name}** — `{wf.trigger['type']}` — {'enabled' if wf.enabled else 'disabled'}")
