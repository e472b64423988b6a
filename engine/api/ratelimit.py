"""A per-key rate limit for the REST API: a token bucket per API key, in the process's memory.

Each key (the ``Authorization`` header, or the client address without one) may make
``per_minute`` requests a minute on average, with bursts up to the same number. Beyond it
the answer is 429 ``rate_limited`` with ``Retry-After`` (whole seconds until the next
request is allowed). Default 6,000 a minute (``STUDIO_API_RATE_LIMIT``; 0 turns it off).

Written here rather than taken from slowapi/limits: a token bucket is a dozen lines, and this
needs no storage backend. With ``--workers N`` each worker process keeps its own buckets,
so the effective limit is up to N times the setting.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from engine.api.errors import error_response

DEFAULT_PER_MINUTE = 6000
#: Most keys tracked at once; the least recently seen is forgotten first (a full bucket again).
MAX_TRACKED = 10_000


class TokenBuckets:
    """``take(key)`` -> 0.0 when allowed, else the seconds to wait. Not thread-safe (one event loop)."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> float:
        now = self.clock()
        tokens, last = self._buckets.pop(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > MAX_TRACKED:
            self._buckets.popitem(last=False)
        return wait


class RateLimit:
    """ASGI middleware answering 429 with ``Retry-After`` to a key over its limit."""

    def __init__(
        self, app: ASGIApp, per_minute: int = DEFAULT_PER_MINUTE, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.app = app
        self.buckets = TokenBuckets(per_minute, clock=clock) if per_minute > 0 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.buckets is None:
            await self.app(scope, receive, send)
            return
        wait = self.buckets.take(_key(scope))
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        seconds = max(1, math.ceil(wait))
        response = error_response(
            429,
            "rate_limited",
            f"too many requests for this API key; try again in {seconds} s",
            headers={"Retry-After": str(seconds)},
        )
        await response(scope, receive, send)


def _key(scope: Scope) -> str:
    for name, value in scope.get("headers") or []:
        if name == b"authorization":
            return "k:" + hashlib.blake2b(value, digest_size=16).hexdigest()
    client = scope.get("client") or ("?", 0)
    return f"ip:{client[0]}"
