"""The outbox state machine (engine/messaging/outbox_states.py): the moves it allows and refuses, provider
reports only forward, and the status in words."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from engine.messaging import outbox_states as states
from engine.store.models import OutboxStatus as S

BERLIN = ZoneInfo("Europe/Berlin")


def test_every_status_has_its_moves_and_label():
    assert set(states.TRANSITIONS) == set(S) == set(states.LABELS)
    assert set(S) >= states.INITIAL and S.SENDING not in states.INITIAL and S.SENT not in states.INITIAL
    for old, targets in states.TRANSITIONS.items():
        assert old not in targets, f"{old} moves to itself"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (S.PENDING, S.SENDING),
        (S.SENDING, S.SENT),
        (S.SENT, S.DELIVERED),
        (S.DELIVERED, S.READ),
        (S.PENDING, S.FAILED),
        (S.PENDING, S.SUPPRESSED),
        (S.SENDING, S.RETRYING),
        (S.RETRYING, S.SENDING),
        (S.SENDING, S.UNKNOWN),
        (S.UNKNOWN, S.SENT),
        (S.UNKNOWN, S.PENDING),
        (S.FAILED, S.PENDING),
        (S.DEFERRED, S.SENDING),
    ],
)
def test_the_written_down_moves_are_allowed(old, new):
    states.check(old, new)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (S.PENDING, S.SENT),  # never sent without "sending" committed first
        (S.RETRYING, S.SENT),
        (S.SENDING, S.PENDING),  # a send in flight is never simply queued again
        (S.SENDING, S.SENDING),
        (S.UNKNOWN, S.SENDING),  # an unknown outcome is never sent blindly
        (S.SENT, S.PENDING),
        (S.READ, S.DELIVERED),
        (S.DELIVERED, S.SENT),
        (S.RECORDED, S.SENT),
        (S.SUPPRESSED, S.PENDING),
        (S.SIMULATED, S.SENT),
    ],
)
def test_other_moves_are_refused(old, new):
    with pytest.raises(states.IllegalMove, match=f"from {old} to {new}"):
        states.check(old, new)


def test_a_new_message_starts_only_in_an_initial_status():
    states.check_initial(S.PENDING)
    with pytest.raises(states.IllegalMove):
        states.check_initial(S.SENT)


def test_provider_reports_only_move_forward():
    for old in S:
        for new in S:
            if states.is_forward_report(old, new):
                assert states.PROVIDER_RANK[new] > states.PROVIDER_RANK[old]
                assert states.allowed(old, new)
    assert states.is_forward_report(S.SENT, S.READ)
    assert states.is_forward_report(S.UNKNOWN, S.DELIVERED)  # a report with our reference settles it
    assert not states.is_forward_report(S.READ, S.DELIVERED)  # read before delivered: stays read
    assert not states.is_forward_report(S.DELIVERED, S.SENT)
    assert not states.is_forward_report(S.PENDING, S.SENT)  # we never sent it: a stray report


def test_retrying_in_words_in_the_studios_time_zone():
    now = datetime(2026, 11, 27, 14, 0, tzinfo=UTC)
    next_at = datetime(2026, 11, 27, 14, 42, tzinfo=UTC)  # 15:42 in Berlin
    words = states.describe(S.RETRYING, attempts=2, next_attempt_at=next_at, tz=BERLIN, now=now)
    assert words == "retrying (attempt 3 of 5, next at 15:42)"
    tomorrow = datetime(2026, 11, 27, 23, 30, tzinfo=UTC)
    assert states.describe(S.RETRYING, attempts=4, next_attempt_at=tomorrow, tz=BERLIN, now=now) == (
        "retrying (attempt 5 of 5, next at 28 Nov 00:30)"
    )
    assert states.describe(S.FAILED, attempts=5) == "failed after 5 attempts"
    assert states.describe(S.UNKNOWN) == "outcome unknown"
    assert states.describe(S.RECORDED) == "recorded (no provider connected)"
