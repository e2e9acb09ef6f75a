"""The Redis bus: per-user channels for targeted events, one shared message for a fanout's
identical events, and each web process delivering only to the users connected to it."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis

from notifier.realtime.bus import UserEvent, publish_changes
from notifier.realtime.redis_bus import SHARED_MIN, RedisBus, RedisHub, fanout_channel
from notifier.storage.base import FeedChange

pytestmark = pytest.mark.single_redis


class Inbox:
    """A listener that keeps what it is given."""

    def __init__(self) -> None:
        self.events: list[UserEvent] = []
        self.resyncs = 0

    def deliver(self, event: UserEvent) -> None:
        self.events.append(event)

    def resync(self) -> None:
        self.resyncs += 1


async def until(condition: object, within: float = 5) -> None:
    assert callable(condition)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        assert loop.time() < deadline, "condition not met"
        await asyncio.sleep(0.01)


async def test_a_fanouts_events_travel_once_and_reach_only_connected_users(
    redis_url: str,
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    bus, hub = RedisBus(redis_url, prefix), RedisHub(redis_url, prefix)
    watcher = aioredis.Redis.from_url(redis_url).pubsub()
    await watcher.subscribe(fanout_channel(prefix))
    inboxes = {user: Inbox() for user in ("u3", "u7", "solo")}
    try:
        for user, inbox in inboxes.items():
            await hub.subscribe(user, inbox)
        chunk = [
            UserEvent(user=f"u{n}", feed="timeline", kind="added", activity_ids=["a1"])
            for n in range(SHARED_MIN + 2)
        ]
        alone = UserEvent(user="solo", feed="notification", kind="marked")
        await bus.publish([*chunk, alone])

        await until(lambda: all(inbox.events for inbox in inboxes.values()))
        assert inboxes["u3"].events == [chunk[3]]
        assert inboxes["u7"].events == [chunk[7]]
        assert inboxes["solo"].events == [alone]
        shared = []
        while (message := await watcher.get_message(timeout=0.5)) is not None:
            if message["type"] == "message":
                shared.append(message)
        assert len(shared) == 1  # one message for the whole chunk, not one per user
    finally:
        await watcher.aclose()  # type: ignore[no-untyped-call]
        await hub.close()
        await bus.close()


async def test_grouped_changes_reach_the_same_users_as_events_would(redis_url: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    bus, hub = RedisBus(redis_url, prefix), RedisHub(redis_url, prefix)
    watcher = aioredis.Redis.from_url(redis_url).pubsub()
    await watcher.subscribe(fanout_channel(prefix))
    users = [f"u{n}" for n in range(SHARED_MIN + 2)]
    inboxes = {user: Inbox() for user in ("u0", "u9", "late")}
    try:
        for user, inbox in inboxes.items():
            await hub.subscribe(user, inbox)
        ids = ["a1"]  # storage hands every feed of a chunk this one list
        changes = [FeedChange(user=u, added=ids) for u in users]
        changes.append(FeedChange(user="late", added=["a0"]))  # its own, alone
        await publish_changes(bus, "timeline", "added", changes)

        await until(lambda: all(inbox.events for inbox in inboxes.values()))
        expected = UserEvent(user="u9", feed="timeline", kind="added", activity_ids=["a1"])
        assert inboxes["u9"].events == [expected]
        assert inboxes["u0"].events[0].activity_ids == ["a1"]
        assert inboxes["late"].events == [
            UserEvent(user="late", feed="timeline", kind="added", activity_ids=["a0"])
        ]
        shared = []
        while (message := await watcher.get_message(timeout=0.5)) is not None:
            if message["type"] == "message":
                shared.append(message)
        assert len(shared) == 1  # the chunk's ten users: one message; "late" on its channel
    finally:
        await watcher.aclose()  # type: ignore[no-untyped-call]
        await hub.close()
        await bus.close()
