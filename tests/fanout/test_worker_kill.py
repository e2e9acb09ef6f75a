"""A worker killed with SIGKILL in the middle of a large fanout loses and duplicates nothing."""

from __future__ import annotations

from tests.fanout.conftest import Harness, redis_harness, wait_until


async def test_sigkill_mid_fanout_then_a_new_worker_leaves_every_feed_exactly_once(
    redis_url: str, pools: list[Harness]
) -> None:
    # A short heartbeat timeout and frequent maintenance: the killed worker's jobs (running and
    # prefetched) go back to their queues about two seconds after it dies.
    harness = await redis_harness(
        redis_url, workers=0, threads=2, chunk_size=50, heartbeat_timeout_ms=2_000
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
