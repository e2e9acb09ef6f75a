"""notifier end to end: real processes, a seeded random world through the public API, many
websocket clients dropping and resuming, one web process restarted mid-run as a deploy does
it; every client, every HTTP read and the model of the docs must agree at the end (see
tests/e2e/__init__.py).

The seed is random unless ``NOTIFIER_E2E_SEED`` is set, and printed with every report:
``NOTIFIER_E2E_SEED=<seed> .venv/bin/pytest tests/e2e -k redis`` replays a failure's world
(the operations; the timing of concurrent work differs from run to run).
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Iterator

import pytest

from tests import services
from tests.e2e.cluster import Cluster, running
from tests.e2e.driver import Driver
from tests.e2e.report import Options
from tests.e2e.world import Size
from tests.services import unavailable

pytestmark = pytest.mark.e2e
RESTART_DURING = "r2-add"
"""The phase during which a web process is restarted: the middle round's busiest phase (its
operations go on meanwhile)."""


def seed() -> int:
    given = os.environ.get("NOTIFIER_E2E_SEED")
    return int(given) if given else random.SystemRandom().randrange(1, 1_000_000)


@pytest.fixture
def redis_cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """Redis storage: one server, or with ``NOTIFIER_TEST_REDIS_TOPOLOGY=cluster`` the
    session's Redis Cluster (feeds and sharded pub/sub; the broker on one server)."""
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed (apt-get install redis-server)")
    storage = None
    if services.REDIS_TOPOLOGY == "cluster":
        storage = request.getfixturevalue("storage_redis_url")
    with running(redis_storage=storage) as cluster:
        yield cluster


@pytest.fixture
def cassandra_cluster(cassandra_hosts: str) -> Iterator[Cluster]:
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed (the broker and realtime bus need one)")
    with running(cassandra=cassandra_hosts) as cluster:
        yield cluster


async def run_world(cluster: Cluster, options: Options) -> None:
    print(f"e2e {options.label}: seed={options.seed}, logs in {cluster.folder}")
    report = await Driver(cluster, options).run(options.size.rounds)
    if report.failed:
        pytest.fail(
            f"{report.text()}\n\nlogs in {cluster.folder}; their tails:\n{cluster.tails()}",
            pytrace=False,
        )
    print(report.text())
    shutil.rmtree(cluster.folder, ignore_errors=True)


@pytest.mark.timeout(300)
async def test_e2e_redis(redis_cluster: Cluster) -> None:
    label, replay = "redis", ""
    world = seed()
    if services.REDIS_TOPOLOGY == "cluster":
        label = "redis-cluster"
        replay = (f"NOTIFIER_TEST_REDIS_TOPOLOGY=cluster NOTIFIER_E2E_SEED={world} "
                  ".venv/bin/pytest tests/e2e -k redis")  # fmt: skip
    options = Options(world, Size(), label=label, restart_during=RESTART_DURING, replay=replay)
    await run_world(redis_cluster, options)


@pytest.mark.cassandra
@pytest.mark.timeout(600)
async def test_e2e_cassandra(cassandra_cluster: Cluster) -> None:
    size = Size(users=28, rounds=2, adds=80, removals=10, graph_ops=10, marks=10, tabs=16)
    options = Options(seed(), size, label="cassandra", flat_overshoot_ok=True,
                      quiesce_timeout=60, converge_timeout=30,
                      restart_during=RESTART_DURING)  # fmt: skip
    await run_world(cassandra_cluster, options)
