"""Open the storage backend a URL names."""

from __future__ import annotations

from urllib.parse import urlsplit

from notifier.errors import ConfigError
from notifier.storage.base import Storage


def open_storage(url: str, prefix: str = "notifier") -> Storage:
    """``memory://``, ``redis://host:port/db`` or ``cassandra://host1,host2:port/keyspace``."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from notifier.storage.memory import MemoryStorage

        return MemoryStorage()
    if scheme in ("redis", "rediss"):
        from notifier.storage.redis import RedisStorage

        return RedisStorage.from_url(url, prefix=prefix)
    if scheme == "cassandra":
        from notifier.storage.cassandra import CassandraStorage

        return CassandraStorage.from_url(url, prefix=prefix)
    raise ConfigError(f"no storage backend for {url!r}")
