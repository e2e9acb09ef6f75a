"""The realtime bus over Redis pub/sub: workers and web processes publish, each web process
listens on one connection for the users connected to it.

Channels are per user (``{prefix}:rt:user:{id}``), so a process receives only what its own
connections need. Pub/sub is fire-and-forget, and redis-py would re-subscribe silently after a
reconnect, never saying what fell in between; so the listener runs its own connection loop with
client retries off, and after every reconnect it asks each connection to resync from storage.
That, not pub/sub, is what makes delivery lossless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from notifier.realtime.bus import (
    EventKind,
    Shared,
    UserEvent,
    WireEvent,
    by_message,
    decode_event,
    shared_by_message,
)
from notifier.realtime.hub import Listener, Listeners
from notifier.storage.redis_client import server_client

log = logging.getLogger(__name__)

_LINK_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
#: How long the first subscription of a process waits for the pub/sub link, seconds.
_FIRST_LINK_S = 5.0
#: Reconnect delays, seconds: doubling from the first to the last.
_BACKOFF = (0.05, 2.0)


#: ARGV: groups of (n, message, n channels): each message is published on its channels.
_PUBLISH_ALL = """
local i = 1
while i <= #ARGV do
  local n, message = tonumber(ARGV[i]), ARGV[i + 1]
  for j = i + 2, i + 1 + n do redis.call('PUBLISH', ARGV[j], message) end
  i = i + 2 + n
end
return i
"""


#: An event shared by more users than this travels once, on the fanout channel.
SHARED_MIN = 8


class SharedEvent(msgspec.Struct, frozen=True):
    """One event for many users (a fanout chunk's): every web process receives it once and
    delivers it to those of ``users`` connected there."""

    users: list[str]
    event: msgspec.Raw


_shared_encoder = msgspec.json.Encoder()
_shared_decoder = msgspec.json.Decoder(SharedEvent)


def channel_prefix(key_prefix: str) -> str:
    """Where user channels live: ``{key_prefix}:rt:user:``."""
    return f"{key_prefix}:rt:user:"


def fanout_channel(key_prefix: str) -> str:
    """The channel every web process listens on for events shared by many users."""
    return f"{key_prefix}:rt:fanout"


class RedisBus:
    """Publishes events, one PUBLISH per event in one pipelined round trip."""

    def __init__(self, url: str, key_prefix: str) -> None:
        # Retried on a fresh connection: after a Redis restart the pooled connections are
        # dead, and an event lost *after* the listeners resynced would stay lost.
        self._client: aioredis.Redis = server_client(
            url, retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), 6)
        )
        self._prefix = channel_prefix(key_prefix)
        self._fanout = fanout_channel(key_prefix)
        self._publish_all = self._client.register_script(_PUBLISH_ALL)

    async def publish(self, events: Sequence[UserEvent]) -> None:
        """All of ``events`` in one script call. An event shared by many users (a fanout
        chunk into flat feeds) is one message on the fanout channel, not one per user: each
        web process parses it once instead of once per follower."""
        if not events:
            return
        await self._send(by_message(events))

    async def publish_shared(self, feed: str, kind: EventKind, shared: Sequence[Shared]) -> None:
        """``publish`` for changes already grouped by what they did (``publish_changes``)."""
        await self._send(shared_by_message(feed, kind, shared))

    async def _send(self, by_message: dict[bytes, list[str]]) -> None:
        """Each message to its users, in one script call: on the fanout channel once when
        many users share it, else on each user's channel."""
        args: list[str | bytes | int] = []
        for message, users in by_message.items():
            if len(users) >= SHARED_MIN:
                shared = _shared_encoder.encode(SharedEvent(users, msgspec.Raw(message)))
                args += [1, shared, self._fanout]
            else:
                args += [len(users), message, *(self._prefix + u for u in users)]
        await self._publish_all(args=args)

    async def close(self) -> None:
        await self._client.aclose()


class RedisHub:
    """One pub/sub connection per process, subscribed to the users connected here."""

    def __init__(self, url: str, key_prefix: str) -> None:
        self._url = url
        self._prefix = channel_prefix(key_prefix)
        self._fanout = fanout_channel(key_prefix)
        self._fanout_bytes = self._fanout.encode()
        self.listeners = Listeners()
        self.prepare: Callable[[WireEvent], Awaitable[None]] | None = None
        """Awaited with a fanout's event before it is dispatched (the frame, encoded once)."""
        self._pubsub: Any = None
        self._live = asyncio.Event()
        """Set while the connection is up and subscribed to every user in ``listeners``."""
        self._lock = asyncio.Lock()
        self._pending: dict[str, list[asyncio.Future[None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self.connections = 0
        """Times the link came up (the first time, then after each loss)."""

    def _client(self) -> aioredis.Redis:
        # Retries off: a dropped link must surface here, where it triggers a resync.
        return server_client(self._url, retry=Retry(NoBackoff(), 0), socket_keepalive=True)

    async def subscribe(self, user: str, listener: Listener) -> None:
        self._start()
        if not self._live.is_set() and self.connections == 0:
            # The process's first subscription: give the link a moment to come up, so the
            # first connections need no resync. (Down for longer: the resync covers them.)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_FIRST_LINK_S):
                    await self._live.wait()
        channel = self._prefix + user
        async with self._lock:
            first = self.listeners.add(user, listener)
            if not self._live.is_set():
                # Registered: the reconnect subscribes this user and resyncs this listener.
                return
            if not first and channel not in self._pending:
                return
            waiter = asyncio.get_running_loop().create_future()
            self._pending.setdefault(channel, []).append(waiter)
            if first:
                try:
                    await self._pubsub.subscribe(channel)
                except _LINK_ERRORS:
                    self._resolve_all()  # the reconnect subscribes and resyncs everyone
        await waiter

    async def unsubscribe(self, user: str, listener: Listener) -> None:
        async with self._lock:
            if self.listeners.remove(user, listener) and self._live.is_set():
                with contextlib.suppress(*_LINK_ERRORS):
                    await self._pubsub.unsubscribe(self._prefix + user)

    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="redis-hub")

    async def _run(self) -> None:
        delay = _BACKOFF[0]
        connected_before = False
        while True:
            client = self._client()
            pubsub = client.pubsub()
            try:
                async with self._lock:
                    # The fanout channel (shared events) also keeps the connection in
                    # subscribed mode when no user is connected here.
                    await pubsub.subscribe(self._fanout)
                    users = self.listeners.users()
                    if users:
                        await pubsub.subscribe(*(self._prefix + u for u in users))
                    # Subscribed for real (acknowledged) before anyone re-reads storage.
                    acks = 1 + len(users)
                    while acks:
                        message = await pubsub.get_message(timeout=None)
                        if message is not None and self._handle(message) == "subscribe":
                            acks -= 1
                    self._pubsub = pubsub
                    self._live.set()
                self.connections += 1
                if connected_before:
                    log.warning("realtime: pub/sub reconnected; resyncing connections")
                if users:
                    # Connections registered while the link was down (or not yet up, at
                    # start) may have read storage before it: they re-read it now.
                    self.listeners.resync_all()
                connected_before = True
                delay = _BACKOFF[0]
                await self._listen(pubsub)
            except asyncio.CancelledError:
                raise
            except _LINK_ERRORS as exc:
                log.warning("realtime: pub/sub link lost (%s); reconnecting in %.2fs", exc, delay)
            finally:
                self._live.clear()
                self._pubsub = None
                self._resolve_all()  # waiters read storage now; the reconnect resyncs them
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                with contextlib.suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKOFF[1])

    async def _listen(self, pubsub: Any) -> None:
        while True:
            message = await pubsub.get_message(timeout=None)
            if message is None:
                continue
            if message["type"] == "message" and message["channel"] == self._fanout_bytes:
                await self._shared(message["data"])
            else:
                self._handle(message)

    async def _shared(self, data: bytes) -> None:
        """A fanout's event: to this process's connections of its users, all in one go,
        after ``prepare`` (awaited here, so events keep their order)."""
        try:
            shared = _shared_decoder.decode(data)
            here = [u for u in shared.users if self.listeners.has(u)]
            if not here:
                return
            wire = decode_event(shared.event)
        except msgspec.DecodeError:
            log.error("realtime: undecodable shared event on %s", self._fanout)
            return
        if self.prepare is not None:
            await self.prepare(wire)
        self.listeners.dispatch_all([wire.to(u) for u in here])

    def _handle(self, message: dict[str, Any]) -> str:
        """Dispatch one pub/sub message; returns its type."""
        kind, channel = message["type"], message["channel"].decode()
        if kind == "subscribe":
            for waiter in self._pending.pop(channel, []):
                if not waiter.done():
                    waiter.set_result(None)
        elif kind == "message" and channel.startswith(self._prefix):
            try:
                event = decode_event(message["data"]).to(channel[len(self._prefix) :])
            except msgspec.DecodeError:
                log.error("realtime: undecodable event on %s", channel)
            else:
                self.listeners.dispatch(event)
        return str(kind)

    def _resolve_all(self) -> None:
        """After a reconnect every listener resyncs anyway: nobody waits for an old ack."""
        pending, self._pending = self._pending, {}
        for waiters in pending.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._resolve_all()
