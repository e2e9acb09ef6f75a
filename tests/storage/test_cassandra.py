"""What only the Cassandra backend has to prove: retried writes change nothing, the schema is
managed by versioned migrations, trimming leaves no per-row tombstones, reads are one round
trip, and the URL / environment settings say what they mean."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest
from cassandra import ConsistencyLevel, OperationTimedOut, Unavailable, WriteType
from cassandra.cluster import NoHostAvailable
from cassandra.connection import ConnectionShutdown
from cassandra.protocol import ErrorMessage
from cassandra.query import BatchStatement, SimpleStatement, Statement
from click.testing import CliRunner

from notifier.errors import ConfigError, is_outage
from notifier.storage.base import Counts, Marks
from notifier.storage.cassandra import QUERIES, CassandraStorage, connect
from notifier.storage.cassandra_aggregated import CAS_WRITE_UNKNOWN
from notifier.storage.cassandra_cli import cassandra
from notifier.storage.cassandra_schema import (
    Replication,
    apply_migrations,
    check_version,
    migrations,
)
from notifier.storage.cassandra_session import CassandraSettings, IdempotentRetryPolicy
from tests import cassandra_node
from tests.storage.helpers import activity, aid, entry, flat, notification


@pytest.fixture
async def store(cassandra_hosts: str) -> AsyncIterator[CassandraStorage]:
    storage = cassandra_node.storage_factory(cassandra_hosts)()
    try:
        yield storage
    finally:
        await storage.close()


async def raw(store: CassandraStorage, table: str, feed: str | None = None) -> list[Any]:
    """Every stored row of ``table`` in the storage's namespace (for one feed)."""
    keyspace = store.conn.settings.keyspace
    if feed is None:
        cql, params = (
            f"SELECT * FROM {keyspace}.{table} WHERE ns = %s ALLOW FILTERING",
            [store.prefix],
        )
    else:
        cql, params = (
            f"SELECT * FROM {keyspace}.{table} WHERE ns = %s AND feed = %s",
            [
                store.prefix,
                feed,
            ],
        )
    rows = await asyncio.to_thread(store.conn.session.execute, cql, params)
    return sorted(map(tuple, rows), key=repr)


def cas_write_unknown() -> ErrorMessage:
    """What a node answers when a Paxos proposal was accepted by some replicas, not a quorum."""
    return ErrorMessage(
        CAS_WRITE_UNKNOWN,
        "CAS operation result is unknown - proposal accepted by 1 but not a quorum.",
        None,
    )


class Recorder:
    """Wraps ``execute`` to see what the backend sends (and optionally lose an answer);
    ``all`` wraps ``execute_all``, the concurrent path (``watch`` patches both)."""

    def __init__(
        self,
        store: CassandraStorage,
        lose_first_commit: bool = False,
        lost: Callable[[], Exception] = lambda: OperationTimedOut("answer lost"),
    ) -> None:
        self.real = store.conn.execute
        self.real_all = store.conn.execute_all
        self.sent: list[Statement] = []
        self.lose = lose_first_commit
        self.lost = lost

    async def __call__(self, statement: Statement) -> list[Any]:
        self.sent.append(statement)
        rows = await self.real(statement)
        if self.lose and isinstance(statement, BatchStatement) and rows and rows[0][0] is True:
            self.lose = False
            raise self.lost()  # the commit landed but its answer was lost
        return rows

    async def all(self, statements: Sequence[Statement]) -> list[list[Any]]:
        self.sent.extend(statements)
        return await self.real_all(statements)

    def watch(self, store: CassandraStorage, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(store.conn, "execute", self)
        monkeypatch.setattr(store.conn, "execute_all", self.all)


# -- retries ----------------------------------------------------------------------------------

NOTES = notification(max_length=3)
TIMELINE = flat(max_length=3)
USERS = ["bo", "cy"]


async def fanout_job(store: CassandraStorage, users: list[str] = USERS) -> None:
    """What a fanout job writes; a retried job runs it again, whole or after a crash."""
    await store.put_activities([activity(n, foreign_id=f"f{n}") for n in range(1, 7)])
    await store.add_to_feeds(TIMELINE, users, [entry(n) for n in range(1, 7)])
    notes = [entry(n, actor=f"u{n % 2}", key=str(n % 4)) for n in range(1, 7)]
    await store.add_to_feeds(NOTES, users, notes)
    await store.follow("bo", ["ana", "cy"])


async def visible(store: CassandraStorage) -> list[Any]:
    state: list[Any] = []
    for user in USERS:
        state.append(await store.read_flat(TIMELINE, user, limit=10))
        state.append(await store.read_groups(NOTES, user, limit=10))
        state.append(await store.counts(NOTES, user))
        state.append(await store.count(TIMELINE, user))
    state.append(await store.following("bo", limit=10))
    state.append(await store.find_foreign_ids([f"f{n}" for n in range(1, 7)]))
    return state


async def stored(store: CassandraStorage) -> list[Any]:
    """Every row the namespace holds, statics (the feed's version) included."""
    rows = [await raw(store, t) for t in ("activities", "foreign_ids", "following", "followers")]
    for user in USERS:
        rows.append(await raw(store, "flat_feeds", f"timeline:{user}"))
        rows.append(await raw(store, "aggregated_feeds", f"notification:{user}"))
    return rows


async def test_re_running_the_same_writes_leaves_feeds_and_counts_unchanged(
    store: CassandraStorage,
) -> None:
    await fanout_job(store)
    await store.mark(NOTES, "bo", Marks(seen=True), all=True)  # a later write by someone else
    before_rows, before = await stored(store), await visible(store)
    assert before[2] == Counts(0, 3)

    await fanout_job(store)  # the retry

    assert await visible(store) == before
    # Not a single row (nor a feed's version) changed: the re-run committed nothing at all.
    assert await stored(store) == before_rows


async def test_a_job_retried_after_crashing_half_way_ends_as_one_clean_run(
    cassandra_hosts: str, store: CassandraStorage
) -> None:
    await fanout_job(store, users=["bo"])  # crashed before "cy"
    await fanout_job(store)
    clean = cassandra_node.storage_factory(cassandra_hosts)()
    await fanout_job(clean)
    assert await visible(store) == await visible(clean)


@pytest.mark.parametrize(
    "lost",
    [
        lambda: OperationTimedOut("answer lost"),
        cas_write_unknown,
        lambda: ConnectionShutdown("[Errno 104] Connection reset by peer"),
    ],
    ids=["client-timeout", "cas-write-unknown", "coordinator-died"],
)
async def test_a_commit_whose_answer_was_lost_is_not_applied_twice(
    store: CassandraStorage, monkeypatch: pytest.MonkeyPatch, lost: Callable[[], Exception]
) -> None:
    group = notification()
    await store.add_to_feeds(group, ["bo"], [entry(1, "ana", key="a")])
    recorder = Recorder(store, lose_first_commit=True, lost=lost)
    monkeypatch.setattr(store.conn, "execute", recorder)

    first = await store.add_to_feeds(group, ["bo"], [entry(2, "cy", key="a")])
    again = await store.add_to_feeds(group, ["bo"], [entry(2, "cy", key="a")])  # the retry

    assert not recorder.lose, "the commit was not reached"
    # The write that committed reports its change (for the realtime event); the retry none.
    assert [(c.user, c.added, c.counts) for c in first] == [("bo", [aid(2)], Counts(1, 1))]
    assert again == []
    (only,) = await store.read_groups(group, "bo", limit=10)
    assert (only.activity_count, only.actor_count) == (2, 2)
    assert await store.counts(group, "bo") == Counts(1, 1)
    statics = await raw(store, "aggregated_feeds", "notification:bo")
    assert {row_version(r) for r in statics} == {2}, "exactly two commits: no double apply"


async def test_a_removal_whose_answer_was_lost_is_still_reported(
    store: CassandraStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The removal committed but its answer was lost: the re-read finds nothing left to
    remove, and the removal is reported all the same, so clients are told to drop it."""
    group = notification()
    await store.add_to_feeds(group, ["bo"], [entry(1, "ana", key="a"), entry(2, "cy", key="b")])
    monkeypatch.setattr(store.conn, "execute", Recorder(store, lose_first_commit=True))

    changes = await store.remove_from_feeds(group, ["bo"], [aid(2)])

    assert [(c.user, c.removed, c.counts) for c in changes] == [("bo", [aid(2)], Counts(1, 1))]
    assert [g.key for g in await store.read_groups(group, "bo", limit=10)] == ["a"]


async def test_a_serial_read_cut_short_by_another_ballot_is_read_again(
    store: CassandraStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On several replicas a serial read can fail with CAS_WRITE_UNKNOWN (it first completes
    a proposal in flight, and a competing ballot cut that short): the write reads again."""
    group = notification()
    await store.add_to_feeds(group, ["bo"], [entry(1, "ana", key="a")])
    real = store.conn.execute
    faults = ["lose the commit's answer", "fail the serial read"]

    async def faulty(statement: Statement) -> list[Any]:
        serial = statement.consistency_level == ConsistencyLevel.SERIAL
        if faults[:1] == ["fail the serial read"] and serial:
            faults.pop(0)
            raise cas_write_unknown()
        rows = await real(statement)
        if faults[:1] == ["lose the commit's answer"] and isinstance(statement, BatchStatement):
            faults.pop(0)  # so the next attempt reads at SERIAL
            raise OperationTimedOut("the commit landed but its answer was lost")
        return rows

    monkeypatch.setattr(store.conn, "execute", faulty)
    await store.add_to_feeds(group, ["bo"], [entry(2, "cy", key="a")])

    assert faults == []
    (only,) = await store.read_groups(group, "bo", limit=10)
    assert (only.activity_count, only.actor_count) == (2, 2)
    assert await store.counts(group, "bo") == Counts(1, 1)
    statics = await raw(store, "aggregated_feeds", "notification:bo")
    assert {row_version(r) for r in statics} == {2}, "exactly two commits: no double apply"


def row_version(row: tuple[Any, ...]) -> int:
    # SELECT * orders columns: partition key, clustering, then the rest by name.
    names = ["ns", "feed", "kind", "k1", "k2", "unread", "unseen", "version"]
    return int(row[names.index("version")])


async def test_concurrent_writers_on_separate_connections_keep_counts_exact(
    cassandra_hosts: str, store: CassandraStorage
) -> None:
    other_conn = connect(f"cassandra://{cassandra_hosts}/{cassandra_node.KEYSPACE}")
    other = CassandraStorage(other_conn, store.prefix, owns_connection=True)
    group = notification(max_length=1000, window=3)

    async def writer(storage: CassandraStorage, offset: int) -> None:
        for n in range(25):
            await storage.add_to_feeds(group, ["bo"], [entry(offset + n, key=str(n % 5))])

    try:
        async with asyncio.TaskGroup() as tasks:
            for storage, offset in ((store, 0), (other, 1000), (store, 2000)):
                tasks.create_task(writer(storage, offset))
    finally:
        await other.close()
    groups = await store.read_groups(group, "bo", limit=1000)
    assert sum(g.activity_count for g in groups) == 75
    assert await store.counts(group, "bo") == Counts(len(groups), len(groups))


async def test_a_group_id_named_again_after_a_trim_is_a_new_group(store: CassandraStorage) -> None:
    # The trimmed group's rows are gone under its ref; the new group with the same id has
    # its own ref, so none of the old group's members, items or tallies leak into it.
    group = notification(max_length=1)
    await store.add_to_feeds(group, ["bo"], [entry(1, "ana", key="a"), entry(2, "cy", key="a")])
    await store.add_to_feeds(group, ["bo"], [entry(3, key="b")])  # trims the "a" group
    await store.add_to_feeds(group, ["bo"], [entry(5, key="c")])  # trims "b"
    assert await store.add_to_feeds(group, ["bo"], [entry(1, "eve", key="a")]) == []  # too old
    await store.remove_from_feeds(group, ["bo"], [aid(5)])
    await store.add_to_feeds(group, ["bo"], [entry(1, "eve", key="a")])
    (only,) = await store.read_groups(group, "bo", limit=10)
    assert (only.id, only.activity_ids, only.activity_count, only.actor_count) == (
        aid(1),
        [aid(1)],
        1,
        1,
    )
    refs = {r[3] for r in await raw(store, "aggregated_feeds", "notification:bo") if r[2] == "i"}
    assert len(refs) == 1 and refs != {f"{aid(1)}.1"}


# -- trimming ---------------------------------------------------------------------------------


async def test_flat_trim_writes_one_range_delete_and_keeps_exactly_max_length_rows(
    store: CassandraStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder(store)
    recorder.watch(store, monkeypatch)
    for n in range(40):
        await store.add_to_feeds(flat(max_length=10), ["bo"], [entry(n)])
    assert len(await raw(store, "flat_feeds", "timeline:bo")) == 10
    writes = [
        s
        for s in recorder.sent
        if isinstance(s, BatchStatement) or not s.prepared_statement.query_string.startswith("SEL")
    ]
    assert len(writes) == 40  # one statement per write
    for insert in writes[:10]:  # nothing to trim yet: a plain insert, no batch
        assert not isinstance(insert, BatchStatement)
        assert insert.prepared_statement.query_string.startswith("INSERT")
    for batch in writes[10:]:  # every write to the full feed: one insert, one range delete
        assert isinstance(batch, BatchStatement) and len(batch) == 2


async def test_aggregated_trim_rewrites_slots_in_place_and_forgets_dropped_activities(
    store: CassandraStorage,
) -> None:
    group = notification(max_length=5)
    for n in range(30):
        await store.add_to_feeds(
            group, ["bo"], [entry(2 * n, key=str(n)), entry(2 * n + 1, key=str(n))]
        )
    rows = await raw(store, "aggregated_feeds", "notification:bo")
    kinds = [r[2] for r in rows]
    # 5 slot rows however many groups came and went; members, items and tallies only of
    # the live groups (dropped ones were deleted with their group, in the same batch).
    assert (kinds.count("g"), kinds.count("m"), kinds.count("i"), kinds.count("a")) == (
        5,
        10,
        10,
        5,
    )
    assert await store.remove_from_feeds(group, ["bo"], [aid(0)]) == []
    assert await store.counts(group, "bo") == Counts(5, 5)


# -- round trips ------------------------------------------------------------------------------


async def test_a_page_is_one_query_and_its_bodies_one_more(
    store: CassandraStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    group = notification(shown=3, window=25)
    await store.put_activities([activity(n) for n in range(60)])
    await store.add_to_feeds(group, ["bo"], [entry(n, key=str(n % 25)) for n in range(60)])
    recorder = Recorder(store)
    recorder.watch(store, monkeypatch)
    groups = await store.read_groups(group, "bo", limit=25)
    bodies = await store.get_activities([i for g in groups for i in g.activity_ids])
    assert len(groups) == 25 and len(bodies) == 60
    assert len(recorder.sent) == 2


# -- schema management ------------------------------------------------------------------------


def test_schema_init_is_idempotent_and_records_its_version(cassandra_hosts: str) -> None:
    keyspace = f"notifier_init_{uuid.uuid4().hex[:8]}"
    url = f"cassandra://{cassandra_hosts}/{keyspace}?replication_factor=1"
    runner = CliRunner()
    conn = connect(url)
    session = conn.session_sync()
    try:
        status = runner.invoke(cassandra, ["status", "--url", url])
        assert status.exit_code == 3, status.output
        with pytest.raises(ConfigError, match="notifier cassandra init"):
            check_version(session, keyspace)

        first = runner.invoke(cassandra, ["init", "--url", url])
        assert first.exit_code == 0, first.output
        assert "applied 001_initial" in first.output
        assert "applied 002_history_keepers" in first.output
        again = runner.invoke(cassandra, ["init", "--url", url])
        assert again.exit_code == 0 and "applied" not in again.output, again.output

        rows = session.execute(f"SELECT version, name, checksum FROM {keyspace}.schema_migrations")
        assert sorted(tuple(r) for r in rows) == [(m.version, m.name, m.checksum)
                                                  for m in migrations()]  # fmt: skip
        check_version(session, keyspace)
        assert runner.invoke(cassandra, ["status", "--url", url]).exit_code == 0

        session.execute(f"UPDATE {keyspace}.schema_migrations SET checksum = 'x' WHERE version = 1")
        with pytest.raises(ConfigError, match="immutable"):
            apply_migrations(session, keyspace, Replication())
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
        conn.close_sync()


async def test_a_process_refuses_a_keyspace_without_the_schema(cassandra_hosts: str) -> None:
    storage = CassandraStorage.from_url(f"cassandra://{cassandra_hosts}/no_such_keyspace")
    try:
        with pytest.raises(ConfigError, match="notifier cassandra init"):
            await storage.ping()
    finally:
        await storage.close()


# -- settings (no node needed) ----------------------------------------------------------------


def test_url_names_hosts_keyspace_and_policies() -> None:
    s = CassandraSettings.from_url(
        "cassandra://10.0.0.1,10.0.0.2:9142/feeds?consistency=quorum&local_dc=dc1"
        "&replication=dc1:3,dc2:2&timeout=2.5&serial_consistency=LOCAL_SERIAL",
        env={},
    )
    assert (s.hosts, s.port, s.keyspace, s.local_dc) == (
        ("10.0.0.1", "10.0.0.2"),
        9142,
        "feeds",
        "dc1",
    )
    assert (s.consistency, s.serial_consistency) == (
        ConsistencyLevel.QUORUM,
        ConsistencyLevel.LOCAL_SERIAL,
    )
    assert s.replication.cql() == "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2}"
    assert s.timeout == 2.5 and s.username is None and s.tls is None
    d = CassandraSettings.from_url("cassandra://db", env={})
    assert (d.port, d.keyspace, d.consistency) == (9042, "notifier", ConsistencyLevel.LOCAL_QUORUM)
    assert d.serial_consistency == ConsistencyLevel.SERIAL
    assert d.replication.cql() == "{'class': 'SimpleStrategy', 'replication_factor': 1}"


def test_secrets_and_tls_come_from_the_environment() -> None:
    env = {
        "NOTIFIER_CASSANDRA_USERNAME": "app",
        "NOTIFIER_CASSANDRA_PASSWORD": "s3cret",
        "NOTIFIER_CASSANDRA_TLS": "true",
        "NOTIFIER_CASSANDRA_TLS_CHECK_HOSTNAME": "false",
    }
    s = CassandraSettings.from_url("cassandra://db/ks", env=env)
    assert (s.username, s.password) == ("app", "s3cret")
    assert "s3cret" not in repr(s)
    assert isinstance(s.tls, ssl.SSLContext) and s.tls.verify_mode == ssl.CERT_REQUIRED
    assert not s.tls.check_hostname


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("cassandra://user:pw@db/ks", "credentials do not go in the URL"),
        ("cassandra://db/ks?consistency=MOST", "not a consistency level"),
        ("cassandra://db/ks?colour=blue", "unknown parameter"),
        ("cassandra://db/bad-name", "keyspace"),
        ("cassandra://a:1,b:2/ks", "same port"),
        ("cassandra://db/ks?replication=dc1", "dc1:3"),
    ],
)
def test_bad_urls_are_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CassandraSettings.from_url(url, env={})


async def test_statements_are_prepared_and_marked_idempotent_where_they_are(
    store: CassandraStorage,
) -> None:
    await store.ping()
    prepared = store.conn.prepared
    assert set(prepared) == set(QUERIES)
    conditional = {name for name, p in prepared.items() if not p.is_idempotent}
    assert conditional == {"agg_cas", "dl_claim", "dl_update"}


def test_the_driver_retries_only_what_is_safe_to_repeat() -> None:
    # Called as the driver calls it: the query, then retry_num and the error's fields as
    # keywords (positional calls passed here while every real timeout raised TypeError).
    policy = IdempotentRetryPolicy()
    safe, unsafe = SimpleStatement("x", is_idempotent=True), SimpleStatement("x")
    one = ConsistencyLevel.ONE
    retry, rethrow = policy.RETRY_NEXT_HOST, policy.RETHROW

    def write_timeout(query: Statement, write_type: int, retry_num: int) -> Any:
        info = {"consistency": one, "required_responses": 2, "received_responses": 1}
        return policy.on_write_timeout(query, retry_num=retry_num, write_type=write_type, **info)[0]

    assert write_timeout(safe, WriteType.SIMPLE, 0) == retry
    assert write_timeout(safe, WriteType.SIMPLE, 1) == rethrow
    assert write_timeout(unsafe, WriteType.SIMPLE, 0) == rethrow
    assert write_timeout(safe, WriteType.CAS, 0) == rethrow
    assert policy.on_request_error(unsafe, one, error=OSError(), retry_num=0)[0] == rethrow
    assert policy.on_request_error(safe, one, error=OSError(), retry_num=0)[0] == retry
    unavailable = {"consistency": one, "required_replicas": 2, "alive_replicas": 1}
    assert policy.on_unavailable(unsafe, retry_num=0, **unavailable)[0] == retry  # not written
    read = {"consistency": one, "required_responses": 2, "received_responses": 1}
    assert policy.on_read_timeout(safe, retry_num=0, data_retrieved=False, **read)[0] == retry


def test_a_connection_closed_under_a_request_is_an_outage() -> None:
    """A node killed mid-request closes the driver's connection to it (ConnectionShutdown,
    a ConnectionException): a 503 and a fanout job that waits, not a 500."""
    from cassandra.connection import ConnectionShutdown

    assert is_outage(ConnectionShutdown("Connection to 127.0.0.2:19043 was closed"))


def test_a_real_unavailable_reaches_the_caller_as_an_outage(cassandra_hosts: str) -> None:
    """A node's Unavailable answer (more replicas asked for than there are nodes) goes through
    the retry policy, once more on the next host, and reaches the caller as an error notifier
    treats as an outage (503, jobs wait it out), not as a TypeError."""
    keyspace = f"notifier_rf4_{uuid.uuid4().hex[:8]}"
    conn = connect(f"cassandra://{cassandra_hosts}/{keyspace}?consistency=ALL")
    session = conn.session_sync()
    replication = "{'class': 'SimpleStrategy', 'replication_factor': 4}"
    try:
        session.execute(f"CREATE KEYSPACE {keyspace} WITH replication = {replication}")
        session.execute(f"CREATE TABLE {keyspace}.t (k int PRIMARY KEY, v int)")
        insert = SimpleStatement(f"INSERT INTO {keyspace}.t (k, v) VALUES (1, 1)")
        # On one node the retry finds no next host: the answer comes wrapped in NoHostAvailable.
        with pytest.raises((Unavailable, NoHostAvailable)) as raised:
            session.execute(insert)
        assert is_outage(raised.value)
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
        conn.close_sync()


async def test_a_removal_whose_group_changes_after_its_snapshot_re_reads(
    cassandra_hosts: str, store: CassandraStorage
) -> None:
    # Two removals from one group by two writers: the second commits between the first's
    # snapshot and its reads of the group's rows, which then hold fewer ids than the snapshot
    # says. The first re-reads and re-plans (it used to fail with IndexError, and the job was
    # retried by dramatiq: seen by the end-to-end test).
    group = notification(max_length=100, window=5)
    await store.add_to_feeds(group, ["bo"], [entry(n, f"u{n}", key="a") for n in (1, 2, 3)])
    other_conn = connect(f"cassandra://{cassandra_hosts}/{cassandra_node.KEYSPACE}")
    other = CassandraStorage(other_conn, store.prefix, owns_connection=True)
    aggregated = store._aggregated
    real_slices = aggregated._slices
    interleaved = []
    rival_started = False

    async def slices_after_a_rival(*args: Any, **kwargs: Any) -> dict[str, list[str]]:
        nonlocal rival_started
        # The first read of the group's rows: the rival commits first. Flagged before the
        # await: reads that run concurrently with it must not start a second rival, whose
        # removal would find nothing left and be the one recorded.
        if not rival_started:
            rival_started = True
            interleaved.append(await other.remove_from_feeds(group, ["bo"], [aid(2), aid(3)]))
        return await real_slices(*args, **kwargs)

    aggregated._slices = slices_after_a_rival  # type: ignore[method-assign]
    try:
        await store.remove_from_feeds(group, ["bo"], [aid(1)])
    finally:
        aggregated._slices = real_slices  # type: ignore[method-assign]
        await other.close()
    assert interleaved and interleaved[0]  # the rival's removal did commit in between
    assert await store.read_groups(group, "bo", limit=10) == []
    assert await store.counts(group, "bo") == Counts(0, 0)


async def test_a_first_commit_between_the_slot_read_and_the_version_read_is_kept(
    cassandra_hosts: str, store: CassandraStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A writer finds no slots in a new feed and reads the version next; a rival's first
    # commit lands in between. The writer must not plan on "that version, no slots": its
    # commit would pass the version check and overwrite the rival's group (seen when a node
    # of the three-node cluster was killed mid-fanout: a digest lost an activity for good).
    group = notification()
    other_conn = connect(f"cassandra://{cassandra_hosts}/{cassandra_node.KEYSPACE}")
    other = CassandraStorage(other_conn, store.prefix, owns_connection=True)
    real = store.conn.execute
    interleaved = []

    async def rival_before_the_version_read(statement: Statement) -> list[Any]:
        version_read = getattr(statement, "prepared_statement", None)
        if not interleaved and version_read is store.conn.prepared["agg_statics"]:
            interleaved.append(await other.add_to_feeds(group, ["bo"], [entry(2, "cy", key="a")]))
        return await real(statement)

    monkeypatch.setattr(store.conn, "execute", rival_before_the_version_read)
    try:
        await store.add_to_feeds(group, ["bo"], [entry(1, "ana", key="a")])
    finally:
        await other.close()
    assert interleaved and interleaved[0]  # the rival's add did commit in between
    (only,) = await store.read_groups(group, "bo", limit=10)
    assert (only.activity_ids, only.activity_count, only.actor_count) == ([aid(2), aid(1)], 2, 2)
    assert await store.counts(group, "bo") == Counts(1, 1)
