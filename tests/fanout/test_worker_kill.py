"""A worker killed with SIGKILL in the middle of a large fanout loses and duplicates nothing."""

from __future__ import annotations

import time

import pytest

from notifier.fanout.settings import FanoutSettings
from tests.fanout.conftest import Harness, redis_harness, wait_until

pytestmark = pytest.mark.single_redis


async def test_sigkill_mid_fanout_then_a_new_worker_leaves_every_feed_exactly_once(
    redis_url: str, pools: list[Harness]
) -> None:
    # A short heartbeat timeout and frequent maintenance: the killed worker's jobs (running and
    # prefetched) go back to their queues about two seconds after it dies.
    harness = await redis_harness(
        redis_url,
        workers=0,
        threads=2,
        chunk_size=50,
        heartbeat_timeout_ms=2_000,
        sweep_interval_ms=500,
    )
    pools.append(harness)
    assert harness.pool is not None
    followers = [f"f{i:05d}" for i in range(10_000)]
    await harness.follow_all(followers, "ana")
    samples = followers[::50]  # the first user of every chunk
    post = harness.app().activity(actor="ana", verb="like", object="photo:1")
    await harness.manager.add_activity(post)
    [first] = harness.pool.start(1)

    progress: list[int] = []

    async def some_chunks_done() -> bool:
        feeds = await harness.read_all("timeline", samples)
        progress.append(sum(1 for ids in feeds.values() if ids))
        return progress[-1] >= len(samples) // 10

    await wait_until(some_chunks_done, within=60, every=0.005)
    harness.pool.kill(first)
    assert first.returncode == -9
    done_at_kill = sum(1 for ids in (await harness.read_all("timeline", samples)).values() if ids)
    assert done_at_kill < len(samples), "the kill must land in the middle of the fanout"

    harness.pool.start(1)
    await harness.manager.join(120)

    timelines = await harness.read_all("timeline", followers)
    assert {user for user, ids in timelines.items() if ids != [post.id]} == set()
    digests = await harness.counts_all("digest", followers)
    assert {user for user, counts in digests.items() if counts != (1, 1, 1)} == set()
    assert (await harness.manager.follow_counts("ana")).followers == 10_000


async def test_with_default_settings_a_killed_workers_jobs_are_back_within_seconds(
    redis_url: str, pools: list[Harness]
) -> None:
    """No tuning: the defaults alone (heartbeat timeout, sweeps) bring the jobs a SIGKILLed
    worker held back to a live one, and the fanout completes within 30 s of the kill."""
    defaults = FanoutSettings()
    harness = await redis_harness(
        redis_url, workers=2, threads=2, chunk_size=100,
        heartbeat_timeout_ms=defaults.heartbeat_timeout_ms,
        sweep_interval_ms=defaults.sweep_interval_ms,
        maintenance_chance=defaults.maintenance_chance,
    )  # fmt: skip
    pools.append(harness)
    assert harness.pool is not None
    followers = [f"k{i:05d}" for i in range(5_000)]
    await harness.follow_all(followers, "ana")
    samples = followers[::100]  # the first user of every chunk
    posts = [
        harness.app().activity(actor="ana", verb="like", object=f"photo:{n}") for n in range(20)
    ]
    for post in posts:
        await harness.manager.add_activity(post)

    async def some_chunks_done() -> bool:
        feeds = await harness.read_all("timeline", samples)
        return sum(len(ids) for ids in feeds.values()) >= len(samples) * len(posts) // 10

    await wait_until(some_chunks_done, within=60, every=0.005)
    victim = harness.pool.procs[0]
    harness.pool.kill(victim)
    killed_at = time.monotonic()
    feeds = await harness.read_all("timeline", samples)
    assert sum(len(ids) for ids in feeds.values()) < len(samples) * len(posts)

    await harness.manager.join(60)
    recovered = time.monotonic() - killed_at
    print(f"fanout complete {recovered:.1f} s after the kill")
    assert recovered < 30, f"{recovered:.1f} s"

    expected = sorted((p.id for p in posts), reverse=True)
    timeline = harness.config.feeds["timeline"]
    wrong = [
        user for user in followers
        if await harness.storage.read_flat(timeline, user, limit=100) != expected
    ]  # fmt: skip
    assert wrong == []  # every post once in every timeline: none missing, none twice
    digests = await harness.counts_all("digest", followers)
    assert {user for user, counts in digests.items() if counts != (1, 1, 1)} == set()
