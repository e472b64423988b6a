"""The calm, light look: rounded cards, soft shadows, one accent colour (see .streamlit/config.toml)."""

from __future__ import annotations

import streamlit as st

ACCENT = "#0A84FF"

_CSS = """
<style>
.block-container {padding-top: 2.2rem; max-width: 1280px;}
h1, h2, h3 {letter-spacing: -0.02em; font-weight: 650;}
div[data-testid="stVerticalBlockBorderWrapper"] > div[style*="border"],
div[data-testid="stVerticalBlock"][class*="border"],
div.st-key-card, div[class*="st-key-card"] {
  border-radius: 16px !important;
  box-shadow: 0 1px 2px rgba(0,0,0,0.04), 0 4px 16px rgba(0,0,0,0.04);
  background: #FFFFFF;
}
div[data-testid="stMetric"] {
  background: #F5F5F7; border-radius: 16px; padding: 14px 18px;
}
div[data-testid="stMetricValue"] {font-weight: 650;}
section[data-testid="stSidebar"] {background: #F5F5F7;}
.sa-pill {display: inline-block; padding: 2px 10px; border-radius: 999px; font-size: 0.8rem;
  background: #F5F5F7; color: #1D1D1F; margin-right: 4px; white-space: nowrap;}
.sa-pill.on {background: #E3F7E9; color: #1B7F3B;}
.sa-pill.off {background: #F2F2F2; color: #86868B;}
.sa-pill.accent {background: #E6F1FF; color: #0A64D6;}
.sa-muted {color: #86868B; font-size: 0.85rem;}
.sa-title {font-weight: 600; font-size: 1.02rem;}
/* the workflow rows' "⋯" menu: the icon alone, no chevron */
div[class*="st-key-workflows_menu_"] [data-testid="stMenuButtonButton"] div[aria-hidden="true"] {display: none;}
</style>
"""


def apply() -> None:
    st.html(_CSS)


def pill(text: str, kind: str = "") -> str:
    return f'<span class="sa-pill {kind}">{text}</span>'


def header(title: str, subtitle: str = "") -> None:
    st.title(title)
    if subtitle:
        st.caption(subtitle)
