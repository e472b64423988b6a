"""The builder's pure helpers: wiring, delays, variables, flow graph, templates."""

from __future__ import annotations

import pytest

from engine.workflow.validation import validate
from ui import definition as d
from ui.flow_graph import to_dot
from ui.templates import gallery, studio_templates


def _chain(*types: str) -> dict:
    definition = d.new_definition()
    for t in types:
        d.add_action(definition, t)
    return definition


def test_added_actions_are_wired_in_order_with_spec_style_ids():
    definition = _chain("wait", "send_whatsapp")
    assert [(a["id"], a["nextActionId"]) for a in definition["actions"]] == [("wait-1", "send-1"), ("send-1", None)]


def test_moving_an_action_keeps_next_in_list_wiring():
    definition = _chain("wait", "send_whatsapp", "send_sms")
    d.move_action(definition, 2, -1)
    assert [(a["id"], a["nextActionId"]) for a in definition["actions"]] == [
        ("wait-1", "sms-1"),
        ("sms-1", "send-1"),
        ("send-1", None),
    ]


def test_removing_an_action_reconnects_its_predecessor_and_clears_branch_targets():
    definition = _chain("branch", "send_whatsapp", "send_sms")
    definition["actions"][0]["config"]["nextActionId"] = "sms-1"
    d.remove_action(definition, 2)
    assert definition["actions"][0]["config"]["nextActionId"] is None
    assert definition["actions"][-1]["nextActionId"] is None


def test_a_picked_target_survives_reordering():
    definition = _chain("wait", "send_whatsapp", "send_sms")
    d.set_next(definition, 0, "sms-1", sequential=False)
    d.move_action(definition, 1, 1)
    assert definition["actions"][0]["nextActionId"] == "sms-1"


@pytest.mark.parametrize(
    "ms,expected",
    [(300_000, (5, "minutes")), (86_400_000, (1, "days")), (7_200_000, (2, "hours")), (0, (0, "minutes"))],
)
def test_delays_are_shown_in_the_largest_whole_unit(ms, expected):
    assert d.split_delay(ms) == expected
    assert d.join_delay(*expected) == ms


def test_variables_offer_results_of_earlier_actions_only():
    definition = _chain("ask_ai", "send_whatsapp", "call_webhook")
    offered = d.variables_before(definition, 1)
    assert "{{trigger.from}}" in offered and "{{results.ai-1.text}}" in offered
    assert not any("webhook-1" in v for v in offered)


def test_optional_keys_stay_out_unless_set():
    config = {"message": "hi"}
    d.set_optional(config, "recipient", "")
    assert config == {"message": "hi"}
    d.set_optional(config, "recipient", "{{trigger.from}}")
    assert config["recipient"] == "{{trigger.from}}"


def test_flow_graph_shows_branches_and_waits():
    definition = _chain("branch", "wait", "send_whatsapp")
    definition["actions"][0]["config"]["nextActionId"] = "send-1"
    dot = to_dot(definition)
    assert dot.startswith("digraph") and 'label="yes"' in dot and 'label="no"' in dot and "dashed" in dot


def test_every_template_passes_validation():
    assert len(studio_templates()) >= 4
    for _source, template in gallery():
        assert [p for p in validate(template) if p.severity == "error"] == [], template["name"]


def test_templates_include_a_cron_birthday_greeting_and_a_three_day_nurture():
    names = {t["name"]: t for t in studio_templates()}
    assert names["Birthday Greeting"]["trigger"]["type"] == "time_based"
    waits = [a for a in names["Lead Nurture (3 Days)"]["actions"] if a["type"] == "wait"]
    assert sum(a["config"]["delay"] for a in waits) == 2 * 86_400_000
