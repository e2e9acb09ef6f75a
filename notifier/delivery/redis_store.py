"""The delivery store on Redis: one hash per delivery, one Lua script per compare-and-set.

Key layout (``P`` is the storage's prefix; ``{…}`` a Redis Cluster hash tag, as in
``notifier.storage.redis``: every key of one scope lives in one slot, so one script may
touch them together; the prefix stays outside the tag, so every key starts with ``P:``):

- ``P:d:{<scope>}:r:<id>``  hash: a delivery (fields below); TTL ``retention``
- ``P:d:{<scope>}:m``       hash: the scope's marks, name → value; TTL ``retention``
- ``P:dl:{<target>}``       zset, all scores 0: ``<id>:<scope>`` members of the deliveries to
  ``target`` in lexical order, which is id order, which is time order: what ``list`` pages
- ``P:dl:{<target>}:age``   zset: the same members, scored by when (Redis time, ms) their
  delivery was last written: what trimming reads
- ``P:endpoints``           hash: endpoint id → endpoint (JSON, ``model.encode``)

A delivery's hash holds ``id``, ``channel``, ``target``, ``scope``, ``user``, ``payload``
(the bytes as given), ``status``, ``attempts``, ``last_error`` and its times as microseconds
since the epoch (``created_at``, ``lease_until``, ``updated_at``, ``delivered_at``; empty for
None), so the scripts compare leases and attempts without parsing JSON.

Why each step is atomic: ``claim``, ``begin``, ``finish`` and ``replay`` are one script each
(redis_scripts/delivery_*.lua) on keys of one scope. Redis runs a script alone, so the check
(does the record exist; is it pending with its lease ended; is this still the current
attempt) and the write it guards are one step: of concurrent callers, on any number of
connections or processes, exactly one passes the check. A claim's marks are written by the
same script as its record. A record or marks key is given its TTL by the script that writes
it, so no record outlives ``retention`` after its last write.

The log is another key (the target's slot, not the scope's), written after each of those
steps by a script of its own (delivery_log.lua): it adds or refreshes the delivery's entry
and trims entries not written for ``retention`` (at most ``TRIM_PER_WRITE`` a write). It is
idempotent, and a claim writes it whether or not it created the delivery, so a caller that
runs a claim again after a crash between the two steps repairs a missing entry. Since every
write of a record refreshes its entry too, an entry outlives its record (by the time between
the two steps), and ``list`` skips entries whose record has gone. The reverse, a record
outliving its entry, takes a caller dying between the two steps of a begin, finish or
replay; the delivery's next write mends it.

On a Redis Cluster: each script declares its keys (``#!lua``, no cross-slot flag: Redis
refuses any other key), all of one slot, so redis-py sends it to the node serving that slot,
follows ``MOVED`` / ``ASK`` and retries ``TRYAGAIN`` (a slot in migration with its keys
split) by itself, and loads the script on every primary after ``NOSCRIPT``. ``list`` reads
records of many scopes: one pipeline a page, which redis-py splits into one round trip per
node.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from importlib import resources
from typing import Any, cast

import msgspec
from redis.commands.core import AsyncScript

from notifier import ids
from notifier.delivery.model import (
    EPOCH,
    Delivery,
    Endpoint,
    Outcome,
    Status,
    decode_endpoint,
    encode,
)
from notifier.delivery.store import RETENTION
from notifier.storage.redis_client import AnyRedis

#: Stale log entries one write trims at most. A write adds at most one entry, so the log
#: holds little more than the deliveries of the last ``retention``.
TRIM_PER_WRITE = 100
#: Log entries ``list`` reads a round trip when filtering by status (at least ``limit``, at
#: most ``MAX_PAGE``). It reads on, page by page, until it has ``limit`` matches or the log
#: ends: a status few deliveries have may read the target's whole log, which retention bounds.
STATUS_PAGE = 100
MAX_PAGE = 1000


def _script(client: AnyRedis, name: str) -> AsyncScript:
    folder = resources.files("notifier.storage").joinpath("redis_scripts")
    return client.register_script(folder.joinpath(f"{name}.lua").read_text())


class RedisDeliveries:
    """``DeliveryStore`` on one Redis server or a Redis Cluster; see the module docstring."""

    def __init__(self, client: AnyRedis, prefix: str, retention: timedelta = RETENTION) -> None:
        self.client = client
        self.prefix = prefix
        self.retention_ms = max(1, int(retention / timedelta(milliseconds=1)))
        self._claim = _script(client, "delivery_claim")
        self._begin = _script(client, "delivery_begin")
        self._finish = _script(client, "delivery_finish")
        self._replay = _script(client, "delivery_replay")
        self._log = _script(client, "delivery_log")

    # -- keys ------------------------------------------------------------------------------
    def record_key(self, scope: str, delivery_id: str) -> str:
        return f"{self.prefix}:d:{{{scope}}}:r:{delivery_id}"

    def marks_key(self, scope: str) -> str:
        return f"{self.prefix}:d:{{{scope}}}:m"

    def log_keys(self, target: str) -> tuple[str, str]:
        """The target's log: by id, and by last write."""
        log = f"{self.prefix}:dl:{{{target}}}"
        return log, f"{log}:age"

    @property
    def endpoints_key(self) -> str:
        return f"{self.prefix}:endpoints"

    # -- endpoints -------------------------------------------------------------------------
    async def put_endpoint(self, endpoint: Endpoint) -> None:
        await self.client.hset(self.endpoints_key, endpoint.id, encode(endpoint))

    async def endpoints(self) -> list[Endpoint]:
        raw = await self.client.hgetall(self.endpoints_key)
        return [decode_endpoint(raw[k]) for k in sorted(raw)]

    async def delete_endpoint(self, endpoint_id: str) -> bool:
        return bool(await self.client.hdel(self.endpoints_key, endpoint_id))

    # -- deliveries ------------------------------------------------------------------------
    async def claim(
        self, delivery: Delivery, marks: Mapping[str, str] | None = None
    ) -> tuple[Delivery, bool]:
        fields = _fields(delivery)
        pairs = [part for name, value in (marks or {}).items() for part in (name, value)]
        keys = [self.record_key(delivery.scope, delivery.id), self.marks_key(delivery.scope)]
        args = [self.retention_ms, len(fields), *fields, *pairs]
        stored = await self._claim(keys=keys, args=args)
        claimed = (_delivery(_pairs(stored)), False) if stored else (delivery, True)
        await self._note(claimed[0])
        return claimed

    async def marks(self, scope: str, names: Sequence[str]) -> dict[str, str]:
        if not names:
            return {}
        values = await self.client.hmget(self.marks_key(scope), list(names))
        return {n: _text(v) for n, v in zip(names, values, strict=True) if v is not None}

    async def get(self, scope: str, delivery_id: str) -> Delivery | None:
        raw = await self.client.hgetall(self.record_key(scope, delivery_id))
        return _delivery(cast("dict[bytes, bytes]", raw)) if raw else None

    async def begin(
        self, scope: str, delivery_id: str, now: datetime, lease_until: datetime
    ) -> Delivery | None:
        args = [ids.micros(now), ids.micros(lease_until), self.retention_ms]
        stored = await self._begin(keys=[self.record_key(scope, delivery_id)], args=args)
        if not stored:
            return None
        # The log entry is not refreshed here: the attempt's ``finish`` refreshes it, a
        # round trip fewer per attempt (a record outlives its entry by at most one lease
        # when the attempt's worker dies).
        return _delivery(_pairs(stored))

    async def finish(self, scope: str, delivery_id: str, attempt: int, outcome: Outcome) -> bool:
        keys = [self.record_key(scope, delivery_id)]
        args = [attempt, outcome.status, ids.micros(outcome.at), outcome.error, self.retention_ms]
        target = await self._finish(keys=keys, args=args)
        if target is None:
            return False
        await self._note_entry(_text(target), scope, delivery_id)
        return True

    async def replay(self, scope: str, delivery_id: str, now: datetime) -> Delivery | None:
        args = [ids.micros(now), self.retention_ms]
        stored = await self._replay(keys=[self.record_key(scope, delivery_id)], args=args)
        if not stored:
            return None
        again = _delivery(_pairs(stored))
        await self._note(again)
        return again

    # -- the log ---------------------------------------------------------------------------
    async def _records(self, members: Sequence[str]) -> list[Delivery | None]:
        """The records of log ``members`` (None where gone), in one pipelined round trip
        (on a cluster, one per node)."""
        if not members:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for member in members:
                delivery_id, scope = member.split(":", 1)
                pipe.hgetall(self.record_key(scope, delivery_id))
            replies: list[dict[bytes, bytes]] = await pipe.execute()
        return [_delivery(raw) if raw else None for raw in replies]

    async def _note(self, delivery: Delivery) -> None:
        await self._note_entry(delivery.target, delivery.scope, delivery.id)

    async def _note_entry(self, target: str, scope: str, delivery_id: str) -> None:
        """Add or refresh a delivery's entry in its target's log (see the module docstring)."""
        member = f"{delivery_id}:{scope}"
        await self._log(keys=list(self.log_keys(target)),
                        args=[member, self.retention_ms, TRIM_PER_WRITE])  # fmt: skip

    # Last: below it, ``list`` in an annotation would name this method.
    async def list(
        self,
        target: str,
        *,
        limit: int,
        before: str | None = None,
        status: Status | None = None,
    ) -> list[Delivery]:
        if limit <= 0:
            return []
        log, _ = self.log_keys(target)
        page = min(limit if status is None else max(limit, STATUS_PAGE), MAX_PAGE)
        # Members are "<id>:<scope>" and ids have one width: "(<before>" excludes its own.
        upper = "+" if before is None else f"({before}"
        found: list[Delivery] = []
        while True:
            members = await self.client.zrevrangebylex(log, upper, "-", start=0, num=page)
            for stored in await self._records([_text(m) for m in members]):
                if stored is not None and (status is None or stored.status == status):
                    found.append(stored)
                    if len(found) == limit:
                        return found
            if len(members) < page:
                return found
            upper = f"({_text(members[-1])}"


def _micros(time: datetime | None) -> int | str:
    return "" if time is None else ids.micros(time)


def _time(value: bytes) -> datetime | None:
    return None if value == b"" else EPOCH + timedelta(microseconds=int(value))


def _fields(delivery: Delivery) -> list[Any]:
    """A delivery as its hash's field, value, field, value…"""
    return [
        "id", delivery.id, "channel", delivery.channel, "target", delivery.target,
        "scope", delivery.scope, "user", delivery.user, "payload", delivery.payload,
        "created_at", ids.micros(delivery.created_at), "status", delivery.status,
        "attempts", delivery.attempts, "lease_until", ids.micros(delivery.lease_until),
        "last_error", delivery.last_error, "updated_at", _micros(delivery.updated_at),
        "delivered_at", _micros(delivery.delivered_at),
    ]  # fmt: skip


_TIMES = frozenset({"created_at", "lease_until", "updated_at", "delivered_at"})


def _pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    """A hash from a script's ``HGETALL`` reply (field, value, field, value…)."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _delivery(record: Mapping[bytes, bytes]) -> Delivery:
    """A delivery from its hash."""
    values: dict[str, Any] = {}
    for name, value in record.items():
        field = _text(name)
        if field in _TIMES:
            values[field] = _time(value)
        elif field == "payload":
            values[field] = value
        elif field == "attempts":
            values[field] = int(value)
        else:
            values[field] = _text(value)
    return msgspec.convert(values, Delivery)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
