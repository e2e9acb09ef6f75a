"""The real app over real storage, called through httpx's ASGI transport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from notifier.categories import Categories
from notifier.config import Config
from notifier.fanout.settings import FanoutSettings
from notifier.feedgroups import FeedGroup, FeedGroups, default_groups
from notifier.service import Notifier
from notifier.storage.base import Storage
from notifier.storage.redis import RedisStorage
from notifier.web.app import create_app
from notifier.web.services import Services
from notifier.web.settings import ServerSettings
from notifier.web.wiring import build_services
from tests.services import broker_for

SECRET = "s" * 40
API_KEY = "test-api-key-0123456789"
OLD_KEY = "rotated-api-key-987654"
ORIGIN = "https://app.example"


def server_settings(**env: str) -> ServerSettings:
    base = {
        "NOTIFIER_SECRET": SECRET,
        "NOTIFIER_API_KEYS": f"{API_KEY},{OLD_KEY}",
        "NOTIFIER_ALLOWED_ORIGINS": ORIGIN,
    }
    base.update(env)
    return ServerSettings.load(env=base)


@dataclass
class Api:
    """A client of the app plus the objects behind it."""

    http: httpx.AsyncClient
    services: Services

    @property
    def app(self) -> Notifier:
        return self.services.notifier

    def server(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {API_KEY}"}

    def user(self, user: str, feeds: list[str] | None = None) -> dict[str, str]:
        token, _ = self.services.tokens.issue(user, 600, feeds)
        return {"Authorization": f"Bearer {token}"}


def config_for(
    storage: Storage, groups: list[FeedGroup] | None = None, categories: Categories | None = None
) -> Config:
    """The default configuration (or these feed groups and categories), pointed at
    ``storage`` (and a broker namespace of its own)."""
    feeds = FeedGroups.of(groups if groups is not None else default_groups())
    categories = categories or Categories()
    if isinstance(storage, RedisStorage):
        url = storage.url
        assert url, "a RedisStorage opened with from_url (its config needs the URL)"
        broker = broker_for(url)
        fanout = FanoutSettings(namespace=f"ns{storage.prefix}", broker_url=broker)
        return Config(
            feeds=feeds,
            categories=categories,
            storage_url=url,
            key_prefix=storage.prefix,
            fanout=fanout,
        )
    return Config(feeds=feeds, categories=categories)


async def close_services(services: Services) -> None:
    """What the app's lifespan closes, except the storage (the session's fixture owns it)."""
    await services.realtime.hub.close()
    await services.limits.close()
    await services.fanout.close()
    await services.bus.close()


def make_services(
    storage: Storage,
    settings: ServerSettings,
    groups: list[FeedGroup] | None = None,
    categories: Categories | None = None,
) -> Services:
    return build_services(config_for(storage, groups, categories), settings, storage=storage)


@pytest.fixture
async def api(storage: Storage) -> AsyncIterator[Api]:
    services = make_services(storage, server_settings())
    app = create_app(services)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield Api(http, services)
    await close_services(services)
