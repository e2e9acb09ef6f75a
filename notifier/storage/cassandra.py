"""The Cassandra backend: tables designed per query, prepared statements, concurrent writes.

Layout (``cassandra_schema/001_initial.cql``; ``ns`` is the storage prefix, first in every
partition key, so many namespaces share one keyspace):

- ``activities ((ns, id))``: bodies, written once; a page's bodies are one ``IN`` query.
- ``foreign_ids ((ns, foreign_id), id)``.
- ``flat_feeds ((ns, feed), id DESC)``: a page is the head of one partition slice.
- ``aggregated_feeds ((ns, feed), kind, k1, k2)``: all of one aggregated feed, written only
  by conditional batches (see ``cassandra_aggregated``).
- ``followers ((ns, uid), follower)`` / ``following ((ns, uid), target)``;
  ``history_keepers ((ns, uid), keeper)``: who unfollowed ``uid`` keeping its activities.
- ``preferences ((ns, uid))``: what a user muted (see ``cassandra_preferences``).
- ``deliveries``, ``delivery_log``, ``webhook_endpoints``: the delivery store, opened on this
  storage's connection (``notifier.delivery.cassandra_store``, whose statements are here).

Flat feeds need no Paxos: adding ids commutes, so a write reads the feed's head (at most
``max_length`` ids, the newest-first slice that stops there), inserts what is new and kept,
and trims with **one** range tombstone ``id < floor`` in the same single-partition batch.
Newest-first reads stop before the trimmed range; compaction drops the shadowed rows. Two
writers racing on one full feed can leave it one id over ``max_length`` until its next write
trims it (aggregated feeds, whose counts must be exact, are serialised instead).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeVar

from cassandra.query import Statement

from notifier.delivery.cassandra_store import QUERIES as DELIVERY_QUERIES
from notifier.feedgroups import FeedGroup
from notifier.model import Activity, decode_activity, encode_activity
from notifier.preferences import Preferences
from notifier.storage.annotations import QUERIES as ANNOTATION_QUERIES
from notifier.storage.annotations import CassandraAnnotations
from notifier.storage.base import (
    Annotation,
    Counts,
    Entry,
    FeedChange,
    Marks,
    StoredGroup,
    read_inbox_apart,
)
from notifier.storage.cassandra_aggregated import QUERIES as AGGREGATED_QUERIES
from notifier.storage.cassandra_aggregated import AggregatedFeeds
from notifier.storage.cassandra_preferences import QUERIES as PREFERENCE_QUERIES
from notifier.storage.cassandra_preferences import CassandraPreferences
from notifier.storage.cassandra_session import Call, CassandraConnection, CassandraSettings

T = TypeVar("T")
_CHUNK = 100
"""Ids per ``IN`` query: large enough for a page in one round trip, small enough to spare
the coordinator."""
_EDGES_PER_BATCH = 20
"""Follow edges per logged batch (two rows each): under Cassandra's 5 KiB batch warning."""
_ABOVE_IDS = "g"
"""Sorts after every id (ids are hex), so ``id < 'g'`` means no upper bound."""

QUERIES = {
    "put_activity": "INSERT INTO {ks}.activities (ns, id, body) VALUES (?, ?, ?)",
    "put_foreign": "INSERT INTO {ks}.foreign_ids (ns, foreign_id, id) VALUES (?, ?, ?)",
    "get_activities": "SELECT id, body FROM {ks}.activities WHERE ns = ? AND id IN ?",
    "delete_activity": "DELETE FROM {ks}.activities WHERE ns = ? AND id = ?",
    "delete_foreign": "DELETE FROM {ks}.foreign_ids WHERE ns = ? AND foreign_id = ? AND id = ?",
    "find_foreign": "SELECT id FROM {ks}.foreign_ids WHERE ns = ? AND foreign_id IN ?",
    "flat_head": "SELECT id FROM {ks}.flat_feeds WHERE ns = ? AND feed = ? LIMIT ?",
    "flat_page": "SELECT id FROM {ks}.flat_feeds WHERE ns = ? AND feed = ? AND id < ? AND id > ? "
    "LIMIT ?",
    "flat_has": "SELECT id FROM {ks}.flat_feeds WHERE ns = ? AND feed = ? AND id IN ?",
    "flat_insert": "INSERT INTO {ks}.flat_feeds (ns, feed, id) VALUES (?, ?, ?)",
    "flat_delete": "DELETE FROM {ks}.flat_feeds WHERE ns = ? AND feed = ? AND id IN ?",
    "flat_trim": "DELETE FROM {ks}.flat_feeds WHERE ns = ? AND feed = ? AND id < ?",
    "flat_count": "SELECT COUNT(*) FROM {ks}.flat_feeds WHERE ns = ? AND feed = ?",
    "following_has": "SELECT target FROM {ks}.following WHERE ns = ? AND uid = ? AND target IN ?",
    "follow_out": "INSERT INTO {ks}.following (ns, uid, target) VALUES (?, ?, ?)",
    "follow_in": "INSERT INTO {ks}.followers (ns, uid, follower) VALUES (?, ?, ?)",
    "unfollow_out": "DELETE FROM {ks}.following WHERE ns = ? AND uid = ? AND target = ?",
    "unfollow_in": "DELETE FROM {ks}.followers WHERE ns = ? AND uid = ? AND follower = ?",
    "followers_page": "SELECT follower FROM {ks}.followers WHERE ns = ? AND uid = ? "
    "AND follower > ? LIMIT ?",
    "following_page": "SELECT target FROM {ks}.following WHERE ns = ? AND uid = ? "
    "AND target > ? LIMIT ?",
    "followers_count": "SELECT COUNT(*) FROM {ks}.followers WHERE ns = ? AND uid = ?",
    "keep_history": "INSERT INTO {ks}.history_keepers (ns, uid, keeper) VALUES (?, ?, ?)",
    "keepers_page": "SELECT keeper FROM {ks}.history_keepers WHERE ns = ? AND uid = ? "
    "AND keeper > ? LIMIT ?",
    "following_count": "SELECT COUNT(*) FROM {ks}.following WHERE ns = ? AND uid = ?",
    "ping": "SELECT release_version FROM system.local",
    **AGGREGATED_QUERIES,
    **PREFERENCE_QUERIES,
    **ANNOTATION_QUERIES,
    **DELIVERY_QUERIES,
}


def connect(url: str) -> CassandraConnection:
    """A lazy connection for ``url`` with every statement of this backend."""
    return CassandraConnection(CassandraSettings.from_url(url), QUERIES)


def _slices(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _flat_plan(head: list[str], ids: list[str], max_length: int) -> tuple[list[str], str | None]:
    """What adding ``ids`` (distinct) to a flat feed whose newest ids are ``head`` (newest
    first, at most ``max_length``) writes: the ids to insert, and the floor below which a
    range tombstone trims (None: no trim).

    A feed holding fewer than ``max_length`` ids was read whole, so ``head`` decides
    membership; in a full one an id below the head is older than the floor and is not kept
    either way."""
    present = set(head)
    new = [i for i in ids if i not in present]
    if len(head) + len(new) <= max_length:  # nothing falls off: no sort needed
        return new, None
    kept = sorted([*head, *new], reverse=True)[:max_length]  # head is one sorted run
    floor = kept[-1]
    added = [i for i in new if i >= floor]
    trimming = len(present) + len(added) > len(kept) or (
        len(head) == max_length and any(i < floor for i in ids)
    )
    return added, floor if trimming else None


def _chunks(items: Sequence[str]) -> list[list[str]]:
    return [list(items[i : i + _CHUNK]) for i in range(0, len(items), _CHUNK)]


class CassandraStorage(CassandraAnnotations):
    """Storage in one Cassandra keyspace under the namespace ``prefix``; see the module
    docstring. Several storages may share one connection (``owns_connection=False``)."""

    flat_feeds_exact = False  # racing writes can leave a flat feed one id over (module doc)

    def __init__(
        self, connection: CassandraConnection, prefix: str = "notifier", *, owns_connection: bool
    ) -> None:
        self.conn = connection
        self.prefix = prefix
        self._owns = owns_connection
        self._aggregated = AggregatedFeeds(connection, prefix)
        self._preferences = CassandraPreferences(connection, prefix)

    @classmethod
    def from_url(cls, url: str, prefix: str = "notifier") -> CassandraStorage:
        """Connect lazily to ``cassandra://host1,host2:port/keyspace?…`` (see
        ``CassandraSettings.from_url``); raises ConfigError for a bad URL."""
        return cls(connect(url), prefix, owns_connection=True)

    async def _each(self, items: Iterable[str], work: Callable[[str], Awaitable[T]]) -> list[T]:
        """``work`` for every item concurrently, at most ``max_in_flight`` at a time."""
        limit = asyncio.Semaphore(self.conn.settings.max_in_flight)

        async def one(item: str) -> T:
            async with limit:
                return await work(item)

        return list(await asyncio.gather(*(one(i) for i in items)))

    # -- activities ------------------------------------------------------------------------
    async def put_activities(self, activities: Sequence[Activity]) -> None:
        ns = self.prefix
        calls: list[Call] = []
        for activity in activities:
            calls.append(("put_activity", (ns, activity.id, encode_activity(activity))))
            if activity.foreign_id is not None:
                calls.append(("put_foreign", (ns, activity.foreign_id, activity.id)))
        await self.conn.run_all(calls)

    async def get_activities(self, ids: Sequence[str]) -> dict[str, Activity]:
        wanted = list(dict.fromkeys(ids))
        results = await self.conn.run_all(
            ("get_activities", (self.prefix, chunk)) for chunk in _chunks(wanted)
        )
        return {row[0]: decode_activity(row[1]) for rows in results for row in rows}

    async def delete_activities(self, ids: Sequence[str]) -> None:
        found = await self.get_activities(ids)
        ns = self.prefix
        calls: list[Call] = []
        for activity in found.values():
            calls.append(("delete_activity", (ns, activity.id)))
            if activity.foreign_id is not None:
                calls.append(("delete_foreign", (ns, activity.foreign_id, activity.id)))
        await self.conn.run_all(calls)

    async def find_foreign_ids(self, foreign_ids: Sequence[str]) -> list[str]:
        wanted = list(dict.fromkeys(foreign_ids))
        results = await self.conn.run_all(
            ("find_foreign", (self.prefix, chunk)) for chunk in _chunks(wanted)
        )
        return sorted({row[0] for rows in results for row in rows})

    # -- timelines -------------------------------------------------------------------------
    async def add_to_feeds(
        self, group: FeedGroup, users: Sequence[str], entries: Sequence[Entry]
    ) -> list[FeedChange]:
        if not entries:
            return []
        ordered = sorted(entries, key=lambda e: e.id)
        if group.aggregated:
            changes = await self._each(
                dict.fromkeys(users), lambda u: self._aggregated.add(group, u, ordered)
            )
        else:
            ids = list(dict.fromkeys(e.id for e in ordered))
            parts = _slices(list(dict.fromkeys(users)), self.conn.settings.max_in_flight)
            limit = asyncio.Semaphore(2)  # the next slice's heads load while one writes

            async def one(part: list[str]) -> list[FeedChange]:
                async with limit:
                    return await self._flat_add(group, part, ids)

            changes = [c for found in await asyncio.gather(*map(one, parts)) for c in found]
        return [c for c in changes if c is not None]

    async def _flat_add(
        self, group: FeedGroup, users: list[str], ids: list[str]
    ) -> list[FeedChange]:
        """Add ``ids`` to the flat feeds of ``users``: every head in one concurrent round,
        then every write (one statement, or one single-partition batch, per feed)."""
        ns, conn = self.prefix, self.conn
        feeds = [f"{group.name}:{user}" for user in users]
        heads = await conn.run_all(("flat_head", (ns, feed, group.max_length)) for feed in feeds)
        writes: list[Statement] = []
        changes: list[FeedChange] = []
        for user, feed, rows in zip(users, feeds, heads, strict=True):
            added, floor = _flat_plan([row[0] for row in rows], ids, group.max_length)
            calls: list[Call] = [("flat_insert", (ns, feed, activity_id)) for activity_id in added]
            if floor is not None:
                calls.append(("flat_trim", (ns, feed, floor)))
            if len(calls) == 1:
                writes.append(conn.bind(*calls[0]))
            elif calls:
                writes.append(conn.batch(calls))
            if added:
                changes.append(FeedChange(user=user, added=sorted(added)))
        await conn.execute_all(writes)
        return changes

    async def remove_from_feeds(
        self, group: FeedGroup, users: Sequence[str], ids: Sequence[str]
    ) -> list[FeedChange]:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []
        if group.aggregated:
            changes = await self._each(
                dict.fromkeys(users), lambda u: self._aggregated.remove(group, u, wanted)
            )
        else:
            changes = await self._each(
                dict.fromkeys(users), lambda u: self._flat_remove(group, u, wanted)
            )
        return [c for c in changes if c is not None]

    async def _flat_remove(self, group: FeedGroup, user: str, ids: list[str]) -> FeedChange | None:
        feed, ns = f"{group.name}:{user}", self.prefix
        present = {row[0] for row in await self.conn.run("flat_has", ns, feed, ids)}
        removed = [i for i in ids if i in present]
        if not removed:
            return None
        await self.conn.run("flat_delete", ns, feed, removed)
        return FeedChange(user=user, removed=removed)

    async def read_flat(
        self,
        group: FeedGroup,
        user: str,
        *,
        limit: int,
        id_lt: str | None = None,
        id_gt: str | None = None,
    ) -> list[str]:
        if limit <= 0:  # CQL refuses LIMIT 0
            return []
        rows = await self.conn.run(
            "flat_page",
            self.prefix,
            f"{group.name}:{user}",
            _ABOVE_IDS if id_lt is None else id_lt,
            "" if id_gt is None else id_gt,
            limit,
        )
        return [row[0] for row in rows]

    async def read_groups(
        self,
        group: FeedGroup,
        user: str,
        *,
        limit: int,
        id_lt: str | None = None,
        id_gt: str | None = None,
    ) -> list[StoredGroup]:
        return await self._aggregated.read(group, user, limit=limit, id_lt=id_lt, id_gt=id_gt)

    async def read_page(
        self,
        group: FeedGroup,
        user: str,
        *,
        limit: int,
        id_lt: str | None = None,
        id_gt: str | None = None,
    ) -> tuple[list[StoredGroup], Counts]:
        groups = await self.read_groups(group, user, limit=limit, id_lt=id_lt, id_gt=id_gt)
        return groups, await self.counts(group, user)

    async def read_inbox(
        self,
        group: FeedGroup,
        user: str,
        *,
        limit: int,
        id_lt: str | None = None,
        id_gt: str | None = None,
    ) -> tuple[list[StoredGroup], Counts, dict[str, Annotation]]:
        return await read_inbox_apart(self, group, user, limit=limit, id_lt=id_lt, id_gt=id_gt)

    async def count(self, group: FeedGroup, user: str) -> int:
        if group.aggregated:
            return await self._aggregated.count(group, user)
        rows = await self.conn.run("flat_count", self.prefix, f"{group.name}:{user}")
        return int(rows[0][0])

    async def trim(self, group: FeedGroup, users: Sequence[str]) -> None:
        if group.aggregated:
            await self._each(dict.fromkeys(users), lambda u: self._aggregated.trim(group, u))
        else:
            await self._each(dict.fromkeys(users), lambda u: self._flat_trim(group, u))

    async def _flat_trim(self, group: FeedGroup, user: str) -> None:
        feed = f"{group.name}:{user}"
        head = await self.conn.run("flat_head", self.prefix, feed, group.max_length + 1)
        if len(head) > group.max_length:
            await self.conn.run("flat_trim", self.prefix, feed, head[group.max_length - 1][0])

    # -- notification state ----------------------------------------------------------------
    async def counts(self, group: FeedGroup, user: str) -> Counts:
        return await self._aggregated.counts(group, user)

    async def mark(
        self,
        group: FeedGroup,
        user: str,
        marks: Marks,
        *,
        group_ids: Sequence[str] = (),
        activity_ids: Sequence[str] = (),
        all: bool = False,
        up_to: str | None = None,
    ) -> Counts:
        return await self._aggregated.mark(
            group, user, marks, group_ids=group_ids, activity_ids=activity_ids, all=all, up_to=up_to
        )

    # -- follow graph ----------------------------------------------------------------------
    async def _following(self, user: str, targets: list[str]) -> set[str]:
        results = await self.conn.run_all(
            ("following_has", (self.prefix, user, chunk)) for chunk in _chunks(targets)
        )
        return {row[0] for rows in results for row in rows}

    async def _both_ways(self, out: str, into: str, user: str, targets: list[str]) -> None:
        """Write both directions of each edge in a logged batch: if this process dies half
        way, the batch log still lands the other half, so the two tables never disagree."""
        batches = []
        for start in range(0, len(targets), _EDGES_PER_BATCH):
            calls: list[Call] = []
            for target in targets[start : start + _EDGES_PER_BATCH]:
                calls += [(out, (self.prefix, user, target)), (into, (self.prefix, target, user))]
            batches.append(self.conn.run_batch(calls, logged=True))
        await asyncio.gather(*batches)

    async def follow(self, user: str, targets: Sequence[str]) -> list[str]:
        wanted = list(dict.fromkeys(targets))
        if not wanted:
            return []
        already = await self._following(user, wanted)
        new = [t for t in wanted if t not in already]
        await self._both_ways("follow_out", "follow_in", user, new)
        return new

    async def unfollow(self, user: str, targets: Sequence[str]) -> list[str]:
        wanted = list(dict.fromkeys(targets))
        if not wanted:
            return []
        present = await self._following(user, wanted)
        gone = [t for t in wanted if t in present]
        await self._both_ways("unfollow_out", "unfollow_in", user, gone)
        return gone

    async def keep_history(self, user: str, targets: Sequence[str]) -> None:
        await self.conn.run_all(
            ("keep_history", (self.prefix, target, user)) for target in dict.fromkeys(targets)
        )

    async def history_keepers(
        self, user: str, *, limit: int, after: str | None = None
    ) -> list[str]:
        return await self._page("keepers_page", user, limit, after)

    async def followers(self, user: str, *, limit: int, after: str | None = None) -> list[str]:
        return await self._page("followers_page", user, limit, after)

    async def following(self, user: str, *, limit: int, after: str | None = None) -> list[str]:
        return await self._page("following_page", user, limit, after)

    async def _page(self, query: str, user: str, limit: int, after: str | None) -> list[str]:
        if limit <= 0:  # CQL refuses LIMIT 0
            return []
        rows = await self.conn.run(query, self.prefix, user, after or "", limit)
        return [row[0] for row in rows]

    async def follow_counts(self, user: str) -> tuple[int, int]:
        """Two ``COUNT(*)`` partition scans: exact without counters, O(followers)."""
        followers, following = await asyncio.gather(
            self.conn.run("followers_count", self.prefix, user),
            self.conn.run("following_count", self.prefix, user),
        )
        return int(followers[0][0]), int(following[0][0])

    # -- preferences -----------------------------------------------------------------------
    async def preferences(self, users: Sequence[str]) -> dict[str, Preferences]:
        return await self._preferences.read(users)

    async def put_preferences(self, user: str, prefs: Preferences) -> None:
        await self._preferences.write(user, prefs)

    # -- lifecycle -------------------------------------------------------------------------
    async def group_members(
        self, group: FeedGroup, user: str, group_ids: Sequence[str]
    ) -> dict[str, list[str]]:
        return await self._aggregated.members_of(group, user, group_ids)

    async def ping(self) -> None:
        await self.conn.run("ping")

    async def close(self) -> None:
        if self._owns:
            await self.conn.close()
