"""Small text formatters: relative times, percentages, local timestamps."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo


def ago(when: datetime | None, now: datetime | None = None, tz_name: str = "UTC") -> str:
    if when is None:
        return "never"
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    seconds = ((now or datetime.now(UTC)) - when).total_seconds()
    for limit, size, unit in ((60, 1, "s"), (3600, 60, "min"), (86_400, 3600, "h"), (86_400 * 45, 86_400, "d")):
        if seconds < limit:
            return "just now" if unit == "s" else f"{int(seconds // size)} {unit} ago"
    return when.astimezone(ZoneInfo(tz_name)).strftime("%d %b %Y")


def percent(rate: float | None) -> str:
    return "–" if rate is None else f"{rate * 100:.0f}%"


def local(when: datetime | None, tz_name: str) -> str:
    if when is None:
        return "–"
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return when.astimezone(ZoneInfo(tz_name)).strftime("%d %b %Y, %H:%M")


def localize(value, tz_name: str):
    """Step inputs and outputs for display: every ISO timestamp with an offset in the studio's zone.

    ``{"resumeAt": "2026-05-04T08:05:00+00:00"}`` -> ``{"resumeAt": "2026-05-04T10:05:00+02:00"}``
    (Europe/Berlin); everything else is returned unchanged.
    """
    if isinstance(value, dict):
        return {k: localize(v, tz_name) for k, v in value.items()}
    if isinstance(value, list):
        return [localize(v, tz_name) for v in value]
    if isinstance(value, str) and 19 <= len(value) <= 40 and value[4:5] == "-" and "T" in value:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return value
        if parsed.tzinfo is not None:
            return parsed.astimezone(ZoneInfo(tz_name)).isoformat(timespec="seconds")
    return value
