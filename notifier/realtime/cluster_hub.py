"""The listening side of the realtime bus on a Redis Cluster: one pub/sub connection per
primary, whose subscriptions follow the slot map (notifier/realtime/cluster_bus.py has the
design; notifier/realtime/shard_channels.py the channels).

The connections are redis-py's plain ``Connection``, driven here (SSUBSCRIBE sent, replies
and pushes read in one loop per connection), rather than its ``ClusterPubSub``, which
re-subscribes on its own after a slot move or a reconnect and would never say that events
fell in between. What this leans on, checked against redis-py 8.1 and Redis 7.0: a
``ClusterNode``'s ``connection_class`` and ``connection_kwargs`` (a connection with the
cluster's credentials and TLS), ``NodesManager.initialize`` (the slot map again, without
the command table), ``read_response(push_request=True)`` (pub/sub messages are RESP3
pushes), and Redis sending ``sunsubscribe`` for the channels of a slot a node stops serving
(tests/realtime/test_cluster_bus.py fails without it)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import msgspec
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    RedisClusterException,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from notifier.realtime.bus import WireEvent, decode_event
from notifier.realtime.hub import Listener, Listeners
from notifier.realtime.shard_channels import ShardChannels, cluster_client, shared_decoder

log = logging.getLogger(__name__)

_LINK_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
#: What ends a link's reader: the link is dropped, and its channels placed again.
_READ_ERRORS = (RedisError, OSError)
#: How long the first subscription of a process waits for the fanout channels, seconds.
_FIRST_LINK_S = 5.0
#: Delays before acting on a change, or trying again after a failure, seconds: doubling from
#: the first while changes or failures keep coming, back to the first after a quiet spell.
_BACKOFF = (0.05, 2.0)
#: Seconds between two looks at the slot map when nothing signals a change (a primary cut
#: off from us by a partition says nothing until it comes back).
CHECK_EVERY = 10.0
#: Fanout channels re-subscribed within this many seconds make one resync of everyone.
_COALESCE_S = 0.1
#: The hub's own connections: no retries (a lost link must surface, where it triggers a
#: resync), no read timeout (a quiet channel is not a dead one), keepalive on.
_LINK_OPTIONS: dict[str, Any] = {
    "retry": Retry(NoBackoff(), 0),
    "socket_timeout": None,
    "socket_keepalive": True,
}


class _Link:
    """The hub's connection to one primary, and the channels placed on it."""

    def __init__(self, node: ClusterNode) -> None:
        self.name = node.name
        self.connection = node.connection_class(**{**node.connection_kwargs, **_LINK_OPTIONS})
        self.placed: set[str] = set()
        """Channels subscribed here (SSUBSCRIBE sent; acknowledged or not yet)."""
        self.leaving: Counter[str] = Counter()
        """SUNSUBSCRIBEs sent whose reply is not read yet, by channel: a ``sunsubscribe`` not
        counted here is the node's own (it lost the slot)."""
        self.reader: asyncio.Task[None] | None = None

    async def send(self, *args: str) -> None:
        await self.connection.send_command(*args, check_health=False)


class ClusterHub:
    """One connection per primary, subscribed there to the users connected here (whose
    slots it owns) and to the fanout channels.

    The subscriptions follow the slot map: a link that drops, a ``sunsubscribe`` the node
    sends (the slot moved, or the node was demoted), a MOVED reply to SSUBSCRIBE, or the
    periodic look at the map (every ``check_every`` seconds) make the hub refresh the map,
    connect to new primaries, and subscribe again where each slot now lives. A user channel
    subscribed again resyncs that user's listeners once acknowledged; a fanout channel,
    every listener (a publisher with a stale map may have sent anyone's event on it)."""

    def __init__(self, url: str, key_prefix: str, *, check_every: float = CHECK_EVERY) -> None:
        self._url = url
        self._check_every = check_every
        self._channels = ShardChannels(key_prefix)
        self.listeners = Listeners()
        self.prepare: Callable[[WireEvent], Awaitable[None]] | None = None
        """Awaited with a fanout's event before it is dispatched (the frame, encoded once)."""
        self.connections = 0
        """Times a link to a primary came up."""
        self._topology: RedisCluster | None = None
        self._links: dict[str, _Link] = {}
        self._placed: dict[str, _Link] = {}
        self._dirty: set[str] = set()
        """Channels whose listeners re-read storage once their subscription is acknowledged."""
        self._pending: dict[str, list[asyncio.Future[None]]] = {}
        self._fanout_unacked = set(self._channels.fanout)
        self._ready = asyncio.Event()
        """Set once every fanout channel has been acknowledged (the first time)."""
        self._early = False
        """Listeners came before ``_ready``: they resync once it is set."""
        self._changed = asyncio.Event()
        self._lock = asyncio.Lock()
        self._everyone: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    # -- Hub -------------------------------------------------------------------------------
    async def subscribe(self, user: str, listener: Listener) -> None:
        self._start()
        if not self._ready.is_set():
            # The process's first subscriptions: give the links a moment to come up, so the
            # first connections need no resync. (Down for longer: the resync covers them.)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_FIRST_LINK_S):
                    await self._ready.wait()
        channel = self._channels.user(user)
        async with self._lock:
            first = self.listeners.add(user, listener)
            self._early = self._early or not self._ready.is_set()
            if not first and channel not in self._pending:
                return  # live, or lost and resynced once subscribed again
            waiter = asyncio.get_running_loop().create_future()
            self._pending.setdefault(channel, []).append(waiter)
            if first:
                link = self._owner(channel)
                if link is None:
                    self._lose(channel)  # placed (and this listener resynced) by _settle
                else:
                    await self._place(link, [channel])
        await waiter

    async def unsubscribe(self, user: str, listener: Listener) -> None:
        async with self._lock:
            if not self.listeners.remove(user, listener):
                return
            channel = self._channels.user(user)
            self._dirty.discard(channel)
            link = self._placed.pop(channel, None)
            if link is not None:
                link.placed.discard(channel)
                if self._links.get(link.name) is link:
                    link.leaving[channel] += 1
                    with contextlib.suppress(*_LINK_ERRORS):
                        await link.send("SUNSUBSCRIBE", channel)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._everyone is not None:
            self._everyone.cancel()
        for channel in list(self._pending):
            self._resolve(channel)

    # -- placing subscriptions -------------------------------------------------------------
    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="cluster-hub")

    def _wanted(self, channel: str) -> bool:
        user = self._channels.user_of(channel.encode())
        return user is None or self.listeners.has(user)

    def _owner(self, channel: str) -> _Link | None:
        """The link to the primary owning ``channel``'s slot (None: unknown, or not up)."""
        if self._topology is None:
            return None
        try:
            node = self._topology.get_node_from_key(channel)
        except SlotNotCoveredError:
            return None
        return self._links.get(node.name) if node is not None else None

    async def _place(self, link: _Link, channels: Iterable[str]) -> bool:
        """SSUBSCRIBE ``channels`` on ``link``, one command per slot (one command may not
        name several); False when the link failed (the channels are lost: placed again by
        ``_settle``)."""
        by_slot: dict[int, list[str]] = {}
        for channel in channels:
            by_slot.setdefault(key_slot(channel.encode()), []).append(channel)
        for group in by_slot.values():
            if self._links.get(link.name) is not link:
                for channel in group:
                    self._lose(channel)
                continue
            for channel in group:
                self._placed[channel] = link
                link.placed.add(channel)
            try:
                await link.send("SSUBSCRIBE", *group)
            except _LINK_ERRORS as exc:
                log.warning("realtime: shard pub/sub link to %s lost (%r)", link.name, exc)
                self._drop(link)
        return self._links.get(link.name) is link

    def _lose(self, channel: str) -> None:
        """``channel``'s subscription is gone (or never was): subscribe it again, and resync
        its listeners then; whoever waits for it reads storage now."""
        link = self._placed.pop(channel, None)
        if link is not None:
            link.placed.discard(channel)
        self._mark(channel)
        self._resolve(channel)
        self._changed.set()

    def _mark(self, channel: str) -> None:
        """``channel``'s listeners resync once it is subscribed (again). Before ``_ready``,
        a fanout channel marks nobody: ``_early`` listeners resync once they are all live."""
        if channel in self._channels.fanout_names:
            if self._ready.is_set():
                self._dirty.add(channel)
        elif self._wanted(channel):
            self._dirty.add(channel)

    def _resolve(self, channel: str) -> None:
        for waiter in self._pending.pop(channel, []):
            if not waiter.done():
                waiter.set_result(None)

    def _drop(self, link: _Link) -> None:
        """``link`` is gone: every channel placed on it is lost."""
        if self._links.get(link.name) is not link:
            return
        del self._links[link.name]
        for channel in list(link.placed):
            self._lose(channel)
        link.leaving.clear()
        if link.reader is not None and link.reader is not asyncio.current_task():
            link.reader.cancel()
        self._changed.set()

    # -- the supervisor: links and subscriptions follow the slot map -------------------------
    async def _run(self) -> None:
        self._topology = topology = cluster_client(
            self._url, pool_size=2, socket_connect_timeout=2.0, socket_timeout=5.0
        )
        mapped = False
        delay = _BACKOFF[0]
        try:
            while True:
                self._changed.clear()
                try:
                    if mapped:
                        # The slot map again (CLUSTER SLOTS), not the command table too.
                        await topology.nodes_manager.initialize()
                    else:
                        await topology.initialize()
                        mapped = True
                except (*_LINK_ERRORS, RedisClusterException, ResponseError) as exc:
                    log.warning("realtime: Redis Cluster slot map unavailable (%r)", exc)
                    settled = False
                else:
                    settled = await self._settle(topology)
                if settled:
                    loop = asyncio.get_running_loop()
                    since = loop.time()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._check_every):
                            await self._changed.wait()
                    if loop.time() - since > _BACKOFF[1]:
                        delay = _BACKOFF[0]  # quiet for a while: react at once
                # A change comes in a burst (a demoted primary drops every channel of its
                # slots, one sunsubscribe each): wait for the rest of it, longer and longer
                # while changes keep coming (a cluster refusing everything while it fails).
                await asyncio.sleep(delay)
                delay = min(delay * 2, _BACKOFF[1])
        finally:
            links = list(self._links.values())
            for link in links:
                self._drop(link)
            for link in links:
                if link.reader is not None:
                    with contextlib.suppress(asyncio.CancelledError):
                        await link.reader
            await topology.aclose()

    async def _settle(self, topology: RedisCluster) -> bool:
        """Connect to every primary of the slot map, and place every wanted channel on its
        slot's owner; False when some of it failed (to be retried after a delay)."""
        settled = True
        primaries = {node.name: node for node in topology.get_primaries()}
        for gone in [link for name, link in self._links.items() if name not in primaries]:
            log.warning("realtime: %s is no longer a primary; resubscribing", gone.name)
            self._drop(gone)
        for name, node in primaries.items():
            if name not in self._links:
                settled = await self._connect(node) and settled
        async with self._lock:
            wanted = [*self._channels.fanout, *map(self._channels.user, self.listeners.users())]
            moves: dict[_Link, list[str]] = {}
            for channel in wanted:
                link = self._owner(channel)
                placed = self._placed.get(channel)
                if placed is not None and placed is link:
                    continue
                if placed is not None:  # moved, and its old node did not say so
                    await self._unplace(placed, channel)
                self._mark(channel)
                if link is None:
                    settled = False
                    continue
                moves.setdefault(link, []).append(channel)
            for owner, channels in moves.items():
                settled = await self._place(owner, channels) and settled
        return settled

    async def _connect(self, node: ClusterNode) -> bool:
        link = _Link(node)
        try:
            await link.connection.connect()  # type: ignore[no-untyped-call]
        except _LINK_ERRORS as exc:
            log.warning("realtime: cannot reach %s for shard pub/sub (%r)", node.name, exc)
            return False
        self._links[link.name] = link
        link.reader = asyncio.get_running_loop().create_task(
            self._read(link), name=f"cluster-hub-{link.name}"
        )
        self.connections += 1
        return True

    async def _unplace(self, link: _Link, channel: str) -> None:
        """Forget ``channel`` on ``link``, and unsubscribe it there."""
        del self._placed[channel]
        link.placed.discard(channel)
        link.leaving[channel] += 1
        with contextlib.suppress(*_LINK_ERRORS):
            await link.send("SUNSUBSCRIBE", channel)

    # -- reading a link ----------------------------------------------------------------------
    async def _read(self, link: _Link) -> None:
        try:
            while True:
                try:
                    reply = await link.connection.read_response(push_request=True)
                except AskError as exc:  # MOVED (or ASK): that node does not serve the slot
                    self._moved(link, exc.slot_id)
                    continue
                await self._handle(link, reply)
        except _READ_ERRORS as exc:  # connection lost, CLUSTERDOWN, …: start over
            if self._links.get(link.name) is link:
                log.warning("realtime: shard pub/sub link to %s lost (%r)", link.name, exc)
        finally:
            self._drop(link)
            with contextlib.suppress(Exception):
                await link.connection.disconnect(nowait=True)

    async def _handle(self, link: _Link, reply: Any) -> None:
        if not isinstance(reply, list) or len(reply) < 3:
            return  # not a pub/sub message (another kind of push)
        kind, channel = reply[0], reply[1]
        if kind == b"smessage":
            if channel in self._channels.fanout_bytes:
                await self._shared(reply[2])
                return
            user = self._channels.user_of(channel)
            if user is None:
                return
            try:
                event = decode_event(reply[2]).to(user)
            except msgspec.DecodeError:
                log.error("realtime: undecodable event on %r", channel)
                return
            self.listeners.dispatch(event)
        elif kind == b"ssubscribe":
            self._acknowledged(link, channel.decode())
        elif kind == b"sunsubscribe":
            name = channel.decode()
            if link.leaving[name] > 0:
                link.leaving[name] -= 1
                if not link.leaving[name]:
                    del link.leaving[name]
            elif self._placed.get(name) is link:
                self._lose(name)  # the node no longer serves its slot

    def _acknowledged(self, link: _Link, channel: str) -> None:
        """``channel`` is live on ``link``: waiters go on; a lost one resyncs its listeners."""
        if self._placed.get(channel) is not link:
            return  # unsubscribed or moved since
        self._resolve(channel)
        fanout = channel in self._channels.fanout_names
        if fanout and channel in self._fanout_unacked:
            self._fanout_unacked.discard(channel)
            if not self._fanout_unacked:
                self._ready.set()
                if self._early:
                    self._resync_everyone_soon()
        if channel not in self._dirty:
            return
        self._dirty.discard(channel)
        if fanout:
            self._resync_everyone_soon()
        elif self._everyone is None:  # else that resync, still to come, covers this one
            user = self._channels.user_of(channel.encode())
            if user is not None:
                self.listeners.resync(user)

    def _resync_everyone_soon(self) -> None:
        if self._everyone is None:
            self._everyone = asyncio.get_running_loop().call_later(
                _COALESCE_S, self._resync_everyone
            )

    def _resync_everyone(self) -> None:
        self._everyone = None
        if self.listeners.users():
            log.warning("realtime: fanout channels resubscribed; resyncing every connection")
        self.listeners.resync_all()

    def _moved(self, link: _Link, slot: int) -> None:
        """``link``'s node refused a (S)SUBSCRIBE of ``slot``: nothing of it lives there."""
        for channel in [c for c in link.placed if key_slot(c.encode()) == slot]:
            self._lose(channel)
        for channel in [c for c in link.leaving if key_slot(c.encode()) == slot]:
            del link.leaving[channel]

    async def _shared(self, data: bytes) -> None:
        """A fanout's event: to this process's connections of its users, all in one go,
        after ``prepare`` (awaited here, so events keep their order)."""
        try:
            shared = shared_decoder.decode(data)
            here = [u for u in shared.users if self.listeners.has(u)]
            if not here:
                return
            wire = decode_event(shared.event)
        except msgspec.DecodeError:
            log.error("realtime: undecodable shared event")
            return
        if self.prepare is not None:
            await self.prepare(wire)
        self.listeners.dispatch_all([wire.to(u) for u in here])
