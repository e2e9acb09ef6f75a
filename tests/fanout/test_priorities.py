"""HIGH before LOW, and a celebrity's fanout does not hold back everyone else's."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import pytest
import redis.asyncio as aioredis

from notifier.realtime.bus import decode_event
from notifier.realtime.redis_bus import SharedEvent, fanout_channel
from tests.fanout.conftest import (
    Harness,
    close,
    memory_harness,
    redis_harness,
    start_in_process,
    wait_until,
)

pytestmark = pytest.mark.single_redis


def timeline_order(harness: Harness) -> list[str]:
    assert harness.bus is not None
    return [e.user for e in harness.bus.events if e.feed == "timeline" and e.kind == "added"]


async def done(harness: Harness, users: Sequence[str]) -> list[bool]:
    """Which of ``users`` have something in their timeline (one concurrent snapshot)."""
    feeds = await harness.read_all("timeline", users)
    return [bool(feeds[user]) for user in users]


# -- priorities -------------------------------------------------------------------------------
async def test_in_process_active_followers_chunks_run_before_the_others() -> None:
    harness = await memory_harness(start=False, chunk_size=50)
    try:
        followers = [f"f{i:04d}" for i in range(2_000)]
        active = set(followers[::2])
        await harness.follow_all(followers, "ana")
        await harness.manager.mark_active(sorted(active))
        post = harness.app().activity(actor="ana", verb="post", object="p")
        await harness.manager.add_activity(post)
        start_in_process(harness, threads=1)  # everything above is queued before any job runs
        await harness.manager.join(60)

        order = timeline_order(harness)
        assert sorted(order) == followers
        last_high = max(i for i, user in enumerate(order) if user in active)
        low_first = [user for user in order[:last_high] if user not in active]
        # Without priorities about half the 20 LOW chunks would run first. With them, only
        # the LOW chunks the worker had prefetched (2), and under load one more fetched in the
        # instant the HIGH queue was empty between two of the fanout job's sends (seen in CI:
        # 3 chunks).
        assert len(low_first) <= 4 * 50, "at most the LOW chunks a worker had prefetched"
    finally:
        await close(harness)


async def test_redis_workers_run_high_chunks_before_low_ones(
    redis_url: str, pools: list[Harness]
) -> None:
    harness = await redis_harness(redis_url, workers=0, threads=1, chunk_size=50)
    pools.append(harness)
    followers = [f"f{i:04d}" for i in range(4_000)]
    active = followers[::2]
    inactive = followers[1::2]
    await harness.follow_all(followers, "ana")
    await harness.manager.mark_active(active)
    # Every chunk announces its users on the fanout channel right after writing them, so the
    # channel gives the order the workers wrote chunks in (polling the feeds instead counted
    # whatever LOW chunks ran while the poll itself was late).
    watcher = aioredis.Redis.from_url(redis_url).pubsub()
    await watcher.subscribe(fanout_channel(harness.config.key_prefix))
    try:
        await harness.manager.add_activity(
            harness.app().activity(actor="ana", verb="post", object="p")
        )
        assert harness.pool is not None
        harness.pool.start(1)
        await harness.manager.join(60)
        assert all(await done(harness, followers))
        written: list[list[str]] = []
        while (message := await watcher.get_message(timeout=1)) is not None:
            if message["type"] == "message":
                shared = msgspec.json.decode(message["data"], type=SharedEvent)
                if decode_event(shared.event).feed == "timeline":
                    written.append(shared.users)
    finally:
        await watcher.aclose()  # type: ignore[no-untyped-call]
    high_users = set(active)
    high = [set(users) <= high_users for users in written]
    assert sorted(u for users in written for u in users) == followers
    last_high = max(i for i, is_high in enumerate(high) if is_high)
    low_chunks = len(inactive) // 50
    low_before_last_high = high[:last_high].count(False)
    assert low_before_last_high <= low_chunks // 4, (low_before_last_high, high)


# -- celebrities ------------------------------------------------------------------------------
async def test_in_process_a_small_fanout_finishes_while_a_celebrity_fanout_is_in_progress() -> None:
    for threshold, small_waits_for_all in ((1_000, False), (100_000, True)):
        harness = await memory_harness(
            start=False, chunk_size=100, celebrity_threshold=threshold, celebrity_window=2
        )
        try:
            fans = [f"fan{i:04d}" for i in range(3_000)]
            friends = [f"friend{i}" for i in range(10)]
            await harness.follow_all(fans, "star")
            await harness.follow_all(friends, "sam")
            app = harness.app()
            await harness.manager.add_activity(app.activity(actor="star", verb="post", object="s"))
            await harness.manager.add_activity(app.activity(actor="sam", verb="post", object="t"))
            start_in_process(harness, threads=1)
            await harness.manager.join(60)

            order = timeline_order(harness)
            assert sorted(order) == sorted(fans + friends)
            fans_before = order.index(friends[0])
            if small_waits_for_all:  # below the threshold: plain FIFO behind 30 chunks
                assert fans_before == len(fans)
            else:  # a celebrity: sam's chunk runs after a slice or two of star's
                assert fans_before <= 4 * 100
        finally:
            await close(harness)


async def test_redis_a_small_fanout_finishes_while_a_celebrity_fanout_is_in_progress(
    redis_url: str, pools: list[Harness]
) -> None:
    harness = await redis_harness(
        redis_url,
        workers=0,
        threads=1,
        chunk_size=100,
        celebrity_threshold=5_000,
        celebrity_window=2,
    )
    pools.append(harness)
    fans = [f"fan{i:05d}" for i in range(20_000)]
    friends = [f"friend{i}" for i in range(10)]
    await harness.follow_all(fans, "star")
    await harness.follow_all(friends, "sam")
    app = harness.app()
    await harness.manager.add_activity(app.activity(actor="star", verb="post", object="s"))
    await harness.manager.add_activity(app.activity(actor="sam", verb="post", object="t"))
    assert harness.pool is not None
    harness.pool.start(1)
    fan_samples = fans[::100]
    fans_done_when_friends_done: list[int] = []

    async def friends_done() -> bool:
        flags = await done(harness, [*friends, *fan_samples])
        if all(flags[: len(friends)]):
            fans_done_when_friends_done.append(sum(flags[len(friends) :]))
            return True
        return False

    await wait_until(friends_done, within=60)
    assert fans_done_when_friends_done[0] < len(fan_samples) // 2, fans_done_when_friends_done
    await harness.manager.join(120)
    assert all(await done(harness, fans))
