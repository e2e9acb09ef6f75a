"""The asyncio Redis Cluster client notifier uses: redis-py's ``RedisCluster``, with the same
pool behaviour and packing as the single-server client (``redis_client``).

redis-py's cluster client raises ``MaxConnectionsError`` at once when a node's connections
are all in use: under a burst of readers that is a 503 while every Redis is healthy, the
failure ``WaitingPool`` removed for one server. Here at most ``pool_size`` commands (or
pipelines) of one client run at a time; the others wait up to ``pool_timeout`` seconds, then
fail with ``Busy``. A command or pipeline holds at most one connection per node, so no node
ever sees more than ``pool_size`` connections from one process.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.connection import SSLConnection
from redis.exceptions import MaxConnectionsError

from notifier import metrics
from notifier.errors import Busy
from notifier.storage.redis_urls import RedisTarget


class _Gate:
    """At most ``size`` holders at once; a waiter past ``timeout`` seconds gets ``Busy``.

    Made lazily: an asyncio semaphore belongs to the loop it was first used on."""

    def __init__(self, size: int, timeout: float) -> None:
        self.size = size
        self.timeout = timeout
        self._semaphore: asyncio.Semaphore | None = None

    async def __aenter__(self) -> None:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.size)
        if self._semaphore.locked():
            try:
                async with asyncio.timeout(self.timeout):
                    await self._semaphore.acquire()
            except TimeoutError:
                metrics.POOL_TIMEOUTS.inc()
                raise Busy(
                    f"all {self.size} Redis Cluster connections busy for {self.timeout:g}s"
                ) from None
            return
        await self._semaphore.acquire()

    async def __aexit__(self, *exc: object) -> None:
        assert self._semaphore is not None
        self._semaphore.release()


class WaitingClusterPipeline(ClusterPipeline):
    """A cluster pipeline that waits for its client's gate before it runs."""

    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        client = self.cluster_client
        assert isinstance(client, WaitingCluster)
        await client.ready()
        async with client.gate:
            try:
                return await super().execute(raise_on_error, allow_redirections)
            except MaxConnectionsError as exc:  # another client sharing the nodes
                raise Busy("Redis Cluster connections exhausted") from exc


class WaitingCluster(RedisCluster):
    """``RedisCluster`` whose commands wait for a free slot of a bounded gate."""

    gate: _Gate
    _started: asyncio.Lock | None = None
    _is_ready: bool = False

    async def ready(self) -> None:
        """Discover the cluster once, before the first command: redis-py 8 lets concurrent
        first commands of a fresh client race over half-made connections (AttributeError
        on a None writer, about one run in five with 40 at once); one ``initialize`` first
        never does."""
        if self._is_ready:
            return
        if self._started is None:
            self._started = asyncio.Lock()
        async with self._started:
            if not self._is_ready:
                await self.initialize()
                self._is_ready = True

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        await self.ready()
        async with self.gate:
            try:
                return await super().execute_command(*args, **kwargs)
            except MaxConnectionsError as exc:
                raise Busy("Redis Cluster connections exhausted") from exc

    def pipeline(
        self, transaction: Any | None = None, shard_hint: Any | None = None
    ) -> ClusterPipeline:
        if shard_hint:
            raise ValueError("shard_hint is not supported in cluster mode")
        return WaitingClusterPipeline(self, transaction)  # type: ignore[abstract]


def cluster_client(
    target: RedisTarget, *, pool_size: int, pool_timeout: float, **options: Any
) -> WaitingCluster:
    """A client of the cluster ``target`` names (``redis+cluster://h:p,h:p``)."""
    from notifier.storage.redis_client import _DRIVER, HiredisConnection, HiredisSSLConnection

    options.pop("socket_keepalive", None)  # the cluster client always keeps alive
    client = WaitingCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.hosts],
        username=target.username,
        password=target.password,
        ssl=target.tls,
        # One connection per node for each of the gate's holders, and none spare: the gate
        # is what bounds them.
        max_connections=pool_size,
        **{**_DRIVER, **options},
    )
    client.gate = _Gate(pool_size, pool_timeout)
    # Every node found at discovery is made from these settings: pack with hiredis.
    kwargs = client.nodes_manager.connection_kwargs
    packing = HiredisSSLConnection if kwargs.get("connection_class") is SSLConnection else None
    kwargs["connection_class"] = packing or HiredisConnection
    return client
