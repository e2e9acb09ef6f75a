"""The Cassandra delivery store beyond the contract: what it keeps carries ``retention`` as a
TTL given again by each write, compare-and-set holds across separate connections, a claim's
marks land with its delivery in one conditional batch, a lost answer is settled without a
second write, and ``list`` reads past log rows whose delivery is gone. Runs on one node and,
with ``NOTIFIER_TEST_CASSANDRA_CLUSTER``, on the three-node cluster."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import msgspec
import pytest
from cassandra import OperationTimedOut
from cassandra.query import BatchStatement, BoundStatement, Statement

from notifier.delivery import cassandra_store
from notifier.delivery.cassandra_store import CassandraDeliveries
from notifier.delivery.model import Delivery, Outcome
from notifier.storage.cassandra import connect
from tests import cassandra_node
from tests.storage.test_contract_deliveries import NOW, at, delivery

pytestmark = pytest.mark.timeout(120)

RETENTION = timedelta(hours=1)
MakeStore = Callable[..., CassandraDeliveries]


@pytest.fixture
async def make_store(cassandra_hosts: str) -> AsyncIterator[MakeStore]:
    """Stores of one fresh namespace: on the session's connection, or (``second=True``) on a
    connection of their own, as another worker process has."""
    shared = cassandra_node.connection(cassandra_hosts)
    other = connect(cassandra_node.url(cassandra_hosts))
    prefix = f"dl{uuid.uuid4().hex[:10]}"

    def make(*, second: bool = False, retention: timedelta = RETENTION) -> CassandraDeliveries:
        return CassandraDeliveries(other if second else shared, prefix, retention)

    yield make
    await other.close()


async def raw(store: CassandraDeliveries, cql: str, *params: Any) -> list[Any]:
    """Rows of ``cql`` ({ks}: the test keyspace), run on the store's session."""
    await store.conn.connect()
    statement = cql.format(ks=store.conn.settings.keyspace)
    rows = await asyncio.to_thread(store.conn.session.execute, statement, params)
    return [tuple(row) for row in rows]


async def ttls(store: CassandraDeliveries, d: Delivery) -> tuple[int, int]:
    """The TTLs (s) left on a delivery's two cells."""
    [row] = await raw(
        store,
        "SELECT TTL(body), TTL(version) FROM {ks}.deliveries "
        "WHERE ns = %s AND scope = %s AND kind = 'd' AND name = %s",
        store.prefix, d.scope, d.id,
    )  # fmt: skip
    return row[0], row[1]


async def mark_ttl(store: CassandraDeliveries, scope: str, name: str) -> int:
    [row] = await raw(
        store,
        "SELECT TTL(mark) FROM {ks}.deliveries WHERE ns = %s AND scope = %s AND kind = 'm' "
        "AND name = %s",
        store.prefix, scope, name,
    )  # fmt: skip
    return int(row[0])


async def log_rows(store: CassandraDeliveries, target: str) -> list[Any]:
    return await raw(
        store,
        "SELECT id, scope FROM {ks}.delivery_log WHERE ns = %s AND target = %s",
        store.prefix, target,
    )  # fmt: skip


async def wait_for(condition: Callable[[], Awaitable[bool]], within: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, f"not within {within}s"
        await asyncio.sleep(0.05)


async def test_deliveries_and_marks_carry_the_retention_as_ttl_given_again_by_each_write(
    make_store: MakeStore,
) -> None:
    short, long = make_store(retention=timedelta(seconds=100)), make_store(retention=RETENTION)
    d = delivery(1, digest=True)
    await short.claim(d, {"notifications:g1": "x"})
    assert all(90 < ttl <= 100 for ttl in await ttls(short, d))
    assert 90 < await mark_ttl(short, "bo", "notifications:g1") <= 100
    # Each later write rewrites the whole delivery with its own TTL, every cell alike (stores
    # of two retentions take turns); the marks are the claim's alone and keep theirs.
    assert await long.begin(d.scope, d.id, NOW, at(30))
    assert all(3500 < ttl <= 3600 for ttl in await ttls(short, d))
    assert await short.finish(d.scope, d.id, 1, Outcome(status="dead", at=NOW))
    assert all(90 < ttl <= 100 for ttl in await ttls(short, d))
    assert await long.replay(d.scope, d.id, at(60))
    assert all(3500 < ttl <= 3600 for ttl in await ttls(short, d))
    assert await mark_ttl(short, "bo", "notifications:g1") <= 100


async def test_deliveries_marks_and_log_rows_expire_and_a_write_keeps_them(
    make_store: MakeStore,
) -> None:
    brief, kept = make_store(retention=timedelta(seconds=2)), make_store()
    gone, alive = delivery(1), delivery(2, digest=True)
    await brief.claim(gone)
    await brief.claim(alive, {"notifications:g1": "x"})
    await kept.begin(alive.scope, alive.id, NOW, at(30))  # the whole hour again, log row too

    async def expired() -> bool:
        return (
            await brief.get(gone.scope, gone.id) is None
            and not await log_rows(brief, "ep1")
            and not await brief.marks("bo", ["notifications:g1"])
        )

    await wait_for(expired)
    assert [d.id for d in await brief.list("bo", limit=10)] == [alive.id]
    assert await log_rows(brief, "bo") == [(alive.id, alive.scope)]


async def test_concurrent_claims_and_begins_over_two_connections_let_exactly_one_win(
    make_store: MakeStore,
) -> None:
    one, two = make_store(), make_store(second=True)
    for n in range(3):
        base = delivery(10 + n, digest=True)
        rivals = [msgspec.structs.replace(base, payload=f'{{"n": {r}}}'.encode()) for r in range(8)]
        results = await asyncio.gather(
            *((one, two)[r % 2].claim(d, {"notifications:g": str(r)}) for r, d in enumerate(rivals))
        )
        [winner] = [r for r, (_, created) in enumerate(results) if created]
        assert {stored.payload for stored, _ in results} == {rivals[winner].payload}
        assert await two.marks("bo", ["notifications:g"]) == {"notifications:g": str(winner)}

        begun = await asyncio.gather(
            *((one, two)[r % 2].begin(base.scope, base.id, NOW, at(30)) for r in range(8))
        )
        assert [b.attempts for b in begun if b is not None] == [1]
    assert len(await one.list("bo", limit=10)) == 3


class Answers:
    """Wraps a store's ``execute``: records what is sent (by query name, ``batch`` for a
    batch), and can lose the answer of the first statement named ``lose``: after it ran
    (``applied=True``), or before it was sent."""

    def __init__(self, store: CassandraDeliveries, lose: str = "", applied: bool = True) -> None:
        self.conn = store.conn
        self.real = store.conn.execute
        self.lose, self.applied = lose, applied
        self.sent: list[str] = []
        self.lost = 0

    def name(self, statement: Statement) -> str:
        if isinstance(statement, BatchStatement):
            return "batch"
        assert isinstance(statement, BoundStatement)
        prepared = statement.prepared_statement
        return next(n for n, p in self.conn.prepared.items() if p is prepared)

    async def __call__(self, statement: Statement) -> list[Any]:
        name = self.name(statement)
        self.sent.append(name)
        losing = not self.lost and name == self.lose
        if losing and not self.applied:
            self.lost += 1
            raise OperationTimedOut("lost before it was sent")
        rows = await self.real(statement)
        if losing:
            self.lost += 1
            raise OperationTimedOut("answer lost")
        return rows


async def test_a_claim_is_one_conditional_batch_of_the_delivery_and_its_marks(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store()
    batches: list[BatchStatement] = []
    real = store.conn.execute

    async def execute(statement: Statement) -> list[Any]:
        if isinstance(statement, BatchStatement):
            batches.append(statement)
        return await real(statement)

    monkeypatch.setattr(store.conn, "execute", execute)
    d = delivery(1, digest=True)
    marks = {"notifications:g1": "a", "notifications:g2": "b"}
    assert await store.claim(d, marks) == (d, True)
    [batch] = batches
    assert len(batch) == 3  # the delivery IF NOT EXISTS, then one insert per mark
    assert not batch.is_idempotent  # the driver never retries it: the claim settles it
    assert await store.marks("bo", list(marks)) == marks
    # A claim that does not create writes no mark: the batch applies whole or not at all.
    assert await store.claim(d, {"notifications:g1": "z", "notifications:g3": "z"}) == (d, False)
    assert len(batches) == 2
    found = await store.marks("bo", ["notifications:g1", "notifications:g3"])
    assert found == {"notifications:g1": "a"}


@pytest.mark.parametrize("applied", [True, False], ids=["answer-lost", "never-sent"])
async def test_a_claim_whose_answer_was_lost_is_settled_by_the_version_it_wrote(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch, applied: bool
) -> None:
    store = make_store()
    answers = Answers(store, "batch", applied)
    monkeypatch.setattr(store.conn, "execute", answers)
    d = delivery(1, digest=True)
    assert await store.claim(d, {"notifications:g1": "a"}) == (d, True)
    assert answers.lost == 1
    # A rival's claim of the same delivery is told it exists; marks are the first claim's.
    rival = msgspec.structs.replace(d, payload=b'{"rival": 1}')
    assert await store.claim(rival, {"notifications:g1": "b"}) == (d, False)
    assert await store.marks("bo", ["notifications:g1"]) == {"notifications:g1": "a"}


@pytest.mark.parametrize("applied", [True, False], ids=["answer-lost", "never-sent"])
async def test_a_begin_or_finish_whose_answer_was_lost_is_applied_once(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch, applied: bool
) -> None:
    store = make_store()
    d = delivery(1)
    await store.claim(d)
    answers = Answers(store, "dl_update", applied)
    monkeypatch.setattr(store.conn, "execute", answers)
    started = await store.begin(d.scope, d.id, NOW, at(30))
    assert started is not None and started.attempts == 1  # one attempt, counted once
    assert await store.get(d.scope, d.id) == started
    # Lost after it ran: the next serial read finds the version it wrote, and stops there.
    # Never sent: that read finds the old version, decides again and writes once.
    assert answers.lost == 1
    assert answers.sent.count("dl_update") == (1 if applied else 2)

    answers = Answers(store, "dl_update", applied)
    monkeypatch.setattr(store.conn, "execute", answers)
    assert await store.finish(d.scope, d.id, 1, Outcome(status="delivered", at=at(1)))
    stored = await store.get(d.scope, d.id)
    assert stored is not None and (stored.status, stored.attempts) == ("delivered", 1)
    assert answers.lost == 1 and answers.sent.count("dl_update") == (1 if applied else 2)


async def test_list_reads_past_log_rows_whose_delivery_is_gone_or_elsewhere(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store()
    made = [delivery(n) for n in range(1, 6)]
    for d in made:
        await store.claim(d)
    # Log rows without their delivery (a process that died before the claim, or past
    # retention), and one that a rival claim with another target wrote.
    for n in (6, 7):
        ghost = delivery(n)
        await raw(
            store,
            "INSERT INTO {ks}.delivery_log (ns, target, id, scope) VALUES (%s, %s, %s, %s)",
            store.prefix, "ep1", ghost.id, ghost.scope,
        )  # fmt: skip
    elsewhere = msgspec.structs.replace(made[4], target="ep9")
    assert await store.claim(elsewhere) == (made[4], False)
    assert [d.id for d in await store.list("ep9", limit=10)] == []
    # The first page (3 rows) holds 2 ghosts: the store reads on.
    assert [d.id for d in await store.list("ep1", limit=3)] == [d.id for d in made[:1:-1]]
    # A status few deliveries have, found past the first pages.
    monkeypatch.setattr(cassandra_store, "STATUS_PAGE", 2)
    oldest = made[0]
    await store.begin(oldest.scope, oldest.id, NOW, at(1))
    await store.finish(oldest.scope, oldest.id, 1, Outcome(status="dead", at=NOW))
    assert [d.id for d in await store.list("ep1", limit=2, status="dead")] == [oldest.id]
    assert await store.list("ep1", limit=0) == []
