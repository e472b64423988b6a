"""Scenarios: saved test-console conversations with expectations, replayed to guard changes.

A scenario keeps the inputs of a conversation (kind, channel, text, simulated times, "skip
all" steps) and expectations the owner ticked: which workflows ran or were skipped, which
messages were sent (text contains ...), the intent. :func:`run_scenario` replays it in test
mode on a fresh contact through :mod:`engine.services.console` (the engine's normal ingest)
and compares; with ``drafts`` it runs against unsaved builder definitions and stores nothing
about the result.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from engine.errors import Conflict, InvalidInput, NotFound
from engine.security.auth import EDIT, READ, Actor
from engine.services import console
from engine.services.console import ConsoleInput, Conversation, TurnReport
from engine.services.workflows import Out
from engine.store.models import Scenario
from engine.uow import UnitOfWork

#: Replies the member does not get (an opt-out, a cap, the provider refused): never "a reply".
NOT_SENT = frozenset({"suppressed", "failed"})

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_STEPS",
    "Expectation",
    "ScenarioIn",
    "ScenarioOut",
    "ScenarioResult",
    "ScenarioStep",
    "delete_scenario",
    "expectations_from",
    "get_scenario",
    "list_scenarios",
    "run_all",
    "run_scenario",
    "save_scenario",
    "steps_from",
]

MAX_STEPS = 50


class Expectation(BaseModel):
    """One thing that must happen. ``ran``/``skipped``: ``workflow`` (name); ``sent``: a reply
    whose text contains ``contains``; ``intent``: the detected intent is ``intent``."""

    kind: Literal["ran", "skipped", "sent", "intent"]
    workflow: str | None = Field(default=None, max_length=200)
    contains: str | None = Field(default=None, max_length=500)
    intent: str | None = Field(default=None, max_length=64)
    #: Which input it is about (0-based); None: any input of the scenario.
    turn: int | None = Field(default=None, ge=0)

    def describe(self) -> str:
        where = f" (input {self.turn + 1})" if self.turn is not None else ""
        return {
            "ran": f"{self.workflow} runs",
            "skipped": f"{self.workflow} is skipped",
            "sent": f"a reply contains {self.contains!r}",
            "intent": f"intent is {self.intent}",
        }[self.kind] + where


class ScenarioStep(ConsoleInput):
    """An input of the conversation, or ``skip_all``: fast-forward everything due."""

    kind: Literal["message", "missed_call", "lead", "booking", "schedule", "skip_all"] = "message"  # type: ignore[assignment]


class ScenarioIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    channel: str = "whatsapp"
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    contact_name: str = Field(default="Test Member", max_length=200)
    steps: list[ScenarioStep] = Field(min_length=1, max_length=MAX_STEPS)
    expectations: list[Expectation] = Field(min_length=1, max_length=100)


class ScenarioOut(Out):
    id: str
    name: str
    channel: str
    contact: dict
    steps: list
    expectations: list
    last_result: dict
    last_run_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @property
    def status(self) -> str:
        """pass, fail or never run."""
        if not self.last_result:
            return "never run"
        return "pass" if self.last_result.get("passed") else "fail"


class ScenarioResult(Out):
    scenario_id: str
    name: str
    passed: bool
    #: One sentence per expectation that did not hold: what was expected, what happened.
    failures: list[str]
    checked: int
    ran_at: datetime
    draft: bool = False


# --------------------------------------------------------------------------- from a conversation


def steps_from(conv: Conversation) -> list[dict[str, Any]]:
    """The inputs of a conversation as scenario steps, with their simulated times; a "skip all"
    after an input whose waits were fast-forwarded."""
    steps: list[dict[str, Any]] = []
    for turn in conv.turns:
        step: dict[str, Any] = {"kind": turn.kind, "at": turn.at.isoformat()}
        if turn.kind == "message":
            step.update(channel=turn.channel or "whatsapp", text=turn.text, subject=turn.subject)
        elif turn.kind == "booking":
            step["className"] = turn.event_data.get("className")
        elif turn.kind == "lead":
            step.update(leadName=turn.event_data.get("name"), leadSource=turn.event_data.get("source"))
        elif turn.kind == "schedule":
            step["workflowId"] = next((d.workflow_id for d in turn.decisions if d.outcome == "ran"), None)
        steps.append({k: v for k, v in step.items() if v is not None})
        if any(d.fast_forwarded for d in turn.decisions):
            steps.append({"kind": "skip_all"})
    return steps


def expectations_from(conv: Conversation) -> list[dict[str, Any]]:
    """Everything that happened, as expectations the owner can tick."""
    out: list[dict[str, Any]] = []
    for i, turn in enumerate(conv.turns):
        if turn.intent and turn.intent_used:
            out.append({"kind": "intent", "intent": turn.intent, "turn": i})
        for d in turn.decisions:
            out.append({"kind": d.outcome, "workflow": d.workflow_name, "turn": i})
        for reply in turn.replies:
            if reply.status not in NOT_SENT:
                out.append({"kind": "sent", "contains": reply.body[:60], "turn": i})
    return out


# --------------------------------------------------------------------------- CRUD


def _validated(data: dict[str, Any] | ScenarioIn) -> ScenarioIn:
    if isinstance(data, ScenarioIn):
        return data
    try:
        return ScenarioIn.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        path = ".".join(str(p) for p in err["loc"]) or "scenario"
        raise InvalidInput(err["msg"], field=path) from None


def save_scenario(*, uow: UnitOfWork, actor: Actor, data: dict[str, Any] | ScenarioIn) -> ScenarioOut:
    """Store a scenario of the actor's studio; names are unique per studio."""
    actor.require(EDIT)
    sc = _validated(data)
    name = sc.name.strip()
    if not name:
        raise InvalidInput("give the scenario a name", field="name")
    row = Scenario(
        tenant_id=actor.tenant_id,
        name=name,
        channel=sc.channel,
        contact={"name": sc.contact_name},
        steps=[s.model_dump(mode="json", exclude_none=True, by_alias=True) for s in sc.steps],
        expectations=[e.model_dump(mode="json", exclude_none=True) for e in sc.expectations],
        created_by=actor.user_id,
    )
    try:
        with uow.session.begin_nested():  # a taken name fails alone, at once
            uow.session.add(row)
    except IntegrityError:
        raise Conflict(f"a scenario called {name!r} already exists", field="name") from None
    return ScenarioOut.model_validate(row)


def list_scenarios(*, uow: UnitOfWork, actor: Actor) -> list[ScenarioOut]:
    """The studio's scenarios with their last result, by name."""
    actor.require(READ)
    s = uow.session
    rows = s.exec(select(Scenario).where(Scenario.tenant_id == actor.tenant_id).order_by(col(Scenario.name))).all()
    return [ScenarioOut.model_validate(r) for r in rows]


def get_scenario(*, uow: UnitOfWork, actor: Actor, scenario_id: str) -> ScenarioOut:
    actor.require(READ)
    s = uow.session
    row = s.exec(select(Scenario).where(Scenario.id == scenario_id, Scenario.tenant_id == actor.tenant_id)).first()
    if row is None:
        raise NotFound(f"scenario {scenario_id} not found")
    return ScenarioOut.model_validate(row)


def delete_scenario(*, uow: UnitOfWork, actor: Actor, scenario_id: str) -> None:
    actor.require(EDIT)
    s = uow.session
    row = s.exec(select(Scenario).where(Scenario.id == scenario_id, Scenario.tenant_id == actor.tenant_id)).first()
    if row is None:
        raise NotFound(f"scenario {scenario_id} not found")
    s.delete(row)


# --------------------------------------------------------------------------- running


def run_scenario(
    *, uow: UnitOfWork, actor: Actor, scenario_id: str, drafts: dict[str, dict] | None = None
) -> ScenarioResult:
    """Replay the scenario in test mode on a fresh contact and compare with its expectations.

    ``drafts``: unsaved definitions by workflow id to run against; the result is then not stored.
    """
    actor.require(EDIT)
    drafts = console.checked_drafts(uow=uow, actor=actor, drafts=drafts)
    sc = get_scenario(uow=uow, actor=actor, scenario_id=scenario_id)
    contact = console.new_contact(sc.contact.get("name") or "Test Member")
    turns: list[TurnReport] = []
    errors: list[str] = []
    for i, raw in enumerate(sc.steps):
        step = ScenarioStep.model_validate(raw)
        if step.kind == "skip_all":
            console.fast_forward(uow=uow, actor=actor, contact=contact, all_items=True, drafts=drafts)
            continue
        try:
            turns.append(
                console.send(
                    uow=uow,
                    actor=actor,
                    contact=contact,
                    inp=ConsoleInput.model_validate(step.model_dump()),
                    drafts=drafts,
                )
            )
        except (InvalidInput, NotFound) as exc:
            errors.append(f"input {i + 1} could not be sent: {exc.message}")
    # Reports again after the fast-forwards (follow-ups arrive later).
    final = console.conversation(uow=uow, actor=actor, contact=contact).turns
    failures = errors + [f for e in sc.expectations if (f := _check(Expectation.model_validate(e), final))]
    result = ScenarioResult(
        scenario_id=sc.id,
        name=sc.name,
        passed=not failures,
        failures=failures,
        checked=len(sc.expectations),
        ran_at=uow.now(),
        draft=bool(drafts),
    )
    if not drafts:
        s = uow.session
        row = s.get(Scenario, sc.id)
        assert row is not None  # read above in this unit of work
        row.last_result = result.to_api()
        row.last_run_at = result.ran_at
        s.add(row)
    return result


def run_all(*, uow: UnitOfWork, actor: Actor, drafts: dict[str, dict] | None = None) -> list[ScenarioResult]:
    """Every scenario of the studio, by name."""
    actor.require(EDIT)
    drafts = console.checked_drafts(uow=uow, actor=actor, drafts=drafts)  # a bad draft is refused before anything runs
    return [
        run_scenario(uow=uow, actor=actor, scenario_id=sc.id, drafts=drafts)
        for sc in list_scenarios(uow=uow, actor=actor)
    ]


def _check(exp: Expectation, turns: list[TurnReport]) -> str | None:
    """None when the expectation holds, else what differs, in words."""
    if exp.turn is not None:
        if exp.turn >= len(turns):
            return f"expected {exp.describe()}, but the scenario has only {len(turns)} input(s)"
        scope = [turns[exp.turn]]
    else:
        scope = turns
    decisions = [d for t in scope for d in t.decisions]
    if exp.kind in ("ran", "skipped"):
        mine = [d for d in decisions if d.workflow_name == exp.workflow]
        if any(d.outcome == exp.kind for d in mine):
            return None
        if not mine:
            return f"expected {exp.describe()}, but it was not considered (deleted, disabled or another trigger?)"
        why = "; ".join(r for d in mine for r in d.reasons) or (mine[0].status or "")
        return f"expected {exp.describe()}, but it was {mine[0].outcome}" + (f" ({why})" if why else "")
    if exp.kind == "sent":
        replies = [r for t in scope for r in t.replies]
        bodies = [r.body for r in replies if r.status not in NOT_SENT]
        if any((exp.contains or "").lower() in b.lower() for b in bodies):
            return None
        got = "; ".join(repr(b[:60]) for b in bodies) or "no reply at all"
        held = [f"{r.body[:60]!r} ({r.status}: {r.reason or 'no reason'})" for r in replies if r.status in NOT_SENT]
        return f"expected {exp.describe()}, but the replies were: {got}" + (
            f"; not sent: {'; '.join(held)}" if held else ""
        )
    intents = [t.intent for t in scope if t.intent]
    if exp.intent in intents:
        return None
    return f"expected {exp.describe()}, but it was {', '.join(intents) or 'none'}"
