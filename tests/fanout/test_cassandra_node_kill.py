"""A Cassandra node killed with SIGKILL in the middle of a fanout, on the three-node cluster of
``scripts/cassandra-cluster`` (replication factor 3, LOCAL_QUORUM): no feed misses an
activity or holds one twice, every count is exact, with the node down and after it is back.

Runs where the tests may kill nodes: ``NOTIFIER_TEST_CASSANDRA_CLUSTER=start`` (the session's
cluster) or ``CI=true`` (a cluster started for this module); skipped loudly otherwise.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from notifier.fanout.runtime import open_manager
from tests import cassandra_node
from tests.fanout.conftest import Harness, WorkerPool, make_config, wait_until
from tests.services import unavailable

pytestmark = pytest.mark.cassandra

VICTIM = 1
"""The node killed: 127.0.0.1, the first contact point, which every client's driver (the
manager's and the workers') holds its control connection to."""


@pytest.fixture(scope="module")
def cluster_hosts(request: pytest.FixtureRequest) -> Iterator[str]:
    """The cluster's contact points, on a cluster ``scripts/cassandra-cluster`` runs."""
    if cassandra_node.cluster_given():
        unavailable(
            "the node-kill test kills nodes of a cluster scripts/cassandra-cluster runs "
            f"({cassandra_node.CLUSTER}=start), not of one it is given"
        )
    if os.environ.get(cassandra_node.CLUSTER):  # the session's Cassandra is that cluster
        yield request.getfixturevalue("cassandra_hosts")
        return
    with cassandra_node.cluster_contact_points() as hosts:
        try:
            yield hosts
        finally:
            cassandra_node.close_connection(hosts)


async def cassandra_harness(hosts: str, redis_url: str, **fanout: Any) -> Harness:
    """A fresh prefix on the cluster, the broker on Redis, two worker processes."""
    await asyncio.to_thread(cassandra_node.connection, hosts)  # keyspace and schema
    prefix = f"k{uuid.uuid4().hex[:10]}"
    config, path = make_config(cassandra_node.url(hosts), prefix, broker_url=redis_url, **fanout)
    pool = WorkerPool(path, threads=2)
    pool.start(2)
    return Harness("cassandra", config, open_manager(config), pool=pool)


Digest = tuple[int, int, int, list[tuple[list[str], int]]]
"""A digest feed as read: groups, unseen, unread, and each group's (activity ids, count)."""


async def digests(harness: Harness, users: Sequence[str]) -> dict[str, Digest]:
    """Every user's digest feed, read concurrently."""
    group = harness.config.feeds["digest"]
    limit = asyncio.Semaphore(64)

    async def read(user: str) -> tuple[str, Digest]:
        async with limit:
            groups = await harness.storage.read_groups(group, user, limit=10)
            counts = await harness.storage.counts(group, user)
            shown = [(g.activity_ids, g.activity_count) for g in groups]
            return user, (len(groups), counts.unseen, counts.unread, shown)

    return dict(await asyncio.gather(*(read(user) for user in users)))


def node(*command: str) -> None:
    done = cassandra_node.cluster(*command)
    assert done.returncode == 0, f"scripts/cassandra-cluster {' '.join(command)}:\n{done.stderr}"


@pytest.mark.timeout(600)
async def test_a_node_killed_mid_fanout_loses_and_doubles_nothing(
    cluster_hosts: str, redis_url: str, pools: list[Harness]
) -> None:
    harness = await cassandra_harness(cluster_hosts, redis_url, chunk_size=50)
    pools.append(harness)
    followers = [harness.user(f"f{i:04d}") for i in range(2_000)]
    await harness.follow_all(followers, harness.user("ana"))
    samples = followers[::50]  # the first user of every chunk
    posts = [
        harness.app().activity(actor=harness.user("ana"), verb="like", object=f"photo:{n}")
        for n in range(3)
    ]
    for post in posts:
        await harness.manager.add_activity(post)
    expected = sorted((p.id for p in posts), reverse=True)
    digest: Digest = (1, 1, 1, [(expected, len(posts))])  # one group of the three posts

    async def some_chunks_done() -> bool:
        feeds = await harness.read_all("timeline", samples)
        return sum(len(ids) for ids in feeds.values()) >= len(samples) * len(posts) // 10

    async def every_feed_exact() -> None:
        timelines = await harness.read_all("timeline", followers)
        wrong = {u: ids for u, ids in timelines.items() if ids != expected}
        assert not wrong, f"{len(wrong)} timelines wrong, e.g. {sorted(wrong.items())[:3]}"
        found = await digests(harness, followers)
        wrong_digests = {u: d for u, d in found.items() if d != digest}
        assert not wrong_digests, (
            f"{len(wrong_digests)} digests wrong, e.g. {sorted(wrong_digests.items())[:3]}"
        )
        counts = await harness.manager.follow_counts(harness.user("ana"))
        assert counts.followers == len(followers)

    await wait_until(some_chunks_done, within=120, every=0.05)
    node("kill", str(VICTIM))
    try:
        feeds = await harness.read_all("timeline", samples)
        assert sum(len(ids) for ids in feeds.values()) < len(samples) * len(posts), (
            "the kill must land in the middle of the fanout"
        )
        await harness.manager.join(300)
        await every_feed_exact()  # two of three replicas: LOCAL_QUORUM reads and writes go on
    finally:
        node("restart", str(VICTIM))
    await every_feed_exact()  # the node is back (with what it missed, or not yet): still exact
