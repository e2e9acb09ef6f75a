"""notifier's asyncio Redis clients: redis-py, with commands packed by hiredis in C, a pool
that waits for a free connection, and one retry on a dead connection.

Pool: redis-py's default pool raises at once when its connections are all in use, which a web
process with a few hundred concurrent readers turned into 503s while Redis was healthy. Here a
caller waits (up to ``pool_timeout`` seconds) for a connection of a bounded pool
(``pool_size``); past that wait it gets ``Busy``, which says "overloaded", not "unreachable".

Retry: after a Redis restart every pooled connection is dead, and each fails its next command
once. A command that fails with a connection error is retried once, on a fresh connection.
Only connection errors, not timeouts: a dead connection means the command never reached the
server that answers now; a timeout may mean it ran. Storage writes are idempotent anyway
(docs/concepts.md), so even a command that did run is harmless to repeat.

redis-py's asyncio connection packs every argument of a command in Python (encode it, measure
it, join the pieces). A fanout chunk's script call names 500 feed keys, and that packing was a
fifth of a worker's CPU. hiredis, already installed to parse replies, packs the same bytes in
C (redis-py's synchronous client does this on its own; its asyncio client does not yet).
Anything hiredis will not pack (``None``, ``bool``, ``bytearray``) goes to redis-py's own
packer, which packs it or raises its usual ``DataError``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import hiredis
import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import (
    BlockingConnectionPool,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from notifier import metrics
from notifier.errors import Busy, ConfigError
from notifier.storage.redis_urls import parse_redis_url

#: Connections one client (one process's storage, bus or broker client) opens at most.
POOL_SIZE = 50
#: Seconds a command waits for a free connection before it fails with ``Busy``.
POOL_TIMEOUT = 5.0


class _HiredisPacking:
    """Mixin over a redis-py asyncio connection class: ``pack_command`` through hiredis."""

    def pack_command(self, *args: Any) -> list[bytes]:
        head = args[0]
        # As redis-py does: a multi-word command name ("CONFIG GET") is several arguments.
        if isinstance(head, (str, bytes)) and head.split() != [head]:
            args = (*head.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:  # bool, None, bytearray…: redis-py packs or rejects them
            pass
        packed: list[bytes] = super().pack_command(*args)  # type: ignore[misc]
        return packed


class HiredisConnection(_HiredisPacking, Connection):
    """TCP."""


class HiredisSSLConnection(_HiredisPacking, SSLConnection):
    """TLS (``rediss://``)."""


class HiredisUnixConnection(_HiredisPacking, UnixDomainSocketConnection):
    """Unix socket (``unix://``)."""


_FASTER: dict[type[Any], type[Any]] = {
    Connection: HiredisConnection,
    SSLConnection: HiredisSSLConnection,
    UnixDomainSocketConnection: HiredisUnixConnection,
}


def _driver_options() -> dict[str, Any]:
    """redis-py (>= 7) looks its own version up in the installed package metadata for every
    new connection (reading and parsing a METADATA file): under a burst that grows the pool
    by hundreds of connections, a visible share of the web process's CPU. The same value,
    given once."""
    try:
        from redis.driver_info import DriverInfo
    except ImportError:  # older redis-py: no such lookup either
        return {}
    return {"driver_info": DriverInfo(name="redis-py", lib_version=redis.__version__)}


_DRIVER = _driver_options()


class WaitingPool(BlockingConnectionPool):
    """redis-py's blocking pool, whose exhausted wait says ``Busy`` (not a connection error
    that reads as an outage)."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        # Only a call that finds the pool exhausted is timed: the common case costs nothing.
        waited = None if self.can_get_connection() else time.perf_counter()
        try:
            connection = await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except redis.ConnectionError as exc:
            if isinstance(exc.__cause__, asyncio.TimeoutError):
                metrics.POOL_TIMEOUTS.inc()
                raise Busy(
                    f"all {self.max_connections} Redis connections busy for {self.timeout:g}s"
                ) from exc
            raise
        if waited is not None:
            metrics.POOL_WAIT.observe(time.perf_counter() - waited)
        return connection


def once_more() -> Retry:
    """One retry, after a few milliseconds, of a command whose connection was dead."""
    return Retry(
        ExponentialWithJitterBackoff(base=0.01, cap=0.1),
        1,
        supported_errors=(redis.ConnectionError,),
    )


#: What ``redis_client`` returns: one server's client (also a Sentinel-managed primary's) or a
#: Redis Cluster's. Both take the same commands; a cluster's must keep each to one slot.
AnyRedis = aioredis.Redis | RedisCluster


def redis_client(
    url: str,
    *,
    pool_size: int = POOL_SIZE,
    pool_timeout: float = POOL_TIMEOUT,
    replicated: bool = False,
    **options: Any,
) -> AnyRedis:
    """A client of ``url`` (any form ``redis_urls`` accepts): connections packed with hiredis,
    at most ``pool_size`` of them (a command waits ``pool_timeout`` seconds for one, then
    fails with ``Busy``), a command retried once on a dead connection unless ``options``
    give another ``retry``. ``replicated``: what must outlive a failover (storage, the
    broker) waits for replicas as ``NOTIFIER_REDIS_MIN_REPLICAS`` says (Sentinel-managed
    primaries only: redis_replicas.py)."""
    target = parse_redis_url(url)
    if target.cluster:
        from notifier.storage.redis_cluster import cluster_client

        return cluster_client(target, pool_size=pool_size, pool_timeout=pool_timeout, **options)
    return server_client(
        url, pool_size=pool_size, pool_timeout=pool_timeout, replicated=replicated, **options
    )


def server_client(
    url: str,
    *,
    pool_size: int = POOL_SIZE,
    pool_timeout: float = POOL_TIMEOUT,
    replicated: bool = False,
    **options: Any,
) -> aioredis.Redis:
    """``redis_client`` for what must be one server (or a Sentinel-managed primary), such as
    the broker: a cluster URL is refused."""
    target = parse_redis_url(url)
    if target.cluster:
        raise ConfigError(f"{target.redacted()}: needs one Redis server, not a cluster")
    if target.sentinel:
        from notifier.storage.redis_sentinel import sentinel_client

        options.setdefault("retry", once_more())
        return sentinel_client(
            target,
            pool_size=pool_size,
            pool_timeout=pool_timeout,
            replicated=replicated,
            **{**_DRIVER, **options},
        )
    return single_client(url, pool_size=pool_size, pool_timeout=pool_timeout, **options)


def single_client(
    url: str,
    *,
    pool_size: int = POOL_SIZE,
    pool_timeout: float = POOL_TIMEOUT,
    **options: Any,
) -> aioredis.Redis:
    """``redis_client`` for one server (``redis://``, ``rediss://``, ``unix://``)."""
    options.setdefault("retry", once_more())
    pool = WaitingPool.from_url(
        url, max_connections=pool_size, timeout=pool_timeout, **{**_DRIVER, **options}
    )
    pool.connection_class = _FASTER.get(pool.connection_class, pool.connection_class)
    client = aioredis.Redis(connection_pool=pool)
    client.auto_close_connection_pool = True  # what from_url does: the client owns its pool
    return client


def sync_redis_client(url: str, **options: Any) -> redis.Redis:
    """A synchronous client (dramatiq's broker runs on one): one server or a Sentinel-managed
    primary. A Redis Cluster is refused: dramatiq's Redis broker does not run on one (its
    scripts touch keys of many slots; dramatiq issue #754)."""
    target = parse_redis_url(url, "broker url")
    if target.cluster:
        raise ConfigError(
            "the fanout broker cannot run on a Redis Cluster (dramatiq's Redis broker needs "
            "one server): set NOTIFIER_BROKER_URL to a redis:// or redis+sentinel:// URL"
        )
    if target.sentinel:
        from notifier.storage.redis_sentinel import sync_sentinel_client

        return sync_sentinel_client(target, **options)
    return redis.Redis.from_url(url, **options)
