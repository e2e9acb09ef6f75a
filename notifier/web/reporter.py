"""A web process on the operators' board (notifier/board.py): its snapshot, written every
``INTERVAL`` seconds, and the board as the operator page reads it.

The snapshot is what the process alone knows: its open connections and users, what it has
pushed and refused, its HTTP traffic, and the connections of the users an operator is
inspecting. Reading the board gives every live process's snapshot, this one's fresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

import redis.asyncio as aioredis

from notifier import board, metrics
from notifier.fanout.broker import PriorityRedisBroker
from notifier.web.services import Services

log = logging.getLogger(__name__)


class WebReporter:
    """This process's side of the board; ``start`` in the app's lifespan, ``close`` at its end."""

    def __init__(self, services: Services) -> None:
        self.services = services
        broker = getattr(services.fanout.dispatcher, "broker", None)
        self.broker = broker if isinstance(broker, PriorityRedisBroker) else None
        self.keys = board.keys(services.fanout.settings.namespace)
        self.local_watch: dict[str, float] = {}
        """Users inspected through this process, and until when (the board's watch set too)."""
        self._task: asyncio.Task[None] | None = None

    @property
    def shared(self) -> bool:
        """Whether other processes report here (a Redis broker), or this one is alone."""
        return self.broker is not None

    def _redis(self) -> aioredis.Redis:
        assert isinstance(self.broker, PriorityRedisBroker)
        client: aioredis.Redis = self.broker._async_client()[0]
        return client

    def start(self) -> None:
        if self.shared and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            with contextlib.suppress(Exception):
                await self._redis().hdel(self.keys.procs, board.PROCESS_ID)

    async def _run(self) -> None:
        while True:
            try:
                await self.report()
            except Exception as exc:  # the broker is down: the next beat tries again
                log.debug("board report failed: %r", exc)
            await asyncio.sleep(board.INTERVAL)

    async def report(self) -> None:
        client = self._redis()
        now = time.time()
        members = await client.zrangebyscore(self.keys.watch, now, "+inf")
        watched = [u.decode() if isinstance(u, bytes) else str(u) for u in members]
        snapshot = board.envelope("web", self.snapshot(watched))
        async with client.pipeline(transaction=False) as pipe:
            pipe.hset(self.keys.procs, board.PROCESS_ID, json.dumps(snapshot))
            board.push_errors(pipe, self.keys)
            await pipe.execute()

    def snapshot(self, watched: list[str]) -> dict[str, Any]:
        realtime = self.services.realtime
        requests = errors = 0
        for family in metrics.HTTP_REQUESTS.collect():
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    requests += int(sample.value)
                    if sample.labels.get("status", "").startswith("5"):
                        errors += int(sample.value)
        return {
            "connections": realtime.open_count,
            "users": len(realtime.connections),
            "opened": realtime.opened,
            "closed": {str(k): v for k, v in sorted(realtime.closed_by_code.items())},
            "frames_sent": realtime.frames_sent,
            "slow_dropped": realtime.closed_by_code.get(4429, 0),
            "http_requests": requests,
            "http_5xx": errors,
            "watched": {user: self.connections_of(user) for user in watched},
        }

    def connections_of(self, user: str) -> list[dict[str, Any]]:
        """``user``'s connections here, as the inspector shows them."""
        return [
            {
                "process": board.PROCESS_ID,
                "opened_at": c.opened_at,
                "feeds": sorted(c.views),
                "waiting": len(c.queue or ()),
                "recent": [{"time": t, "frame": text} for t, text in c.recent],
            }
            for c in self.services.realtime.connections_of(user)
        ]

    # -- reading ---------------------------------------------------------------------------
    async def processes(self) -> list[dict[str, Any]]:
        """Every live process's snapshot (this one's made now)."""
        mine = board.envelope("web", self.snapshot(list(self._watching())))
        if not self.shared:
            return [mine]
        client = self._redis()
        found, forget = board.live(await client.hgetall(self.keys.procs), time.time())
        if forget:
            await client.hdel(self.keys.procs, *forget)
        return [mine] + [p for p in found if p.get("id") != board.PROCESS_ID]

    async def errors(self, limit: int = 50) -> list[dict[str, Any]]:
        """Recent warnings and errors of every process, newest first."""
        if not self.shared:
            return board.local_errors()[:limit]
        # What this process has not written yet goes first, so the page never lags it.
        async with self._redis().pipeline(transaction=False) as pipe:
            board.push_errors(pipe, self.keys)
            pipe.lrange(self.keys.errors, 0, limit - 1)
            replies = await pipe.execute()
        return [json.loads(raw) for raw in replies[-1]]

    async def watch(self, user: str) -> None:
        """Ask every process to report ``user``'s connections for ``WATCH_SECONDS``."""
        until = time.time() + board.WATCH_SECONDS
        self.local_watch[user] = until
        if self.shared:
            client = self._redis()
            async with client.pipeline(transaction=False) as pipe:
                pipe.zadd(self.keys.watch, {user: until})
                pipe.zremrangebyscore(self.keys.watch, "-inf", time.time())
                await pipe.execute()

    def _watching(self) -> list[str]:
        now = time.time()
        for user in [u for u, until in self.local_watch.items() if until < now]:
            del self.local_watch[user]
        return list(self.local_watch)

    async def connections(self, user: str) -> list[dict[str, Any]]:
        """``user``'s connections in every process: this one's now, the others' as of their
        last snapshot (at most ``INTERVAL`` old once the watch has reached them)."""
        found = self.connections_of(user)
        for snapshot in await self.processes():
            if snapshot.get("id") != board.PROCESS_ID:
                found += snapshot.get("watched", {}).get(user, [])
        return found
