"""The limits of a web process, held across every web process that shares a Redis.

``SharedRateLimiter`` keeps the token buckets of ``ratelimit.RateLimiter`` in Redis: one
hash per caller, ``<prefix>:rl:{<limiter>:<digest of the caller>}`` (``tokens``, ``at``),
updated by one script call per check, on that one key (so on a Redis Cluster too). Time is
Redis's own (``TIME``), so the clocks of the web processes do not matter. The key expires
when its bucket would be full again: an idle caller costs nothing. Callers are hashed
(BLAKE2b): one limiter's callers are API keys, which have no place in key names.

``open_limits`` gives a web process its limits: in-process for the memory backend (one
process), else in the realtime Redis (``realtime_url_for``). When that Redis fails or is
slow, checks pass (notifier/failopen.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.asyncio.cluster import RedisCluster

from notifier.failopen import TIMEOUT, FailOpen
from notifier.fanout.broker import IN_PROCESS
from notifier.realtime.connection_cap import ConnectionCap, LocalCap, SharedCap
from notifier.storage.redis_client import AnyRedis, redis_client
from notifier.web.ratelimit import Limiter, RateLimited, RateLimiter, retry_after
from notifier.web.settings import RateLimit, ServerSettings

#: One bucket: ``key``, refilled at ``rate`` up to ``burst``; ``mode`` hit | check | spend.
#: 0 when the call passes, else the microseconds until one token is back.
_BUCKET_FUNCTION = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local function bucket(key, rate, burst, mode)
  local saved = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = burst
  if saved[1] then
    tokens = math.min(burst, tonumber(saved[1]) + math.max(0, now - tonumber(saved[2])) * rate)
  end
  if tokens < 1 then
    if mode == 'spend' then return 0 end
    return math.ceil((1 - tokens) / rate * 1000000)
  end
  if mode == 'check' then return 0 end
  tokens = tokens - 1
  redis.call('HSET', key, 'tokens', tokens, 'at', now)
  redis.call('PEXPIRE', key, math.max(1, math.ceil((burst - tokens) / rate * 1000)))
  return 0
end
"""
#: KEYS[1]: a caller's bucket. ARGV: rate, burst, mode.
BUCKET = (
    _BUCKET_FUNCTION
    + """
return bucket(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3])
"""
)
#: What a request with a valid credential needs, in one call: KEYS[1], the client address's
#: budget of failed credentials, checked (a token is not taken); then KEYS[2], the caller's
#: bucket, hit. ARGV: rate and burst of each. Returns {0, 0} when both pass, else {1 or 2,
#: the microseconds until that bucket has a token}.
CHECK_AND_HIT = (
    _BUCKET_FUNCTION
    + """
local wait = bucket(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), 'check')
if wait > 0 then return {1, wait} end
wait = bucket(KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[4]), 'hit')
if wait > 0 then return {2, wait} end
return {0, 0}
"""
)


class SharedRateLimiter:
    """A ``Limiter`` whose buckets are in Redis (module docstring)."""

    def __init__(
        self,
        client: AnyRedis,
        *,
        prefix: str,
        name: str,
        limit: RateLimit,
        guard: FailOpen | None = None,
    ) -> None:
        self.limit = limit
        self.name = name
        self.guard = guard or FailOpen(f"rate limit {name}")
        self.guard.client = client
        self._prefix = prefix
        self.client = client
        self._script = client.register_script(BUCKET)
        self._pair = client.register_script(CHECK_AND_HIT)

    def key(self, caller: str) -> str:
        """The hash that holds ``caller``'s bucket."""
        digest = hashlib.blake2b(caller.encode(), digest_size=12).hexdigest()
        return f"{self._prefix}:rl:{{{self.name}:{digest}}}"

    async def _run(self, caller: str, mode: str) -> None:
        args = (repr(self.limit.rate), self.limit.burst, mode)
        wait: int = await self.guard(lambda: self._script(keys=[self.key(caller)], args=args), 0)
        if wait > 0:
            raise RateLimited(retry_after(wait / 1_000_000, 1.0))

    async def hit(self, caller: str) -> None:
        await self._run(caller, "hit")

    async def check(self, caller: str) -> None:
        await self._run(caller, "check")

    async def spend(self, caller: str) -> None:
        await self._run(caller, "spend")

    async def check_and_hit(self, caller: str, limiter: SharedRateLimiter, other: str) -> None:
        """``self.check(caller)`` then ``limiter.hit(other)`` in one script call: both keys
        are on one server (not a cluster, where they may be on two nodes)."""
        args = (repr(self.limit.rate), self.limit.burst,
                repr(limiter.limit.rate), limiter.limit.burst)  # fmt: skip
        keys = [self.key(caller), limiter.key(other)]
        _, wait = await self.guard(lambda: self._pair(keys=keys, args=args), [0, 0])
        if wait > 0:  # the µs until the bucket that refused (1: the address's) has a token
            raise RateLimited(retry_after(wait / 1_000_000, 1.0))


async def check_and_hit(failures: Limiter, address: str, limiter: Limiter, caller: str) -> None:
    """What a request with a valid credential costs: the client address's budget of failed
    credentials checked (an address past it is refused even with the right credential, so a
    guesser cannot tell a hit from a miss), then a token taken from the caller's bucket. Two
    shared buckets on one Redis server: one round trip, not two (each is ~65 µs of a web
    process's CPU in redis-py; a feed page costs ~330 µs in all)."""
    if (
        isinstance(failures, SharedRateLimiter)
        and isinstance(limiter, SharedRateLimiter)
        and failures.client is limiter.client
        and not isinstance(failures.client, RedisCluster)
    ):
        await failures.check_and_hit(address, limiter, caller)
        return
    await failures.check(address)
    await limiter.hit(caller)


@dataclass
class Limits:
    """What a web process limits, per caller and per user."""

    keys: Limiter
    """Requests per API key."""
    users: Limiter
    """Requests per user token."""
    auth_failures: Limiter
    """Failed API credentials per client address."""
    admin_failures: Limiter
    """Failed operator-page credentials per client address."""
    connections: ConnectionCap
    """Open websockets per user."""
    closing: Callable[[], Awaitable[None]] | None = None

    async def close(self) -> None:
        """Give back the connection slots still held, and the Redis connections."""
        await self.connections.close()
        if self.closing is not None:
            await self.closing()


def local_limits(settings: ServerSettings) -> Limits:
    """The limits of a process that is the only one (the memory backend)."""
    return Limits(
        keys=RateLimiter(settings.key_rate),
        users=RateLimiter(settings.user_rate),
        auth_failures=RateLimiter(settings.auth_fail_rate),
        admin_failures=RateLimiter(settings.auth_fail_rate),
        connections=LocalCap(settings.realtime.max_per_user),
    )


def open_limits(url: str, prefix: str, settings: ServerSettings) -> Limits:
    """The limits of a web process whose realtime Redis is ``url`` (``memory://``: in-process)."""
    if url == IN_PROCESS:
        return local_limits(settings)
    # Its own small pool: a check waits TIMEOUT at most, for a connection as for a reply.
    client = redis_client(
        url, pool_timeout=TIMEOUT, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT
    )
    rates = FailOpen("rate limits")

    def limiter(name: str, limit: RateLimit) -> SharedRateLimiter:
        return SharedRateLimiter(client, prefix=prefix, name=name, limit=limit, guard=rates)

    cap = SharedCap(
        client,
        prefix=prefix,
        max_per_user=settings.realtime.max_per_user,
        slot_ttl=settings.realtime.slot_ttl,
    )
    return Limits(
        keys=limiter("key", settings.key_rate),
        users=limiter("user", settings.user_rate),
        auth_failures=limiter("auth", settings.auth_fail_rate),
        admin_failures=limiter("admin", settings.auth_fail_rate),
        connections=cap,
        closing=client.aclose,
    )
