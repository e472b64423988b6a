"""Sending policy: quiet hours, daily frequency caps, direct-reply exemption.

Pure functions; the caller passes the clock. Datetimes must be timezone-aware (use
:class:`zoneinfo.ZoneInfo` for the studio's local zone so DST is handled).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

logger = logging.getLogger(__name__)

DIRECT_REPLY_WINDOW = timedelta(minutes=15)
_CLOCK_SKEW = timedelta(minutes=1)


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


@dataclass(frozen=True)
class QuietHours:
    """Local wall-clock period in which no messages are sent: ``start`` inclusive, ``end`` exclusive.

    ``start > end`` wraps midnight (``21:00``-``08:00``); ``start == end`` means no quiet hours.
    """

    start: time
    end: time

    def contains(self, moment: time) -> bool:
        """True if the wall-clock time ``moment`` is inside the quiet period."""
        moment = moment.replace(tzinfo=None)
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end


def next_allowed_time(now_local: datetime, quiet: QuietHours) -> datetime | None:
    """None if sending is allowed at ``now_local``, else the local datetime when quiet hours end.

    ``now_local`` must be aware (a :class:`~zoneinfo.ZoneInfo`). Date arithmetic is done on the
    wall clock, then normalised via UTC: an end time that does not exist on a spring-forward day
    (e.g. 02:30 in Europe/Berlin) becomes the first valid instant after the gap (03:30); an
    ambiguous end time on a fall-back day resolves to its first occurrence.
    """
    _require_aware(now_local, "now_local")
    wall = now_local.timetz()
    if not quiet.contains(wall):
        return None
    day = now_local.date()
    if quiet.start > quiet.end and wall.replace(tzinfo=None) >= quiet.start:
        day += timedelta(days=1)
    tz = now_local.tzinfo
    end = datetime.combine(day, quiet.end, tzinfo=tz)
    return end.astimezone(UTC).astimezone(tz)


def frequency_cap_reached(sent_today: int, cap: int | None) -> bool:
    """True if ``sent_today`` messages already use up the daily ``cap`` (None = unlimited, 0 = none allowed)."""
    if cap is None:
        return False
    if cap < 0:
        raise ValueError("cap must be >= 0 or None")
    return sent_today >= cap


def is_direct_reply(last_inbound_at: datetime | None, now: datetime, window: timedelta = DIRECT_REPLY_WINDOW) -> bool:
    """True if the contact's own inbound message was at most ``window`` before ``now``.

    Such a direct reply is exempt from quiet hours and frequency caps. Inbound times up to one
    minute in the future (clock skew) count as "just now".
    """
    if last_inbound_at is None:
        return False
    _require_aware(last_inbound_at, "last_inbound_at")
    _require_aware(now, "now")
    age = now - last_inbound_at
    return -_CLOCK_SKEW <= age <= window
