"""Small text formatters: relative times, percentages, local timestamps."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo


def ago(when: datetime | None, now: datetime | None = None) -> str:
    if when is None:
        return "never"
    when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    seconds = ((now or datetime.now(timezone.utc)) - when).total_seconds()
    for limit, size, unit in ((60, 1, "s"), (3600, 60, "min"), (86_400, 3600, "h"), (86_400 * 45, 86_400, "d")):
        if seconds < limit:
            return "just now" if unit == "s" else f"{int(seconds // size)} {unit} ago"
    return when.strftime("%d %b %Y")


def percent(rate: float | None) -> str:
    return "–" if rate is None else f"{rate * 100:.0f}%"


def local(when: datetime | None, tz_name: str) -> str:
    if when is None:
        return "–"
    when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    return when.astimezone(ZoneInfo(tz_name)).strftime("%d %b %Y, %H:%M")
