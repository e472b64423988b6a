"""Cron schedules in a tenant's timezone, safe on daylight-saving days.

croniter walks the *wall clock* (naive local times); each wall time is then placed in the
timezone. A wall time that does not exist (spring forward, 02:30 in Berlin) is moved
forward by the gap, so it still fires once; a wall time that exists twice (fall back)
fires at its first occurrence only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from croniter import croniter


def next_fire_time(expression: str, tz_name: str, after: datetime) -> datetime:
    """The first fire time strictly after ``after`` (aware), as an aware UTC datetime."""
    tz = ZoneInfo(tz_name)
    wall = after.astimezone(tz).replace(tzinfo=None)
    it = croniter(expression, wall)
    for _ in range(1000):
        candidate = _place(it.get_next(datetime), tz)
        if candidate > after:
            return candidate
    raise ValueError(f"schedule {expression!r} has no fire time after {after.isoformat()}")


def _place(wall: datetime, tz: ZoneInfo) -> datetime:
    # fold=0: the first of two repeated wall times; a wall time inside a gap maps past it.
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)


def upcoming(expression: str, tz_name: str, after: datetime, count: int = 5) -> list[datetime]:
    """The next ``count`` fire times (UTC), e.g. for the builder's preview."""
    out: list[datetime] = []
    for _ in range(count):
        after = next_fire_time(expression, tz_name, after)
        out.append(after)
    return out


def describe(expression: str) -> str:
    """A short human description of common cron shapes (falls back to the expression)."""
    fields = expression.split()
    if len(fields) != 5:
        return expression
    minute, hour, dom, month, dow = fields
    days = {"*": "every day", "1-5": "Monday to Friday", "0,6": "weekends", "6,0": "weekends"}
    names = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    if minute.isdigit() and hour.isdigit() and dom == "*" and month == "*":
        when = f"at {int(hour):02d}:{int(minute):02d}"
        if dow in days:
            return f"{when}, {days[dow]}"
        if dow.isdigit() and int(dow) <= 7:
            return f"{when}, every {names[int(dow)]}"
    if minute.isdigit() and hour == "*" and dom == month == dow == "*":
        return f"every hour at minute {int(minute)}"
    if minute.startswith("*/") and hour == dom == month == dow == "*":
        return f"every {minute[2:]} minutes"
    return f"cron {expression}"
