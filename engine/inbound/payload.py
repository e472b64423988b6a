"""What every provider parser shares: a pydantic base for documented payloads, the error for
a payload of another shape, JSON bodies within the engine's limits, and events checked as the
runner will check them.

Providers add fields without notice, so unknown fields are ignored; the fields we read are
typed as each provider documents them, and anything else is an :class:`UnexpectedShape`
naming where (never the value: payloads carry members' messages and numbers).
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from engine.errors import InvalidInput
from engine.workflow.limits import LimitExceeded, json_problems

M = TypeVar("M", bound="ProviderModel")


class ProviderModel(BaseModel):
    """A documented provider payload (or part of one)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class UnexpectedShape(InvalidInput):
    """The provider's payload does not have the documented shape."""


def location(loc: tuple[int | str, ...]) -> str:
    """``("entry", 0, "changes")`` -> ``entry[0].changes``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"


def parse_as(model: type[M], data: Any, at: tuple[int | str, ...] = ()) -> M:
    """``data`` (found at ``at`` in the payload) as ``model``; raises :class:`UnexpectedShape`
    naming the first wrong field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False, include_input=False)[0]
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise UnexpectedShape(err["msg"] + more, field=location((*at, *err["loc"]))) from None


def _reject_constant(name: str) -> float:
    raise LimitExceeded(f"numbers must be finite (got {name})")


def json_body(body: bytes) -> Any:
    """The body as JSON within the engine's limits (depth, finite numbers, no NUL).

    Provider routes skip the API's edge check of JSON bodies (``JsonGuard``) so that the
    signature is checked first; this applies the same limits afterwards.
    """
    try:
        value = json.loads(body, parse_constant=_reject_constant)
    except LimitExceeded as exc:
        raise UnexpectedShape(str(exc), field="body") from None
    except RecursionError:
        raise UnexpectedShape("is nested too deeply", field="body") from None
    except ValueError:  # includes UnicodeDecodeError
        raise UnexpectedShape("is not JSON", field="body") from None
    for where, message in json_problems(value):
        raise UnexpectedShape(message, field=where or "body")
    return value


def storable(event: dict[str, Any]) -> dict[str, Any]:
    """``event`` if the runner will take it (the same check as ``Runner.ingest``), else
    :class:`UnexpectedShape` naming the event field."""
    from engine.runner.context import parse_event

    try:
        parse_event(event)
    except InvalidInput as exc:
        raise UnexpectedShape(exc.message) from None
    return event
