"""The workflow format: the spec's examples, every type, and the extensions beyond the spec."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from engine.workflow import definitions as d
from engine.workflow.definitions import WorkflowDefinition

EXAMPLES = sorted((Path(d.__file__).parent.parent / "examples").glob("*.json"))
SEED_EXAMPLES = Path("/work/shared/seed/examples")

TRIGGER_TYPES = {
    "voice_call",
    "whatsapp_message",
    "email_received",
    "web_chat",
    "sms_received",
    "intent_detected",
    "time_based",
    "missed_call",
    "lead_created",
    "booking_created",
}
CONDITION_TYPES = {
    "keyword_match",
    "intent_match",
    "sender_match",
    "time_range",
    "day_of_week",
    "confidence_threshold",
    "channel_match",
    "custom_field",
}
ACTION_TYPES = {
    "send_message",
    "send_whatsapp",
    "send_email",
    "send_sms",
    "ask_ai",
    "generate_workout_plan",
    "schedule_follow_up",
    "create_lead",
    "update_lead",
    "call_webhook",
    "wait",
    "branch",
}


def workflow(actions=None, conditions=None, trigger=None) -> dict:
    return {
        "name": "Test",
        "trigger": trigger or {"type": "whatsapp_message", "config": {}},
        "conditions": conditions or [],
        "actions": actions or [{"id": "a", "type": "send_whatsapp", "config": {"message": "hi"}}],
    }


def test_there_are_four_spec_examples_identical_to_the_seed():
    assert [p.name for p in EXAMPLES] == [
        "after_hours_auto_reply.json",
        "lead_qualification_webhook.json",
        "missed_call_follow_up.json",
        "training_plan_request.json",
    ]
    if SEED_EXAMPLES.is_dir():
        for path in EXAMPLES:
            assert json.loads(path.read_text()) == json.loads((SEED_EXAMPLES / path.name).read_text())


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_spec_example_round_trips_import_export_import(path):
    original = json.loads(path.read_text(encoding="utf-8"))
    imported = WorkflowDefinition.model_validate(original)
    exported = imported.to_json()
    assert WorkflowDefinition.model_validate(exported) == imported
    assert exported == original


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_spec_example_exports_the_same_json_text(path):
    """Same keys, same key order, ``9`` stays ``9`` (not ``9.0``)."""
    original = json.loads(path.read_text(encoding="utf-8"))
    exported = WorkflowDefinition.model_validate(original).to_json()
    assert json.dumps(exported, ensure_ascii=False) == json.dumps(original, ensure_ascii=False)


def test_all_ten_trigger_types_exist_with_their_type_values():
    assert {t.value for t in d.TriggerType} == TRIGGER_TYPES
    assert set(d.TRIGGER_MODELS) == TRIGGER_TYPES


def test_all_eight_condition_types_exist_with_their_type_values():
    assert {t.value for t in d.ConditionType} == CONDITION_TYPES
    assert set(d.CONDITION_MODELS) == CONDITION_TYPES
    assert set(d.OPERATORS) == CONDITION_TYPES


def test_all_twelve_action_types_exist_with_their_type_values():
    assert {t.value for t in d.ActionType} == ACTION_TYPES
    assert set(d.ACTION_MODELS) == ACTION_TYPES


@pytest.mark.parametrize("trigger_type", sorted(TRIGGER_TYPES))
def test_each_trigger_type_parses_into_its_own_model(trigger_type):
    config = {"time_based": {"schedule": "0 9 * * 1-5"}, "intent_detected": {"intent": "booking"}}.get(trigger_type, {})
    wf = WorkflowDefinition.model_validate(workflow(trigger={"type": trigger_type, "config": config}))
    assert isinstance(wf.trigger, d.TRIGGER_MODELS[trigger_type])
    assert wf.trigger.type == trigger_type


def test_absent_next_action_id_stays_absent_and_null_stays_null():
    wf = WorkflowDefinition.model_validate(
        workflow(
            actions=[
                {"id": "a", "type": "send_whatsapp", "config": {"message": "1"}},
                {"id": "b", "type": "send_whatsapp", "config": {"message": "2"}, "nextActionId": None},
                {"id": "c", "type": "send_whatsapp", "config": {"message": "3"}, "nextActionId": "a"},
            ]
        )
    )
    a, b, c = wf.to_json()["actions"]
    assert "nextActionId" not in a
    assert "nextActionId" in b and b["nextActionId"] is None
    assert c["nextActionId"] == "a"
    assert [x.has_explicit_next for x in wf.actions] == [False, True, True]


def test_condition_groups_all_any_not_nest_and_round_trip():
    conditions = [
        {
            "type": "any",
            "conditions": [
                {
                    "type": "all",
                    "conditions": [
                        {"type": "keyword_match", "operator": "contains", "value": ["preis", "kosten"]},
                        {"type": "not", "condition": {"type": "day_of_week", "operator": "in", "value": [0, 6]}},
                    ],
                },
                {"type": "intent_match", "operator": "equals", "value": "pricing"},
            ],
        }
    ]
    wf = WorkflowDefinition.model_validate(workflow(conditions=conditions))
    group = wf.conditions[0]
    assert isinstance(group, d.AnyGroup)
    assert isinstance(group.conditions[0], d.AllGroup)
    assert isinstance(group.conditions[0].conditions[1], d.NotGroup)
    assert isinstance(group.conditions[0].conditions[1].condition, d.DayOfWeek)
    assert wf.to_json()["conditions"] == conditions


def test_an_any_group_needs_at_least_one_condition():
    with pytest.raises(ValidationError):
        WorkflowDefinition.model_validate(workflow(conditions=[{"type": "any", "conditions": []}]))


def test_time_range_accepts_between_with_two_hours_including_a_wrap_past_midnight():
    cond = {"type": "time_range", "operator": "between", "value": [18, 9]}
    wf = WorkflowDefinition.model_validate(workflow(conditions=[cond]))
    assert isinstance(wf.conditions[0], d.TimeRange)
    assert wf.conditions[0].value == [18, 9]
    assert wf.to_json()["conditions"] == [cond]


def test_fractional_hours_keep_their_fraction_on_export():
    cond = {"type": "time_range", "operator": "greater_than", "value": 17.5}
    assert WorkflowDefinition.model_validate(workflow(conditions=[cond])).to_json()["conditions"] == [cond]


def test_operator_outside_the_spec_table_is_rejected():
    with pytest.raises(ValidationError):
        WorkflowDefinition.model_validate(
            workflow(conditions=[{"type": "keyword_match", "operator": "greater_than", "value": "x"}])
        )


def test_unknown_keys_are_rejected_rather_than_silently_dropped():
    data = workflow()
    data["actions"][0]["nextActonId"] = "typo"
    with pytest.raises(ValidationError):
        WorkflowDefinition.model_validate(data)


def test_retry_and_on_error_are_accepted_and_exported_in_camel_case():
    action = {
        "id": "hook",
        "type": "call_webhook",
        "config": {"webhookUrl": "https://x.example/h"},
        "retry": {"maxAttempts": 5, "backoff": 10},
        "onError": "stop",
    }
    exported = WorkflowDefinition.model_validate(workflow(actions=[action])).to_json()
    assert exported["actions"][0] == action


def test_json_schema_mentions_every_trigger_condition_and_action_type():
    schema = d.workflow_json_schema()
    text = json.dumps(schema)
    assert schema["$schema"].startswith("https://json-schema.org/")
    for t in TRIGGER_TYPES | CONDITION_TYPES | ACTION_TYPES | {"all", "any", "not"}:
        assert f'"{t}"' in text, t
    assert "nextActionId" in text and "webhookUrl" in text


# --------------------------------------------------------------------------- an event's channel (issue 21)


@pytest.mark.parametrize("trigger, channel", sorted((str(t), str(c)) for t, c in d.MESSAGE_TRIGGER_CHANNELS.items()))
def test_a_message_event_without_channel_gets_its_triggers_channel(trigger, channel):
    assert d.Event.model_validate({"triggerType": trigger}).channel == channel
    assert d.Event.model_validate({"triggerType": trigger, "channel": channel}).channel == channel


def test_a_contradicting_channel_is_refused_on_the_field_at_every_door():
    from engine.errors import InvalidInput
    from engine.runner.context import parse_event  # what the runner, API, webhooks, app and CLI parse with

    with pytest.raises(ValidationError) as exc:
        d.Event.model_validate({"triggerType": "whatsapp_message", "channel": "sms"})
    assert exc.value.errors()[0]["loc"] == ("channel",)
    with pytest.raises(InvalidInput) as refused:
        parse_event({"triggerType": "sms_received", "channel": "whatsapp", "content": "Hallo"})
    assert refused.value.field == "channel" and "sms" in refused.value.message


def test_triggers_that_imply_no_channel_keep_what_was_sent():
    assert d.Event.model_validate({"triggerType": "missed_call"}).channel is None
    assert d.Event.model_validate({"triggerType": "lead_created", "channel": "web"}).channel == "web"
