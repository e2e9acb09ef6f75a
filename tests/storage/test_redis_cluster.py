"""Redis Cluster storage under resharding: slots move between primaries while fanout writes
run, and every feed ends with every id exactly once, each reported added exactly once.

A batched write sends one call per node with the feeds of many slots. A feed whose slot has
moved, or is moving (its keys may be split between the two nodes, and new keys would belong
to the new owner), is refused by the node before anything is written; storage sends it again
on a fresh slot map. Every third activity opens a group, so new keys are created while slots
move. The test checks the redo path actually ran, so it cannot pass by resharding only after
the writes (with the previous probe, which checked only a feed's existing keys, one run in
three reported an aggregated add twice or not at all).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest

from notifier.storage.redis import RedisStorage
from tests import services
from tests.storage.helpers import entry, flat, notification

pytestmark = pytest.mark.single_redis

USERS = [f"u{i:04d}" for i in range(1500)]


@pytest.fixture(scope="module")
def cluster() -> Iterator[services.RedisClusterServers]:
    with services.redis_cluster() as found:
        if isinstance(found, str):
            pytest.skip("NOTIFIER_TEST_REDIS_CLUSTER is given: this test reshards its own")
        yield found


@pytest.mark.timeout(300)
async def test_fanout_writes_during_resharding_lose_and_double_nothing(
    cluster: services.RedisClusterServers,
) -> None:
    storage = RedisStorage.from_url(cluster.url, prefix=f"rs{uuid.uuid4().hex[:8]}")
    timeline, bell = flat(max_length=1000), notification(max_length=1000, window=3)
    added: dict[str, Counter[str]] = {"flat": Counter(), "aggregated": Counter()}
    written: list[str] = []
    moving = asyncio.create_task(asyncio.to_thread(cluster.reshard, 0, 1, 2500))
    try:
        n = 0
        # Write until the resharding is over (and at least a few rounds).
        while not moving.done() or n < 5:
            n += 1
            # Every third activity opens a group (new keys: what a moving slot must refuse
            # before anything is written); the others join the group of their key.
            one = entry(n, actor=f"a{n % 7}", key=f"k{n // 3}")
            written.append(one.id)
            for change in await storage.add_to_feeds(timeline, USERS, [one]):
                added["flat"].update(f"{change.user}/{i}" for i in change.added)
            for change in await storage.add_to_feeds(bell, USERS, [one]):
                added["aggregated"].update(f"{change.user}/{i}" for i in change.added)
        await moving
        print(f"{n} writes x {len(USERS)} feeds x 2 groups; {storage.redone} calls redone")
        assert storage.redone > 0, "no write met a moving slot: the test proved nothing"
        for kind, seen in added.items():
            assert len(seen) == len(USERS) * len(written), kind
            assert set(seen.values()) == {1}, f"{kind}: an add reported twice"
        for user in USERS[::50]:
            assert await storage.read_flat(timeline, user, limit=2000) == written[::-1]
            groups, counts = await storage.read_page(bell, user, limit=1000)
            assert sum(g.activity_count for g in groups) == len(written)
            assert [g.key for g in groups] == [f"k{k}" for k in range(len(written) // 3, -1, -1)]
            assert counts.unseen == counts.unread == len(groups)
    finally:
        if not moving.done():
            await moving
        await storage.close()
