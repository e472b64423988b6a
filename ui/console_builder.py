"""The builder's scenario check: the studio's scenarios run against the unsaved draft.

Results are kept per draft content (``builder_sc_result``), so they are computed again only
when the draft changes. A failing scenario makes "Save" ask for confirmation.
"""

from __future__ import annotations

import hashlib
import json

import streamlit as st

from engine.errors import EngineError
from engine.services import scenarios
from engine.uow import unit_of_work

RESULT = "builder_sc_result"
#: Above this many scenarios the check runs on a button, not on every change.
AUTO_LIMIT = 10


def _digest(workflow_id: str, definition: dict) -> str:
    return hashlib.sha256(json.dumps([workflow_id, definition], sort_keys=True, default=str).encode()).hexdigest()


def _run(db, actor, workflow_id: str, definition: dict) -> dict:
    try:
        with unit_of_work(db) as uow:
            results = scenarios.run_all(uow=uow, actor=actor, drafts={workflow_id: definition})
    except EngineError as exc:
        return {"error": exc.message}
    return {
        "pass": sum(r.passed for r in results),
        "fail": sum(not r.passed for r in results),
        "failures": {r.name: r.failures for r in results if not r.passed},
    }


def check(db, actor, workflow_id: str, definition: dict, *, force: bool = False) -> dict | None:
    """The scenario results for this draft (cached per content); None when not computed yet."""
    digest = _digest(workflow_id, definition)
    cached = st.session_state.get(RESULT)
    if cached and cached.get("digest") == digest:
        return cached["result"]
    with unit_of_work(db, read_only=True) as uow:
        if not force and len(scenarios.list_scenarios(uow=uow, actor=actor)) > AUTO_LIMIT:
            return None
    result = _run(db, actor, workflow_id, definition)
    st.session_state[RESULT] = {"digest": digest, "result": result}
    return result


def show_status(db, actor, workflow_id: str | None, definition: dict, key: str) -> dict | None:
    """ "Scenarios: 5 pass, 1 fails" for the draft, with what differs; returns the result."""
    with unit_of_work(db, read_only=True) as uow:
        if not workflow_id or not scenarios.list_scenarios(uow=uow, actor=actor):
            return None
    result = check(db, actor, workflow_id, definition)
    if result is None and st.button("Check scenarios against this draft", key=f"{key}_check", icon=":material/rule:"):
        result = check(db, actor, workflow_id, definition, force=True)
    if result is None:
        return None
    if "error" in result:
        st.warning(f"Scenarios could not run: {result['error']}", icon="⚠️")
        return result
    text = (
        f"Scenarios: {result['pass']} pass, {result['fail']} fail{'s' if result['fail'] == 1 else ''} "
        "(against this unsaved draft)"
    )
    if result["fail"]:
        st.error(text, icon="❌")
        with st.expander("What differs"):
            for name, failures in result["failures"].items():
                st.markdown(f"**{name}**")
                for failure in failures:
                    st.markdown(f"- {failure}")
    else:
        st.success(text, icon="✅")
    return result


def failing(db, actor, workflow_id: str | None, definition: dict) -> int:
    """How many scenarios fail against the draft (computed now if needed)."""
    with unit_of_work(db, read_only=True) as uow:
        if not workflow_id or not scenarios.list_scenarios(uow=uow, actor=actor):
            return 0
    result = check(db, actor, workflow_id, definition, force=True)
    return int(result.get("fail", 0)) if result else 0


def failing_when_enabled(db, actor, workflow_id: str) -> list[str]:
    """Names of scenarios that fail if this stored workflow is switched on (none: go ahead)."""
    from engine import services

    with unit_of_work(db, read_only=True) as uow:
        if not scenarios.list_scenarios(uow=uow, actor=actor):
            return []
        definition = {
            **services.get_workflow(uow=uow, actor=actor, workflow_id=workflow_id).definition,
            "enabled": True,
        }
    result = _run(db, actor, workflow_id, definition)
    return list(result.get("failures", {}))
