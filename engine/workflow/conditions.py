"""Evaluate conditions and groups against an event, with an explanation per condition.

"Why didn't my workflow run?" always has an answer: every leaf yields what was compared,
the actual and the expected value and whether it passed. Times are in the tenant's zone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine.workflow.definitions import Condition

if TYPE_CHECKING:
    from engine.tenant_settings import BusinessHours

#: JavaScript numbering, as in the spec: 0 = Sunday ... 6 = Saturday.
WEEKDAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


@dataclass
class EvalContext:
    """What conditions look at: the trigger data and the local time of the tenant."""

    trigger: dict[str, Any]
    now_local: datetime
    lead: dict[str, Any] | None = None
    #: The studio's business hours (settings ``businessHours``) for ``outside_business_hours``.
    business_hours: BusinessHours | dict[str, Any] | None = None


@dataclass
class Evaluation:
    passed: bool
    explanation: list[dict[str, Any]] = field(default_factory=list)


def js_weekday(moment: datetime) -> int:
    """0 = Sunday ... 6 = Saturday (Python's weekday() has Monday = 0)."""
    return (moment.weekday() + 1) % 7


def evaluate(conditions: list[Condition], ctx: EvalContext, path: str = "conditions") -> Evaluation:
    """All conditions must hold (a plain list is an ``all`` group). Every leaf is explained."""
    return _all(conditions, ctx, path)


def _all(conditions: list, ctx: EvalContext, path: str) -> Evaluation:
    results = [_one(c, ctx, f"{path}[{i}]") for i, c in enumerate(conditions)]
    return Evaluation(all(r.passed for r in results), [e for r in results for e in r.explanation])


def _one(cond: Any, ctx: EvalContext, path: str) -> Evaluation:
    if cond.type == "all":
        inner = _all(cond.conditions, ctx, f"{path}.conditions")
        return _group(path, "all", inner)
    if cond.type == "any":
        results = [_one(c, ctx, f"{path}.conditions[{i}]") for i, c in enumerate(cond.conditions)]
        inner = Evaluation(any(r.passed for r in results), [e for r in results for e in r.explanation])
        return _group(path, "any", inner)
    if cond.type == "not":
        inner = _one(cond.condition, ctx, f"{path}.condition")
        return _group(path, "not", Evaluation(not inner.passed, inner.explanation))
    actual, passed = _LEAVES[cond.type](cond, ctx)
    return Evaluation(passed, [_explain(path, cond, actual, passed)])


def _group(path: str, kind: str, inner: Evaluation) -> Evaluation:
    words = {"all": "all of", "any": "at least one of", "not": "not"}
    entry = {
        "path": path,
        "condition": kind,
        "passed": inner.passed,
        "message": f"{words[kind]} the conditions below: {'passed' if inner.passed else 'failed'}",
    }
    return Evaluation(inner.passed, [entry, *inner.explanation])


def _explain(path: str, cond: Any, actual: Any, passed: bool) -> dict[str, Any]:
    expected = cond.value
    subject = cond.type.replace("_", " ")
    if cond.type == "custom_field":
        subject = f"custom field {cond.field!r}"
    if cond.type == "day_of_week":
        actual_text = f"{actual} ({WEEKDAY_NAMES[actual]})" if isinstance(actual, int) else actual
    else:
        actual_text = repr(actual)
    return {
        "path": path,
        "condition": cond.type,
        "operator": cond.operator,
        "actual": actual,
        "expected": expected,
        "passed": passed,
        "message": f"{subject}: {actual_text} {cond.operator.replace('_', ' ')} {expected!r} "
        f"-> {'passed' if passed else 'failed'}",
    }


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _text_op(op: str, actual: str, expected: str) -> bool:
    return {
        "equals": actual == expected,
        "contains": expected in actual,
        "starts_with": actual.startswith(expected),
        "ends_with": actual.endswith(expected),
    }[op]


def _keyword(cond, ctx):
    content = str(ctx.trigger.get("content") or "")
    actual = content if cond.case_sensitive else content.casefold()
    words = [w if cond.case_sensitive else w.casefold() for w in _as_list(cond.value)]
    op_text = actual.strip() if cond.operator == "equals" else actual
    return content, any(_text_op(cond.operator, op_text, w) for w in words)


def _intent(cond, ctx):
    intent = ctx.trigger.get("intent")
    values = _as_list(cond.value)
    if cond.operator == "not_in":
        return intent, intent not in values
    return intent, intent in values


def _sender(cond, ctx):
    sender = str(ctx.trigger.get("from") or "")
    return sender, _text_op(cond.operator, sender.casefold(), str(cond.value).casefold())


def _hour(cond, ctx):
    now = ctx.now_local
    if cond.operator.endswith("business_hours"):
        from engine.workflow.business_hours import is_open

        open_now = is_open(ctx.business_hours, now)
        return now.strftime("%a %H:%M") + (
            " (open)" if open_now else " (closed)"
        ), open_now if cond.operator == "within_business_hours" else not open_now
    hour = now.hour + now.minute / 60
    if cond.operator == "greater_than":
        return now.hour, now.hour > cond.value if float(cond.value).is_integer() else hour > cond.value
    if cond.operator == "less_than":
        return now.hour, hour < cond.value
    start, end = cond.value
    inside = start <= hour < end if start <= end else (hour >= start or hour < end)
    return round(hour, 2), inside


def _weekday(cond, ctx):
    day = js_weekday(ctx.now_local)
    return day, day in _as_list(cond.value)


def _confidence(cond, ctx):
    confidence = ctx.trigger.get("intentConfidence")
    if confidence is None:
        return None, False
    return confidence, confidence > cond.value if cond.operator == "greater_than" else confidence < cond.value


def _channel(cond, ctx):
    channel = ctx.trigger.get("channel")
    return channel, channel in _as_list(cond.value)


def _custom_field(cond, ctx):
    fields = {**(ctx.lead or {}).get("customFields", {}), **(ctx.trigger.get("customFields") or {})}
    actual = fields.get(cond.field)
    if actual is None:
        return None, False
    if cond.operator in ("greater_than", "less_than"):
        try:
            a, e = float(actual), float(cond.value)
        except (TypeError, ValueError):
            return actual, False
        return actual, a > e if cond.operator == "greater_than" else a < e
    if cond.operator == "contains":
        return actual, str(cond.value).casefold() in str(actual).casefold()
    return actual, str(actual).casefold() == str(cond.value).casefold() if isinstance(
        actual, str
    ) else actual == cond.value


_LEAVES: dict[str, Callable[[Any, EvalContext], tuple[Any, bool]]] = {
    "keyword_match": _keyword,
    "intent_match": _intent,
    "sender_match": _sender,
    "time_range": _hour,
    "day_of_week": _weekday,
    "confidence_threshold": _confidence,
    "channel_match": _channel,
    "custom_field": _custom_field,
}

EVALUATORS = _LEAVES
