"""Action executors, registered by action type (huey/procrastinate-style registry).

An executor receives a :class:`StepContext` and returns a :class:`StepResult`. Executors
marked ``external`` talk to the outside world: the runner commits before calling them and
never holds a database transaction across their I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.uow import UnitOfWork
from engine.workflow import templating


@dataclass
class StepContext:
    """Everything an executor may use.

    ``uow``: the step's unit of work (:mod:`engine.uow`; None for external steps, which run
    with no transaction open): ``uow.session`` for ORM reads and writes, ``uow.insert`` for
    complete rows. ``now`` is the step's time (the unit of work's clock): executors read no
    other clock.
    """

    tenant: dict[str, Any]
    execution_id: str
    step_id: str
    action: Any
    context: dict[str, Any]
    now: datetime
    dry_run: bool
    uow: UnitOfWork | None
    attempt: int = 1
    emit: Callable[[dict[str, Any]], Any] | None = None
    db: Any = None
    #: A test-console run: nothing is delivered or counted (see engine/services/console.py).
    test: bool = False
    #: In a test run: call webhooks and remote AI providers for real.
    real_calls: bool = False

    @property
    def simulate_calls(self) -> bool:
        """Calls to the outside world are simulated (dry run, or a test run without real calls)."""
        return self.dry_run or (self.test and not self.real_calls)

    def render(self, value: Any) -> Any:
        """Render templates inside a config value against trigger/results/lead/tenant/now."""
        return templating.render_value(value, self.context)

    @property
    def trigger(self) -> dict[str, Any]:
        return self.context["trigger"]


@dataclass
class StepResult:
    """What a step produced.

    ``output`` becomes ``results.<actionId>``; ``input`` is the rendered config recorded on
    the step; ``wait_until`` parks the execution; ``next_action_id`` overrides the wiring
    (branch); ``lead`` replaces ``lead`` in the context.
    """

    output: dict[str, Any] = field(default_factory=dict)
    input: dict[str, Any] = field(default_factory=dict)
    wait_until: datetime | None = None
    next_action_id: str | None = None
    jump: bool = False
    lead: dict[str, Any] | None = None


@dataclass(frozen=True)
class Executor:
    type: str
    fn: Callable[[StepContext], StepResult]
    external: bool = False
    #: Writes at most one thing, after everything that can fail: no savepoint needed.
    atomic: bool = False


REGISTRY: dict[str, Executor] = {}


def register(action_type: str, *, external: bool = False, atomic: bool = False):
    """Decorator: the executor for ``action_type``. Registering a type twice is an error.

    ``external``: talks to the outside world (no transaction is held across it).
    ``atomic``: its only write comes after everything that can fail, so the runner can skip
    the savepoint that otherwise isolates a failing action's partial writes.
    """

    def wrap(fn: Callable[[StepContext], StepResult]):
        if action_type in REGISTRY:
            raise RuntimeError(f"an executor for {action_type!r} is already registered")
        REGISTRY[action_type] = Executor(action_type, fn, external, atomic)
        return fn

    return wrap


def executor_for(action_type: str) -> Executor:
    load_all()
    return REGISTRY[action_type]


_loaded = False


def load_all() -> None:
    """Import every executor module once (they register themselves)."""
    global _loaded
    if not _loaded:
        # A failing import must fail loudly: swallowing it silently dropped five executors.
        from engine.actions import flow, integrations, messages  # noqa: F401

        _loaded = True
