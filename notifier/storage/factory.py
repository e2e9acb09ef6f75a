"""Open the storage backend a URL names."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from notifier.errors import ConfigError
from notifier.storage.base import Storage
from notifier.storage.redis_client import POOL_SIZE, POOL_TIMEOUT
from notifier.storage.redis_urls import SCHEMES as REDIS_SCHEMES

if TYPE_CHECKING:
    from notifier.config import Config


def storage_for(config: Config) -> Storage:
    """The storage ``config`` names, with its connection pool settings."""
    return open_storage(
        config.storage_url,
        config.key_prefix,
        pool_size=config.pool_size,
        pool_timeout=config.pool_timeout,
    )


def open_storage(
    url: str,
    prefix: str = "notifier",
    *,
    pool_size: int = POOL_SIZE,
    pool_timeout: float = POOL_TIMEOUT,
) -> Storage:
    """``memory://``, ``cassandra://host1,host2:port/keyspace`` or any Redis URL
    (``redis://host:port/db``, ``redis+cluster://…``, ``redis+sentinel://…``: see
    ``redis_urls``). The pool settings are Redis's: Cassandra's driver keeps its own."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from notifier.storage.memory import MemoryStorage

        return MemoryStorage()
    if scheme in REDIS_SCHEMES:
        from notifier.storage.redis import RedisStorage

        return RedisStorage.from_url(
            url, prefix=prefix, pool_size=pool_size, pool_timeout=pool_timeout
        )
    if scheme == "cassandra":
        from notifier.storage.cassandra import CassandraStorage

        return CassandraStorage.from_url(url, prefix=prefix)
    raise ConfigError(f"no storage backend for {url!r}")
