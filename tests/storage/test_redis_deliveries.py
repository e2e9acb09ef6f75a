"""The Redis delivery store beyond the contract: what it keeps expires ``retention`` after its
last write, the per-target log is trimmed by the same clock, every key one script touches
lives in one Cluster slot, and compare-and-set holds across separate clients. Runs on one
server and, with ``NOTIFIER_TEST_REDIS_TOPOLOGY=cluster``, on a Redis Cluster."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import msgspec
import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from notifier.delivery.model import Delivery, Outcome
from notifier.delivery.redis_store import STATUS_PAGE, RedisDeliveries
from notifier.storage.redis_client import AnyRedis, redis_client
from tests.storage.test_contract_deliveries import NOW, at, delivery

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]

RETENTION = timedelta(minutes=1)
RETENTION_MS = 60_000

MakeStore = Callable[..., RedisDeliveries]


@pytest.fixture
async def clients(storage_redis_url: str) -> AsyncIterator[tuple[AnyRedis, AnyRedis]]:
    """Two clients of the session's Redis (or Cluster), as two worker processes have."""
    one, two = redis_client(storage_redis_url), redis_client(storage_redis_url)
    for client in (one, two):
        if isinstance(client, RedisCluster):
            # redis-py 8.1: dozens of concurrent first commands on a cluster client that has
            # not discovered its nodes yet may fail with "'NoneType' object has no attribute
            # 'writelines'" (seen with a bare RedisCluster too); this file tests the store.
            await client.initialize()
    yield one, two
    await one.aclose()
    await two.aclose()


@pytest.fixture
def make_store(clients: tuple[AnyRedis, AnyRedis]) -> MakeStore:
    """Stores of one fresh prefix: on the first client, or the second (``second=True``)."""
    prefix = f"dl{uuid.uuid4().hex[:10]}"

    def make(*, second: bool = False, retention: timedelta = RETENTION) -> RedisDeliveries:
        return RedisDeliveries(clients[second], prefix, retention)

    return make


async def wait_for(condition: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, f"not within {within}s"
        await asyncio.sleep(0.01)


async def pttl(store: RedisDeliveries, key: str) -> int:
    return int(await store.client.pttl(key))


def member(d: Delivery) -> bytes:
    return f"{d.id}:{d.scope}".encode()


async def test_records_marks_and_log_expire_retention_after_their_last_write(
    make_store: MakeStore,
) -> None:
    store = make_store()
    d = delivery(1, digest=True)
    record, marks = store.record_key(d.scope, d.id), store.marks_key(d.scope)
    log, age = store.log_keys(d.target)
    await store.claim(d, {"notifications:g1": "x"})
    for key in (record, marks, log, age):
        assert 0 < await pttl(store, key) <= RETENTION_MS, key

    async def refreshed(write: Awaitable[object]) -> set[str]:
        """The keys ``write`` gave the whole retention again (all had 5 s left)."""
        for key in (record, marks, log, age):
            await store.client.pexpire(key, 5_000)
        assert await write
        return {key for key in (record, marks, log, age) if await pttl(store, key) > 5_000}

    # Each write of the record refreshes it, and but for begin (whose finish follows) its log
    # entry; the marks are not written.
    assert await refreshed(store.begin(d.scope, d.id, NOW, at(30))) == {record}
    finish = store.finish(d.scope, d.id, 1, Outcome(status="dead", at=NOW))
    assert await refreshed(finish) == {record, log, age}
    assert await refreshed(store.replay(d.scope, d.id, at(60))) == {record, log, age}
    # A claim that does not create writes neither the record nor the marks (only the log,
    # which a claim always writes: see test_a_claim_run_again_restores_a_log_entry…).
    again = store.claim(d, {"notifications:g1": "y"})
    assert await refreshed(again) == {log, age}
    # The next delivery of the scope writes the marks again: they get the whole retention.
    later = store.claim(delivery(2, digest=True), {"notifications:g1": "z"})
    assert marks in await refreshed(later)
    assert await store.marks(d.scope, ["notifications:g1"]) == {"notifications:g1": "z"}


async def test_the_log_drops_entries_not_written_for_the_retention(make_store: MakeStore) -> None:
    retention = timedelta(seconds=2)
    store = make_store(retention=retention)
    old, kept, new = delivery(1), delivery(2), delivery(3)
    log, age = store.log_keys("ep1")
    await store.claim(old)
    # Half the retention later, another write keeps the log (and its own entry) alive...
    await wait_for(lambda: _below(store, store.record_key(old.scope, old.id), 1_000))
    await store.claim(kept)
    # ...then the first delivery expires, and the next write trims its entry.
    await wait_for(lambda: _gone(store, store.record_key(old.scope, old.id)))
    await store.claim(new)
    assert await store.client.zrange(log, 0, -1) == [member(kept), member(new)]
    assert sorted(await store.client.zrange(age, 0, -1)) == [member(kept), member(new)]
    assert [d.id for d in await store.list("ep1", limit=10)] == [new.id, kept.id]


async def test_list_skips_entries_whose_record_is_gone_and_reads_on(make_store: MakeStore) -> None:
    store = make_store()
    made = [delivery(n) for n in range(1, 6)]
    for d in made:
        await store.claim(d)
    for d in made[3:]:
        await store.client.delete(store.record_key(d.scope, d.id))
    # The first page (3 entries) holds 2 that are gone: the store reads a second page.
    assert [d.id for d in await store.list("ep1", limit=3)] == [d.id for d in made[2::-1]]


async def test_a_status_few_deliveries_have_is_found_past_the_first_pages(
    make_store: MakeStore,
) -> None:
    store = make_store()
    made = [delivery(n) for n in range(1, STATUS_PAGE * 2 + 50)]
    await asyncio.gather(*(store.claim(d) for d in made))
    for d in made[:2]:  # the two oldest: the last page
        await store.begin(d.scope, d.id, NOW, at(1))
        await store.finish(d.scope, d.id, 1, Outcome(status="dead", at=NOW))
    dead = await store.list("ep1", limit=5, status="dead")
    assert [d.id for d in dead] == [made[1].id, made[0].id]
    assert [d.id for d in await store.list("ep1", limit=1, status="dead")] == [made[1].id]
    assert len(await store.list("ep1", limit=1000, status="pending")) == len(made) - 2


async def test_a_claim_run_again_restores_a_log_entry_lost_after_the_first(
    make_store: MakeStore,
) -> None:
    """A worker that died between the claim and its log write claims again on retry."""
    store = make_store()
    d = delivery(1)
    await store.claim(d)
    await store.client.delete(*store.log_keys(d.target))
    assert await store.list("ep1", limit=10) == []
    assert await store.claim(d) == (d, False)
    assert [x.id for x in await store.list("ep1", limit=10)] == [d.id]


async def test_every_key_a_script_touches_is_in_one_cluster_slot(make_store: MakeStore) -> None:
    store = make_store()
    first, second = delivery(1, digest=True), delivery(2, digest=True)
    for d in (first, second):
        await store.claim(d, {f"notifications:g{d.id[-4:]}": d.id})
    scope_keys = [
        store.record_key("bo", first.id),
        store.record_key("bo", second.id),
        store.marks_key("bo"),
    ]
    log_keys = list(store.log_keys("bo"))
    for keys in (scope_keys, log_keys):
        assert await store.client.exists(*keys) == len(keys)  # the keys the store wrote
        assert len({key_slot(k.encode()) for k in keys}) == 1, keys
    # Another scope's keys hash on the scope alone (its tag), whatever the delivery id.
    other = [store.record_key("cy", first.id), store.marks_key("cy")]
    assert len({key_slot(k.encode()) for k in other}) == 1


async def test_concurrent_claims_and_begins_over_two_clients_let_exactly_one_win(
    make_store: MakeStore,
) -> None:
    one, two = make_store(), make_store(second=True)
    base = delivery(3, digest=True)
    rivals = [msgspec.structs.replace(base, payload=f'{{"n": {n}}}'.encode()) for n in range(16)]
    results = await asyncio.gather(
        *((one, two)[n % 2].claim(r, {"notifications:g": str(n)}) for n, r in enumerate(rivals))
    )
    [winner] = [n for n, (_, created) in enumerate(results) if created]
    assert {stored.payload for stored, _ in results} == {rivals[winner].payload}
    assert await two.marks("bo", ["notifications:g"]) == {"notifications:g": str(winner)}
    assert [d.id for d in await one.list("bo", limit=10)] == [base.id]

    begun = await asyncio.gather(
        *((one, two)[n % 2].begin(base.scope, base.id, NOW, at(30)) for n in range(16))
    )
    assert [b.attempts for b in begun if b is not None] == [1]


async def _below(store: RedisDeliveries, key: str, ms: int) -> bool:
    return await pttl(store, key) <= ms


async def _gone(store: RedisDeliveries, key: str) -> bool:
    return not await store.client.exists(key)
