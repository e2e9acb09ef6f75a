"""Clients of a Sentinel-managed Redis primary (``redis+sentinel://``): redis-py's Sentinel
support, with the properties of notifier's single-server client and three additions.

Kept from ``redis_client.single_client``: a bounded pool whose callers wait (up to
``pool_timeout``) for a free connection, then get ``Busy``; commands packed by hiredis; a
command retried once on a dead connection. After a failover every pooled connection is dead
or points at a demoted node: a dead one fails with a connection error, and a write on a
demoted one fails with ``READONLY``, which redis-py's ``SentinelManagedConnection`` turns into
a connection error (also from inside a script, and in pipelines); either way the one retry
runs on a fresh connection, to the primary the Sentinels name then.

Added:

- **Following the primary.** A manual failover (``SENTINEL FAILOVER``) leaves the old primary
  up and writable until the Sentinels reconfigure it, 10-20 s later; until then redis-py
  would go on using the connections it holds to it (stale reads, and writes that vanish when
  the node is demoted). Here a pool asks the Sentinels which node is the primary at most once
  a second (``FOLLOW_S``), when a connection is taken, and never hands out a connection to
  another node: the window where writes can land on a former primary is about a second.
- **Waiting for replicas** (``ReplicaWait``; ``NOTIFIER_REDIS_MIN_REPLICAS``, off by
  default). Replication is asynchronous: a write the primary acknowledged can be missing from
  the replica that the Sentinels promote. With ``min_replicas = N`` every write (a pipeline
  holding one, or a single command that is not a known read) is followed, on the same
  connection and in the same round trip, by ``WAIT N timeout``; fewer than N confirmations
  raise ``NotReplicated``, a transient error (HTTP 503; a fanout job waits and runs again).
  So what notifier acknowledges (an accepted activity, its fanout job, the feed writes a job
  makes before it is acked, a mark) is on N replicas. ``WAIT`` does not make Redis strongly
  consistent: a write that timed out may still be on the replica (writes are idempotent, so
  the caller's retry is harmless), and a promoted replica that lacked it would still lose it
  (the Sentinels promote the replica with the most data).
- **Refusals as outages.** ``NOREPLICAS`` (the server's own ``min-replicas-to-write``) is
  raised as ``NotReplicated``, not as a response error (which would be an HTTP 500).

A script call counts as a write unless its script declares ``#!lua flags=no-writes`` (Redis
7's own declaration, which Redis enforces); a command outside ``READS`` counts as a write.
Waiting after a read costs nothing while the replicas keep up (``WAIT`` returns at once for
a connection whose writes they have), but with fewer than N replicas online it fails too.

dramatiq's synchronous client follows the primary the same way; it does not wait for
replicas (see docs/deployment-sentinel.md for what that leaves).

The Sentinels' own password, when they have one, comes from
``NOTIFIER_REDIS_SENTINEL_PASSWORD`` (the URL's is the data nodes').

Coupling (checked with redis-py 8.1.0): ``SentinelRedis.execute_command`` and
``SentinelPipeline.execute`` wrap the public methods; the pools extend redis-py's
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
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis
import redis.retry
import redis.sentinel
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import (
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ResponseError

from notifier.errors import ConfigError
from notifier.storage.redis_client import WaitingPool, _HiredisPacking
from notifier.storage.redis_urls import RedisTarget

log = logging.getLogger(__name__)

SENTINEL_PASSWORD = "NOTIFIER_REDIS_SENTINEL_PASSWORD"
MIN_REPLICAS = "NOTIFIER_REDIS_MIN_REPLICAS"
REPLICA_TIMEOUT_MS = "NOTIFIER_REDIS_REPLICA_TIMEOUT_MS"

#: Seconds between two questions to the Sentinels about which node is the primary (per pool).
FOLLOW_S = 1.0
#: Seconds to connect to a Sentinel or a data node, and for a Sentinel to answer: a node whose
#: machine vanished answers nothing, and the Sentinels promote another meanwhile.
CONNECT_TIMEOUT_S = 2.0

#: Commands that never write, among those notifier's clients send: no ``WAIT`` after them.
READS = frozenset({
    "GET", "MGET", "EXISTS", "TYPE", "TTL", "PTTL", "STRLEN", "HGET", "HMGET", "HGETALL",
    "HLEN", "HEXISTS", "SMEMBERS", "SISMEMBER", "SCARD", "ZRANGE", "ZRANGEBYLEX",
    "ZREVRANGEBYLEX", "ZRANGEBYSCORE", "ZREVRANGEBYSCORE", "ZREVRANGE", "ZSCORE", "ZMSCORE",
    "ZCARD", "ZCOUNT", "ZLEXCOUNT", "ZRANK", "ZREVRANK", "LLEN", "LRANGE", "LINDEX", "SCAN",
    "SSCAN", "HSCAN", "ZSCAN", "KEYS", "DBSIZE", "PING", "ECHO", "TIME", "INFO", "ROLE",
    "CONFIG", "CLIENT", "COMMAND", "SCRIPT", "MEMORY", "OBJECT", "SLOWLOG", "XLEN", "XRANGE",
    "EVALSHA_RO", "EVAL_RO", "FCALL_RO", "WAIT", "HELLO", "AUTH", "SELECT",
})  # fmt: skip


class NotReplicated(redis.TimeoutError):
    """A write was not confirmed by as many replicas as ``NOTIFIER_REDIS_MIN_REPLICAS`` asks
    (``WAIT`` timed out), or the server refused it for want of replicas (``NOREPLICAS``). It
    may or may not survive a failover: the caller must not acknowledge it, and may retry
    (writes are idempotent). A timeout, so redis-py's one retry on a dead connection does not
    repeat it; an outage to the web layer (503) and the fanout jobs (wait, run again)."""


@dataclass(frozen=True)
class ReplicaWait:
    """How many replicas must confirm each write, and for how long to wait for them."""

    replicas: int = 0
    timeout_ms: int = 1000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ReplicaWait:
        """``NOTIFIER_REDIS_MIN_REPLICAS`` (0-100, default 0: no waiting) and
        ``NOTIFIER_REDIS_REPLICA_TIMEOUT_MS`` (1-60000, default 1000); ConfigError if bad."""
        env = os.environ if env is None else env
        return cls(
            _number(env, MIN_REPLICAS, cls.replicas, 0, 100),
            _number(env, REPLICA_TIMEOUT_MS, cls.timeout_ms, 1, 60_000),
        )

    def after(self, commands: Sequence[Sequence[Any]], reading_scripts: set[str]) -> bool:
        """Whether ``commands`` (each a command's arguments) need a ``WAIT`` after them."""
        return self.replicas > 0 and any(_writes(c, reading_scripts) for c in commands)

    def command(self) -> tuple[str, int, int]:
        return ("WAIT", self.replicas, self.timeout_ms)


def _number(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = env.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {text!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be {low}-{high}, got {value}")
    return value


def _name(word: Any) -> str:
    text = word.decode() if isinstance(word, bytes) else str(word)
    return text.split(" ", 1)[0].upper()  # "SCRIPT LOAD" is one argument in redis-py


def _writes(args: Sequence[Any], reading_scripts: set[str]) -> bool:
    name = _name(args[0])
    if name == "EVALSHA" and len(args) > 1:
        sha = args[1].decode() if isinstance(args[1], bytes) else str(args[1])
        return sha not in reading_scripts
    return name == "EVAL" or name not in READS


def declares_no_writes(script: str | bytes) -> bool:
    """Whether a Lua script's first line is a shebang with the ``no-writes`` flag (Redis >=
    7.0 then refuses any write in it)."""
    text = script.decode() if isinstance(script, bytes) else script
    words = text.split("\n", 1)[0].split()
    if not words or not words[0].startswith("#!"):
        return False
    flags = [w.removeprefix("flags=") for w in words[1:] if w.startswith("flags=")]
    return any("no-writes" in f.split(",") for f in flags)


def _refusal(error: ResponseError) -> NotReplicated | None:
    """``NOREPLICAS`` (the server's ``min-replicas-to-write``) as ``NotReplicated``."""
    if str(error).startswith("NOREPLICAS"):
        return NotReplicated(f"the primary refused a write: {error}")
    return None


# -- asyncio ---------------------------------------------------------------------------------
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


class SentinelRedis(aioredis.Redis):
    """The client of a Sentinel-managed primary: ``WAIT`` after writes when
    ``replica_wait`` asks for replicas, ``NOREPLICAS`` raised as ``NotReplicated``, and its
    Sentinel connections closed with it."""

    replica_wait: ReplicaWait = ReplicaWait()
    reading_scripts: set[str]
    """SHA1s of the scripts registered here that declare ``no-writes``."""

    def register_script(self, script: Any) -> Any:
        registered = super().register_script(script)
        if declares_no_writes(script):
            self.reading_scripts.add(registered.sha)
        return registered

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Pipeline:
        if transaction and self.replica_wait.replicas:
            # Inside MULTI, WAIT does not wait: it would have to follow the EXEC.
            raise ValueError("a Sentinel client that waits for replicas takes no transactions")
        pipe = SentinelPipeline(self.connection_pool, self.response_callbacks, transaction,
                                shard_hint)  # fmt: skip
        pipe.owner = self
        return pipe

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if self.replica_wait.after([args], self.reading_scripts):
            # Through a pipeline: the command and its WAIT on one connection, one round trip.
            async with self.pipeline(transaction=False) as pipe:
                pipe.execute_command(*args, **options)
                (reply,) = await pipe.execute()
            return reply
        try:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        except ResponseError as exc:
            refused = _refusal(exc)
            if refused is None:
                raise
            raise refused from exc

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if close_connection_pool is None:
            close_connection_pool = self.auto_close_connection_pool
        pool = self.connection_pool
        if close_connection_pool and isinstance(pool, SentinelConnectionPool):
            await pool.sentinel_manager.aclose()


class SentinelPipeline(Pipeline):
    """A pipeline of a ``SentinelRedis``: one holding a write ends with ``WAIT``."""

    owner: SentinelRedis

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        stack = list(self.command_stack)
        wait = self.owner.replica_wait
        waits = wait.after([args for args, _ in stack], self.owner.reading_scripts)
        if waits:
            self.execute_command(*wait.command())
        replies: list[Any] = await super().execute(raise_on_error=False)
        acked = replies.pop() if waits else None
        for reply in replies:
            refused = _refusal(reply) if isinstance(reply, ResponseError) else None
            if refused is not None:
                raise refused from reply
        if raise_on_error:
            self.raise_first_error(stack, replies)  # as redis-py's own pipeline does
        if waits:
            self._check(acked, wait)
        return replies

    def _check(self, acked: Any, wait: ReplicaWait) -> None:
        if isinstance(acked, int) and acked >= wait.replicas:
            return
        pool = self.connection_pool
        if isinstance(pool, WaitingSentinelPool):
            pool.follow_soon()
        if isinstance(acked, ResponseError):  # "WAIT cannot be used with replica instances"
            raise redis.ConnectionError(f"the primary became a replica: {acked}")
        raise NotReplicated(
            f"{acked} of {wait.replicas} replicas confirmed a write within {wait.timeout_ms} ms"
        )


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
    env: Mapping[str, str] | None = None,
    **options: Any,
) -> SentinelRedis:
    """A client of the primary the Sentinels of ``target`` name for ``target.service``: at
    most ``pool_size`` connections (a command waits ``pool_timeout`` seconds for one, then
    fails with ``Busy``), hiredis packing, ``options`` as for one server (``retry``…), and
    ``WAIT`` after writes as ``env`` (the environment) says (``ReplicaWait.from_env``)."""
    env = os.environ if env is None else env
    wait = ReplicaWait.from_env(env)
    sentinel_options = _sentinels(target, env)
    sentinel_options["retry"] = Retry(NoBackoff(), 0)  # the next Sentinel is the retry
    manager = Sentinel(list(target.hosts), sentinel_kwargs=sentinel_options)  # type: ignore[no-untyped-call]
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
    client.reading_scripts = set()
    return client


# -- synchronous (dramatiq's broker) -----------------------------------------------------------
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
    manager = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
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
