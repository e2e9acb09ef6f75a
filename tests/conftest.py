"""Session-wide services and the backend matrix every contract test runs on."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from notifier.storage.base import Storage
from notifier.storage.memory import MemoryStorage
from tests import cassandra_node, services

BACKENDS = ["memory", "redis", "cassandra"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "single_redis: needs one redis-server (restarts it, reads its INFO…): not part of the "
        "Redis Cluster pass (NOTIFIER_TEST_REDIS_TOPOLOGY=cluster)",
    )


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """One redis-server: the fanout broker's in every topology, and everything's by default."""
    with services.redis_url() as url:
        yield url


@pytest.fixture(scope="session")
def storage_redis_url(redis_url: str) -> Iterator[str]:
    """Where the ``redis`` backend keeps feeds (and the realtime bus runs): ``redis_url``, or
    with ``NOTIFIER_TEST_REDIS_TOPOLOGY=cluster`` a 3-primary Redis Cluster of the session
    (the broker stays on ``redis_url``: dramatiq's broker needs one server)."""
    if services.REDIS_TOPOLOGY != "cluster":
        yield redis_url
        return
    with services.redis_cluster() as cluster:
        url = cluster if isinstance(cluster, str) else cluster.url
        services.CLUSTER_BROKER_URL = redis_url
        yield url


@pytest.fixture(scope="session")
def cassandra_hosts() -> Iterator[str]:
    with cassandra_node.contact_points() as hosts:
        yield hosts


StorageFactory = Callable[[], Storage]


@pytest.fixture(params=BACKENDS)
def storage_factory(request: pytest.FixtureRequest) -> StorageFactory:
    """Makes a new, empty storage of one backend each call (its own key prefix / keyspace)."""
    backend = request.param
    if backend == "memory":
        return MemoryStorage
    if backend == "cassandra":
        return cassandra_node.storage_factory(request.getfixturevalue("cassandra_hosts"))
    url = request.getfixturevalue("storage_redis_url")
    from notifier.storage.redis import RedisStorage

    return lambda: RedisStorage.from_url(url, prefix=f"t{uuid.uuid4().hex[:12]}")


@pytest.fixture
async def storage(storage_factory: StorageFactory) -> AsyncIterator[Storage]:
    store = storage_factory()
    try:
        yield store
    finally:
        await store.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped test is a test that did not run: fail the session."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if services.IN_CI and reporter is not None and reporter.stats.get("skipped"):
        reporter.write_line(
            f"CI=true: {len(reporter.stats['skipped'])} test(s) skipped; failing the run",
            red=True,
        )
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Show how many storage-parametrised tests ran on each backend."""
    per_backend: dict[str, dict[str, int]] = {}
    for outcome in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            nodeid = getattr(report, "nodeid", "")
            for backend in BACKENDS:
                if nodeid.endswith(f"[{backend}]") or f"[{backend}-" in nodeid:
                    counts = per_backend.setdefault(backend, {})
                    counts[outcome] = counts.get(outcome, 0) + 1
    if per_backend:
        terminalreporter.section("storage backends")
        for backend, counts in per_backend.items():
            summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
            terminalreporter.write_line(f"{backend:>10}: {summary}")
