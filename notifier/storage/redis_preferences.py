"""Users' notification preferences on Redis: one string per user, read in one round trip.

``P:pr:<user>`` holds the user's preferences as JSON (``notifier.preferences``); a user who
mutes nothing has no key. The key has no hash tag, so on a Redis Cluster users spread over
every slot as activity bodies do, and a fanout chunk's read is one ``MGET`` on one server, or
on a cluster one ``MGET`` per slot pipelined per node (redis-py's ``mget_nonatomic``): one
round trip to each node, never one per user.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio.cluster import RedisCluster

from notifier.preferences import Preferences, decode_preferences, encode_preferences
from notifier.storage.redis_client import AnyRedis


class RedisPreferences:
    """``Storage.preferences`` / ``put_preferences`` for ``RedisStorage``."""

    def __init__(self, client: AnyRedis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def key(self, user: str) -> str:
        """The key of ``user``'s preferences."""
        return f"{self.prefix}:pr:{user}"

    async def read(self, users: Sequence[str]) -> dict[str, Preferences]:
        """Preferences of the ``users`` who have some."""
        users = list(dict.fromkeys(users))
        if not users:
            return {}
        keys = [self.key(u) for u in users]
        if isinstance(self.client, RedisCluster):
            found = await self.client.mget_nonatomic(keys)
        else:
            found = await self.client.mget(keys)
        return {u: decode_preferences(v) for u, v in zip(users, found, strict=True) if v}

    async def write(self, user: str, prefs: Preferences) -> None:
        """Replace ``user``'s preferences; default ones delete the key."""
        if prefs.is_default:
            await self.client.delete(self.key(user))
        else:
            await self.client.set(self.key(user), encode_preferences(prefs))
