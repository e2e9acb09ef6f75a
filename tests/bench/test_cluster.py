"""The Redis Cluster fanout benchmark runs end to end (small): both topologies take the same
writes, the cluster's keys spread over its primaries, and every figure is computed from
what the servers report. Figures are printed by the benchmark, never asserted here."""

from __future__ import annotations

import shutil

import pytest

from notifier.bench import cluster
from tests.services import unavailable

pytestmark = [pytest.mark.timeout(300), pytest.mark.single_redis]


async def test_cluster_bench_measures_one_redis_and_a_cluster_on_the_same_writes() -> None:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        unavailable("redis-server / redis-cli are not installed (apt-get install redis-server)")
    result = await cluster.run(followers=300, feeds="flat", primaries=3, burst=2, repeats=1,
                               workers=1)  # fmt: skip
    one, many = result.single, result.cluster
    assert len(one.servers) == 1 and len(many.servers) == 3
    # Every follower's timeline on both (the totals differ by the rate-limit buckets that
    # happen to be unexpired when counted), the cluster's keys on all three primaries.
    assert sum(one.keys) > 300 and sum(many.keys) > 300
    assert all(keys > 0 for keys in many.keys)
    assert one.cpu > 0 and many.cpu > 0 and result.cpu_ratio > 0
    assert many.key_spread >= 1.0 and many.cpu_spread >= 1.0
    assert "cluster / one Redis, CPU per feed-write" in cluster.table(result)
