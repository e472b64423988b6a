"""Every input limit of the product in one place, and the checks that enforce them.

The REST API refuses anything beyond these at the edge (``engine/api/limits.py``), and the
engine checks the same limits again where data enters it from the UI, the CLI or a
provider webhook (workflow validation, event parsing), so nothing that validates can break
a studio afterwards. The README's "Limits" table lists them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

#: Deepest nesting of objects and arrays in any JSON body or stored JSON value.
MAX_JSON_DEPTH = 32
#: Deepest nesting of condition groups (``all`` / ``any`` / ``not``) in a workflow.
MAX_CONDITION_DEPTH = 8
#: Most conditions in one workflow, counted over every group.
MAX_CONDITIONS = 200
#: Most actions in one workflow.
MAX_ACTIONS = 200
#: Longest text a rendered template may produce; the step fails with a clear error beyond it.
MAX_RENDERED_BYTES = 64 * 1024
#: Largest page number of any list (with at most 500 rows a page: 500 million rows).
MAX_PAGE = 1_000_000
#: Largest version number (a 32-bit signed integer, what every backend stores).
MAX_VERSION = 2**31 - 1
#: Dates accepted in events and bookings (UTC, inclusive).
MIN_DATE = datetime(1970, 1, 1, tzinfo=UTC)
MAX_DATE = datetime(2200, 12, 31, tzinfo=UTC)
#: The same window as a pattern for JSON Schema (years 1971-2199 are inside it at any UTC offset).
DATE_PATTERN = r"^(197[1-9]|19[89][0-9]|2[01][0-9][0-9])-"
#: Deepest nesting of ``{{ ... }}`` expressions (parentheses, brackets, filters) in a template.
MAX_TEMPLATE_NESTING = 40


class LimitExceeded(ValueError):
    """A value is beyond one of the product's limits; ``path`` names where."""

    def __init__(self, message: str, path: str = "") -> None:
        self.path = path
        super().__init__(message)


def _join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def json_problems(value: Any, path: str = "", *, max_depth: int = MAX_JSON_DEPTH) -> Iterator[tuple[str, str]]:
    """``(path, message)`` for every value no backend can store or serve back.

    Too deep nesting (stops descending there), non-finite numbers (NaN, Infinity) and NUL
    characters in strings or keys. Iterative, so any depth is safe to check.
    """
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        node, where, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth >= max_depth:
                yield where or "body", f"nested more than {max_depth} levels deep"
                continue
            items = node.items() if isinstance(node, dict) else enumerate(node)
            children = []
            for key, child in items:
                if isinstance(key, str) and "\x00" in key:
                    yield (
                        _join(where, key.replace("\x00", "\\u0000")),
                        "keys cannot contain the NUL character (\\u0000)",
                    )
                    continue
                children.append((child, _join(where, key), depth + 1))
            stack.extend(reversed(children))
        elif isinstance(node, float) and not math.isfinite(node):
            yield where or "body", f"numbers must be finite (got {node})"
        elif isinstance(node, str) and "\x00" in node:
            yield where or "body", "text cannot contain the NUL character (\\u0000)"


def check_json(value: Any, path: str = "", *, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise :class:`LimitExceeded` for the first problem :func:`json_problems` finds."""
    for where, message in json_problems(value, path, max_depth=max_depth):
        raise LimitExceeded(message, where)


def check_text(value: str | None, path: str) -> None:
    """Refuse a NUL character in a single text value (PostgreSQL cannot store it)."""
    if value is not None and "\x00" in value:
        raise LimitExceeded("text cannot contain the NUL character (\\u0000)", path)


def check_date(value: datetime, path: str) -> datetime:
    """Refuse a date outside ``MIN_DATE`` .. ``MAX_DATE`` (after conversion to UTC)."""
    try:
        utc = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    except (OverflowError, ValueError):
        raise LimitExceeded(_date_message(), path) from None
    if not MIN_DATE <= utc <= MAX_DATE:
        raise LimitExceeded(_date_message(), path)
    return value


def _date_message() -> str:
    return f"date must lie between {MIN_DATE:%Y-%m-%d} and {MAX_DATE:%Y-%m-%d} (UTC)"


def sane_datetime(value: datetime | None) -> datetime | None:
    """A pydantic ``AfterValidator``: the date within the accepted window (ValueError otherwise)."""
    if value is None:
        return None
    try:
        return check_date(value, "")
    except LimitExceeded as exc:
        raise ValueError(str(exc)) from None


def text_datetime(value: Any) -> Any:
    """A pydantic ``BeforeValidator``: a date as ISO 8601 text (or a datetime), not a number of
    seconds, which pydantic would otherwise quietly read as a Unix timestamp."""
    if value is None or isinstance(value, (str, datetime)):
        return value
    raise ValueError("must be an ISO 8601 date and time such as 2026-01-05T18:00:00+01:00")


def no_nul(value: Any) -> Any:
    """A pydantic ``AfterValidator`` for text and JSON fields: no NUL, finite, not too deep."""
    for where, message in json_problems(value):
        raise ValueError(f"{where}: {message}" if where and where != "body" else message)
    return value
