"""notifier's asyncio Redis clients: redis-py, with commands packed by hiredis in C.

redis-py's asyncio connection packs every argument of a command in Python (encode it, measure
it, join the pieces). A fanout chunk's script call names 500 feed keys, and that packing was a
fifth of a worker's CPU. hiredis, already installed to parse replies, packs the same bytes in
C (redis-py's synchronous client does this on its own; its asyncio client does not yet).
Anything hiredis will not pack (``None``, ``bool``, ``bytearray``) goes to redis-py's own
packer, which packs it or raises its usual ``DataError``.
"""

from __future__ import annotations

from typing import Any

import hiredis
import redis
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection


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


def redis_client(url: str, **options: Any) -> aioredis.Redis:
    """``redis.asyncio.Redis.from_url(url, **options)`` whose connections pack with hiredis."""
    pool = aioredis.ConnectionPool.from_url(url, **{**_DRIVER, **options})
    pool.connection_class = _FASTER.get(pool.connection_class, pool.connection_class)
    client = aioredis.Redis(connection_pool=pool)
    client.auto_close_connection_pool = True  # what from_url does: the client owns its pool
    return client
