"""The variable declarations, plain-word problems and the builder's display helpers."""

from __future__ import annotations

import pytest

from engine.workflow.definitions import ActionType, TriggerType
from engine.workflow.validation import validate
from engine.workflow.variables import (
    ACTION_OUTPUTS,
    TRIGGER_FIELDS,
    reference_problem,
    variables_for,
)
from ui.definition import describe_condition
from ui.flow_graph import to_dot
from ui.formatting import localize

PRICE_OR = {
    "type": "any",
    "conditions": [
        {"type": "keyword_match", "operator": "contains", "value": "preis"},
        {"type": "intent_match", "operator": "equals", "value": "pricing"},
    ],
}


def wf(trigger: str = "whatsapp_message", **action) -> dict:
    return {
        "name": "x",
        "trigger": {"type": trigger, "config": {}},
        "actions": [{"id": "send-1", "type": "send_whatsapp", "config": {"message": "hi"}, **action}],
    }


def test_every_trigger_and_action_type_declares_its_variables():
    assert set(TRIGGER_FIELDS) == {t.value for t in TriggerType}
    assert set(ACTION_OUTPUTS) == {a.value for a in ActionType}


@pytest.mark.parametrize(
    "ref, trigger, expected",
    [
        (("trigger", "name"), "whatsapp_message", "Did you mean trigger.from?"),
        (("trigger", "contnet"), "sms_received", "Did you mean trigger.content?"),
        (("lead", "vorname"), "whatsapp_message", "Did you mean lead.name?"),
        (("trigger", "className"), "whatsapp_message", "not something a WhatsApp message provides"),
    ],
)
def test_unknown_variables_get_a_suggestion(ref, trigger, expected):
    assert expected in reference_problem(ref, trigger_type=trigger, actions={})


@pytest.mark.parametrize(
    "ref, trigger",
    [
        (("trigger", "from"), "whatsapp_message"),
        (("trigger", "className"), "booking_created"),
        (("trigger", "customFields", "goal"), "web_chat"),
        (("lead", "customFields", "x"), "lead_created"),
        (("trigger", "language"), "voice_call"),
    ],
)
def test_declared_variables_pass(ref, trigger):
    assert reference_problem(ref, trigger_type=trigger, actions={}) is None


def test_step_outputs_are_checked_too():
    assert "Did you mean results.ai-1.text?" in reference_problem(
        ("results", "ai-1", "txt"), trigger_type=None, actions={"ai-1": "ask_ai"}
    )
    assert (
        reference_problem(("results", "hook", "body", "anything"), trigger_type=None, actions={"hook": "call_webhook"})
        is None
    )


def test_the_variables_list_comes_from_the_same_declaration():
    offered = [v for v, _ in variables_for("whatsapp_message", [{"id": "ai-1", "type": "ask_ai"}])]
    assert "trigger.from" in offered and "results.ai-1.text" in offered and "trigger.name" not in offered


def test_variable_warnings_reach_validation():
    raw = wf()
    raw["actions"][0]["config"]["message"] = "Hallo {{trigger.name}}"
    [problem] = validate(raw)
    assert problem.severity == "warning" and problem.path == "actions[0].config.message"


@pytest.mark.parametrize(
    "raw, path, words",
    [
        ({**wf(), "name": ""}, "name", "Give the workflow a name"),
        ({**wf(), "actions": []}, "actions", "add at least one action"),
        (wf(config={"message": "  "}), "actions[0].config.message", "The message: write"),
        ({**wf(), "conditions": [{"type": "any", "conditions": []}]}, "conditions[0].conditions", "group is empty"),
        (
            {**wf(), "trigger": {"type": "whatsapp_message", "config": {"channel": "voice"}}},
            "trigger.config.channel",
            "always arrives on whatsapp",
        ),
        (wf(trigger="email_received"), "actions[0].config.recipient", "cannot get whatsapp"),
        (wf(id="a b"), "actions[0].id", "may only use letters, digits"),
    ],
)
def test_problems_are_sentences_about_the_field(raw, path, words):
    problems = {p.path: p.message for p in validate(raw) if p.severity == "error"}
    assert words in problems[path], problems
    assert not any("should have" in m or "validation" in m for m in problems.values())


def test_a_message_to_a_missed_call_on_its_own_channel_is_a_warning_and_the_spec_example_is_clean():
    from engine.api.workflows import SPEC_EXAMPLE

    assert validate(SPEC_EXAMPLE) == []  # voice_call -> send_message: the phone system speaks it
    raw = {
        "name": "x",
        "trigger": {"type": "missed_call", "config": {}},
        "actions": [{"id": "s", "type": "send_message", "config": {"message": "hi", "channel": "voice"}}],
    }
    [problem] = validate(raw)
    assert problem.severity == "warning" and "choose WhatsApp or SMS" in problem.message


def test_a_scheduled_message_without_recipient_is_a_warning():
    raw = wf(trigger="time_based")
    raw["trigger"]["config"] = {"schedule": "0 9 * * *"}
    [problem] = validate(raw)
    assert problem.severity == "warning" and problem.path == "actions[0].config.recipient"


def test_groups_are_spelled_out_in_the_review_and_the_flow_graph():
    assert describe_condition(PRICE_OR) == "(keyword “preis” or intent is pricing)"
    dot = to_dot({**wf(), "conditions": [PRICE_OR]})
    assert "(keyword “preis” or intent is pricing)" in dot


def test_step_times_are_shown_in_the_studio_timezone():
    shown = localize({"resumeAt": "2026-05-04T08:05:00+00:00", "text": "2026-05-04 is a Monday"}, "Europe/Berlin")
    assert shown == {"resumeAt": "2026-05-04T10:05:00+02:00", "text": "2026-05-04 is a Monday"}
