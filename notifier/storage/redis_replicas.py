"""Writes that wait for replicas: ``WAIT`` after each write, on the same connection, in the
same round trip (``NOTIFIER_REDIS_MIN_REPLICAS``, off by default).

Redis replicates asynchronously: a write the primary acknowledged can be missing from the
replica promoted in its place. With ``min_replicas = N`` every write (a pipeline holding one,
or a single command that is not a known read) is followed by ``WAIT N timeout``; fewer than N
confirmations raise ``NotReplicated``, a transient error (HTTP 503; a fanout job waits and
runs again). So what notifier acknowledges (an accepted activity, its fanout job, the feed
writes a job makes before it is acked, a mark, a follow) is on N replicas first. ``WAIT`` is
not consensus: a write that timed out may still be on the replica (writes are idempotent, so
the caller's retry is harmless), and a promoted replica that lacked a confirmed write (when
N is below the number of replicas, and the ones that had it are gone too) would still lose it.

A script call counts as a write unless its script declares ``#!lua flags=no-writes`` (Redis
7's own declaration, which Redis enforces); a command outside ``READS`` counts as a write.
Waiting after a read costs nothing while the replicas keep up (``WAIT`` returns at once for a
connection whose writes they have), but with fewer than N replicas online it fails too.

``NOREPLICAS`` (the server's own ``min-replicas-to-write``) is raised as ``NotReplicated`` as
well, not as a response error (an HTTP 500).

Coupling (checked with redis-py 8.1.0): ``ReplicatedRedis.execute_command`` and
``ReplicatedPipeline.execute`` wrap redis-py's public methods; a single write goes through a
pipeline, so that it and its ``WAIT`` share a connection.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import ResponseError

from notifier.errors import ConfigError

MIN_REPLICAS = "NOTIFIER_REDIS_MIN_REPLICAS"
REPLICA_TIMEOUT_MS = "NOTIFIER_REDIS_REPLICA_TIMEOUT_MS"

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


class ReplicatedRedis(aioredis.Redis):
    """A client whose writes wait for ``replica_wait.replicas`` replicas (none by default),
    and whose ``NOREPLICAS`` refusals are raised as ``NotReplicated``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.replica_wait = ReplicaWait()
        self.reading_scripts: set[str] = set()
        """SHA1s of the scripts registered here that declare ``no-writes``."""

    def register_script(self, script: Any) -> Any:
        registered = super().register_script(script)
        if declares_no_writes(script):
            self.reading_scripts.add(registered.sha)
        return registered

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Pipeline:
        if transaction and self.replica_wait.replicas:
            # Inside MULTI, WAIT does not wait: it would have to follow the EXEC.
            raise ValueError("a client that waits for replicas takes no transactions")
        pipe = ReplicatedPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )
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


class ReplicatedPipeline(Pipeline):
    """A pipeline of a ``ReplicatedRedis``: one holding a write ends with ``WAIT``."""

    owner: ReplicatedRedis

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
        follow_soon = getattr(self.connection_pool, "follow_soon", None)
        if follow_soon is not None:  # a Sentinel pool: this node may not be the primary now
            follow_soon()
        if isinstance(acked, ResponseError):  # "WAIT cannot be used with replica instances"
            raise redis.ConnectionError(f"the primary became a replica: {acked}")
        raise NotReplicated(
            f"{acked} of {wait.replicas} replicas confirmed a write within {wait.timeout_ms} ms"
        )
