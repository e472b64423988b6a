"""A studio's business hours: one opening range per weekday plus closed days (holidays).

Stored in tenant settings as::

    {"businessHours": {"weekly": {"1": {"open": "07:00", "close": "22:00"}, ...},
                       "closedDays": ["2026-12-24", "2026-12-25"]}}

Weekdays use the workflow format's numbering (0 = Sunday ... 6 = Saturday); a missing day
is closed. ``close`` before ``open`` runs past midnight. Conditions use it through
``{"type": "time_range", "operator": "outside_business_hours"}``.
"""

from __future__ import annotations

import logging
import re
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from engine.errors import InvalidInput

if TYPE_CHECKING:
    from engine.tenant_settings import BusinessHours

logger = logging.getLogger(__name__)

WEEKDAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


def _js_weekday(day: date) -> int:
    return (day.weekday() + 1) % 7


def parse_time(value: Any, field: str) -> time:
    """``"9:00"``, ``"09:00"`` or ``"21:30"`` as a time; raises :class:`InvalidInput` naming ``field``."""
    match = re.fullmatch(r"\s*(\d{1,2})[:.](\d{2})\s*", str(value or ""))
    if match and int(match[1]) < 24 and int(match[2]) < 60:
        return time(int(match[1]), int(match[2]))
    raise InvalidInput(f"{value!r} is not a time like 09:00", field=field)


def validate(raw: Any) -> dict[str, Any]:
    """A cleaned copy of the business-hours settings; raises :class:`InvalidInput` naming the field."""
    if not isinstance(raw, dict):
        raise InvalidInput("must be an object with weekly and closedDays", field="businessHours")
    weekly = {}
    for key, hours in (raw.get("weekly") or {}).items():
        if str(key) not in {str(i) for i in range(7)}:
            raise InvalidInput("weekday must be 0 (Sunday) ... 6 (Saturday)", field=f"businessHours.weekly.{key}")
        if not hours:
            continue
        opens = parse_time(hours.get("open"), f"businessHours.weekly.{key}.open")
        closes = parse_time(hours.get("close"), f"businessHours.weekly.{key}.close")
        if opens == closes:
            raise InvalidInput("opening and closing time are the same", field=f"businessHours.weekly.{key}.close")
        weekly[str(key)] = {"open": opens.strftime("%H:%M"), "close": closes.strftime("%H:%M")}
    closed = []
    for value in raw.get("closedDays") or []:
        try:
            closed.append(date.fromisoformat(str(value).strip()).isoformat())
        except ValueError:
            raise InvalidInput(f"{value!r} is not a date like 2026-12-24", field="businessHours.closedDays") from None
    return {"weekly": weekly, "closedDays": sorted(set(closed))}


def is_open(hours: BusinessHours | dict[str, Any] | None, local: datetime) -> bool:
    """True when the studio is open at ``local`` (the studio's wall clock). No hours set: always open."""
    if isinstance(hours, dict):  # stored JSON (older callers, tests)
        from engine.tenant_settings import BusinessHours as Hours

        hours = Hours.model_validate(hours)
    if not hours or not hours.weekly:
        return True
    closed = set(hours.closed_days)
    weekly = hours.weekly
    now = local.time().replace(tzinfo=None)
    for offset in (0, 1):  # today's range, or yesterday's range running past midnight
        day = local.date() - timedelta(days=offset)
        if day.isoformat() in closed:
            continue
        entry = weekly.get(str(_js_weekday(day)))
        if not entry:
            continue
        opens, closes = time.fromisoformat(entry.open), time.fromisoformat(entry.close)
        if opens < closes:
            if offset == 0 and opens <= now < closes:
                return True
        elif (offset == 0 and now >= opens) or (offset == 1 and now < closes):
            return True
    return False
