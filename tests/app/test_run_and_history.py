"""Run now (with its step trace), executions and version history in the app."""

from __future__ import annotations

import pytest

from engine import services
from engine.uow import unit_of_work
from tests.app.conftest import actor_for


def _workflow(studio, name: str):
    with unit_of_work(studio["db"], read_only=True) as uow:
        page = services.list_workflows(uow=uow, actor=actor_for(studio, "owner"), search=name)
    return page.items[0]


def test_run_now_shows_the_result_with_its_step_trace(app_factory, studio):
    wf = _workflow(studio, "Missed Call")
    at = app_factory("editor")
    at.menu_button(key=f"workflows_menu_{wf.id}").click("Run now").run()
    at.button(key="FormSubmitter:workflows_run_form-Run now").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("wait-1" in e.label for e in at.expander)
    assert any("wait-1" in e.label for e in at.expander), (
        [e.label for e in at.expander] + [str(m.value) for m in at.metric] + [e.value for e in at.error]
    )
    with unit_of_work(studio["db"], read_only=True) as uow:
        page = services.list_executions(uow=uow, actor=actor_for(studio, "owner"))
    assert page.total == 1 and page.items[0].mode


def test_executions_page_opens_the_newest_run(app_factory, studio):
    wf = _workflow(studio, "Missed Call")
    with unit_of_work(studio["db"]) as uow:
        services.run_workflow(
            uow=uow,
            actor=actor_for(studio, "owner"),
            workflow_id=wf.id,
            trigger_data={"from": "+4917012345678"},
            dry_run=True,
        )
    at = app_factory("analyst", "pages/executions.py")
    assert not at.exception, [e.value for e in at.exception]
    assert any("Missed Call Follow-Up" in m.value for m in at.markdown)


def test_history_shows_a_diff_and_rolls_back(app_factory, studio):
    owner = actor_for(studio, "owner")
    wf = _workflow(studio, "Missed Call")
    with unit_of_work(studio["db"]) as uow:
        services.update_workflow(
            uow=uow, actor=owner, workflow_id=wf.id, changes={"name": "Missed Call Follow-Up v2"}, note="renamed"
        )
    at = app_factory("owner")
    at.session_state["history_workflow_id"] = wf.id
    at.switch_page("pages/history.py").run()
    assert not at.exception, [e.value for e in at.exception]
    diff = at.code[0].value
    assert '-  "name": "Missed Call Follow-Up",' in diff and '+  "name": "Missed Call Follow-Up v2",' in diff
    at.button(key="history_rollback_1").click().run()
    assert not at.exception, [e.value for e in at.exception]
    with unit_of_work(studio["db"], read_only=True) as uow:
        current = services.get_workflow(uow=uow, actor=owner, workflow_id=wf.id)
    assert current.name == "Missed Call Follow-Up" and current.version == 3


def test_analyst_cannot_roll_back(app_factory, studio):
    owner = actor_for(studio, "owner")
    wf = _workflow(studio, "Missed Call")
    with unit_of_work(studio["db"]) as uow:
        services.update_workflow(uow=uow, actor=owner, workflow_id=wf.id, changes={"name": "Renamed"})
    at = app_factory("analyst")
    at.session_state["history_workflow_id"] = wf.id
    at.switch_page("pages/history.py").run()
    assert not at.exception
    assert not [b for b in at.button if (b.key or "").startswith("history_rollback_")]


def test_template_opens_in_the_builder(app_factory):
    at = app_factory("editor", "pages/templates.py")
    at.button(key="templates_use_4").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["builder_def"]["name"]
    assert at.session_state["builder_workflow_id"] is None


def test_import_from_a_file(app_factory, studio):
    import json

    at = app_factory("owner", "pages/templates.py")
    # AppTest cannot upload files; the parse step is what the page adds on top of the service.
    from ui.templates import parse_upload

    with unit_of_work(studio["db"], read_only=True) as uow:
        items = parse_upload(
            json.dumps(
                {"workflows": [services.export_workflows(uow=uow, actor=actor_for(studio, "owner"))[0]]}
            ).encode()
        )
    assert len(items) == 1 and items[0]["name"]
    with pytest.raises(ValueError, match="line 1"):
        parse_upload(b"{not json")
    assert not at.exception
