"""From configuration to a running app: storage, fanout manager, token signer, services."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from starlette.applications import Starlette

from notifier.config import Config
from notifier.fanout.manager import Manager
from notifier.fanout.runtime import open_manager
from notifier.realtime.bus import Bus
from notifier.realtime.cluster_hub import ClusterHub
from notifier.realtime.hub import LocalBus
from notifier.realtime.redis_bus import RedisHub
from notifier.realtime.server import RealtimeServer
from notifier.realtime.wiring import open_realtime, realtime_url_for
from notifier.service import Notifier
from notifier.storage.base import Storage
from notifier.storage.factory import storage_for
from notifier.web.activity import ActiveUsers
from notifier.web.app import create_app
from notifier.web.auth import UserTokens
from notifier.web.services import Services
from notifier.web.settings import ServerSettings
from notifier.web.shared_limits import open_limits


def build_services(
    config: Config,
    settings: ServerSettings,
    *,
    storage: Storage | None = None,
    bus: Bus | None = None,
) -> Services:
    """Everything one web process needs; with memory storage, fanout workers run in-process.

    ``bus`` replaces the configured realtime bus (tests pass a RecordingBus); the websocket
    side then listens on an in-process hub that nothing publishes to.
    """
    store = storage or storage_for(config)
    notifier = Notifier(config, store)
    if bus is None:
        bus, hub = open_realtime(config)
    else:
        hub = LocalBus()
    manager = open_manager(config, storage=store, bus=bus)
    tokens = UserTokens(settings.secret, settings.token_ttl, settings.max_token_ttl)
    active = ActiveUsers(manager.mark_active)
    limits = open_limits(realtime_url_for(config), config.key_prefix, settings)
    realtime = RealtimeServer(
        hub=hub,
        storage=store,
        feeds=config.feeds.groups,
        tokens=tokens,
        settings=settings.realtime,
        allowed_origins=settings.allowed_origins,
        bodies=notifier.bodies,
        on_connect=active.seen,
        cap=limits.connections,
    )
    if isinstance(hub, RedisHub | ClusterHub):
        hub.prepare = realtime.prepare
    return Services(
        notifier=notifier,
        fanout=manager,
        tokens=tokens,
        settings=settings,
        realtime=realtime,
        active=active,
        limits=limits,
        bus=bus,
        broker_ping=_broker_ping(manager),
    )


def _broker_ping(manager: Manager) -> Callable[[], Awaitable[None]] | None:
    """A readiness probe of the Redis broker (the in-process broker is always there)."""
    client = getattr(getattr(manager.dispatcher, "broker", None), "client", None)
    if client is None:
        return None

    async def ping() -> None:
        await asyncio.to_thread(client.ping)

    return ping


def build_app(config: Config, settings: ServerSettings) -> Starlette:
    """The app ``notifier serve`` runs."""
    return create_app(build_services(config, settings))
