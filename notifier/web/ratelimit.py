"""Per-caller token buckets: a burst allowance refilled at a steady rate.

``Limiter`` is what the guards call. ``RateLimiter`` keeps its buckets in the process: the
limiter of the memory backend, which runs in one process. Wherever web processes share a
Redis, the buckets live there instead (notifier/web/shared_limits.py), so that a limit holds
across every web process.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import OrderedDict
from typing import Protocol

from notifier.errors import NotifierError
from notifier.web.settings import RateLimit

MAX_TRACKED = 100_000


class RateLimited(NotifierError):
    """Too many requests (HTTP 429); ``retry_after`` says when one more will pass."""

    code = "rate_limited"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"rate limit exceeded; retry after {retry_after} s")
        self.retry_after = retry_after


class Limiter(Protocol):
    """One token bucket per caller id, ``limit.burst`` tokens refilled at ``limit.rate``."""

    limit: RateLimit

    async def hit(self, caller: str) -> None:
        """Take one token for ``caller`` or raise RateLimited."""

    async def check(self, caller: str) -> None:
        """Raise RateLimited if ``caller`` has no token left, without taking one."""

    async def spend(self, caller: str) -> None:
        """Take a token from ``caller`` if one is left (never raises): for counting failures
        that ``check`` then refuses once they pass the budget."""


def retry_after(missing: float, rate: float) -> int:
    """Whole seconds until ``missing`` tokens have come back (at least 1)."""
    return max(1, math.ceil(missing / rate))


class RateLimiter:
    """In-process buckets; the least recently used callers are forgotten past a cap."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    async def hit(self, caller: str, now: float | None = None) -> None:
        """Take one token for ``caller`` or raise RateLimited."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(caller, (float(self.limit.burst), now))
        tokens = min(float(self.limit.burst), tokens + (now - last) * self.limit.rate)
        if tokens < 1.0:
            self._buckets[caller] = (tokens, now)
            raise RateLimited(retry_after(1.0 - tokens, self.limit.rate))
        self._buckets[caller] = (tokens - 1.0, now)
        if len(self._buckets) > MAX_TRACKED:
            self._buckets.popitem(last=False)

    async def check(self, caller: str, now: float | None = None) -> None:
        """Raise RateLimited if ``caller`` has no token left, without taking one."""
        now = time.monotonic() if now is None else now
        found = self._buckets.get(caller)
        if found is None:
            return
        tokens = min(float(self.limit.burst), found[0] + (now - found[1]) * self.limit.rate)
        if tokens < 1.0:
            raise RateLimited(retry_after(1.0 - tokens, self.limit.rate))

    async def spend(self, caller: str, now: float | None = None) -> None:
        """Take a token from ``caller`` if one is left (never raises)."""
        with contextlib.suppress(RateLimited):
            await self.hit(caller, now)
