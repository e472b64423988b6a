"""Every action type has an executor, every condition type an evaluator; no double registration."""

from __future__ import annotations

import pytest

from engine import actions
from engine.actions import REGISTRY, StepResult, executor_for, register
from engine.workflow.conditions import EVALUATORS
from engine.workflow.definitions import OPERATORS, ActionType, ConditionType


@pytest.mark.parametrize("action_type", [t.value for t in ActionType])
def test_every_action_type_has_an_executor(action_type):
    executor = executor_for(action_type)
    assert executor.type == action_type and callable(executor.fn)


def test_registry_has_no_unknown_types():
    actions.load_all()
    assert set(REGISTRY) == {t.value for t in ActionType}


def test_external_flags():
    # The runner never holds a transaction across these (HTTP, AI providers).
    assert executor_for("call_webhook").external and executor_for("ask_ai").external
    for local in (
        "send_message",
        "send_whatsapp",
        "send_email",
        "send_sms",
        "wait",
        "branch",
        "schedule_follow_up",
        "create_lead",
        "update_lead",
    ):
        assert not executor_for(local).external, local


def test_every_condition_type_has_an_evaluator():
    assert set(EVALUATORS) == {t.value for t in ConditionType} == set(OPERATORS)
    assert all(callable(fn) for fn in EVALUATORS.values())


def test_unknown_action_type_raises():
    with pytest.raises(KeyError):
        executor_for("teleport")


def test_registering_a_type_twice_raises():
    actions.load_all()
    with pytest.raises(RuntimeError, match="already registered"):
        register("send_whatsapp")(lambda step: StepResult())
    assert REGISTRY["send_whatsapp"].fn.__name__ == "send_whatsapp"


def test_registering_a_new_type_twice_raises():
    register("_probe")(lambda step: StepResult())
    try:
        with pytest.raises(RuntimeError):
            register("_probe")(lambda step: StepResult())
    finally:
        REGISTRY.pop("_probe", None)
