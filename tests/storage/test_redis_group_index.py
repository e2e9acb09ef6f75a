"""The Redis backend's group index (newest group per key): feeds written before it existed get
it built on their next add, and a stale entry never sends an activity to a vanished group.
(Its correctness under random adds, removals and windows is the property suite's job.)"""

from __future__ import annotations

import uuid

import pytest

from notifier.storage.redis import RedisStorage
from tests.storage.helpers import entry, notification

pytestmark = pytest.mark.single_redis


async def test_a_feed_without_the_index_gets_it_and_still_merges(redis_url: str) -> None:
    storage = RedisStorage.from_url(redis_url, prefix=f"ix{uuid.uuid4().hex[:8]}")
    group = notification(window=3)
    try:
        await storage.add_to_feeds(group, ["bo"], [entry(1, key="a"), entry(2, key="b")])
        index = storage._agg_key(group, "bo") + "x"
        await storage.client.delete(index)  # as a feed written by an earlier version is
        await storage.add_to_feeds(group, ["bo"], [entry(3, key="a")])
        groups = await storage.read_groups(group, "bo", limit=10)
        assert [(g.key, g.activity_count) for g in groups] == [("a", 2), ("b", 1)]
        assert await storage.client.hget(index, "built") == b"1"
        assert await storage.client.hget(index, "kb") == groups[1].id.encode()
    finally:
        await storage.close()


async def test_an_index_entry_for_a_vanished_group_opens_a_new_group(redis_url: str) -> None:
    storage = RedisStorage.from_url(redis_url, prefix=f"ix{uuid.uuid4().hex[:8]}")
    group = notification(window=3)
    try:
        await storage.add_to_feeds(group, ["bo"], [entry(1, key="a")])
        index = storage._agg_key(group, "bo") + "x"
        await storage.client.hset(index, "ka", "0" * 26)  # names no group of the feed
        await storage.add_to_feeds(group, ["bo"], [entry(2, key="a")])
        groups = await storage.read_groups(group, "bo", limit=10)
        assert [(g.key, g.activity_count) for g in groups] == [("a", 1), ("a", 1)]
    finally:
        await storage.close()
