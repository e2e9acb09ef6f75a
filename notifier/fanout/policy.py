"""Priority policies: which followers' chunks go to the HIGH queue and which to LOW.

Stream Framework's managers split followers into HIGH and LOW priority ("active users first") by
a method apps overrode; here a policy is an object given to the manager. The default,
``RecentlyActive``, sends followers seen within a window to HIGH, where "seen" is whatever the
app (or the web layer, on feed reads and websocket connects) reports to a ``Presence``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Protocol

from notifier.fanout.jobs import Priority
from notifier.storage.redis_client import AnyRedis


class PriorityPolicy(Protocol):
    """Decides the queue of each follower's copy of an activity."""

    async def split(self, actor: str, followers: Sequence[str]) -> tuple[list[str], list[str]]:
        """Divide one page of ``actor``'s followers into (HIGH, LOW); together they must hold
        every follower exactly once."""


class Presence(Protocol):
    """When users were last active."""

    async def touch(self, users: Sequence[str], at: float | None = None) -> None:
        """Record ``users`` as active at ``at`` (default now, seconds since the epoch)."""

    async def active_since(self, users: Sequence[str], since: float) -> list[bool]:
        """For each of ``users``, whether it was active at or after ``since``."""

    async def close(self) -> None:
        """Release what the presence opened itself."""


class MemoryPresence:
    """Presence in a dict: for the memory backend, where web and workers share a process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, float] = {}

    async def touch(self, users: Sequence[str], at: float | None = None) -> None:
        stamp = time.time() if at is None else at
        with self._lock:
            for user in users:
                self._seen[user] = max(stamp, self._seen.get(user, stamp))

    async def active_since(self, users: Sequence[str], since: float) -> list[bool]:
        with self._lock:
            return [self._seen.get(user, float("-inf")) >= since for user in users]

    async def close(self) -> None:
        return None


class RedisPresence:
    """Presence in one Redis sorted set (user → last seen), shared by web and worker processes.

    A page of followers is looked up with one ZMSCORE; touches also drop entries older than
    ``horizon_s`` so the set stays the size of the active population.
    """

    def __init__(
        self,
        client: AnyRedis,
        prefix: str,
        horizon_s: int = 30 * 86_400,
        *,
        owns_client: bool = False,
    ) -> None:
        self.client = client
        self.key = f"{prefix}:active"
        self.horizon_s = horizon_s
        self.owns_client = owns_client

    async def touch(self, users: Sequence[str], at: float | None = None) -> None:
        if not users:
            return
        stamp = time.time() if at is None else at
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.zadd(self.key, dict.fromkeys(users, stamp), gt=True)
            pipe.zremrangebyscore(self.key, "-inf", stamp - self.horizon_s)
            await pipe.execute()

    async def active_since(self, users: Sequence[str], since: float) -> list[bool]:
        if not users:
            return []
        scores = await self.client.zmscore(self.key, list(users))
        return [score is not None and score >= since for score in scores]

    async def close(self) -> None:
        if self.owns_client:
            await self.client.aclose()


class RecentlyActive:
    """Followers active within ``window_s`` seconds go HIGH, everyone else LOW."""

    def __init__(self, presence: Presence, window_s: int) -> None:
        self.presence = presence
        self.window_s = window_s

    async def split(self, actor: str, followers: Sequence[str]) -> tuple[list[str], list[str]]:
        flags = await self.presence.active_since(followers, time.time() - self.window_s)
        high = [user for user, active in zip(followers, flags, strict=True) if active]
        low = [user for user, active in zip(followers, flags, strict=True) if not active]
        return high, low


class Uniform:
    """Every follower in one priority: for apps with no notion of activity."""

    def __init__(self, priority: Priority = Priority.HIGH) -> None:
        self.priority = priority

    async def split(self, actor: str, followers: Sequence[str]) -> tuple[list[str], list[str]]:
        if self.priority is Priority.HIGH:
            return list(followers), []
        return [], list(followers)
