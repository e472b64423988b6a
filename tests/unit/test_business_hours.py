"""Business hours, closed days and the outside_business_hours condition."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from engine.errors import InvalidInput
from engine.workflow.business_hours import is_open, validate
from engine.workflow.conditions import EvalContext, evaluate
from engine.workflow.definitions import WorkflowDefinition
from engine.workflow.validation import errors_only
from engine.workflow.validation import validate as validate_workflow

BERLIN = ZoneInfo("Europe/Berlin")
HOURS = validate(
    {
        "weekly": {"1": {"open": "07:00", "close": "22:00"}, "5": {"open": "18:00", "close": "02:00"}},
        "closedDays": ["2026-11-30"],
    }
)


def at(*args) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


@pytest.mark.parametrize(
    "moment,expected",
    [
        (at(2026, 11, 23, 6, 59), False),  # Monday before opening
        (at(2026, 11, 23, 7, 0), True),  # Monday opening
        (at(2026, 11, 23, 21, 59), True),
        (at(2026, 11, 23, 22, 0), False),  # closing is exclusive
        (at(2026, 11, 30, 12, 0), False),  # a closed Monday (holiday)
        (at(2026, 11, 27, 23, 0), True),  # Friday night range past midnight
        (at(2026, 11, 28, 1, 30), True),  # ... still open early Saturday
        (at(2026, 11, 28, 2, 0), False),
        (at(2026, 11, 29, 12, 0), False),  # Sunday: no hours
    ],
)
def test_is_open(moment, expected):
    assert is_open(HOURS, moment) is expected


def test_no_hours_means_always_open():
    assert is_open(None, at(2026, 11, 29, 3, 0))


def test_bad_input_names_the_field():
    with pytest.raises(InvalidInput) as err:
        validate({"weekly": {"1": {"open": "7 Uhr", "close": "22:00"}}})
    assert err.value.field == "businessHours.weekly.1.open"
    with pytest.raises(InvalidInput) as err:
        validate({"weekly": {}, "closedDays": ["24.12."]})
    assert err.value.field == "businessHours.closedDays"


def _workflow(operator: str, value=None) -> dict:
    cond = {"type": "time_range", "operator": operator}
    if value is not None:
        cond["value"] = value
    return {
        "name": "After hours",
        "trigger": {"type": "whatsapp_message", "config": {}},
        "conditions": [cond],
        "actions": [
            {"id": "a", "type": "send_whatsapp", "config": {"message": "Wir melden uns morgen."}, "nextActionId": None}
        ],
    }


def test_outside_business_hours_condition():
    definition = WorkflowDefinition.model_validate(_workflow("outside_business_hours"))
    closed = evaluate(definition.conditions, EvalContext({}, at(2026, 11, 23, 23, 0), None, HOURS))
    open_ = evaluate(definition.conditions, EvalContext({}, at(2026, 11, 23, 10, 0), None, HOURS))
    assert closed.passed and not open_.passed
    assert "closed" in str(closed.explanation)


def test_business_hours_operators_validate_and_other_operators_still_need_a_value():
    assert not errors_only(validate_workflow(_workflow("outside_business_hours")))
    assert errors_only(validate_workflow(_workflow("outside_business_hours", 5)))
    assert errors_only(validate_workflow(_workflow("greater_than")))
