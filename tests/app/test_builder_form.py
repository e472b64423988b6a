"""The builder's form produces exactly the workflow JSON the user set up, nothing more."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from engine import services
from engine.demo.seed import spec_examples
from engine.uow import unit_of_work
from tests.app.conftest import actor_for


def _key(at: AppTest, suffix: str) -> str:
    return f"builder_{at.session_state['builder_rev']}_{suffix}"


def _without_ids(definition: dict) -> dict:
    """Replace action ids by their position so two definitions compare "ids aside"."""
    ids = {a["id"]: f"#{i}" for i, a in enumerate(definition["actions"])}
    actions = []
    for a in definition["actions"]:
        a = {**a, "id": ids[a["id"]]}
        if a.get("nextActionId") is not None:
            a["nextActionId"] = ids[a["nextActionId"]]
        actions.append(a)
    return {**definition, "actions": actions}


def _add_action(at: AppTest, action_type: str) -> None:
    at.selectbox(key=_key(at, "actions_newtype")).set_value(action_type)
    at.button(key=_key(at, "actions_add")).click().run()
    assert not at.exception, [e.value for e in at.exception]


def test_missed_call_follow_up_built_in_the_form_stores_the_spec_json(app_factory, studio):
    expected = next(w for w in spec_examples() if w["name"] == "Missed Call Follow-Up")
    at = app_factory("owner", "pages/builder.py")
    at.text_input(key=_key(at, "basics_name")).input(expected["name"])
    at.text_area(key=_key(at, "basics_description")).input(expected["description"])
    at.toggle(key=_key(at, "basics_enabled")).set_value(True)  # new workflows are drafts unless turned on
    at.selectbox(key=_key(at, "trigger_type")).set_value("missed_call")
    at.run()
    _add_action(at, "wait")
    at.number_input(key=_key(at, "actions_0_wait_amount")).set_value(5)
    at.selectbox(key=_key(at, "actions_0_wait_unit")).set_value("minutes")
    at.run()
    _add_action(at, "send_whatsapp")
    at.text_area(key=_key(at, "actions_1_send_whatsapp_message")).input(expected["actions"][1]["config"]["message"])
    at.run()
    at.button(key="builder_save").click().run()
    assert not at.exception, [e.value for e in at.exception]

    saved_id = at.session_state["builder_workflow_id"]
    with unit_of_work(studio["db"], read_only=True) as uow:
        stored = services.get_workflow(uow=uow, actor=actor_for(studio, "owner"), workflow_id=saved_id).definition
    assert _without_ids(stored) == _without_ids(expected)
    assert stored == expected  # the builder even picks the spec's ids (wait-1, send-1)


def test_builder_blocks_saving_while_there_are_errors(app_factory):
    at = app_factory("editor", "pages/builder.py")
    assert at.button(key="builder_save").disabled  # no name, no actions yet
    assert any("before saving" in e.value for e in at.error)


def test_builder_edits_every_trigger_condition_and_action_type_without_errors(app_factory):
    from engine.workflow.definitions import ActionType, TriggerType
    from ui.labels import CONDITIONS

    at = app_factory("owner", "pages/builder.py")
    at.text_input(key=_key(at, "basics_name")).input("Everything")
    for trigger in TriggerType:
        at.selectbox(key=_key(at, "trigger_type")).set_value(trigger.value).run()
        assert not at.exception, (trigger, [e.value for e in at.exception])
    for ctype in CONDITIONS:
        at.selectbox(key=_key(at, "cond_newtype")).set_value(ctype)
        at.button(key=_key(at, "cond_add")).click().run()
        assert not at.exception, (ctype, [e.value for e in at.exception])
    for atype in ActionType:
        _add_action(at, atype.value)
    definition = at.session_state["builder_def"]
    assert [a["type"] for a in definition["actions"]] == [t.value for t in ActionType]
    assert [c["type"] for c in definition["conditions"]] == list(CONDITIONS)


def test_branch_target_is_a_select_of_existing_actions(app_factory):
    at = app_factory("owner", "pages/builder.py")
    for atype in ("branch", "send_whatsapp", "send_sms"):
        _add_action(at, atype)
    target = at.selectbox(key=_key(at, "actions_0_branch_target"))
    assert target.options == ["(choose a step)", "send-1", "sms-1"]
    target.set_value("sms-1").run()
    branch = at.session_state["builder_def"]["actions"][0]
    assert branch["config"]["nextActionId"] == "sms-1"
    assert branch["nextActionId"] == "send-1"  # otherwise: next in list


def test_json_mode_and_form_edit_the_same_definition(app_factory):
    at = app_factory("owner", "pages/builder.py")
    at.text_input(key=_key(at, "basics_name")).input("Same dict").run()
    at.segmented_control(key="builder_mode").set_value("JSON").run()
    assert not at.exception
    assert at.session_state["builder_def"]["name"] == "Same dict"
    at.segmented_control(key="builder_mode").set_value("Form").run()
    assert at.text_input(key=_key(at, "basics_name")).value == "Same dict"
