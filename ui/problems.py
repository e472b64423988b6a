"""Validation problems with their JSON path: errors block saving, warnings don't."""

from __future__ import annotations

from typing import Iterable

import streamlit as st

from engine.validation import Problem


def show_problems(problems: Iterable[Problem], *, ok_text: str = "No problems: ready to save.") -> None:
    problems = list(problems)
    errors = [p for p in problems if p.severity == "error"]
    warnings = [p for p in problems if p.severity != "error"]
    if not problems:
        st.success(ok_text, icon="✅")
        return
    if errors:
        st.error("\n".join([f"**{len(errors)} error{'s' if len(errors) != 1 else ''}** (saving is blocked):"]
                           + [f"- `{p.path or '(workflow)'}` {p.message}" for p in errors]), icon="⛔")
    if warnings:
        st.warning("\n".join([f"**{len(warnings)} warning{'s' if len(warnings) != 1 else ''}** (you can still save):"]
                             + [f"- `{p.path or '(workflow)'}` {p.message}" for p in warnings]), icon="⚠️")
