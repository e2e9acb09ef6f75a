"""Redis calls a limit can do without: bounded in time, and failing open.

The rate limits and the per-user connection cap protect users and the service from excess;
they are not what the service is for. When the Redis that keeps them is unreachable, slow or
out of connections, a check that waited for it would add its delay to every request, and a
check that refused would lock every user out for the length of a Redis blip. So a check
waits at most ``timeout`` seconds, and on failure lets the caller through (fails open). The
warning says so, once per ``warn_every`` seconds, with the number of checks let through
since the last one. After a failure the next ``cooldown`` seconds skip Redis altogether, so
a Redis that hangs costs requests ``timeout`` once, not each.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis
from redis.asyncio.cluster import RedisCluster

from notifier.errors import Busy

log = logging.getLogger(__name__)

#: Seconds a limit's Redis call may take before the check passes without it.
TIMEOUT = 0.5
#: Seconds after a failure during which checks pass without asking Redis.
COOLDOWN = 1.0
#: Seconds a check waits for a Redis Cluster client to learn the slot map (see
#: ``FailOpen._warm_enough``): once per process, and after a failover.
WARM_WAIT = 2.0
#: Seconds between two warnings about checks that passed without Redis.
WARN_EVERY = 60.0

T = TypeVar("T")

#: What "Redis did not answer in time" looks like: anything else is a bug and is raised.
FAILURES = (redis.RedisError, OSError, TimeoutError, Busy)


class FailOpen:
    """Runs a limit's Redis calls with a deadline; a call that fails gives ``fallback``."""

    def __init__(
        self,
        what: str,
        *,
        timeout: float = TIMEOUT,
        cooldown: float = COOLDOWN,
        warn_every: float = WARN_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.timeout = timeout
        self.cooldown = cooldown
        self.warn_every = warn_every
        self._clock = clock
        self._down_until = 0.0
        self._warned_at: float | None = None
        self.passed = 0
        """Checks let through without Redis since the last warning."""
        self.client: object = None
        """The client the calls use, if known: a Redis Cluster client is warmed up first."""
        self._warming: asyncio.Task[None] | None = None

    async def __call__(self, call: Callable[[], Awaitable[T]], fallback: T) -> T:
        """``await call()`` within the deadline, or ``fallback`` (and a warning) if Redis
        fails, times out or is in its cooldown. Cancellation is not swallowed."""
        now = self._clock()
        if now < self._down_until:
            self._failed(None, now)
            return fallback
        if not await self._warm_enough():
            return fallback
        try:
            async with asyncio.timeout(self.timeout):
                return await call()
        except FAILURES as exc:
            now = self._clock()
            self._down_until = now + self.cooldown
            self._failed(exc, now)
            return fallback

    async def _warm_enough(self) -> bool:
        """False while the client is a Redis Cluster client still learning the slot map (and
        redis-py its command table): on first use, and after a failover. That can take
        longer than a check may wait on a busy machine, and a deadline cutting it short
        would leave it unlearnt for the next check too; so it runs in a task of its own, not
        under the deadline. A check waits for it up to ``WARM_WAIT`` seconds, then passes
        (without a warning: nothing failed yet)."""
        client = self.client
        if not isinstance(client, RedisCluster) or not client._initialize:
            return True
        if self._warming is None or self._warming.done():
            self._warming = asyncio.get_running_loop().create_task(self._warm(client))
        await asyncio.wait({self._warming}, timeout=WARM_WAIT)
        return not client._initialize

    async def _warm(self, client: RedisCluster) -> None:
        try:
            await client.initialize()
        except FAILURES as exc:  # the next check tries again
            self._failed(exc, self._clock())

    def _failed(self, exc: BaseException | None, now: float) -> None:
        self.passed += 1
        if self._warned_at is not None and now - self._warned_at < self.warn_every:
            return
        self._warned_at = now
        cause = "in cooldown" if exc is None else f"{type(exc).__name__}: {exc}"
        log.warning(
            "%s: Redis unavailable (%s); %d check(s) let through without it (failing open)",
            self.what, cause, self.passed,
        )  # fmt: skip
        self.passed = 0
