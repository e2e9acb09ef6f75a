"""Which bus a configuration implies: Redis pub/sub wherever fanout runs on Redis, else (the
memory backend, one process) the in-process bus."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from notifier.errors import ConfigError
from notifier.fanout.broker import IN_PROCESS, broker_url_for
from notifier.realtime.bus import Bus
from notifier.realtime.hub import Hub, LocalBus
from notifier.realtime.redis_bus import RedisBus, RedisHub
from notifier.storage.redis_urls import is_redis_url, parse_redis_url

if TYPE_CHECKING:
    from notifier.config import Config


def realtime_url_for(config: Config, env: Mapping[str, str] | None = None) -> str:
    """``NOTIFIER_REALTIME_URL``; else the storage's Redis Cluster (sharded pub/sub) when the
    storage is one; else the fanout broker's Redis (``memory://``: in-process)."""
    env = os.environ if env is None else env
    url = env.get("NOTIFIER_REALTIME_URL")
    if not url:
        storage = config.storage_url
        url = storage if is_redis_url(storage) and parse_redis_url(storage).cluster else None
    url = url or broker_url_for(config)
    if url != IN_PROCESS:
        parse_redis_url(url, "NOTIFIER_REALTIME_URL")
        if broker_url_for(config) == IN_PROCESS:
            raise ConfigError("memory storage runs in one process: unset NOTIFIER_REALTIME_URL")
    return url


def open_realtime(config: Config) -> tuple[Bus, Hub]:
    """The publisher and the listener of a web process (the same object in-process)."""
    url = realtime_url_for(config)
    if url == IN_PROCESS:
        local = LocalBus()
        return local, local
    if parse_redis_url(url).cluster:
        from notifier.realtime.cluster_bus import ClusterBus, ClusterHub

        return ClusterBus(url, config.key_prefix), ClusterHub(url, config.key_prefix)
    return RedisBus(url, config.key_prefix), RedisHub(url, config.key_prefix)


def open_publisher(config: Config) -> Bus:
    """The publisher of a worker process."""
    url = realtime_url_for(config)
    if url == IN_PROCESS:
        raise ConfigError("the in-process bus has no separate publisher")
    if parse_redis_url(url).cluster:
        from notifier.realtime.cluster_bus import ClusterBus

        return ClusterBus(url, config.key_prefix)
    return RedisBus(url, config.key_prefix)
