"""Priority policies and the presence they read."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import pytest

from notifier.fanout.jobs import Priority
from notifier.fanout.policy import MemoryPresence, Presence, RecentlyActive, RedisPresence, Uniform
from notifier.storage.redis import RedisStorage

pytestmark = pytest.mark.single_redis


@pytest.fixture(params=["memory", "redis"])
async def presence(request: pytest.FixtureRequest) -> AsyncIterator[Presence]:
    if request.param == "memory":
        yield MemoryPresence()
        return
    storage = RedisStorage.from_url(request.getfixturevalue("redis_url"), prefix=uuid.uuid4().hex)
    yield RedisPresence(storage.client, storage.prefix)
    await storage.close()


async def test_recently_active_followers_go_high_and_the_split_keeps_everyone_once(
    presence: Presence,
) -> None:
    now = time.time()
    await presence.touch(["bo", "cy"], at=now)
    await presence.touch(["dee"], at=now - 7200)
    policy = RecentlyActive(presence, window_s=3600)
    high, low = await policy.split("ana", ["bo", "cy", "dee", "eve"])
    assert (high, low) == (["bo", "cy"], ["dee", "eve"])
    await presence.touch(["dee"], at=now - 10_000)  # an older touch never moves time back
    assert await presence.active_since(["dee"], now - 7201) == [True]
    assert await presence.active_since([], now) == []


async def test_uniform_puts_everyone_in_one_queue() -> None:
    assert await Uniform().split("ana", ["bo", "cy"]) == (["bo", "cy"], [])
    assert await Uniform(Priority.LOW).split("ana", ["bo"]) == ([], ["bo"])
