"""Aggregated and notification feeds on Cassandra: the reads and the conditional batch.

Each feed is one partition of ``aggregated_feeds`` (layout in ``cassandra_schema/001``). A
write is optimistic: read the group slots with the static ``version``, read what the plan
needs (always *after* the version, so those rows are at least that new), then commit every
changed row in one single-partition batch ``IF version = <read version>``. Cassandra applies
such a batch through Paxos, atomically and isolated, or not at all; when it does not apply,
someone else wrote first, and the write starts over reading at SERIAL consistency (which also
sees writes still in flight from other data centres). A commit that timed out, that only some
replicas accepted (``CAS_WRITE_UNKNOWN``) or whose coordinator died has an unknown outcome:
the re-read decides (a serial read completes a half-accepted proposal first), and since a
plan only ever does what is still missing, a retried job, or a retried attempt, never
applies anything twice.

The counts are plain ints re-derived from the slots at every commit, never counters, so they
cannot drift: what is counted and the count change in the same batch.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar, cast

from cassandra.protocol import ErrorMessage

from notifier.errors import Conflict
from notifier.feedgroups import FeedGroup, FeedKind
from notifier.storage.base import Counts, Entry, FeedChange, Marks, StoredGroup
from notifier.storage.cassandra_groups import (
    AddPlan,
    Pair,
    RemovePlan,
    Slot,
    Snapshot,
    Stale,
    Writes,
    page,
    plan_mark,
)
from notifier.storage.cassandra_session import (
    CAS_WRITE_UNKNOWN,
    COMMIT_ERRORS,
    Call,
    CassandraConnection,
    outcome_unknown,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

_TABLE = "{ks}.aggregated_feeds"
_FEED = f"FROM {_TABLE} WHERE ns = ? AND feed = ?"
_SLOT_COLUMNS = (
    "gid, ref, group_key, verb, position, oldest, activity_count, actor_count, recent, seen, "
    "read, "
    "archived"
)
QUERIES = {
    "agg_slots": f"SELECT version, k1, {_SLOT_COLUMNS} {_FEED} AND kind = 'g'",
    "agg_statics": f"SELECT version, unseen, unread {_FEED} LIMIT 1",
    "agg_members": f"SELECT k1, ref, actor {_FEED} AND kind = 'm' AND k1 IN ?",
    "agg_tallies": f"SELECT k1, k2, n {_FEED} AND kind = 'a' AND k1 IN ? AND k2 IN ?",
    "agg_newest": f"SELECT k2 {_FEED} AND kind = 'i' AND k1 = ? LIMIT ?",
    "agg_oldest": f"SELECT k2 {_FEED} AND kind = 'i' AND k1 = ? ORDER BY k2 ASC LIMIT ?",
    "agg_items": f"SELECT k1, k2 {_FEED} AND kind = 'i' AND k1 IN ?",
    "agg_cas": f"UPDATE {_TABLE} SET version = ?, unseen = ?, unread = ? "
    "WHERE ns = ? AND feed = ? IF version = ?",
    "agg_slot": f"INSERT INTO {_TABLE} (ns, feed, kind, k1, k2, {_SLOT_COLUMNS}) "
    "VALUES (?, ?, 'g', ?, '', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "agg_member": f"INSERT INTO {_TABLE} (ns, feed, kind, k1, k2, ref, actor) "
    "VALUES (?, ?, 'm', ?, '', ?, ?)",
    "agg_item": f"INSERT INTO {_TABLE} (ns, feed, kind, k1, k2) VALUES (?, ?, 'i', ?, ?)",
    "agg_tally": f"INSERT INTO {_TABLE} (ns, feed, kind, k1, k2, n) VALUES (?, ?, 'a', ?, ?, ?)",
    # One row each: conditional batches refuse IN in deletions.
    "agg_unmember": f"DELETE {_FEED} AND kind = 'm' AND k1 = ? AND k2 = ''",
    "agg_unitem": f"DELETE {_FEED} AND kind = 'i' AND k1 = ? AND k2 = ?",
    "agg_untally": f"DELETE {_FEED} AND kind = 'a' AND k1 = ? AND k2 = ?",
    "agg_drop_items": f"DELETE {_FEED} AND kind = 'i' AND k1 = ?",
    "agg_drop_tallies": f"DELETE {_FEED} AND kind = 'a' AND k1 = ?",
}

Step = Callable[[Snapshot, bool], Awaitable[tuple[Writes, T]]]


def _slot(row: Sequence[Any]) -> Slot:
    gid, ref, key, verb, position, oldest, count, actors, recent, seen, read, archived = row[2:]
    return Slot(
        int(row[1]),
        gid,
        ref,
        key,
        verb,
        position,
        oldest,
        count or 0,
        actors or 0,
        list(recent or ()),
        bool(seen),
        bool(read),
        bool(archived),
    )


def _grouped(pairs: Iterable[Pair]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for first, second in pairs:
        out.setdefault(first, []).append(second)
    return out


Done = tuple[list[str], Counts]
"""Ids a write added or removed, and the counts its commit left."""


def _settled(uncertain: T, result: T) -> T:
    """What a write reports when, after a commit of unknown outcome, the re-read finds nothing
    left to do: that commit applied (or another writer made the same change), so the ids it
    added or removed are reported, with the counts read now. Reporting nothing would leave
    the change unpublished, and clients showing an activity the feed no longer has."""
    if isinstance(uncertain, tuple) and isinstance(result, tuple) and not result[0]:
        return cast(T, (uncertain[0], result[1]))
    return result


def _change(group: FeedGroup, user: str, counts: Counts, **ids: list[str]) -> FeedChange | None:
    if not any(ids.values()):
        return None
    notification = group.kind is FeedKind.NOTIFICATION
    return FeedChange(user=user, counts=counts if notification else None, **ids)


class AggregatedFeeds:
    """Aggregated feeds of one namespace; every method handles one user's feed."""

    def __init__(self, conn: CassandraConnection, ns: str) -> None:
        self.conn = conn
        self.ns = ns

    # -- reads ---------------------------------------------------------------------------------
    async def _snapshot(self, feed: str, serial: bool) -> Snapshot:
        """The slots and the version they are at: every slot the commit of that version left
        (a commit checked against it fails if the feed changed since)."""
        rows = await self.conn.run("agg_slots", self.ns, feed, serial=serial)
        if rows:
            return Snapshot(rows[0][0], [_slot(row) for row in rows])
        # No slot rows: the statics alone say whether the partition was ever written. They
        # are read after the slots, so a first commit landing in between shows as a version
        # without its slots; planning on that would overwrite the slots it wrote. So when
        # there is a version, the slots are read again, now after it.
        statics = await self.conn.run("agg_statics", self.ns, feed, serial=serial)
        version = statics[0][0] if statics else None
        if version is None:
            return Snapshot(None, [])
        rows = await self.conn.run("agg_slots", self.ns, feed, serial=serial)
        if rows:
            return Snapshot(rows[0][0], [_slot(row) for row in rows])
        return Snapshot(version, [])

    async def _members(self, feed: str, ids: Sequence[str], serial: bool) -> dict[str, Pair]:
        if not ids:
            return {}
        rows = await self.conn.run("agg_members", self.ns, feed, list(ids), serial=serial)
        found = {row[0]: (row[1], row[2]) for row in rows}
        return {i: found[i] for i in ids if i in found}

    async def _tallies(self, feed: str, pairs: set[Pair], serial: bool) -> dict[Pair, int]:
        if not pairs:
            return {}
        refs, actors = sorted({r for r, _ in pairs}), sorted({a for _, a in pairs})
        rows = await self.conn.run("agg_tallies", self.ns, feed, refs, actors, serial=serial)
        return {(row[0], row[1]): int(row[2]) for row in rows}

    async def _slices(
        self, name: str, feed: str, wanted: dict[str, int], serial: bool
    ) -> dict[str, list[str]]:
        calls = [(name, (self.ns, feed, ref, n)) for ref, n in wanted.items()]
        results = await self.conn.run_all(calls, serial=serial)
        return {ref: [row[0] for row in rows] for ref, rows in zip(wanted, results, strict=True)}

    async def _all_items(self, feed: str, refs: list[str], serial: bool) -> dict[str, list[str]]:
        if not refs:
            return {}
        rows = await self.conn.run("agg_items", self.ns, feed, refs, serial=serial)
        return _grouped((row[0], row[1]) for row in rows)

    # -- the optimistic write loop -------------------------------------------------------------
    async def _write(self, feed: str, step: Step[T]) -> T:
        serial = False
        attempts = self.conn.settings.cas_attempts
        uncertain: T | None = None
        """The result of a commit whose outcome is unknown (a timeout, a lost connection)."""
        for attempt in range(attempts):
            try:
                snapshot = await self._snapshot(feed, serial)
                writes, result = await step(snapshot, serial)
            except Stale as exc:  # another writer got in between: as a batch that did not apply
                log.debug("re-reading feed=%s: %s", feed, exc)
                serial = True
                await asyncio.sleep(random.uniform(0, min(0.2, 0.002 * 2**attempt)))
                continue
            except ErrorMessage as exc:
                # A serial read first completes a proposal in flight; one that another
                # writer's ballot cut short ends the same way as such a commit: try again.
                if exc.code != CAS_WRITE_UNKNOWN:
                    raise
                log.debug("serial read contended, re-reading feed=%s: %s", feed, exc)
                await asyncio.sleep(random.uniform(0, min(0.2, 0.002 * 2**attempt)))
                continue
            if not writes:
                return result if uncertain is None else _settled(uncertain, result)
            try:
                rows = await self.conn.run_batch(
                    self._batch(feed, snapshot, writes), idempotent=False
                )
                if rows and rows[0][0]:
                    return result
            except COMMIT_ERRORS as exc:
                if not outcome_unknown(exc):
                    raise
                log.warning("commit outcome unknown, re-reading feed=%s error=%s", feed, exc)
                uncertain = result
            serial = True
            await asyncio.sleep(random.uniform(0, min(0.2, 0.002 * 2**attempt)))
        raise Conflict(f"aggregated feed {feed!r} stayed contended for {attempts} attempts")

    def _batch(self, feed: str, snapshot: Snapshot, writes: Writes) -> list[Call]:
        """The conditional batch: the version check first, then every changed row."""
        ns, c = self.ns, writes.counts
        calls: list[Call] = [
            ("agg_cas", (snapshot.next_version, c.unseen, c.unread, ns, feed, snapshot.version))
        ]
        for s in writes.slots.values():
            row = (s.gid, s.ref, s.key, s.verb, s.position, s.oldest, s.count, s.actors, s.recent)
            calls.append(
                ("agg_slot", (ns, feed, f"{s.slot:05d}", *row, s.seen, s.read, s.archived))
            )
        for activity_id, (ref, actor) in writes.members.items():
            calls.append(("agg_member", (ns, feed, activity_id, ref, actor)))
        calls += [("agg_item", (ns, feed, ref, activity_id)) for ref, activity_id in writes.items]
        for (ref, actor), n in writes.tallies.items():
            calls.append(("agg_tally", (ns, feed, ref, actor, n)))
        calls += [("agg_unmember", (ns, feed, a)) for a in sorted(writes.gone_members)]
        calls += [("agg_unitem", (ns, feed, r, a)) for r, a in sorted(writes.gone_items)]
        calls += [("agg_untally", (ns, feed, r, a)) for r, a in sorted(writes.gone_tallies)]
        for ref in sorted(writes.dropped):
            calls += [("agg_drop_items", (ns, feed, ref)), ("agg_drop_tallies", (ns, feed, ref))]
        return calls

    # -- operations ----------------------------------------------------------------------------
    async def add(self, group: FeedGroup, user: str, entries: Sequence[Entry]) -> FeedChange | None:
        """Add ``entries`` (sorted oldest first) and trim; None when nothing was added."""
        feed = f"{group.name}:{user}"
        wanted = list(dict.fromkeys(e.id for e in entries))
        by_id = {e.id: e for e in reversed(entries)}  # the first of duplicates wins, as in memory

        async def step(snapshot: Snapshot, serial: bool) -> tuple[Writes, Done]:
            present = await self._members(feed, wanted, serial)
            fresh = [by_id[i] for i in wanted if i not in present]
            plan = AddPlan(
                snapshot,
                fresh,
                window=group.merge_window,
                max_length=group.max_length,
                shown=group.max_activities,
            )
            tallies, items, dropped = await asyncio.gather(
                self._tallies(feed, plan.tallies_needed, serial),
                self._slices(
                    "agg_newest", feed, dict.fromkeys(plan.items_needed, plan.shown), serial
                ),
                self._all_items(feed, plan.drops_needed, serial),
            )
            writes, added = plan.finish(tallies, items, dropped)
            return writes, (added, writes.counts)

        added, counts = await self._write(feed, step)
        return _change(group, user, counts, added=added)

    async def remove(self, group: FeedGroup, user: str, ids: Sequence[str]) -> FeedChange | None:
        """Take ``ids`` out of the feed; None when none of them was in it."""
        feed = f"{group.name}:{user}"
        wanted = list(dict.fromkeys(ids))

        async def step(snapshot: Snapshot, serial: bool) -> tuple[Writes, Done]:
            found = await self._members(feed, wanted, serial)
            plan = RemovePlan(snapshot, found, shown=group.max_activities)
            newest, oldest, tallies = await asyncio.gather(
                self._slices("agg_newest", feed, plan.newest_needed, serial),
                self._slices("agg_oldest", feed, plan.oldest_needed, serial),
                self._tallies(feed, plan.tallies_needed, serial),
            )
            writes = plan.finish(newest, oldest, tallies)
            return writes, (plan.removed, writes.counts)

        removed, counts = await self._write(feed, step)
        return _change(group, user, counts, removed=removed)

    async def mark(
        self,
        group: FeedGroup,
        user: str,
        marks: Marks,
        *,
        group_ids: Sequence[str],
        activity_ids: Sequence[str],
        all: bool,
        up_to: str | None,
    ) -> Counts:
        feed = f"{group.name}:{user}"

        async def step(snapshot: Snapshot, serial: bool) -> tuple[Writes, Counts]:
            refs: set[str] = set()
            if not all and activity_ids:
                members = await self._members(feed, list(dict.fromkeys(activity_ids)), serial)
                refs = {ref for ref, _ in members.values()}
            writes = plan_mark(
                snapshot, marks, gids=set(group_ids), refs=refs, all=all, up_to=up_to
            )
            return writes, writes.counts

        return await self._write(feed, step)

    async def trim(self, group: FeedGroup, user: str) -> None:
        await self.add(group, user, [])

    async def read(
        self, group: FeedGroup, user: str, *, limit: int, id_lt: str | None, id_gt: str | None
    ) -> list[StoredGroup]:
        """One partition slice (the feed's group slots), sorted here: slots are rewritten in
        place, so this read never crosses a tombstone however often groups moved."""
        feed = f"{group.name}:{user}"
        picked = page(await self._snapshot(feed, False), limit=limit, id_lt=id_lt, id_gt=id_gt)
        shown = group.max_activities
        short = {s.ref: shown for s in picked if not s.complete(shown)}
        fuller = await self._slices("agg_newest", feed, short, False) if short else {}
        return [s.stored(shown, fuller.get(s.ref)) for s in picked]

    async def members_of(
        self, group: FeedGroup, user: str, group_ids: Sequence[str]
    ) -> dict[str, list[str]]:
        """Every activity id of the named groups (``Storage.group_members``)."""
        feed = f"{group.name}:{user}"
        wanted = set(group_ids)
        refs = {s.ref: s.gid for s in (await self._snapshot(feed, False)).slots if s.gid in wanted}
        items = await self._all_items(feed, list(refs), False)
        return {refs[ref]: sorted(ids, reverse=True) for ref, ids in items.items() if ids}

    async def count(self, group: FeedGroup, user: str) -> int:
        snapshot = await self._snapshot(f"{group.name}:{user}", False)
        return sum(1 for s in snapshot.slots if s.gid)

    async def counts(self, group: FeedGroup, user: str) -> Counts:
        rows = await self.conn.run("agg_statics", self.ns, f"{group.name}:{user}")
        if not rows or rows[0][1] is None:
            return Counts()
        return Counts(int(rows[0][1]), int(rows[0][2]))
