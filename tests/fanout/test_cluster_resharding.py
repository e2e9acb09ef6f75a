"""Fanout the way it runs on a Redis Cluster: real worker processes write followers' feeds
(flat timelines and notification digests) on a cluster of our own while an operator moves
slots between its primaries; the broker is one redis-server. Every feed ends with every
activity exactly once and exact counts."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from notifier.fanout.runtime import open_manager
from tests import services
from tests.fanout.conftest import Harness, WorkerPool, make_config

pytestmark = [pytest.mark.timeout(300), pytest.mark.single_redis]

FOLLOWERS = 2_000


async def test_fanout_through_workers_while_slots_move_writes_every_feed_once(
    redis_url: str, pools: list[Harness]
) -> None:
    with services.redis_cluster() as cluster:
        if isinstance(cluster, str):
            pytest.skip("NOTIFIER_TEST_REDIS_CLUSTER is given: this test reshards its own")
        config, path = make_config(cluster.url, f"rs{uuid.uuid4().hex[:8]}", broker_url=redis_url)
        pool = WorkerPool(path)
        pool.start(2)
        harness = Harness("redis", config, open_manager(config), pool=pool)
        pools.append(harness)
        ana = harness.user("ana")
        followers = [harness.user(f"f{i:05d}") for i in range(FOLLOWERS)]
        await harness.follow_all(followers, ana)
        app = harness.app()

        moving = asyncio.create_task(asyncio.to_thread(cluster.reshard, 0, 2, 3000))
        posted = []
        while not moving.done() or len(posted) < 5:  # posting all along the resharding
            post = app.activity(actor=ana, verb="post", object=f"post:{len(posted)}")
            await harness.manager.add_activity(post)
            posted.append(post.id)
            await asyncio.sleep(0.05)
        await moving
        await harness.manager.join(120)

        timeline, digest = config.feeds["timeline"], config.feeds["digest"]
        newest_first = posted[::-1]
        for user in followers:
            assert await harness.storage.read_flat(timeline, user, limit=1000) == newest_first
            groups, counts = await harness.storage.read_page(digest, user, limit=10)
            assert [g.activity_count for g in groups] == [len(posted)]
            assert (counts.unseen, counts.unread) == (1, 1)
        print(f"{len(posted)} activities x {FOLLOWERS} followers while 3,000 slots moved")
