"""The realtime bus on a real 3-primary Redis Cluster (sharded pub/sub): events reach the
right listeners on every node, a process subscribes only to its own users' channels, a
fanout's event travels once per primary, and a slot migration, a failover or a node restart
makes the hub subscribe again where the slot now lives and resync the listeners concerned.

The module's cluster is its own (the tests move slots, fail nodes over and restart them)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from notifier.realtime.bus import UserEvent, WireEvent, publish_changes
from notifier.realtime.cluster_bus import ClusterBus, ClusterHub
from notifier.realtime.redis_bus import SHARED_MIN
from notifier.realtime.shard_channels import ShardChannels, messages_for, shared_decoder
from notifier.storage.base import FeedChange
from tests.services import RedisClusterServers, RedisServer, free_port, unavailable

pytestmark = [pytest.mark.redis, pytest.mark.timeout(180)]

CLUSTER_OPTIONS = ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"]


@dataclass
class Cluster:
    """The module's cluster, and the replicas its tests add."""

    servers: RedisClusterServers
    extra: list[RedisServer] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.servers.url

    @property
    def all(self) -> list[RedisServer]:
        return [*self.servers.servers, *self.extra]

    def cli(self, server: RedisServer, *args: object) -> str:
        done = subprocess.run(
            ["redis-cli", "-p", str(server.port), *map(str, args)],
            capture_output=True, text=True, check=True, timeout=10,
        )  # fmt: skip
        return done.stdout.strip()

    def node_id(self, server: RedisServer) -> str:
        return self.cli(server, "cluster", "myid")

    def _view(self, server: RedisServer) -> dict[int, int]:
        """Slot -> port of the primary serving it, as ``server`` sees the cluster."""
        owners: dict[int, int] = {}
        for line in self.cli(server, "cluster", "nodes").splitlines():
            fields = line.split()
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
            for part in fields[8:]:
                if not part.startswith("["):  # not a slot being imported or migrated
                    low, _, high = part.partition("-")
                    owners.update(dict.fromkeys(range(int(low), int(high or low) + 1), port))
        return owners

    def slot_owners(self) -> dict[int, RedisServer]:
        """Slot -> the primary serving it, once every running node agrees (waits for that)."""
        deadline = time.monotonic() + 30
        while True:
            views = [self._view(s) for s in self.all if s.proc is not None]
            if len(views[0]) == 16384 and all(view == views[0] for view in views):
                by_port = {s.port: s for s in self.all}
                return {slot: by_port[port] for slot, port in views[0].items()}
            assert time.monotonic() < deadline, "the nodes disagree on the slot map"
            time.sleep(0.05)

    def owner(self, slot: int) -> RedisServer:
        return self.slot_owners()[slot]

    def primaries(self) -> list[RedisServer]:
        return sorted(set(self.slot_owners().values()), key=lambda s: s.port)

    def unreplicated_primary(self) -> RedisServer:
        """A primary that no replica follows (a restart leaves its slots unserved)."""
        followed = {
            fields[3]
            for line in self.cli(self.all[0], "cluster", "nodes").splitlines()
            if "slave" in (fields := line.split())[2]
        }
        return next(s for s in self.primaries() if self.node_id(s) not in followed)

    def migrate(self, slot: int, target: RedisServer) -> RedisServer:
        """Move ``slot`` (which holds no keys) to ``target``, the way redis-cli's reshard
        does: IMPORTING / MIGRATING, then NODE on both ends and everywhere else."""
        source = self.owner(slot)
        assert source is not target
        target_id, source_id = self.node_id(target), self.node_id(source)
        self.cli(target, "cluster", "setslot", slot, "importing", source_id)
        self.cli(source, "cluster", "setslot", slot, "migrating", target_id)
        assert self.cli(source, "cluster", "countkeysinslot", slot) == "0"
        for server in [target, source, *(s for s in self.all if s not in (source, target))]:
            if server.proc is not None:
                self.cli(server, "cluster", "setslot", slot, "node", target_id)
        assert self.owner(slot) is target
        return source

    def add_replica(self, primary: RedisServer) -> RedisServer:
        binary = shutil.which("redis-server")
        assert binary is not None
        replica = RedisServer(binary, cluster_port(), options=CLUSTER_OPTIONS)
        self.extra.append(replica)
        replica.start()
        self.cli(replica, "cluster", "meet", "127.0.0.1", primary.port)
        primary_id = self.node_id(primary)
        wait_for(lambda: primary_id in self.cli(replica, "cluster", "nodes"))
        self.cli(replica, "cluster", "replicate", primary_id)
        wait_for(lambda: "master_link_status:up" in self.cli(replica, "info", "replication"))
        return replica

    def wait_ok(self) -> None:
        for server in self.all:
            if server.proc is not None:
                wait_for(partial(self.cluster_ok, server))

    def cluster_ok(self, server: RedisServer) -> bool:
        return "cluster_state:ok" in self.cli(server, "cluster", "info")


def cluster_port() -> int:
    """A free port for a cluster node: at most 55535, its cluster bus port (+10000) free too
    (redis-server refuses to start above that)."""
    while True:
        port = free_port()
        if port <= 55535:
            with contextlib.suppress(OSError), socket.socket() as sock:
                sock.bind(("127.0.0.1", port + 10000))
                return port


def wait_for(condition: Callable[[], bool], within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    binary = shutil.which("redis-server")
    if binary is None or shutil.which("redis-cli") is None:
        unavailable("redis-server / redis-cli are not installed (apt-get install redis-server)")
        return
    servers = RedisClusterServers(binary)
    own = Cluster(servers)
    try:
        servers.start()
        yield own
    finally:
        servers.stop()
        for server in own.extra:
            server.stop()
            shutil.rmtree(server.dir, ignore_errors=True)


class Inbox:
    """A listener that keeps what it is given."""

    def __init__(self) -> None:
        self.events: list[UserEvent] = []
        self.resyncs = 0

    def deliver(self, event: UserEvent) -> None:
        self.events.append(event)

    def resync(self) -> None:
        self.resyncs += 1


async def until(condition: Callable[[], bool], within: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        assert loop.time() < deadline, "condition not met"
        await asyncio.sleep(0.02)


def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


def hub_of(cluster: Cluster, key_prefix: str) -> ClusterHub:
    """A hub that never looks at the slot map unprompted: what it does, a signal from the
    cluster (a sunsubscribe, a MOVED, a lost link) made it do."""
    return ClusterHub(cluster.url, key_prefix, check_every=3600)


def users_on(cluster: Cluster, channels: ShardChannels, server: RedisServer, n: int) -> list[str]:
    """``n`` user ids whose channels live on ``server``, in slots holding no fanout channel."""
    fanout_slots = {key_slot(c.encode()) for c in channels.fanout}
    owners = cluster.slot_owners()
    found: list[str] = []
    for i in itertools.count():
        slot = key_slot(channels.user(f"u{i}").encode())
        if owners[slot] is server and slot not in fanout_slots:
            found.append(f"u{i}")
            if len(found) == n:
                break
    return found


async def shard_subscribers(server: RedisServer, channel: str) -> int:
    client = aioredis.Redis(port=server.port)
    try:
        reply = await client.execute_command("PUBSUB", "SHARDNUMSUB", channel)  # type: ignore[no-untyped-call]
    finally:
        await client.aclose()
    return int(reply[1])


async def shard_channels(server: RedisServer, pattern: str) -> set[str]:
    client = aioredis.Redis(port=server.port)
    try:
        reply = await client.execute_command("PUBSUB", "SHARDCHANNELS", pattern)  # type: ignore[no-untyped-call]
    finally:
        await client.aclose()
    return {c.decode() for c in reply}


def event(user: str, n: int = 1) -> UserEvent:
    return UserEvent(user=user, feed="notification", kind="marked", activity_ids=[f"a{n}"])


# -- deciding what to send (no Redis) --------------------------------------------------------
MESSAGE = b'{"feed":"timeline","kind":"added","activity_ids":["a1"]}'


def test_a_shared_message_goes_once_per_node_and_each_user_once() -> None:
    channels = ShardChannels("p")
    nodes = ["n0", "n1", "n2"]

    def node_of(channel: str) -> str | None:  # three equal ranges of slots
        return nodes[key_slot(channel.encode()) * 3 // 16384]

    users = [f"u{i}" for i in range(60)]
    sends = messages_for({MESSAGE: users, b"alone": ["solo"]}, channels, node_of)

    assert all(node_of(c) == node for node, pairs in sends.items() for c, _ in pairs)
    shared = [(node, shared_decoder.decode(m)) for node, pairs in sends.items()
              for c, m in pairs if c in channels.fanout_names]  # fmt: skip
    assert sorted(str(node) for node, _ in shared) == nodes  # one per node, on a fanout it owns
    for node, event in shared:
        assert bytes(event.event) == MESSAGE
        assert {node_of(channels.user(u)) for u in event.users} == {node}
    assert sorted(u for _, event in shared for u in event.users) == sorted(users)
    singles = [
        (c, m) for pairs in sends.values() for c, m in pairs if c not in channels.fanout_names
    ]
    assert singles == [(channels.user("solo"), b"alone")]


def test_a_node_owning_no_fanout_channel_gets_its_users_events_one_by_one() -> None:
    channels = ShardChannels("p")
    fanout_slots = {key_slot(c.encode()) for c in channels.fanout}

    def node_of(channel: str) -> str | None:  # "tiny" owns user slots only
        slot = key_slot(channel.encode())
        return "big" if slot in fanout_slots or slot % 2 else "tiny"

    users = [f"u{i}" for i in range(40)]
    sends = messages_for({MESSAGE: users}, channels, node_of)
    tiny = [u for u in users if node_of(channels.user(u)) == "tiny"]
    assert len(tiny) >= SHARED_MIN
    assert sorted(sends["tiny"]) == sorted((channels.user(u), MESSAGE) for u in tiny)
    [(channel, message)] = sends["big"]  # "big"'s users: one message on its fanout channel
    assert channel in channels.fanout_names
    assert len(shared_decoder.decode(message).users) == len(users) - len(tiny)


# -- on the cluster ----------------------------------------------------------------------------
async def test_events_reach_the_right_listeners_on_every_node(cluster: Cluster) -> None:
    key_prefix = prefix()
    channels = ShardChannels(key_prefix)
    bus, hub, other = (ClusterBus(cluster.url, key_prefix), hub_of(cluster, key_prefix),
                       hub_of(cluster, key_prefix))  # fmt: skip
    prepared: list[WireEvent] = []

    async def prepare(wire: WireEvent) -> None:
        prepared.append(wire)

    hub.prepare = prepare
    primaries = cluster.primaries()
    assert len(primaries) == 3
    owners = cluster.slot_owners()
    users = {s.port: users_on(cluster, channels, s, 4 + SHARED_MIN) for s in primaries}
    mine = {port: users[:4] for port, users in users.items()}
    here = [u for users in mine.values() for u in users[:2]]  # two per node, in this process
    there = [u for users in mine.values() for u in users[2:]]  # two per node, in the other
    strangers = [u for users in users.values() for u in users[4:]]  # connected nowhere
    inboxes = {u: Inbox() for u in here + there}
    try:
        for user in here:
            await hub.subscribe(user, inboxes[user])
        for user in there:
            await other.subscribe(user, inboxes[user])

        # Each process is subscribed to its users' channels, on the node owning each, and
        # to nothing else (besides the fanout channels, which every process listens to).
        for server in primaries:
            assert await shard_channels(server, f"{key_prefix}:rt:u:*") == {
                channels.user(u) for u in mine[server.port]
            }
            for user in mine[server.port]:
                assert await shard_subscribers(server, channels.user(user)) == 1
            for fanout in channels.fanout:
                if owners[key_slot(fanout.encode())] is server:
                    assert await shard_subscribers(server, fanout) == 2

        # One event per user, and one event shared by everyone (connected here or not).
        singles = [event(u, n) for n, u in enumerate(here + there)]
        await bus.publish(singles)
        chunk = [FeedChange(user=u, added=["a99"]) for u in [*here, *there, *strangers]]
        await publish_changes(bus, "timeline", "added", chunk)

        await until(lambda: all(len(inbox.events) == 2 for inbox in inboxes.values()))
        for n, user in enumerate(here + there):
            shared = UserEvent(user=user, feed="timeline", kind="added", activity_ids=["a99"])
            assert inboxes[user].events == [singles[n], shared]
            assert inboxes[user].resyncs == 0
        # The chunk reached this process once per node (its users split by their node), not
        # once per user.
        assert len(prepared) == 3

        await hub.unsubscribe(here[0], inboxes[here[0]])
        owner = cluster.owner(key_slot(channels.user(here[0]).encode()))
        assert await shard_subscribers(owner, channels.user(here[0])) == 0
    finally:
        await hub.close()
        await other.close()
        await bus.close()


async def test_a_user_who_leaves_and_comes_back_is_not_resynced(cluster: Cluster) -> None:
    key_prefix = prefix()
    channels = ShardChannels(key_prefix)
    bus, hub = ClusterBus(cluster.url, key_prefix), hub_of(cluster, key_prefix)
    user = users_on(cluster, channels, cluster.primaries()[0], 1)[0]
    first, second = Inbox(), Inbox()
    try:
        await hub.subscribe(user, first)
        # A reload: the last tab leaves and a new one comes at once. The node's reply to the
        # SUNSUBSCRIBE arrives after the new SSUBSCRIBE is sent: it is ours, not the node
        # dropping the channel.
        await hub.unsubscribe(user, first)
        await hub.subscribe(user, second)
        await bus.publish([event(user)])
        await until(lambda: second.events == [event(user)])
        assert second.resyncs == 0 and first.events == []
        owner = cluster.owner(key_slot(channels.user(user).encode()))
        assert await shard_subscribers(owner, channels.user(user)) == 1
    finally:
        await hub.close()
        await bus.close()


async def test_a_node_that_lost_the_publish_script_gets_it_again(cluster: Cluster) -> None:
    key_prefix = prefix()
    channels = ShardChannels(key_prefix)
    bus, hub = ClusterBus(cluster.url, key_prefix), hub_of(cluster, key_prefix)
    users = [u for s in cluster.primaries() for u in users_on(cluster, channels, s, 2)]
    inboxes = {u: Inbox() for u in users}
    try:
        for user, inbox in inboxes.items():
            await hub.subscribe(user, inbox)
        await bus.publish([event(u, 0) for u in users])
        assert bus.redone == 0
        for server in cluster.primaries():  # as a replica promoted without it would be
            cluster.cli(server, "script", "flush")
        await bus.publish([event(u, 1) for u in users])  # NOSCRIPT: sent one by one
        assert bus.redone == 3
        await bus.publish([event(u, 2) for u in users])  # loaded again: one call per node
        assert bus.redone == 3
        expected = {u: [event(u, n) for n in range(3)] for u in users}
        await until(lambda: {u: inbox.events for u, inbox in inboxes.items()} == expected)
    finally:
        await hub.close()
        await bus.close()


async def test_a_slot_migration_moves_the_subscription_and_resyncs_its_listeners(
    cluster: Cluster,
) -> None:
    key_prefix = prefix()
    channels = ShardChannels(key_prefix)
    bus, hub = ClusterBus(cluster.url, key_prefix), hub_of(cluster, key_prefix)
    source, target, third = cluster.primaries()
    moved, stays = users_on(cluster, channels, source, 2)
    elsewhere = users_on(cluster, channels, third, 1)[0]
    inboxes = {u: Inbox() for u in (moved, stays, elsewhere)}
    slot = key_slot(channels.user(moved).encode())
    assert key_slot(channels.user(stays).encode()) != slot
    try:
        for user, inbox in inboxes.items():
            await hub.subscribe(user, inbox)
        await bus.publish([event(moved, 0)])  # the publisher learns the slot map as it is
        await until(lambda: inboxes[moved].events == [event(moved, 0)])

        await asyncio.to_thread(cluster.migrate, slot, target)
        # The source tells its subscribers (sunsubscribe); the hub subscribes on the new
        # owner and, once that is acknowledged, the moved user's listener re-reads storage.
        await until(lambda: inboxes[moved].resyncs == 1)
        assert await shard_subscribers(target, channels.user(moved)) == 1
        assert await shard_subscribers(source, channels.user(moved)) == 0
        assert inboxes[stays].resyncs == inboxes[elsewhere].resyncs == 0  # only those moved

        # The publisher's slot map is stale: the source refuses the script call that names
        # the moved channel, and its messages go again one by one, following MOVED.
        redone = bus.redone
        await bus.publish([event(u, 1) for u in inboxes])
        assert bus.redone == redone + 1
        await until(lambda: all(event(u, 1) in inbox.events for u, inbox in inboxes.items()))

        # A fanout channel's slot moves: a publisher may have sent anyone's event on it, so
        # every listener re-reads.
        owners = cluster.slot_owners()
        fanout = next(c for c in channels.fanout if owners[key_slot(c.encode())] is third)
        await asyncio.to_thread(cluster.migrate, key_slot(fanout.encode()), target)
        await until(lambda: all(inbox.resyncs >= 1 for inbox in inboxes.values()))
        assert await shard_subscribers(target, fanout) == 1
        assert inboxes[stays].resyncs == 1  # the channels moved together: one resync
    finally:
        await hub.close()
        await bus.close()


async def test_a_subscription_refused_with_moved_is_made_on_the_new_owner(
    cluster: Cluster,
) -> None:
    key_prefix = prefix()
    channels = ShardChannels(key_prefix)
    bus, hub = ClusterBus(cluster.url, key_prefix), hub_of(cluster, key_prefix)
    source, target, _ = cluster.primaries()
    early, late = users_on(cluster, channels, source, 2)
    inboxes = {early: Inbox(), late: Inbox()}
    try:
        await hub.subscribe(early, inboxes[early])  # the hub learns the slot map
        slot = key_slot(channels.user(late).encode())
        await asyncio.to_thread(cluster.migrate, slot, target)  # nothing of it subscribed
        # The hub's map is stale: SSUBSCRIBE goes to the source, which answers MOVED. The
        # subscription returns (the connection reads storage), and is made on the new owner,
        # and the listener resyncs once that is acknowledged.
        await hub.subscribe(late, inboxes[late])
        await until(lambda: inboxes[late].resyncs == 1)
        assert await shard_subscribers(target, channels.user(late)) == 1
        assert inboxes[early].resyncs == 0
        await bus.publish([event(early), event(late)])
        await until(lambda: all(event(u) in inbox.events for u, inbox in inboxes.items()))
    finally:
        await hub.close()
        await bus.close()


async def test_a_failover_resyncs_the_shard_and_later_events_arrive(cluster: Cluster) -> None:
    key_prefix = prefix()
    channels = ShardChannels(key_prefix)
    bus, hub = ClusterBus(cluster.url, key_prefix), hub_of(cluster, key_prefix)
    old_primary = cluster.primaries()[0]
    users = users_on(cluster, channels, old_primary, 3)
    inboxes = {u: Inbox() for u in users}
    replica = await asyncio.to_thread(cluster.add_replica, old_primary)
    try:
        for user, inbox in inboxes.items():
            await hub.subscribe(user, inbox)
        await bus.publish([event(u, 0) for u in users])
        await until(lambda: all(inbox.events for inbox in inboxes.values()))
        links_before = hub.connections

        cluster.cli(replica, "cluster", "failover")
        await asyncio.to_thread(
            wait_for, lambda: "role:master" in cluster.cli(replica, "info", "replication")
        )
        # The demoted primary drops its shard subscriptions (sunsubscribe); the hub
        # connects to the new primary, subscribes there, and resyncs those listeners.
        await until(lambda: all(inbox.resyncs >= 1 for inbox in inboxes.values()))
        assert hub.connections > links_before
        for user in users:
            assert await shard_subscribers(replica, channels.user(user)) == 1

        await bus.publish([event(u, 1) for u in users])
        await until(lambda: all(event(u, 1) in inbox.events for u, inbox in inboxes.items()))
    finally:
        await hub.close()
        await bus.close()


async def test_a_node_restart_resyncs_its_listeners_and_later_events_arrive(
    cluster: Cluster,
) -> None:
    key_prefix = prefix()
    channels = ShardChannels(key_prefix)
    bus, hub = ClusterBus(cluster.url, key_prefix), hub_of(cluster, key_prefix)
    node = cluster.unreplicated_primary()
    users = users_on(cluster, channels, node, 2)
    inboxes = {u: Inbox() for u in users}
    try:
        for user, inbox in inboxes.items():
            await hub.subscribe(user, inbox)
        links_before = hub.connections

        await asyncio.to_thread(node.stop)
        await asyncio.to_thread(node.start)
        await asyncio.to_thread(cluster.wait_ok)
        await until(lambda: all(inbox.resyncs >= 1 for inbox in inboxes.values()))
        assert hub.connections > links_before
        for user in users:
            assert await shard_subscribers(node, channels.user(user)) == 1

        await bus.publish([event(u, 1) for u in users])
        await until(lambda: all(event(u, 1) in inbox.events for u, inbox in inboxes.items()))
    finally:
        await hub.close()
        await bus.close()


async def test_churn_through_a_migration_and_a_restart_leaves_exactly_the_live_users(
    cluster: Cluster,
) -> None:
    """Eight tasks open and close listeners of 60 users at random (several tabs of a user on
    different tasks) while a user's slot migrates and a primary restarts: afterwards each
    user with a listener is subscribed once, on the node owning its slot, no other user is,
    and an event reaches every listener."""
    key_prefix = prefix()
    channels = ShardChannels(key_prefix)
    bus, hub = ClusterBus(cluster.url, key_prefix), hub_of(cluster, key_prefix)
    users = [u for s in cluster.primaries() for u in users_on(cluster, channels, s, 20)]
    held: list[dict[str, Inbox]] = [{} for _ in range(8)]
    rng = random.Random(15)
    stop = asyncio.Event()

    async def churn(mine: dict[str, Inbox], seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            user = rng.choice(users)
            if user in mine:
                await hub.unsubscribe(user, mine.pop(user))
            else:
                mine[user] = Inbox()
                await hub.subscribe(user, mine[user])
            await asyncio.sleep(rng.uniform(0, 0.01))

    async def settled() -> bool:
        owners = await asyncio.to_thread(cluster.slot_owners)
        live = {user for mine in held for user in mine}
        for user in users:
            owner = owners[key_slot(channels.user(user).encode())]
            counts = [await shard_subscribers(s, channels.user(user)) for s in cluster.primaries()]
            expected = [int(user in live and s is owner) for s in cluster.primaries()]
            if counts != expected:
                return False
        return True

    tasks = [asyncio.create_task(churn(mine, rng.randrange(1 << 30))) for mine in held]
    try:
        await asyncio.sleep(0.5)
        source, target, _ = cluster.primaries()
        slot = key_slot(channels.user(users_on(cluster, channels, source, 1)[0]).encode())
        await asyncio.to_thread(cluster.migrate, slot, target)
        await asyncio.sleep(0.5)
        node = cluster.unreplicated_primary()
        await asyncio.to_thread(node.stop)
        await asyncio.sleep(0.2)
        await asyncio.to_thread(node.start)
        await asyncio.to_thread(cluster.wait_ok)
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*tasks)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not await settled():
            assert loop.time() < deadline, "subscriptions never matched the connected users"
            await asyncio.sleep(0.1)
        live = [(user, inbox) for mine in held for user, inbox in mine.items()]
        assert live
        await bus.publish([event(user, 7) for user in {user for user, _ in live}])
        await until(lambda: all(event(user, 7) in inbox.events for user, inbox in live))
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await hub.close()
        await bus.close()
