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

if TYPE_CHECKING:
    from notifier.config import Config


def realtime_url_for(config: Config, env: Mapping[str, str] | None = None) -> str:
    """``NOTIFIER_REALTIME_URL``, else the fanout broker's Redis (``memory://`` in-process)."""
    env = os.environ if env is None else env
    url = env.get("NOTIFIER_REALTIME_URL") or broker_url_for(config)
    if url != IN_PROCESS and not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"NOTIFIER_REALTIME_URL {url!r} must be redis://, rediss:// or unix://")
    if url != IN_PROCESS and broker_url_for(config) == IN_PROCESS:
        raise ConfigError("memory storage runs in one process: unset NOTIFIER_REALTIME_URL")
    return url


def open_realtime(config: Config) -> tuple[Bus, Hub]:
    """The publisher and the listener of a web process (the same object in-process)."""
    url = realtime_url_for(config)
    if url == IN_PROCESS:
        local = LocalBus()
        return local, local
    return RedisBus(url, config.key_prefix), RedisHub(url, config.key_prefix)


def open_publisher(config: Config) -> Bus:
    """The publisher of a worker process."""
    url = realtime_url_for(config)
    if url == IN_PROCESS:
        raise ConfigError("the in-process bus has no separate publisher")
    return RedisBus(url, config.key_prefix)
