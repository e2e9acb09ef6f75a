"""The hot path's scripts are called by SHA1 alone (no ``SCRIPT EXISTS`` round trip before
each pipeline): a Redis that lost them (restarted, ``SCRIPT FLUSH``) still gets every write
and every job, once."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from notifier.fanout.jobs import ChunkJob
from notifier.feeds import entries_for
from tests.fanout.conftest import close, redis_harness

pytestmark = [pytest.mark.timeout(60), pytest.mark.single_redis]


async def test_post_and_chunk_reload_their_scripts_after_a_script_flush(redis_url: str) -> None:
    harness = await redis_harness(redis_url, workers=0)
    client = aioredis.Redis.from_url(redis_url)
    try:
        ana, bo, cy = harness.user("ana"), harness.user("bo"), harness.user("cy")
        post = harness.app().activity(actor=ana, verb="post", object="post:1")
        await client.script_flush()
        # The web's side: the fanout job enqueued (dispatch script), the actor's feed written.
        await harness.manager.add_activity(post)
        high = harness.config.fanout.high_queue
        assert harness.actors.pending(high) == 1
        assert await harness.storage.read_flat(harness.manager.actor_group, ana, limit=5) == [
            post.id
        ]
        # A worker's side: a chunk into followers' timelines.
        timeline = harness.config.feeds["timeline"]
        chunk = ChunkJob(op="add", actor=ana, activity_ids=[post.id], users=[bo, cy],
                         entries={"timeline": entries_for(timeline, [post])})  # fmt: skip
        await client.script_flush()
        await harness.manager.run_chunk(chunk)
        assert await harness.read_all("timeline", [bo, cy]) == {bo: [post.id], cy: [post.id]}
    finally:
        await client.aclose()
        await close(harness)
