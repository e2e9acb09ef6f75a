"""The per-user connection cap (``max_per_user``): in one process, or across every web process.

``LocalCap`` counts in the process: the memory backend's cap, which runs in one process.

``SharedCap`` counts in Redis, so the cap holds however many web processes a user's
connections are spread over. Each user has one sorted set, ``<prefix>:conn:{<user>}``: a
member per open connection (``<process id>:<n>``), scored by the time (ms, Redis's clock)
when that slot expires unless refreshed. Admission is one script call on that one key: drop
the expired slots, count, and take a slot or refuse. Every ``slot_ttl / 3`` seconds each
process pushes the expiry of the slots it holds ``slot_ttl`` ahead, all of them in one
pipeline (a script call per user). A closed connection gives its slot back at once; a
process that dies without closing (SIGKILL, power loss) stops refreshing, and its slots
drop out ``slot_ttl`` seconds later at most. The refresh re-adds a slot Redis lost (a
restart without persistence, a failover), so counts come back within one refresh.

Every command names one key, so the cap runs on a Redis Cluster as on one server. When
Redis fails or is slow, a connection is admitted without it (notifier/failopen.py): its slot
is held locally and written by the next refresh that reaches Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import uuid
from dataclasses import dataclass
from typing import Protocol

from notifier.failopen import FailOpen
from notifier.storage.redis_client import AnyRedis

log = logging.getLogger(__name__)

#: Users per pipeline of a refresh (each a script call naming that user's slots here).
REFRESH_CHUNK = 500

_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

_EXPIRE_WITH_LAST = """
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then redis.call('PEXPIREAT', KEYS[1], last[2]) end
"""

#: KEYS[1]: one user's slots. ARGV: connection id, cap, slot ttl (ms). 1: admitted, 0: not.
ADMIT = f"""{_NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
{_EXPIRE_WITH_LAST}
return 1
"""

#: KEYS[1]: one user's slots. ARGV: slot ttl (ms), then the ids of the slots to keep.
REFRESH = f"""{_NOW}
local expiry = now + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], expiry, ARGV[i]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
{_EXPIRE_WITH_LAST}
return #ARGV - 1
"""


@dataclass(frozen=True)
class Slot:
    """One admitted connection's place in its user's count."""

    user: str
    id: str


class ConnectionCap(Protocol):
    """Admits a user's connections up to ``max_per_user`` at once."""

    max_per_user: int

    async def admit(self, user: str) -> Slot | None:
        """A slot for a new connection of ``user``, or None if they hold the most already."""

    async def release(self, slot: Slot) -> None:
        """Give ``slot`` back (once, when its connection ends)."""

    async def close(self) -> None:
        """Give back every slot still held and stop (the process is stopping)."""


class LocalCap:
    """The cap counted in this process."""

    def __init__(self, max_per_user: int) -> None:
        self.max_per_user = max_per_user
        self.counts: dict[str, int] = {}

    async def admit(self, user: str) -> Slot | None:
        count = self.counts.get(user, 0)
        if count >= self.max_per_user:
            return None
        self.counts[user] = count + 1
        return Slot(user, "")

    async def release(self, slot: Slot) -> None:
        count = self.counts.get(slot.user, 0) - 1
        if count > 0:
            self.counts[slot.user] = count
        else:
            self.counts.pop(slot.user, None)

    async def close(self) -> None:
        self.counts.clear()


class SharedCap:
    """The cap counted in Redis, across every process that shares it (module docstring)."""

    def __init__(
        self,
        client: AnyRedis,
        *,
        prefix: str,
        max_per_user: int,
        slot_ttl: float,
        guard: FailOpen | None = None,
    ) -> None:
        self.max_per_user = max_per_user
        self.slot_ttl = slot_ttl
        self.guard = guard or FailOpen("connection cap")
        self.guard.client = client
        self._client = client
        self._prefix = prefix
        self._admit = client.register_script(ADMIT)
        self._process = uuid.uuid4().hex[:12]
        self._numbers = itertools.count()
        self.held: dict[str, set[str]] = {}
        """Slot ids held in this process, by user: what a refresh keeps alive."""
        self._refreshing: dict[str, asyncio.Future[None]] = {}
        self._refresher: asyncio.Task[None] | None = None
        self._batch: tuple[asyncio.Future[None], list[Slot]] | None = None
        """Slots released since the last batch left, and the future that batch sets."""
        self._giver: asyncio.Task[None] | None = None

    def key(self, user: str) -> str:
        """The sorted set of ``user``'s slots."""
        return f"{self._prefix}:conn:{{{user}}}"

    @property
    def _ttl_ms(self) -> int:
        return max(1, round(self.slot_ttl * 1000))

    async def admit(self, user: str) -> Slot | None:
        slot = Slot(user, f"{self._process}:{next(self._numbers)}")
        admitted = await self.guard(
            lambda: self._admit(
                keys=[self.key(user)], args=[slot.id, self.max_per_user, self._ttl_ms]
            ),
            1,
        )
        if not admitted:
            return None
        # Held even when admitted without Redis: the next refresh writes it.
        self.held.setdefault(user, set()).add(slot.id)
        if self._refresher is None:
            self._refresher = asyncio.get_running_loop().create_task(self._refresh_forever())
        return slot

    async def release(self, slot: Slot) -> None:
        ids = self.held.get(slot.user)
        if ids is not None:
            ids.discard(slot.id)
            if not ids:
                del self.held[slot.user]
        # Released slots leave Redis in batches: a process that stops closes all its
        # connections at once, and one ZREM each would queue them behind its pool.
        if self._batch is None:
            self._batch = (asyncio.get_running_loop().create_future(), [])
        done, slots = self._batch
        slots.append(slot)
        if self._giver is None:
            self._giver = asyncio.get_running_loop().create_task(self._give_back())
        await asyncio.shield(done)

    async def _give_back(self) -> None:
        """Remove released slots from Redis, a pipeline per batch: the releases that come
        while one batch is on its way make the next."""
        try:
            while self._batch is not None:
                done, slots = self._batch
                self._batch = None
                # A refresh on its way to Redis would write these slots back after their
                # ZREM: let it land first (the guard bounds it).
                refreshes = {self._refreshing[s.id] for s in slots if s.id in self._refreshing}
                await asyncio.gather(*refreshes)
                try:
                    await self.guard(functools.partial(self._remove, slots), None)
                finally:
                    done.set_result(None)
        except Exception:
            log.exception("connection cap: released slots not given back")
            raise
        finally:
            self._giver = None
            if self._batch is not None:  # only after an error: its slots expire instead
                self._batch[0].set_result(None)
                self._batch = None

    async def _remove(self, slots: list[Slot]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for slot in slots:
            pipe.zrem(self.key(slot.user), slot.id)
        await pipe.execute()

    async def refresh(self) -> None:
        """Push every held slot's expiry ``slot_ttl`` ahead: one pipeline per
        ``REFRESH_CHUNK`` users, a script call per user."""
        users = [(user, sorted(ids)) for user, ids in self.held.items()]
        loop = asyncio.get_running_loop()
        for start in range(0, len(users), REFRESH_CHUNK):
            chunk = users[start : start + REFRESH_CHUNK]
            landed: asyncio.Future[None] = loop.create_future()
            for _, ids in chunk:
                self._refreshing.update(dict.fromkeys(ids, landed))
            try:
                await self.guard(functools.partial(self._send_refresh, chunk), None)
            finally:
                for _, ids in chunk:
                    for slot_id in ids:
                        if self._refreshing.get(slot_id) is landed:
                            del self._refreshing[slot_id]
                landed.set_result(None)

    async def _send_refresh(self, chunk: list[tuple[str, list[str]]]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for user, ids in chunk:
            pipe.eval(REFRESH, 1, self.key(user), self._ttl_ms, *ids)
        await pipe.execute()

    async def _refresh_forever(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.slot_ttl / 3)
                await self.refresh()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("connection cap: the refresh of held slots stopped")
            raise

    async def close(self) -> None:
        if self._giver is not None:
            await asyncio.shield(self._giver)
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        if not self.held:
            return
        held = [Slot(user, slot_id) for user, ids in self.held.items() for slot_id in ids]
        self.held.clear()
        await self.guard(functools.partial(self._remove, held), None)
