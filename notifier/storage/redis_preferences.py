"""Users' notification preferences on Redis: one string per user, read in one round trip.

``P:pr:<user>`` holds the user's preferences as JSON (``notifier.preferences``); a user who
mutes nothing has no key. ``update`` is a compare-and-set on that value (a one-key script,
so it works on a Redis Cluster too): read, change, write if unchanged, again if not.

The key has no hash tag, so on a Redis Cluster users spread over every slot as activity
bodies do, and a fanout chunk's read is one ``MGET`` on one server, or on a cluster one
``MGET`` per slot pipelined per node (redis-py's ``mget_nonatomic``): one round trip to each
node, never one per user.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from redis.asyncio.cluster import RedisCluster

from notifier.errors import Conflict
from notifier.preferences import Preferences, decode_preferences, encode_preferences
from notifier.storage.redis_client import AnyRedis

#: Compare-and-set of one user's preferences: ARGV[1] the value read ("" when none), ARGV[2]
#: the value to store ("" to delete). 1 when written, 0 when the value changed meanwhile.
_CAS = """
local current = redis.call('GET', KEYS[1]) or ''
if current ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2]) end
return 1
"""
#: Lost races before ``update`` gives up (each one means another update applied).
_CAS_ATTEMPTS = 50


class RedisPreferences:
    """``Storage.preferences`` / ``put_preferences`` for ``RedisStorage``."""

    def __init__(self, client: AnyRedis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._cas = client.register_script(_CAS)

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

    async def update(self, user: str, change: Callable[[Preferences], Preferences]) -> Preferences:
        """``Storage.update_preferences``: read, apply ``change``, write if the value is
        still the one read; else read again. A retry after a lost answer is safe because
        ``change`` is idempotent: applied over its own write, it writes the same."""
        key = self.key(user)
        for _ in range(_CAS_ATTEMPTS):
            raw = await self.client.get(key)
            before = decode_preferences(raw) if raw else Preferences()
            after = change(before)
            if after == before:
                return before
            new = b"" if after.is_default else encode_preferences(after)
            if await self._cas(keys=[key], args=[raw or b"", new]):
                return after
        raise Conflict(f"the preferences of {user!r} changed {_CAS_ATTEMPTS} times in a row")
