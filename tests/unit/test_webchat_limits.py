"""The web chat's sliding-window rate limit and input checks."""

from __future__ import annotations

import pytest

from engine.errors import InvalidInput
from engine.inbound.webchat import SlidingWindow, _conversation


def test_sliding_window_allows_limit_then_blocks_until_window_passes():
    w = SlidingWindow(3, 60.0)
    assert [w.hit("a", now=t) for t in (0, 1, 2)] == [None, None, None]
    wait = w.hit("a", now=3)
    assert wait == pytest.approx(57.0)
    assert w.hit("b", now=3) is None  # other keys are independent
    assert w.hit("a", now=60.5) is None  # the first hit left the window


@pytest.mark.parametrize("bad", ["short", "x" * 65, "has space 123", "../../etc/pw"])
def test_conversation_ids_are_checked(bad):
    with pytest.raises(InvalidInput) as err:
        _conversation(bad)
    assert err.value.field == "conversationId"
