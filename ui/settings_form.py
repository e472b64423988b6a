"""Settings forms that save only what the owner changed, and show what was saved.

The widgets of a form take their values from page state, never from ``value=``: Streamlit keeps
a keyed widget's state across reruns and ignores a changed ``value=`` (``clear_on_submit`` even
reset the Twilio card to the values from before the save, so the next Save wrote them back:
issue 21). So:

* :func:`sync` runs before the widgets and puts each stored value into its widget where the
  store changed since the page last showed it (a save here, another tab, the API), leaving
  the owner's own edits alone;
* the Save button's callback (:func:`save_button`) runs before the next script run, compares
  every widget with what the page showed (:func:`edits`), and hands only the changed ones to
  the service, which writes only those;
* after a save the page shows the stored values (the service may have normalised them:
  ``8:00`` -> ``08:00``), a message names what was saved, and secrets typed into password
  fields are gone from the page (their widgets are new ones: :func:`key`).

Keys: ``<form>__shown`` (what the widgets showed), ``<form>__result`` (the last save's outcome),
``<form>__generation`` (saves so far, in the keys of secret fields).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import streamlit as st

from engine.errors import EngineError

_MISSING = object()

#: A save gets the changed widget values (key -> value) and returns what to say, e.g. "Saved: Quiet from".
Save = Callable[[dict[str, Any]], str]


def sync(form: str, shown: Mapping[str, Any]) -> None:
    """Before the form's widgets: show ``shown`` (widget key -> the stored value as the widget holds it).

    A widget gets the stored value when it has none yet or when the stored value changed since the
    page last showed it; otherwise it keeps its state (the owner's unsaved edit stays)."""
    before = st.session_state.get(f"{form}__shown", {})
    for key, value in shown.items():
        if key not in st.session_state or before.get(key, _MISSING) != value:
            st.session_state[key] = value
    st.session_state[f"{form}__shown"] = dict(shown)


def key(form: str, name: str, *, secret: bool = False) -> str:
    """The widget key of ``name`` in ``form``. A secret's key changes after every save: a widget
    the owner typed into keeps its text even when page state empties it (the browser only takes a
    value that differs from the last one it was sent), so the emptied field is a new widget."""
    generation = st.session_state.get(f"{form}__generation", 0)
    return f"{name}_{generation}" if secret and generation else name


def edits(form: str) -> dict[str, Any]:
    """The widgets whose value differs from what the page showed (call it in a callback)."""
    shown = st.session_state.get(f"{form}__shown", {})
    return {key: st.session_state.get(key) for key, value in shown.items() if st.session_state.get(key) != value}


def save_button(form: str, label: str, save: Save, *, key: str | None = None) -> None:
    """The form's submit button: on click, :func:`run_save` runs before the page does."""
    st.form_submit_button(label, type="primary", on_click=run_save, args=(form, save), key=key)


def run_save(form: str, save: Save) -> None:
    """Hand the changed widgets to ``save``; remember the outcome for :func:`result`."""
    changed = edits(form)
    if not changed:
        st.session_state[f"{form}__result"] = ("info", "Nothing changed.", None)
        return
    try:
        message = save(changed)
    except EngineError as exc:  # the owner's input stays in the widgets, to be corrected
        st.session_state[f"{form}__result"] = ("error", exc.message, getattr(exc, "field", None))
        return
    # The next run shows what was stored (see sync), and typed secrets are gone. (Assigned anew:
    # page state may hand out a copy, so changing the dict in place could be lost.)
    st.session_state[f"{form}__shown"] = {
        k: v for k, v in st.session_state.get(f"{form}__shown", {}).items() if k not in changed
    }
    st.session_state[f"{form}__generation"] = st.session_state.get(f"{form}__generation", 0) + 1
    st.session_state[f"{form}__result"] = ("success", message, None)


def result(form: str, slots: Mapping[str, Any] | None = None) -> None:
    """Show the last save's outcome: an error at the field it names (``slots``: field -> container)."""
    found = st.session_state.pop(f"{form}__result", None)
    if found is None:
        return
    kind, message, field = found
    if kind == "error":
        name = str(field or "")
        target = next((slot for f, slot in (slots or {}).items() if name == f or name.endswith("." + f)), st)
        target.error(message, icon="⚠️")
    elif kind == "success":
        st.success(message, icon="✅")
    else:
        st.info(message)


def saved(labels: Mapping[str, str], changed: Mapping[str, Any]) -> str:
    """``Saved: Quiet from, Quiet until.`` for the changed widget keys."""
    names = [labels.get(key, key) for key in changed]
    return "Saved: " + ", ".join(names) + "."
