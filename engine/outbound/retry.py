"""Retry helpers shared by the runner, the worker, webhooks, AI providers and channels.

* :func:`parse_retry_after` reads a ``Retry-After`` header (delta-seconds or HTTP date);
* :func:`backoff_delay` is "full jitter" exponential backoff that honours the other side's
  ``Retry-After``.

Both are pure functions (the clock and the random source are parameters), so callers and
tests decide time and randomness.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date); None if absent/invalid."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None or when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN / inf
        return None
    return max(0.0, seconds)


def backoff_delay(
    attempt: int,
    *,
    base: float = 2.0,
    cap: float = 3600.0,
    retry_after: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before the next attempt ("full jitter" exponential backoff).

    ``attempt`` is the number of the attempt that just failed (1 for the first). The delay is
    ``rand() * min(cap, base * 2 ** (attempt - 1))``, i.e. uniformly random up to 2, 4, 8, ...
    seconds, never above ``cap``. If the other side sent ``retry_after`` (seconds, e.g. from
    ``RetryableError.retry_after``) the result is at least that, even above ``cap``; the runner
    should still enforce its own overall deadline.
    """
    if attempt < 1:
        raise ValueError("attempt starts at 1")
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 64))
    delay = rand() * ceiling
    if retry_after is not None and retry_after > delay:
        delay = float(retry_after)
    return max(0.0, delay)
