"""Cron schedules in the tenant's timezone, including daylight-saving days."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from engine.workflow.schedule import describe, next_fire_time, upcoming

BERLIN = ZoneInfo("Europe/Berlin")


def fires_on(local_day: date, expression: str, tz: str = "Europe/Berlin") -> list[datetime]:
    """Every fire time whose local date is ``local_day`` (walking from the day before)."""
    zone = ZoneInfo(tz)
    after = datetime.combine(local_day - timedelta(days=1), time(), tzinfo=zone).astimezone(UTC)
    out: list[datetime] = []
    while after.astimezone(zone).date() <= local_day:
        after = next_fire_time(expression, tz, after)
        if after.astimezone(zone).date() == local_day:
            out.append(after)
    return out


def test_daily_0230_fires_exactly_once_on_the_spring_forward_day():
    fires = fires_on(date(2026, 3, 29), "30 2 * * *")
    # 02:30 does not exist that night; the run moves past the gap to 03:30 CEST.
    assert fires == [datetime(2026, 3, 29, 1, 30, tzinfo=UTC)]
    assert fires[0].astimezone(BERLIN).strftime("%H:%M %Z") == "03:30 CEST"


def test_daily_0230_fires_exactly_once_on_the_fall_back_day():
    fires = fires_on(date(2026, 10, 25), "30 2 * * *")
    # 02:30 exists twice that night; only the first (still summer time) fires.
    assert fires == [datetime(2026, 10, 25, 0, 30, tzinfo=UTC)]
    assert fires[0].astimezone(BERLIN).strftime("%H:%M %Z") == "02:30 CEST"


def test_daily_0230_is_back_to_0230_local_time_after_each_switch():
    assert next_fire_time("30 2 * * *", "Europe/Berlin", datetime(2026, 3, 29, 12, tzinfo=UTC)) == datetime(
        2026, 3, 30, 0, 30, tzinfo=UTC
    )
    assert next_fire_time("30 2 * * *", "Europe/Berlin", datetime(2026, 10, 25, 12, tzinfo=UTC)) == datetime(
        2026, 10, 26, 1, 30, tzinfo=UTC
    )


def test_hourly_schedule_fires_23_times_on_the_short_day_and_24_on_the_long_day():
    spring = fires_on(date(2026, 3, 29), "0 * * * *")
    fall = fires_on(date(2026, 10, 25), "0 * * * *")
    assert len(spring) == len(set(spring)) == 23
    # The repeated 02:00 hour fires once (wall-clock semantics), so 24 distinct local hours.
    assert len(fall) == len(set(fall)) == 24


def test_next_fire_time_is_strictly_after_the_given_instant_and_utc():
    at = datetime(2026, 5, 4, 7, 0, tzinfo=UTC)  # 09:00 in Berlin
    nxt = next_fire_time("0 9 * * *", "Europe/Berlin", at)
    assert nxt == datetime(2026, 5, 5, 7, 0, tzinfo=UTC)
    assert nxt.tzinfo == UTC


def test_the_tenant_timezone_decides_the_instant():
    at = datetime(2026, 1, 1, tzinfo=UTC)
    assert next_fire_time("0 9 * * *", "America/New_York", at) == datetime(2026, 1, 1, 14, 0, tzinfo=UTC)
    assert next_fire_time("0 9 * * *", "Europe/Berlin", at) == datetime(2026, 1, 1, 8, 0, tzinfo=UTC)


def test_weekday_schedule_skips_the_weekend():
    friday_evening = datetime(2026, 5, 8, 18, tzinfo=UTC)
    assert (
        next_fire_time("0 9 * * 1-5", "Europe/Berlin", friday_evening).astimezone(BERLIN).strftime("%a %H:%M")
        == "Mon 09:00"
    )


@pytest.mark.parametrize(
    ("expression", "text"),
    [
        ("0 9 * * *", "at 09:00, every day"),
        ("30 7 * * 1-5", "at 07:30, Monday to Friday"),
        ("0 10 * * 0,6", "at 10:00, weekends"),
        ("0 8 * * 1", "at 08:00, every Monday"),
        ("0 8 * * 7", "at 08:00, every Sunday"),
        ("15 * * * *", "every hour at minute 15"),
        ("*/5 * * * *", "every 5 minutes"),
        ("0 9 1 * *", "cron 0 9 1 * *"),
        ("not cron", "not cron"),
    ],
)
def test_describe_gives_a_short_human_description(expression, text):
    assert describe(expression) == text


def test_upcoming_lists_consecutive_fire_times():
    start = datetime(2026, 3, 27, 12, tzinfo=UTC)
    times = upcoming("30 2 * * *", "Europe/Berlin", start, count=3)
    assert [t.astimezone(BERLIN).strftime("%d %H:%M") for t in times] == ["28 02:30", "29 03:30", "30 02:30"]
