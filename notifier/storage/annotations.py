"""Notification-group annotations (done, snoozed until) for the Redis and Cassandra backends.

One small map per feed, beside it: a Redis hash ``P:g:{<group>:<user>}:n`` (among the feed's
own keys: its Cluster slot, and a page's read script returns it in the same call), and a
Cassandra partition ``(ns, feed)`` of ``annotations``. Snoozing prunes the entries of groups
that left the feed (``prune``), so a map holds little more than the feed's annotated groups.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from notifier.feedgroups import FeedGroup
from notifier.storage.base import Annotation
from notifier.storage.cassandra_session import CassandraConnection
from notifier.storage.redis_client import AnyRedis

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Annotation).decode

QUERIES = {
    "annotations": "SELECT gid, body FROM {ks}.annotations WHERE ns = ? AND feed = ?",
    "annotate": "INSERT INTO {ks}.annotations (ns, feed, gid, body) VALUES (?, ?, ?, ?)",
    "unannotate": "DELETE FROM {ks}.annotations WHERE ns = ? AND feed = ? AND gid IN ?",
}


def _split(
    changes: Mapping[str, Annotation | None],
) -> tuple[dict[str, bytes], list[str]]:
    kept: dict[str, bytes] = {
        gid: _encode(a) for gid, a in changes.items() if a is not None and not a.empty
    }
    return kept, [gid for gid in changes if gid not in kept]


class RedisAnnotations:
    """``annotations`` / ``annotate`` for RedisStorage."""

    client: AnyRedis
    prefix: str

    def _notes_key(self, group: FeedGroup, user: str) -> str:
        # Beside the aggregated feed's own keys (redis_scripts/common.lua), so the read
        # script of a notification page returns them in the same round trip.
        return f"{self.prefix}:g:{{{group.name}:{user}}}:n"

    async def annotations(self, group: FeedGroup, user: str) -> dict[str, Annotation]:
        raw = await self.client.hgetall(self._notes_key(group, user))
        return {_text(gid): _decode(body) for gid, body in raw.items()}

    async def annotate(
        self, group: FeedGroup, user: str, changes: Mapping[str, Annotation | None]
    ) -> None:
        key = self._notes_key(group, user)
        kept, dropped = _split(changes)
        async with self.client.pipeline(transaction=True) as pipe:
            for gid, body in kept.items():
                pipe.hset(key, gid, body)
            if dropped:
                pipe.hdel(key, *dropped)
            await pipe.execute()


class CassandraAnnotations:
    """``annotations`` / ``annotate`` for CassandraStorage."""

    conn: CassandraConnection
    prefix: str

    async def annotations(self, group: FeedGroup, user: str) -> dict[str, Annotation]:
        rows = await self.conn.run("annotations", self.prefix, f"{group.name}:{user}")
        return {row[0]: _decode(row[1]) for row in rows}

    async def annotate(
        self, group: FeedGroup, user: str, changes: Mapping[str, Annotation | None]
    ) -> None:
        feed = f"{group.name}:{user}"
        kept, dropped = _split(changes)
        calls: list[tuple[str, tuple[Any, ...]]] = [
            ("annotate", (self.prefix, feed, gid, body)) for gid, body in kept.items()
        ]
        if dropped:
            calls.append(("unannotate", (self.prefix, feed, dropped)))
        await self.conn.run_all(calls)


def prune(current: Mapping[str, Annotation], live: Sequence[str]) -> dict[str, Annotation | None]:
    """Deletions for annotations of groups no longer in the feed (``live``: its group ids)."""
    alive = set(live)
    return {gid: None for gid in current if gid not in alive}


def decode_notes(flat: list[Any]) -> dict[str, Annotation]:
    """Annotations from a script's ``HGETALL`` reply (field, value, field, value…)."""
    return {_text(flat[j]): _decode(flat[j + 1]) for j in range(0, len(flat), 2)}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
