from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from engine.channels.policy import QuietHours, frequency_cap_reached, is_direct_reply, next_allowed_time

BERLIN = ZoneInfo("Europe/Berlin")
NIGHT = QuietHours(time(21, 0), time(8, 0))


def local(*args, fold=0):
    return datetime(*args, tzinfo=BERLIN, fold=fold)


def test_quiet_hours_contains_wrapping():
    assert NIGHT.contains(time(21, 0))
    assert NIGHT.contains(time(23, 59))
    assert NIGHT.contains(time(0, 0))
    assert NIGHT.contains(time(7, 59))
    assert not NIGHT.contains(time(8, 0))
    assert not NIGHT.contains(time(20, 59))


def test_quiet_hours_same_day_and_empty():
    lunch = QuietHours(time(12, 0), time(14, 0))
    assert lunch.contains(time(12, 30)) and not lunch.contains(time(14, 0)) and not lunch.contains(time(11, 0))
    assert not QuietHours(time(8, 0), time(8, 0)).contains(time(8, 0))


def test_allowed_now_returns_none():
    assert next_allowed_time(local(2025, 6, 10, 12, 0), NIGHT) is None
    assert next_allowed_time(local(2025, 6, 10, 8, 0), NIGHT) is None


def test_evening_moves_to_next_morning():
    result = next_allowed_time(local(2025, 6, 10, 22, 15), NIGHT)
    assert result == local(2025, 6, 11, 8, 0)
    assert result.tzinfo is BERLIN


def test_early_morning_moves_to_same_morning():
    assert next_allowed_time(local(2025, 6, 11, 3, 0), NIGHT) == local(2025, 6, 11, 8, 0)


def test_same_day_quiet_period():
    lunch = QuietHours(time(12, 0), time(14, 0))
    assert next_allowed_time(local(2025, 6, 11, 12, 30), lunch) == local(2025, 6, 11, 14, 0)


def test_spring_forward_night_is_one_hour_shorter():
    # 2025-03-30: Europe/Berlin jumps from 02:00 CET to 03:00 CEST.
    now = local(2025, 3, 29, 22, 0)
    result = next_allowed_time(now, NIGHT)
    assert (result.year, result.month, result.day, result.hour, result.minute) == (2025, 3, 30, 8, 0)
    assert result.utcoffset() == timedelta(hours=2)
    assert result.astimezone(UTC) - now.astimezone(UTC) == timedelta(hours=9)


def test_fall_back_night_is_one_hour_longer():
    # 2025-10-26: Europe/Berlin goes back from 03:00 CEST to 02:00 CET.
    now = local(2025, 10, 25, 22, 0)
    result = next_allowed_time(now, NIGHT)
    assert result.utcoffset() == timedelta(hours=1)
    assert (result.day, result.hour) == (26, 8)
    assert result.astimezone(UTC) - now.astimezone(UTC) == timedelta(hours=11)


def test_end_inside_spring_forward_gap_moves_past_gap():
    quiet = QuietHours(time(22, 0), time(2, 30))  # 02:30 does not exist on 2025-03-30
    result = next_allowed_time(local(2025, 3, 30, 1, 0), quiet)
    assert result.astimezone(UTC) == datetime(2025, 3, 30, 1, 30, tzinfo=UTC)
    assert (result.hour, result.minute) == (3, 30)
    assert result > local(2025, 3, 30, 1, 0)


def test_end_in_fall_back_ambiguous_hour_uses_first_occurrence():
    quiet = QuietHours(time(22, 0), time(2, 30))  # 02:30 happens twice on 2025-10-26
    result = next_allowed_time(local(2025, 10, 26, 1, 0), quiet)
    assert result.astimezone(UTC) == datetime(2025, 10, 26, 0, 30, tzinfo=UTC)


def test_naive_datetime_rejected():
    with pytest.raises(ValueError):
        next_allowed_time(datetime(2025, 6, 10, 22, 0), NIGHT)


@pytest.mark.parametrize(
    ("sent", "cap", "expected"),
    [(0, None, False), (100, None, False), (0, 0, True), (2, 3, False), (3, 3, True), (4, 3, True)],
)
def test_frequency_cap(sent, cap, expected):
    assert frequency_cap_reached(sent, cap) is expected


def test_frequency_cap_negative():
    with pytest.raises(ValueError):
        frequency_cap_reached(0, -1)


def test_is_direct_reply():
    now = datetime(2025, 6, 10, 22, 0, tzinfo=UTC)
    assert is_direct_reply(now - timedelta(minutes=3), now)
    assert is_direct_reply(now - timedelta(minutes=15), now)
    assert not is_direct_reply(now - timedelta(minutes=16), now)
    assert not is_direct_reply(None, now)
    assert is_direct_reply(now - timedelta(hours=1), now, window=timedelta(hours=2))
    assert is_direct_reply(now + timedelta(seconds=30), now)
    assert not is_direct_reply(now + timedelta(hours=1), now)
    # mixed zones compare correctly
    assert is_direct_reply(datetime(2025, 6, 10, 23, 55, tzinfo=BERLIN), now)
