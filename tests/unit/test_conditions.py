"""Condition evaluation: every type and operator, groups, time in the tenant zone, explanations."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import TypeAdapter

from engine.workflow.conditions import EvalContext, evaluate, js_weekday
from engine.workflow.definitions import Condition

BERLIN = ZoneInfo("Europe/Berlin")
# Monday 4 May 2026, 10:30 local.
MONDAY_1030 = datetime(2026, 5, 4, 10, 30, tzinfo=BERLIN)
_conditions = TypeAdapter(list[Condition])


def check(conditions: list[dict], trigger: dict | None = None, now: datetime = MONDAY_1030, lead: dict | None = None):
    return evaluate(_conditions.validate_python(conditions), EvalContext(trigger or {}, now, lead))


def holds(condition: dict, trigger: dict | None = None, now: datetime = MONDAY_1030, lead: dict | None = None) -> bool:
    return check([condition], trigger, now, lead).passed


def cond(type_: str, operator: str, value, **extra) -> dict:
    return {"type": type_, "operator": operator, "value": value, **extra}


# --------------------------------------------------------------------------- keyword_match


@pytest.mark.parametrize(
    "operator,value,content,expected",
    [
        ("contains", "preis", "Was ist der PREIS?", True),
        ("contains", "preis", "Wann habt ihr offen?", False),
        ("contains", ["kosten", "preis"], "Was kostet das? Die Kosten bitte", True),
        ("equals", "hallo", "  Hallo ", True),
        ("equals", "hallo", "Hallo du", False),
        ("starts_with", "hi", "Hi there", True),
        ("starts_with", "hi", "Oh hi", False),
        ("ends_with", "danke", "Vielen Dank, danke", True),
        ("ends_with", "danke", "Danke schön", False),
    ],
)
def test_keyword_match_operators(operator, value, content, expected):
    assert holds(cond("keyword_match", operator, value), {"content": content}) is expected


def test_keyword_match_case_sensitive_and_missing_content():
    assert holds(cond("keyword_match", "contains", "Preis", caseSensitive=True), {"content": "der Preis"})
    assert not holds(cond("keyword_match", "contains", "Preis", caseSensitive=True), {"content": "der preis"})
    assert not holds(cond("keyword_match", "contains", "preis"), {"content": None})
    assert not holds(cond("keyword_match", "contains", "preis"), {})


# --------------------------------------------------------------------------- intent, sender, channel


@pytest.mark.parametrize(
    "operator,value,intent,expected",
    [
        ("equals", "booking", "booking", True),
        ("equals", "booking", "pricing", False),
        ("in", ["booking", "pricing"], "pricing", True),
        ("in", ["booking", "pricing"], "complaint", False),
        ("not_in", ["complaint"], "booking", True),
        ("not_in", ["complaint"], "complaint", False),
        ("equals", "booking", None, False),
    ],
)
def test_intent_match(operator, value, intent, expected):
    assert holds(cond("intent_match", operator, value), {"intent": intent}) is expected


@pytest.mark.parametrize(
    "operator,value,sender,expected",
    [
        ("equals", "+4915112345678", "+4915112345678", True),
        ("equals", "Anna@Example.de", "anna@example.de", True),
        ("equals", "+49151", "+4915112345678", False),
        ("contains", "@example.de", "anna@example.de", True),
        ("contains", "@example.de", "anna@other.de", False),
        ("contains", "x", None, False),
    ],
)
def test_sender_match(operator, value, sender, expected):
    assert holds(cond("sender_match", operator, value), {"from": sender}) is expected


@pytest.mark.parametrize(
    "operator,value,channel,expected",
    [
        ("equals", "whatsapp", "whatsapp", True),
        ("equals", "whatsapp", "sms", False),
        ("in", ["sms", "email"], "email", True),
        ("in", ["sms", "email"], "voice", False),
        ("equals", "web", None, False),
    ],
)
def test_channel_match(operator, value, channel, expected):
    assert holds(cond("channel_match", operator, value), {"channel": channel}) is expected


# --------------------------------------------------------------------------- time_range (tenant local time)


@pytest.mark.parametrize(
    "operator,value,hour,minute,expected",
    [
        ("less_than", 9, 8, 59, True),
        ("less_than", 9, 9, 0, False),
        ("less_than", 9, 7, 30, True),
        ("greater_than", 18, 18, 0, False),
        ("greater_than", 18, 19, 0, True),
        ("greater_than", 17.5, 17, 45, True),
        ("greater_than", 17.5, 17, 15, False),
        ("between", [9, 18], 9, 0, True),
        ("between", [9, 18], 17, 59, True),
        ("between", [9, 18], 18, 0, False),
        ("between", [9, 18], 8, 59, False),
    ],
)
def test_time_range(operator, value, hour, minute, expected):
    now = datetime(2026, 5, 4, hour, minute, tzinfo=BERLIN)
    assert holds(cond("time_range", operator, value), now=now) is expected


@pytest.mark.parametrize(
    "hour,minute,expected",
    [
        (18, 0, True),
        (23, 59, True),
        (0, 0, True),
        (3, 15, True),
        (8, 59, True),
        (9, 0, False),
        (12, 0, False),
        (17, 59, False),
    ],
)
def test_time_range_between_wraps_midnight(hour, minute, expected):
    now = datetime(2026, 5, 4, hour, minute, tzinfo=BERLIN)
    assert holds(cond("time_range", "between", [18, 9]), now=now) is expected


def test_time_range_uses_the_local_time_given():
    # The same instant is 07:30 in Berlin and 01:30 in New York.
    berlin = datetime(2026, 5, 4, 7, 30, tzinfo=BERLIN)
    new_york = berlin.astimezone(ZoneInfo("America/New_York"))
    assert holds(cond("time_range", "greater_than", 6), now=berlin)
    assert not holds(cond("time_range", "greater_than", 6), now=new_york)


# --------------------------------------------------------------------------- day_of_week (0 = Sunday)


def test_js_weekday_numbering():
    assert js_weekday(datetime(2026, 5, 3, tzinfo=BERLIN)) == 0  # Sunday
    assert js_weekday(datetime(2026, 5, 4, tzinfo=BERLIN)) == 1  # Monday
    assert js_weekday(datetime(2026, 5, 9, tzinfo=BERLIN)) == 6  # Saturday


@pytest.mark.parametrize(
    "operator,value,day,expected",
    [
        ("equals", 0, 3, True),  # Sunday 3 May
        ("equals", 0, 4, False),
        ("equals", 1, 4, True),  # Monday
        ("equals", 6, 9, True),  # Saturday
        ("in", [0, 6], 9, True),
        ("in", [0, 6], 10, True),
        ("in", [0, 6], 8, False),  # Friday
        ("in", [1, 2, 3, 4, 5], 8, True),
    ],
)
def test_day_of_week(operator, value, day, expected):
    now = datetime(2026, 5, day, 12, 0, tzinfo=BERLIN)
    assert holds(cond("day_of_week", operator, value), now=now) is expected


def test_day_of_week_explanation_names_the_day():
    result = check([cond("day_of_week", "equals", 0)], now=datetime(2026, 5, 3, 12, tzinfo=BERLIN))
    [entry] = result.explanation
    assert entry["actual"] == 0 and "Sunday" in entry["message"] and entry["passed"] is True


# --------------------------------------------------------------------------- confidence, custom fields


@pytest.mark.parametrize(
    "operator,value,confidence,expected",
    [
        ("greater_than", 0.8, 0.9, True),
        ("greater_than", 0.8, 0.8, False),
        ("greater_than", 0.8, 0.5, False),
        ("less_than", 0.3, 0.2, True),
        ("less_than", 0.3, 0.3, False),
        ("greater_than", 0.1, None, False),
        ("less_than", 0.9, None, False),
    ],
)
def test_confidence_threshold(operator, value, confidence, expected):
    assert holds(cond("confidence_threshold", operator, value), {"intentConfidence": confidence}) is expected


@pytest.mark.parametrize(
    "operator,value,fields,expected",
    [
        ("equals", "gold", {"tier": "Gold"}, True),
        ("equals", "gold", {"tier": "silver"}, False),
        ("equals", 3, {"tier": 3}, True),
        ("equals", True, {"tier": True}, True),
        ("contains", "old", {"tier": "Gold"}, True),
        ("contains", "xyz", {"tier": "Gold"}, False),
        ("greater_than", 5, {"tier": 7}, True),
        ("greater_than", 5, {"tier": "7"}, True),
        ("greater_than", 5, {"tier": 3}, False),
        ("less_than", 5, {"tier": 3}, True),
        ("less_than", 5, {"tier": "abc"}, False),
        ("equals", "gold", {}, False),
    ],
)
def test_custom_field(operator, value, fields, expected):
    assert holds(cond("custom_field", operator, value, field="tier"), {"customFields": fields}) is expected


def test_custom_field_falls_back_to_the_lead_and_the_event_wins():
    c = cond("custom_field", "equals", "gold", field="tier")
    assert holds(c, {"customFields": {}}, lead={"customFields": {"tier": "gold"}})
    assert not holds(c, {"customFields": {"tier": "silver"}}, lead={"customFields": {"tier": "gold"}})


# --------------------------------------------------------------------------- groups


KW = cond("keyword_match", "contains", "preis")
WA = cond("channel_match", "equals", "whatsapp")


@pytest.mark.parametrize(
    "trigger,all_, any_, not_kw",
    [
        ({"content": "preis", "channel": "whatsapp"}, True, True, False),
        ({"content": "preis", "channel": "sms"}, False, True, False),
        ({"content": "hallo", "channel": "whatsapp"}, False, True, True),
        ({"content": "hallo", "channel": "sms"}, False, False, True),
    ],
)
def test_groups(trigger, all_, any_, not_kw):
    assert holds({"type": "all", "conditions": [KW, WA]}, trigger) is all_
    assert holds({"type": "any", "conditions": [KW, WA]}, trigger) is any_
    assert holds({"type": "not", "condition": KW}, trigger) is not_kw
    # A plain list means all.
    assert check([KW, WA], trigger).passed is all_


def test_empty_conditions_and_empty_all_group_pass():
    assert check([]).passed is True and check([]).explanation == []
    assert holds({"type": "all", "conditions": []})


def test_nested_groups():
    weekend_or_evening = {
        "type": "any",
        "conditions": [
            cond("day_of_week", "in", [0, 6]),
            {"type": "not", "condition": cond("time_range", "between", [9, 18])},
        ],
    }
    nested = [{"type": "all", "conditions": [KW, weekend_or_evening]}]
    assert not check(nested, {"content": "preis"}, MONDAY_1030).passed
    assert check(nested, {"content": "preis"}, datetime(2026, 5, 4, 20, tzinfo=BERLIN)).passed
    assert check(nested, {"content": "preis"}, datetime(2026, 5, 9, 10, tzinfo=BERLIN)).passed
    assert not check(nested, {"content": "hallo"}, datetime(2026, 5, 9, 10, tzinfo=BERLIN)).passed


# --------------------------------------------------------------------------- explanations


def test_every_leaf_is_explained_with_actual_expected_and_result():
    result = check(
        [cond("confidence_threshold", "greater_than", 0.8), KW], {"intentConfidence": 0.5, "content": "Preis?"}
    )
    assert result.passed is False
    first, second = result.explanation
    assert first == {
        **first,
        "path": "conditions[0]",
        "condition": "confidence_threshold",
        "operator": "greater_than",
        "actual": 0.5,
        "expected": 0.8,
        "passed": False,
    }
    assert "0.5" in first["message"] and "0.8" in first["message"] and "failed" in first["message"]
    assert second["path"] == "conditions[1]" and second["passed"] is True and second["actual"] == "Preis?"


def test_group_explanations_have_paths_and_entries_for_children():
    result = check(
        [{"type": "not", "condition": {"type": "any", "conditions": [KW, WA]}}],
        {"content": "hallo", "channel": "whatsapp"},
    )
    assert result.passed is False
    paths = [(e["path"], e["condition"], e["passed"]) for e in result.explanation]
    assert paths == [
        ("conditions[0]", "not", False),
        ("conditions[0].condition", "any", True),
        ("conditions[0].condition.conditions[0]", "keyword_match", False),
        ("conditions[0].condition.conditions[1]", "channel_match", True),
    ]
    assert all("message" in e for e in result.explanation)


def test_custom_field_explanation_names_the_field():
    [entry] = check([cond("custom_field", "equals", "gold", field="tier")], {"customFields": {}}).explanation
    assert "tier" in entry["message"] and entry["actual"] is None and entry["passed"] is False


def test_custom_path_prefix_for_branch_conditions():
    result = evaluate(
        _conditions.validate_python([KW]),
        EvalContext({"content": "x"}, MONDAY_1030),
        path="actions.b1.config.conditions",
    )
    assert result.explanation[0]["path"] == "actions.b1.config.conditions[0]"
