"""Storage, the broker's client and the pool through ``redis+sentinel://``, on a primary, a
replica and three Sentinels of our own (tests/sentinel.py): URL forms and their errors, the
whole storage contract with every write waiting for the replica, the pool's wait then
``Busy``, ``WAIT`` and ``NOREPLICAS`` refusals, and connections following a manual failover."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from notifier.errors import Busy, ConfigError, is_outage, is_transient
from notifier.storage.base import Counts, Marks, Storage
from notifier.storage.redis import RedisStorage
from notifier.storage.redis_client import redis_client, server_client, sync_redis_client
from notifier.storage.redis_replicas import (
    MIN_REPLICAS,
    REPLICA_TIMEOUT_MS,
    NotReplicated,
    ReplicaWait,
    declares_no_writes,
)
from notifier.storage.redis_sentinel import (
    FOLLOW_S,
    SENTINEL_PASSWORD,
    HiredisSentinelConnection,
    SentinelRedis,
)
from notifier.storage.redis_urls import parse_redis_url
from tests import sentinel as sentinels
from tests.storage import test_contract
from tests.storage.helpers import activity, aid, entry, flat, notification

pytestmark = [pytest.mark.single_redis, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def servers() -> Iterator[sentinels.SentinelSet]:
    with sentinels.sentinel_set() as found:
        yield found


@pytest.fixture
def own_servers() -> Iterator[sentinels.SentinelSet]:
    """A set for one test that fails it over."""
    with sentinels.sentinel_set() as found:
        yield found


def on_node(port: int, db: int = 0) -> redis.Redis:
    return redis.Redis(port=port, db=db, socket_timeout=5)


# -- the storage contract, every write waiting for the replica --------------------------------
@pytest.fixture
def storage_factory(
    servers: sentinels.SentinelSet, monkeypatch: pytest.MonkeyPatch
) -> Callable[[], Storage]:
    """The contract's storages, on the Sentinel-managed primary (with ``WAIT 1`` after each
    write): overrides the backend matrix of tests/conftest.py for this module."""
    monkeypatch.setenv(MIN_REPLICAS, "1")
    url = servers.url()
    return lambda: RedisStorage.from_url(url, prefix=f"t{uuid.uuid4().hex[:12]}")


for _name, _test in vars(test_contract).items():
    if _name.startswith("test_"):
        globals()[_name] = _test  # collected here too, on this module's storage_factory


# -- URLs -------------------------------------------------------------------------------------
async def test_a_sentinel_url_names_the_primary_and_its_database(
    servers: sentinels.SentinelSet,
) -> None:
    client = redis_client(servers.url(db=3))
    try:
        assert isinstance(client, SentinelRedis)
        assert issubclass(client.connection_pool.connection_class, HiredisSentinelConnection)
        await client.set("sentinel:db", "3")
        primary = servers.primary()
        with on_node(primary.port, db=3) as node:
            assert node.get("sentinel:db") == b"3"
        with on_node(primary.port, db=0) as node:
            assert node.get("sentinel:db") is None
    finally:
        await client.aclose()


def test_sentinel_url_mistakes_are_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="needs the primary's name"):
        redis_client("redis+sentinel://127.0.0.1:26379")
    with pytest.raises(ConfigError, match="port"):
        redis_client("redis+sentinel://127.0.0.1:sixty/mymaster")
    with pytest.raises(ConfigError, match="query"):
        redis_client("redis+sentinel://127.0.0.1:26379/mymaster?min_replicas=1")
    with pytest.raises(ConfigError, match=MIN_REPLICAS):
        redis_client(
            "redis+sentinel://127.0.0.1:26379/mymaster", replicated=True, env={MIN_REPLICAS: "x"}
        )
    with pytest.raises(ConfigError, match=REPLICA_TIMEOUT_MS):
        ReplicaWait.from_env({REPLICA_TIMEOUT_MS: "0"})
    target = parse_redis_url("rediss+sentinel://a:1,b/svc/2")
    assert (target.hosts, target.service, target.db, target.tls) == (
        (("a", 1), ("b", 26379)), "svc", 2, True
    )  # fmt: skip


async def test_an_unknown_service_is_an_outage_not_a_crash(servers: sentinels.SentinelSet) -> None:
    client = server_client(servers.url().replace("/mymaster", "/nosuchservice"))
    try:
        with pytest.raises(redis.ConnectionError) as caught:
            await client.ping()
        assert is_outage(caught.value)  # an HTTP 503, a fanout job that waits
    finally:
        await client.aclose()


def test_the_broker_client_reaches_the_primary(servers: sentinels.SentinelSet) -> None:
    client = sync_redis_client(servers.url(db=2))
    try:
        client.set("sentinel:sync", "1")
        with on_node(servers.primary().port, db=2) as node:
            assert node.get("sentinel:sync") == b"1"
    finally:
        client.close()


# -- the pool ---------------------------------------------------------------------------------
async def test_a_full_pool_makes_callers_wait_then_busy(servers: sentinels.SentinelSet) -> None:
    client = redis_client(servers.url(), pool_size=1, pool_timeout=0.5)
    try:
        await client.delete("sentinel:never")
        # BLPOP holds the only connection for 2 s: a caller waits its 0.5 s, then Busy.
        holder = asyncio.create_task(client.blpop(["sentinel:never"], timeout=2))
        await asyncio.sleep(0.1)
        with pytest.raises(Busy):
            await client.get("sentinel:x")
        # A caller that starts waiting while the holder is about to finish gets the connection.
        patient = redis_client(servers.url(), pool_size=1, pool_timeout=5)
        try:
            blocker = asyncio.create_task(patient.blpop(["sentinel:never"], timeout=1))
            await asyncio.sleep(0.1)
            assert await patient.ping()  # waited for the BLPOP, was not refused
            assert await blocker is None
        finally:
            await patient.aclose()
        assert await holder is None
    finally:
        await client.aclose()


# -- waiting for replicas ---------------------------------------------------------------------
def test_the_settings_are_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    missing = [n for n in (MIN_REPLICAS, REPLICA_TIMEOUT_MS, SENTINEL_PASSWORD) if n not in doc]
    assert not missing


def test_no_writes_declarations_are_read_from_the_shebang() -> None:
    assert declares_no_writes("#!lua flags=no-writes\nreturn 1")
    assert declares_no_writes(b"#!lua flags=allow-oom,no-writes\nreturn 1")
    assert not declares_no_writes("#!lua flags=allow-cross-slot-keys\nreturn 1")
    assert not declares_no_writes("-- flags=no-writes\nreturn 1")
    assert not declares_no_writes("return redis.call('GET', KEYS[1])")


def wait_calls(port: int) -> int:
    with on_node(port) as node:
        stats = node.info("commandstats")
    return int(stats.get("cmdstat_wait", {}).get("calls", 0))


@pytest.fixture
def stopped_replica(servers: sentinels.SentinelSet) -> Iterator[None]:
    """The replica frozen (SIGSTOP): it acknowledges nothing until the end of the test."""
    replica = servers.replica()
    assert replica.proc is not None
    replica.proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        replica.proc.send_signal(signal.SIGCONT)
        servers.wait_settled()


async def test_writes_wait_for_the_replica_and_reads_do_not(
    servers: sentinels.SentinelSet,
) -> None:
    env = {**os.environ, MIN_REPLICAS: "1", REPLICA_TIMEOUT_MS: "300"}
    client = redis_client(servers.url(), replicated=True, env=env)
    bus = redis_client(servers.url(), env=env)  # not replicated: pub/sub, limits
    primary = servers.primary().port
    try:
        reader = client.register_script("#!lua flags=no-writes\nreturn redis.call('GET', 'k')")
        await client.delete("sentinel:n")
        before = wait_calls(primary)
        async with client.pipeline(transaction=False) as pipe:
            pipe.set("sentinel:w", "1")
            pipe.incr("sentinel:n")
            assert await pipe.execute() == [True, 1]
        await client.get("sentinel:w")
        await reader()
        await client.zcard("sentinel:z")
        assert wait_calls(primary) - before == 1  # the pipeline's; none after a read
        await client.eval("return redis.call('SET', 'sentinel:s', '1')", 0)
        assert wait_calls(primary) - before == 2  # a script call counts as a write
        with on_node(servers.replica().port) as replica:
            assert replica.get("sentinel:s") == b"1"  # confirmed, so there already
        await bus.eval("return redis.call('PUBLISH', 'sentinel:c', 'm')", 0)
        await bus.set("sentinel:b", "1")
        assert wait_calls(primary) - before == 2  # the bus and the limits never wait
    finally:
        await client.aclose()
        await bus.aclose()


async def test_an_unconfirmed_write_is_refused_as_transient(
    servers: sentinels.SentinelSet, stopped_replica: None
) -> None:
    env = {**os.environ, MIN_REPLICAS: "1", REPLICA_TIMEOUT_MS: "200"}
    client = redis_client(servers.url(), replicated=True, env=env)
    storage = RedisStorage(client, prefix=f"t{uuid.uuid4().hex[:8]}")
    try:
        with pytest.raises(NotReplicated) as caught:
            await storage.put_activities([activity(1)])
        assert is_transient(caught.value) and is_outage(caught.value)  # 503, a job waits
        with pytest.raises(NotReplicated):
            await storage.add_to_feeds(flat(), ["bo"], [entry(1)])
        with pytest.raises(NotReplicated):  # a mark: one script call
            await storage.mark(notification(), "bo", Marks(seen=True), all=True)
        # Reads still work without the replica, an aggregated page (a no-writes script) too.
        assert await storage.read_flat(flat(), "bo", limit=5) == [aid(1)]
        assert await storage.read_page(notification(), "bo", limit=5) == ([], Counts(0, 0))
        assert await storage.get_activities([aid(1)]) != {}
    finally:
        await storage.close()


async def test_the_servers_own_noreplicas_is_transient_too(
    servers: sentinels.SentinelSet, stopped_replica: None
) -> None:
    primary = servers.primary().port
    with on_node(primary) as node:
        node.config_set("min-replicas-to-write", 1)
        node.config_set("min-replicas-max-lag", 1)
    client = redis_client(servers.url())  # not waiting itself: the server refuses
    try:
        deadline = time.monotonic() + 10
        while True:  # the primary notices the frozen replica's silence after max-lag
            try:
                await client.set("sentinel:nr", "1")
            except NotReplicated as exc:
                assert is_transient(exc)
                break
            assert time.monotonic() < deadline, "NOREPLICAS never came"
            await asyncio.sleep(0.2)
        with pytest.raises(NotReplicated):
            async with client.pipeline(transaction=False) as pipe:
                pipe.set("sentinel:nr", "2")
                await pipe.execute()
    finally:
        await client.aclose()
        with on_node(primary) as node:
            node.config_set("min-replicas-to-write", 0)


async def test_a_client_that_waits_takes_no_transactions(servers: sentinels.SentinelSet) -> None:
    client = redis_client(servers.url(), replicated=True, env={MIN_REPLICAS: "1"})
    try:
        with pytest.raises(ValueError, match="transactions"):
            client.pipeline()
    finally:
        await client.aclose()


# -- failover ---------------------------------------------------------------------------------
async def test_after_a_manual_failover_no_connection_serves_the_old_primary(
    own_servers: sentinels.SentinelSet,
) -> None:
    servers = own_servers
    client = redis_client(servers.url())
    broker = sync_redis_client(servers.url())
    try:
        await asyncio.gather(*(client.ping() for _ in range(20)))  # 20 pooled connections
        old = servers.primary().port
        await asyncio.to_thread(servers.failover)
        new = (await asyncio.to_thread(servers.wait_for_new_primary, old, every=True)).port
        # The old primary is still up and takes writes until the Sentinels reconfigure it
        # (seconds later): what a connection to it writes now vanishes then.
        await asyncio.sleep(FOLLOW_S)  # the pools ask the Sentinels at most this often
        keys = [f"sentinel:after:{i}" for i in range(40)]
        written = await asyncio.gather(*(client.set(k, "1") for k in keys))
        assert all(written)
        ports = await asyncio.gather(*(client.info("server") for _ in range(20)))
        assert {p["tcp_port"] for p in ports} == {new}
        assert broker.set("sentinel:after:broker", "1")
        assert broker.info("server")["tcp_port"] == new
        await asyncio.to_thread(servers.wait_settled, 60)  # the old one now a replica
        with on_node(new) as node:
            assert node.exists(*keys, "sentinel:after:broker") == len(keys) + 1
    finally:
        await client.aclose()
        broker.close()
