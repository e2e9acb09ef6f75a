"""Clients of a Sentinel-managed Redis primary (``redis+sentinel://``): redis-py's Sentinel
support, with the properties of notifier's single-server client and two additions.

Kept from ``redis_client.single_client``: a bounded pool whose callers wait (up to
``pool_timeout``) for a free connection, then get ``Busy``; commands packed by hiredis; a
command retried once on a dead connection. After a failover every pooled connection is dead
or points at a demoted node: a dead one fails with a connection error, and a write on a
demoted one fails with ``READONLY``, which redis-py's ``SentinelManagedConnection`` turns into
a connection error (also from inside a script, and in pipelines); either way the one retry
runs on a fresh connection, to the primary the Sentinels name then.

Added:

- **Following the primary.** A manual failover (``SENTINEL FAILOVER``) leaves the old primary
  up and writable until the Sentinels reconfigure it, ~10 s later. Meanwhile redis-py goes on
  using the connections it holds to it (stale reads, and writes that vanish when it is
  demoted), and believes the first Sentinel to answer, whose reply names the old primary for
  a while. Here a pool asks every Sentinel and believes the newest configuration
  (``NewestSentinel``), at most once a second (``FOLLOW_S``) when a connection is taken, and
  never hands out a connection to another node. Writes can still reach the old primary until
  the Sentinels agree and the pool asks again (1-2 s here); only waiting for replicas makes
  that window harmless.
- **Waiting for replicas** and **refusals as outages**: the client is a ``ReplicatedRedis``
  (redis_replicas.py), which ``WAIT``s after writes when ``NOTIFIER_REDIS_MIN_REPLICAS`` asks.

dramatiq's synchronous client follows the primary the same way; it does not wait for
replicas (docs/deployment.md says what that leaves).

The Sentinels' own password, when they have one, comes from
``NOTIFIER_REDIS_SENTINEL_PASSWORD`` (the URL's is the data nodes').

Coupling (checked with redis-py 8.1.0): ``NewestSentinel`` replaces ``discover_master``,
which the pools call; the pools extend redis-py's
``SentinelConnectionPool`` and read its ``master_address``, and the asyncio one mixes in
``WaitingPool`` (``BlockingConnectionPool``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import redis
import redis.asyncio as aioredis
import redis.retry
import redis.sentinel
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff

from notifier.storage.redis_client import WaitingPool, _HiredisPacking
from notifier.storage.redis_replicas import ReplicatedRedis, ReplicaWait
from notifier.storage.redis_urls import RedisTarget

log = logging.getLogger(__name__)

SENTINEL_PASSWORD = "NOTIFIER_REDIS_SENTINEL_PASSWORD"

#: Seconds between two questions to the Sentinels about which node is the primary (per pool).
FOLLOW_S = 1.0
#: Seconds to connect to a Sentinel or a data node, and for a Sentinel to answer: a node whose
#: machine vanished answers nothing, and the Sentinels promote another meanwhile.
CONNECT_TIMEOUT_S = 2.0


def _newest(service: str, answers: Sequence[Any], missing: type[Exception]) -> tuple[str, int]:
    """The primary of the newest configuration (highest epoch) among the Sentinels' answers:
    each the ``SENTINEL MASTER`` state and the ``GET-MASTER-ADDR-BY-NAME`` address one
    Sentinel gave, or the error asking it. ``missing`` when none names a primary that is up.

    The address, not the state's: during a failover the Sentinel running it names the
    promoted replica there (once it took the primary's role, with the new epoch), while its
    state still describes the old primary until the failover ends, seconds later."""
    newest: tuple[int, tuple[str, int]] | None = None
    errors = []
    for answer in answers:
        if isinstance(answer, BaseException):
            if not isinstance(answer, redis.RedisError):
                raise answer
            errors.append(repr(answer))
            continue
        state, address = answer
        if not address:
            continue
        host = address[0].decode() if isinstance(address[0], bytes) else str(address[0])
        named = (host, int(address[1]))
        promoted = named != (state["ip"], state["port"])
        if not promoted and (not state["is_master"] or state["is_sdown"] or state["is_odown"]):
            continue  # a primary this Sentinel sees down
        if newest is None or state["config-epoch"] > newest[0]:
            newest = (state["config-epoch"], named)
    if newest is None:
        raise missing(f"No master found for {service!r}: {', '.join(errors) or 'none up'}")
    return newest[1]


# -- asyncio ---------------------------------------------------------------------------------
class NewestSentinel(Sentinel):
    """redis-py's Sentinel manager, asking every Sentinel which node is the primary and
    believing the newest configuration (``_newest``), not the first Sentinel to answer: for
    seconds after a failover the Sentinels name the old primary (which a manual failover
    leaves up and writable) in the reply redis-py reads, and the ones that did not run the
    failover name it everywhere."""

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        answers = await asyncio.gather(
            *(_ask(sentinel, service_name) for sentinel in self.sentinels),
            return_exceptions=True,
        )
        return _newest(service_name, answers, MasterNotFoundError)


async def _ask(sentinel: aioredis.Redis, service: str) -> tuple[Any, Any]:
    async with sentinel.pipeline(transaction=False) as pipe:
        pipe.sentinel_master(service)
        pipe.sentinel_get_master_addr_by_name(service)
        state, address = await pipe.execute()
    return state, address


class HiredisSentinelConnection(_HiredisPacking, SentinelManagedConnection):
    """A Sentinel-managed TCP connection, packed by hiredis."""


class HiredisSentinelSSLConnection(_HiredisPacking, SentinelManagedSSLConnection):
    """A Sentinel-managed TLS connection (``rediss+sentinel://``), packed by hiredis."""


class WaitingSentinelPool(SentinelConnectionPool, WaitingPool):
    """redis-py's Sentinel pool, bounded and waiting like ``WaitingPool``, that hands out only
    connections to the node the Sentinels named primary at most ``FOLLOW_S`` ago."""

    _asked_at = 0.0
    _asking: asyncio.Lock | None = None

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        await self._follow()
        connection = await super().get_connection(*args, **kwargs)
        primary = self.master_address
        if primary is not None and (connection.host, connection.port) != tuple(primary):
            # Connected to a former primary: connect again, to the one named now.
            try:
                await connection.disconnect()
                await connection.connect()
            except BaseException:
                await self.release(connection)
                raise
        return connection

    def follow_soon(self) -> None:
        """Ask the Sentinels again when the next connection is taken (a write just went
        unconfirmed: this node may no longer be the primary)."""
        self._asked_at = 0.0

    async def _follow(self) -> None:
        if time.monotonic() - self._asked_at < FOLLOW_S:
            return
        if self._asking is None:
            self._asking = asyncio.Lock()
        # Callers arriving while one asks wait for its answer: none may take a connection
        # to the old primary meanwhile.
        async with self._asking:
            if time.monotonic() - self._asked_at < FOLLOW_S:
                return
            before = self.master_address
            try:
                # Disconnects the idle connections when the primary changed.
                await self.get_master_address()  # type: ignore[no-untyped-call]
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                # The Sentinels cannot say right now: commands go on, their errors tell.
                log.debug("sentinel: no answer on %s's primary: %r", self.service_name, exc)
            finally:
                self._asked_at = time.monotonic()
        if before is not None and self.master_address != before:
            log.warning("sentinel: %s's primary is now %s", self.service_name, self.master_address)


class SentinelRedis(ReplicatedRedis):
    """The client of a Sentinel-managed primary (``ReplicatedRedis``), closing its Sentinel
    connections with itself."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if close_connection_pool is None:
            close_connection_pool = self.auto_close_connection_pool
        pool = self.connection_pool
        if close_connection_pool and isinstance(pool, SentinelConnectionPool):
            await pool.sentinel_manager.aclose()


def _sentinels(target: RedisTarget, env: Mapping[str, str]) -> dict[str, Any]:
    """How to talk to the Sentinels themselves: their password, TLS as the data nodes, short
    timeouts (an unreachable Sentinel is skipped for the next)."""
    options: dict[str, Any] = {
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_timeout": CONNECT_TIMEOUT_S,
        "ssl": target.tls,
    }
    password = env.get(SENTINEL_PASSWORD)
    if password:
        options["password"] = password
    return options


def _nodes(target: RedisTarget) -> dict[str, Any]:
    """What every data node connection takes from the URL."""
    return {
        "username": target.username,
        "password": target.password,
        "db": target.db,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
    }


def sentinel_client(
    target: RedisTarget,
    *,
    pool_size: int,
    pool_timeout: float,
    replicated: bool = False,
    env: Mapping[str, str] | None = None,
    **options: Any,
) -> SentinelRedis:
    """A client of the primary the Sentinels of ``target`` name for ``target.service``: at
    most ``pool_size`` connections (a command waits ``pool_timeout`` seconds for one, then
    fails with ``Busy``), hiredis packing, ``options`` as for one server (``retry``…). A
    ``replicated`` client (storage's, the broker's) ``WAIT``s after writes as ``env`` (the
    environment) says (``ReplicaWait.from_env``); the others (the realtime bus, the shared
    limits: nothing there outlives a failover) never wait."""
    env = os.environ if env is None else env
    wait = ReplicaWait.from_env(env) if replicated else ReplicaWait()
    sentinel_options = _sentinels(target, env)
    sentinel_options["retry"] = Retry(NoBackoff(), 0)  # the next Sentinel is the retry
    manager = NewestSentinel(list(target.hosts), sentinel_kwargs=sentinel_options)  # type: ignore[no-untyped-call]
    connection = HiredisSentinelSSLConnection if target.tls else HiredisSentinelConnection
    client = manager.master_for(
        target.service,
        redis_class=SentinelRedis,
        connection_pool_class=WaitingSentinelPool,
        connection_class=connection,
        max_connections=pool_size,
        timeout=pool_timeout,
        **{**_nodes(target), **options},
    )
    assert isinstance(client, SentinelRedis)
    client.replica_wait = wait
    return client


# -- synchronous (dramatiq's broker) -----------------------------------------------------------
class NewestSyncSentinel(redis.sentinel.Sentinel):
    """``NewestSentinel``, synchronous: the Sentinels asked one after the other."""

    def discover_master(self, service_name: str) -> tuple[str, int]:
        answers: list[Any] = []
        for sentinel in self.sentinels:
            try:
                with sentinel.pipeline(transaction=False) as pipe:
                    pipe.sentinel_master(service_name)
                    pipe.sentinel_get_master_addr_by_name(service_name)
                    answers.append(tuple(pipe.execute()))
            except redis.RedisError as exc:
                answers.append(exc)
        return _newest(service_name, answers, redis.sentinel.MasterNotFoundError)


class FollowingSentinelPool(redis.sentinel.SentinelConnectionPool):
    """redis-py's synchronous Sentinel pool, following the primary as ``WaitingSentinelPool``
    does (threads arriving while one asks the Sentinels wait for its answer)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._asked_at = 0.0
        self._asking = threading.Lock()

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if time.monotonic() - self._asked_at >= FOLLOW_S:
            with self._asking:
                if time.monotonic() - self._asked_at >= FOLLOW_S:
                    try:
                        self.get_master_address()  # type: ignore[no-untyped-call]
                    except (redis.ConnectionError, redis.TimeoutError) as exc:
                        log.debug("sentinel: no answer on %s's primary: %r", self.service_name,
                                  exc)  # fmt: skip
                    finally:
                        self._asked_at = time.monotonic()
        connection = super().get_connection(*args, **kwargs)
        primary = self.master_address
        if primary is not None and (connection.host, connection.port) != tuple(primary):
            try:
                connection.disconnect()  # type: ignore[no-untyped-call]
                connection.connect()  # type: ignore[no-untyped-call]
            except BaseException:
                self.release(connection)
                raise
        return connection


def sync_sentinel_client(
    target: RedisTarget, *, env: Mapping[str, str] | None = None, **options: Any
) -> redis.Redis:
    """A synchronous client of the primary ``target`` names (dramatiq's broker): one retry of
    a command whose connection was dead, as the asyncio client, unless ``options`` give one."""
    env = os.environ if env is None else env
    sentinel_options = _sentinels(target, env)
    sentinel_options["retry"] = redis.retry.Retry(NoBackoff(), 0)
    manager = NewestSyncSentinel(  # type: ignore[no-untyped-call]
        list(target.hosts), sentinel_kwargs=sentinel_options
    )
    options.setdefault(
        "retry",
        redis.retry.Retry(
            ExponentialWithJitterBackoff(base=0.01, cap=0.1),
            1,
            supported_errors=(redis.ConnectionError,),
        ),
    )
    client = manager.master_for(  # type: ignore[no-untyped-call]
        target.service,
        connection_pool_class=FollowingSentinelPool,
        **{**_nodes(target), **options},
    )
    assert isinstance(client, redis.Redis)
    return client
