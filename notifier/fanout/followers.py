"""Who follows whom, as fanout sees it: notifier's own graph, or an app's.

Stream Framework let apps override ``get_user_follower_ids``; here the manager takes a
``FollowerLookup``. Fanout needs two things from it: pages of followers in a stable order (a
continuation resumes after the last follower it saw) and a count (for the celebrity policy).
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from notifier.storage.base import Storage


class FollowerLookup(Protocol):
    """Who follows a user: notifier's own graph by default, or an app's (override this)."""

    async def followers(self, user: str, *, limit: int, after: str | None = None) -> list[str]:
        """Followers in a stable order, the page after ``after``; a page shorter than
        ``limit`` is the last."""

    async def follower_count(self, user: str) -> int:
        """How many followers ``user`` has (decides the celebrity policy)."""


class StorageFollowers:
    """The follow graph notifier keeps in its storage."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def followers(self, user: str, *, limit: int, after: str | None = None) -> list[str]:
        return await self.storage.followers(user, limit=limit, after=after)

    async def follower_count(self, user: str) -> int:
        return (await self.storage.follow_counts(user))[0]


class FollowCounts(msgspec.Struct, frozen=True):
    """How many users follow a user, and how many it follows."""

    followers: int
    following: int
