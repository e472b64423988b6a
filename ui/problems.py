"""Validation problems in plain words, next to the field they are about.

Editors call :func:`field_slot` right after a widget (``"actions[1].config.message"``); the
builder validates once the form is drawn and :func:`fill_slots` writes each problem into the
slot of its field (or the nearest enclosing one: a step card, the trigger, a condition).
:func:`show_problems` is the summary list, with a location in the form's words instead of
a JSON path. Errors block saving, warnings don't.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import streamlit as st

from engine.workflow.plain import label
from engine.workflow.validation import Problem

SLOTS = "builder_problem_slots"


def begin_slots() -> None:
    """Start a fresh set of slots for this run of the builder."""
    st.session_state[SLOTS] = {}


def field_slot(path: str) -> None:
    """Reserve the place right here for the problems of ``path`` (no-op outside the builder)."""
    slots = st.session_state.get(SLOTS)
    if isinstance(slots, dict) and path not in slots:
        slots[path] = st.empty()


def _slot_for(path: str, slots: dict) -> str | None:
    best = None
    for candidate in slots:
        inside = path == candidate or path.startswith((candidate + ".", candidate + "["))
        if inside and (best is None or len(candidate) > len(best)):
            best = candidate
    return best


def fill_slots(problems: Iterable[Problem]) -> list[Problem]:
    """Write each problem next to its field; returns the ones that had no slot."""
    slots = st.session_state.get(SLOTS) or {}
    placed: dict[str, list[Problem]] = {}
    rest = []
    for p in problems:
        slot = _slot_for(p.path, slots)
        if slot is None:
            rest.append(p)
        else:
            placed.setdefault(slot, []).append(p)
    for slot, found in placed.items():
        with slots[slot].container():
            for p in found:
                (st.error if p.severity == "error" else st.warning)(
                    p.message, icon="⛔" if p.severity == "error" else "⚠️"
                )
    return rest


def where(path: str, definition: dict | None = None) -> str:
    """A JSON path in the form's words: ``actions[1].config.message`` -> ``Step 2 (send-1) · Message``."""
    if not path:
        return "Workflow"
    parts = re.findall(r"[A-Za-z_][\w-]*|\[\d+\]", path)
    head = parts[0]
    if head in ("name", "description", "enabled"):
        return f"Basics · {label(head)}"
    if head == "trigger":
        return "Trigger" + (f" · {label(parts[-1])}" if len(parts) > 2 else "")
    if head == "conditions":
        numbers = [str(int(p[1:-1]) + 1) for p in parts if p.startswith("[")]
        return "Conditions · " + ".".join(numbers) if numbers else "Conditions"
    if head == "actions" and len(parts) > 1 and parts[1].startswith("["):
        i = int(parts[1][1:-1])
        actions = _actions if isinstance(_actions := (definition or {}).get("actions"), list) else []
        ident = actions[i].get("id") if i < len(actions) and isinstance(actions[i], dict) else None
        step = f"Step {i + 1}" + (f" ({ident})" if ident else "")
        field = next((p for p in reversed(parts[2:]) if not p.startswith("[") and p != "config"), None)
        return step + (f" · {label(field)}" if field else "")
    return label(head)


def show_problems(
    problems: Iterable[Problem], *, ok_text: str = "No problems: ready to save.", definition: dict | None = None
) -> None:
    problems = list(problems)
    errors = [p for p in problems if p.severity == "error"]
    warnings = [p for p in problems if p.severity != "error"]
    if not problems:
        st.success(ok_text, icon="✅")
        return
    if errors:
        st.error(
            "\n".join(
                [f"**{len(errors)} thing{'s' if len(errors) != 1 else ''} to fix before saving:**"]
                + [f"- **{where(p.path, definition)}:** {p.message}" for p in errors]
            ),
            icon="⛔",
        )
    if warnings:
        st.warning(
            "\n".join(
                [f"**{len(warnings)} thing{'s' if len(warnings) != 1 else ''} to check** (you can still save):"]
                + [f"- **{where(p.path, definition)}:** {p.message}" for p in warnings]
            ),
            icon="⚠️",
        )
