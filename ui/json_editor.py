"""JSON mode of the builder: an Ace editor over the same definition dict the form edits."""

from __future__ import annotations

import json

import streamlit as st
from streamlit_ace import st_ace

from ui import builder_state


def pretty(definition: dict) -> str:
    return json.dumps(definition, indent=2, ensure_ascii=False)


def json_editor() -> None:
    """Every edit that parses replaces the definition; a syntax error names line and column."""
    text = pretty(builder_state.definition())
    edited = st_ace(
        value=text,
        language="json",
        theme="chrome",
        keybinding="vscode",
        font_size=13,
        tab_size=2,
        min_lines=28,
        max_lines=60,
        wrap=True,
        auto_update=True,
        show_gutter=True,
        key=f"builder_ace_{builder_state.revision()}",
    )
    st.caption("Edits apply as you type; problems are listed with their JSON path on the right.")
    if not isinstance(edited, str) or edited == text:
        return
    try:
        parsed = json.loads(edited)
    except json.JSONDecodeError as exc:
        st.error(
            f"JSON syntax error at line {exc.lineno}, column {exc.colno}: {exc.msg}. The last valid version is kept.",
            icon="⛔",
        )
        return
    if not isinstance(parsed, dict):
        st.error('A workflow is a JSON object: { "name": …, "trigger": …, "actions": [ … ] }', icon="⛔")
        return
    st.session_state[builder_state.DEF] = parsed  # same dict for the form; no revision bump while typing
