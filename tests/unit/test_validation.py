"""``engine.workflow.validation.validate``: every problem at once, each with the JSON path it is at."""

from __future__ import annotations

import json

import pytest

from engine.demo.seed import spec_examples
from engine.errors import ValidationFailed
from engine.workflow.definitions import MAX_WAIT_MS, MS_PER_DAY
from engine.workflow.validation import errors_only, parse_workflow, validate


def send(action_id: str, message: str = "hi", **extra) -> dict:
    return {"id": action_id, "type": "send_whatsapp", "config": {"message": message}, **extra}


def workflow(*actions, conditions=None, trigger=None) -> dict:
    return {
        "name": "Test",
        "trigger": trigger or {"type": "whatsapp_message", "config": {}},
        "conditions": conditions or [],
        "actions": list(actions) if actions else [send("a")],
    }


def by_path(problems) -> dict[str, str]:
    return {p.path: p.message for p in problems}


def errors_at(raw) -> dict[str, str]:
    return by_path(errors_only(validate(raw)))


@pytest.fixture
def acceptance_workflow() -> dict:
    """The issue's acceptance case: a dangling target, an unknown type, a wrong operator."""
    return workflow(
        send("a", nextActionId="ghost"),
        {"id": "b", "type": "teleport", "config": {}},
        conditions=[{"type": "keyword_match", "operator": "greater_than", "value": "preis"}],
    )


@pytest.mark.parametrize("example", spec_examples(), ids=lambda e: e["name"])
def test_spec_examples_have_no_problems_at_all(example):
    assert validate(example) == []


def test_a_dangling_next_action_id_is_reported_on_that_action():
    errors = errors_at(workflow(send("a", nextActionId="ghost")))
    assert "ghost" in errors["actions[0].nextActionId"]


def test_a_dangling_branch_target_is_reported_on_the_branch_config():
    branch = {"id": "b", "type": "branch", "config": {"conditions": [], "nextActionId": "nowhere"}}
    errors = errors_at(workflow(branch, send("a")))
    assert list(errors) == ["actions[0].config.nextActionId"]
    assert "nowhere" in errors["actions[0].config.nextActionId"]


def test_a_duplicate_action_id_is_reported_on_the_second_one_and_names_the_first():
    errors = errors_at(workflow(send("a"), send("a")))
    assert list(errors) == ["actions[1].id"]
    assert "actions[0]" in errors["actions[1].id"]


def test_a_cycle_is_an_error_that_shows_the_loop():
    errors = errors_at(workflow(send("a", nextActionId="b"), send("b", nextActionId="a")))
    assert any("loop" in m and "a -> b -> a" in m for m in errors.values())
    assert all(path.startswith("actions[") and path.endswith(".nextActionId") for path in errors)


def test_a_branch_back_to_an_earlier_action_is_a_cycle():
    branch = {"id": "b", "type": "branch", "config": {"conditions": [], "nextActionId": "a"}}
    assert any("loop" in m for m in errors_at(workflow(send("a"), branch)).values())


def test_pointing_an_action_at_itself_is_an_error():
    assert "itself" in errors_at(workflow(send("a", nextActionId="a")))["actions[0].nextActionId"]


def test_an_unreachable_action_is_only_a_warning():
    problems = validate(workflow(send("a", nextActionId=None), send("b")))
    assert [(p.path, p.severity) for p in problems] == [("actions[1]", "warning")]
    assert "'b'" in problems[0].message


def test_an_action_reached_only_through_a_branch_is_reachable():
    branch = {"id": "b", "type": "branch", "config": {"conditions": [], "nextActionId": "late"}, "nextActionId": None}
    assert validate(workflow(branch, send("late"))) == []


def test_an_empty_action_list_is_an_error_on_actions():
    raw = workflow()
    raw["actions"] = []
    assert list(errors_at(raw)) == ["actions"]


def test_an_unknown_template_root_is_an_error_but_known_roots_are_fine():
    raw = workflow(
        {"id": "ai-1", "type": "ask_ai", "config": {"prompt": "Antwort auf {{trigger.content}}"}},
        send("s1", "{{foo.bar}}"),
        send("s2", "Von {{trigger.from}}: {{results.ai-1.text}} ({{lead.name}}, {{tenant.name}}, {{now}})"),
    )
    errors = errors_at(raw)
    assert list(errors) == ["actions[1].config.message"]
    assert "foo.bar" in errors["actions[1].config.message"]


def test_a_result_of_a_missing_action_is_an_error_naming_the_action():
    errors = errors_at(workflow(send("s", "{{results.ai-1.text}}")))
    assert "'ai-1'" in errors["actions[0].config.message"]


def test_templates_are_checked_deep_inside_webhook_bodies():
    hook = {
        "id": "h",
        "type": "call_webhook",
        "config": {"webhookUrl": "https://crm.example.com/x", "body": {"lead": {"ids": ["{{nope.id}}"]}}},
    }
    assert list(errors_at(workflow(hook))) == ["actions[0].config.body.lead.ids[0]"]


def test_a_template_syntax_error_is_reported():
    assert "syntax" in errors_at(workflow(send("a", "Hallo {{ trigger.from ")))["actions[0].config.message"]


@pytest.mark.parametrize("schedule", ["61 * * * *", "* * *", "every day", "0 9 * * 1-5 2026"])
def test_an_invalid_cron_schedule_is_reported_on_the_schedule(schedule):
    raw = workflow(trigger={"type": "time_based", "config": {"schedule": schedule}})
    assert "schedule" in errors_at(raw)["trigger.config.schedule"]


def test_a_valid_cron_schedule_passes():
    raw = workflow(trigger={"type": "time_based", "config": {"schedule": "*/15 8-20 * * 1-5"}})
    raw["actions"][0]["config"]["recipient"] = "+4915112345678"  # a schedule has no sender to reply to
    assert validate(raw) == []


def test_a_negative_delay_is_reported():
    errors = errors_at(workflow({"id": "w", "type": "wait", "config": {"delay": -5}}, send("a")))
    assert "negative" in errors["actions[0].config.delay"]


@pytest.mark.parametrize(
    ("action_type", "bound_words", "bound_ms"),
    [("wait", "90 days", MAX_WAIT_MS), ("schedule_follow_up", "365 days", 365 * MS_PER_DAY)],
)
def test_a_delay_over_the_bound_is_reported_with_the_bound(action_type, bound_words, bound_ms):
    action = {"id": "w", "type": action_type, "config": {"delay": bound_ms + 1, "message": "x"}}
    if action_type == "wait":
        del action["config"]["message"]
    message = errors_at(workflow(action))["actions[0].config.delay"]
    assert bound_words in message and f"{bound_ms:,}" in message


def test_a_delay_exactly_at_the_bound_is_fine():
    assert validate(workflow({"id": "w", "type": "wait", "config": {"delay": MAX_WAIT_MS}}, send("a"))) == []


@pytest.mark.parametrize("url", ["ftp://crm.example.com/x", "crm.example.com/x", "javascript:alert(1)", "http://"])
def test_a_webhook_url_that_is_not_http_is_reported(url):
    hook = {"id": "h", "type": "call_webhook", "config": {"webhookUrl": url}}
    assert "actions[0].config.webhookUrl" in errors_at(workflow(hook))


def test_a_whatsapp_message_over_4096_characters_is_reported_with_the_limit():
    assert validate(workflow(send("a", "x" * 4096))) == []
    message = errors_at(workflow(send("a", "x" * 4097)))["actions[0].config.message"]
    assert "4,096" in message and "whatsapp" in message


def test_send_message_is_limited_by_the_trigger_channel():
    raw = workflow(
        {"id": "a", "type": "send_message", "config": {"message": "x" * 1601}},
        trigger={"type": "sms_received", "config": {}},
    )
    assert "1,600" in errors_at(raw)["actions[0].config.message"]


def test_an_operator_not_allowed_for_a_type_names_the_type_and_the_operator():
    raw = workflow(conditions=[{"type": "keyword_match", "operator": "greater_than", "value": "x"}])
    message = errors_at(raw)["conditions[0].operator"]
    assert "greater_than" in message and "keyword_match" in message and "contains" in message


def test_an_operator_problem_inside_nested_groups_has_the_full_path():
    raw = workflow(
        conditions=[
            {
                "type": "any",
                "conditions": [
                    {"type": "not", "condition": {"type": "intent_match", "operator": "between", "value": "booking"}}
                ],
            }
        ]
    )
    assert "intent_match" in errors_at(raw)["conditions[0].conditions[0].condition.operator"]


def test_an_operator_problem_inside_a_branch_has_the_branch_path():
    branch = {
        "id": "b",
        "type": "branch",
        "config": {"conditions": [{"type": "sender_match", "operator": "in", "value": "x"}]},
    }
    assert "sender_match" in errors_at(workflow(branch, send("a")))["actions[0].config.conditions[0].operator"]


def test_an_unknown_action_type_is_reported_with_its_path():
    message = errors_at(workflow({"id": "a", "type": "teleport", "config": {}}))["actions[0].type"]
    assert "teleport" in message and "send_whatsapp" in message


def test_an_unknown_trigger_type_is_reported_on_the_trigger():
    assert "fax" in errors_at(workflow(trigger={"type": "fax_received", "config": {}}))["trigger.type"]


def test_a_missing_required_config_field_names_the_field():
    assert (
        errors_at(workflow({"id": "a", "type": "send_email", "config": {}}))["actions[0].config.message"]
        == "Message is required."
    )


@pytest.mark.parametrize(
    ("condition", "path", "words"),
    [
        ({"type": "time_range", "operator": "less_than", "value": 30}, "conditions[0].value", "24"),
        ({"type": "time_range", "operator": "between", "value": [1, 30]}, "conditions[0].value[1]", "24"),
        ({"type": "day_of_week", "operator": "in", "value": 9}, "conditions[0].value", "6"),
        ({"type": "channel_match", "operator": "equals", "value": "fax"}, "conditions[0].value", "whatsapp"),
    ],
)
def test_a_bad_condition_value_gets_one_error_on_the_value_itself(condition, path, words):
    errors = errors_at(workflow(conditions=[condition]))
    assert list(errors) == [path]
    assert words in errors[path]


def test_between_needs_two_hours():
    raw = workflow(conditions=[{"type": "time_range", "operator": "between", "value": [9]}])
    assert "two hours" in errors_at(raw)["conditions[0].value"]


def test_an_unknown_intent_is_a_warning_not_an_error():
    raw = workflow(trigger={"type": "intent_detected", "config": {"intent": "yoga_retreat"}})
    problems = validate(raw)
    assert [(p.path, p.severity) for p in problems] == [("trigger.config.intent", "warning")]


def test_every_problem_is_reported_at_once_errors_before_warnings():
    raw = workflow(
        send("a", "{{foo.bar}}", nextActionId="ghost"),
        {"id": "a", "type": "wait", "config": {"delay": -1}},
        {"id": "h", "type": "call_webhook", "config": {"webhookUrl": "ftp://x"}},
        conditions=[{"type": "keyword_match", "operator": "greater_than", "value": "x"}],
        trigger={"type": "time_based", "config": {"schedule": "nope"}},
    )
    problems = validate(raw)
    errors = by_path(errors_only(problems))
    assert {
        "actions[0].nextActionId",
        "actions[0].config.message",
        "actions[1].id",
        "actions[1].config.delay",
        "actions[2].config.webhookUrl",
        "conditions[0].operator",
        "trigger.config.schedule",
    } <= set(errors)
    severities = [p.severity for p in problems]
    assert severities == sorted(severities, key=lambda s: s != "error")


def test_the_acceptance_file_reports_all_three_problems_with_paths(acceptance_workflow):
    errors = errors_at(acceptance_workflow)
    assert "ghost" in errors["actions[0].nextActionId"]
    assert "teleport" in errors["actions[1].type"]
    assert "greater_than" in errors["conditions[0].operator"]


@pytest.mark.parametrize("raw", [None, [], "workflow", 42])
def test_something_that_is_not_an_object_is_one_problem(raw):
    problems = validate(raw)
    assert len(problems) == 1 and problems[0].severity == "error"


def test_parse_workflow_raises_with_every_problem_and_returns_warnings_otherwise():
    with pytest.raises(ValidationFailed) as exc:
        parse_workflow(workflow(send("a", nextActionId="x"), send("a")))
    assert {p.path for p in exc.value.problems} >= {"actions[0].nextActionId", "actions[1].id"}
    definition, warnings = parse_workflow(workflow(send("a", nextActionId=None), send("b")))
    assert definition.name == "Test" and [w.path for w in warnings] == ["actions[1]"]


def test_problems_serialise_to_plain_dicts():
    (problem,) = validate(workflow(send("a", nextActionId="x")))
    assert json.loads(json.dumps(problem.to_dict())) == {
        "path": "actions[0].nextActionId",
        "message": problem.message,
        "severity": "error",
    }
