"""Aggregated feeds on Cassandra: what one write decides, apart from the I/O that feeds it.

A write to an aggregated feed reads a ``Snapshot`` (every group slot of the feed, and the
static version), then a plan asks for the few other rows it needs (memberships, actor tallies,
a group's activity ids), and finally yields ``Writes``: the rows to upsert and delete, which
the storage commits as one conditional batch ``IF version = <snapshot version>``. If another
writer committed in between, the batch does not apply and the whole thing is re-read and
re-planned, so a plan never has to think about concurrency, and a re-run of a write that did
land finds nothing left to do. The one place concurrency shows: the rows a plan reads after
the snapshot may already be a later writer's (that writer committed in between). Where they
cannot belong to the snapshot's state, the plan raises ``Stale`` and the write is re-read and
re-planned, as it would be when its batch did not apply. The semantics are the memory
backend's, step for step.

Rows of a group are keyed by its ``ref`` (``<gid>.<version that created it>``), not by its
public id. Live groups never share an id (``base.fresh_group_id``), but one id can name
several groups over a feed's life (a group is trimmed, its opening activity comes back); a
ref names one group ever, so nothing a dropped group left behind (its tombstones, or rows a
bug might leave) can be read as a later group's.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from notifier.storage.base import Counts, Entry, Marks, StoredGroup, fresh_group_id

Pair = tuple[str, str]


class Stale(Exception):
    """Rows read after the snapshot contradict it: another writer committed in between."""


@dataclass
class Slot:
    """One group slot row: a group's state, or a free slot (``gid == ""``)."""

    slot: int
    gid: str = ""
    ref: str = ""
    """Unique over the feed's history; keys the group's other rows (module docstring)."""
    key: str = ""
    verb: str = ""
    position: str = ""
    oldest: str = ""
    count: int = 0
    actors: int = 0
    recent: list[str] = field(default_factory=list)
    """Newest activity ids first, at most the feed group's ``max_activities`` when written."""
    seen: bool = False
    read: bool = False
    archived: bool = False

    @property
    def order(self) -> tuple[str, str]:
        return self.position, self.gid

    def complete(self, shown: int) -> bool:
        """Whether ``recent`` holds every id a read showing ``shown`` needs."""
        return len(self.recent) >= min(self.count, shown)

    def stored(self, shown: int, recent: Sequence[str] | None = None) -> StoredGroup:
        return StoredGroup(
            id=self.gid,
            key=self.key,
            verb=self.verb,
            activity_ids=list(recent if recent is not None else self.recent)[:shown],
            activity_count=self.count,
            actor_count=self.actors,
            position=self.position,
            oldest=self.oldest,
            is_seen=self.seen,
            is_read=self.read,
            is_archived=self.archived,
        )


@dataclass
class Snapshot:
    """A feed's group slots as read at one version (None: the feed was never written)."""

    version: int | None
    slots: list[Slot]

    def groups(self) -> list[Slot]:
        """Live groups, newest position first."""
        return sorted((s for s in self.slots if s.gid), key=lambda s: s.order, reverse=True)

    def by_ref(self) -> dict[str, Slot]:
        return {s.ref: s for s in self.slots if s.gid}

    @property
    def next_version(self) -> int:
        return (self.version or 0) + 1


def recount(slots: Iterable[Slot]) -> Counts:
    """Unseen and unread groups, derived from the groups themselves (never incremented)."""
    live = [s for s in slots if s.gid and not s.archived]
    return Counts(sum(not s.seen for s in live), sum(not s.read for s in live))


@dataclass
class Writes:
    """Rows one write changes; committed together, conditional on the snapshot's version."""

    slots: dict[int, Slot] = field(default_factory=dict)
    members: dict[str, Pair] = field(default_factory=dict)
    """activity id -> (ref, actor) to insert."""
    gone_members: set[str] = field(default_factory=set)
    items: set[Pair] = field(default_factory=set)
    """(ref, activity id) to insert."""
    gone_items: set[Pair] = field(default_factory=set)
    tallies: dict[Pair, int] = field(default_factory=dict)
    """(ref, actor) -> that actor's activities in the group."""
    gone_tallies: set[Pair] = field(default_factory=set)
    dropped: set[str] = field(default_factory=set)
    """Groups whose items and tallies go (one range delete each)."""
    counts: Counts = field(default_factory=Counts)

    def __bool__(self) -> bool:
        return bool(self.slots or self.members or self.gone_members or self.dropped)


def _final_slots(snapshot: Snapshot, writes: Writes) -> list[Slot]:
    merged = {s.slot: s for s in snapshot.slots}
    merged.update(writes.slots)
    return list(merged.values())


# -- adding (and trimming) --------------------------------------------------------------------


@dataclass
class _Work:
    slot: Slot
    existed: bool
    gained: list[Entry] = field(default_factory=list)


class AddPlan:
    """Adding entries to one feed, then trimming it to ``max_length`` groups.

    ``entries`` are the ones not yet in the feed (the caller looked up memberships after the
    snapshot), oldest first. After construction, ``tallies_needed``, ``items_needed`` and
    ``drops_needed`` say what else to read before ``finish``.
    """

    def __init__(
        self,
        snapshot: Snapshot,
        entries: Sequence[Entry],
        *,
        window: int,
        max_length: int,
        shown: int,
    ) -> None:
        self.snapshot = snapshot
        self.shown = shown
        work = {
            s.ref: _Work(replace(s, recent=list(s.recent)), True) for s in snapshot.slots if s.gid
        }
        for entry in entries:
            recent = heapq.nlargest(window, work.values(), key=lambda w: w.slot.order)
            target = next((w for w in recent if w.slot.key == entry.key), None)
            if target is None:
                gid = fresh_group_id(entry.id, {w.slot.gid for w in work.values()})
                ref = f"{gid}.{snapshot.next_version}"
                new = Slot(-1, gid, ref, entry.key, entry.verb, entry.id, entry.id)
                target = work[ref] = _Work(new, False)
            target.gained.append(entry)
            s = target.slot
            s.position = max(s.position, entry.id)
            s.oldest = min(s.oldest, entry.id)
            s.count += 1
            s.seen = s.read = s.archived = False
        ordered = sorted(work.values(), key=lambda w: w.slot.order, reverse=True)
        self.kept = ordered[:max_length]
        self.dropped = ordered[max_length:]
        grown = [w for w in self.kept if w.existed and w.gained]
        stored = snapshot.by_ref()
        self.tallies_needed = {(w.slot.ref, e.actor) for w in grown for e in w.gained}
        self.items_needed = [w.slot.ref for w in grown if not stored[w.slot.ref].complete(shown)]
        self.drops_needed = [w.slot.ref for w in self.dropped if w.existed]

    def finish(
        self,
        tallies: Mapping[Pair, int],
        items: Mapping[str, list[str]],
        dropped_items: Mapping[str, list[str]],
    ) -> tuple[Writes, list[str]]:
        """The rows to write and the ids added (those whose group survived the trim).

        ``tallies``: stored actor tallies; ``items``: newest ids of the groups in
        ``items_needed``; ``dropped_items``: every id of the groups in ``drops_needed``
        (all keyed by ref).
        """
        writes = Writes()
        added: list[str] = []
        freed = {w.slot.slot for w in self.dropped if w.existed}
        free = sorted(freed | {s.slot for s in self.snapshot.slots if not s.gid})
        next_slot = max((s.slot for s in self.snapshot.slots), default=-1) + 1
        for w in self.kept:
            if not w.gained:
                continue
            s, ref = w.slot, w.slot.ref
            base = items.get(ref, s.recent) if w.existed else []
            s.recent = heapq.nlargest(self.shown, {*base, *(e.id for e in w.gained)})
            per_actor = Counter(e.actor for e in w.gained)
            for actor, n in per_actor.items():
                before = tallies.get((ref, actor), 0) if w.existed else 0
                if before == 0:
                    s.actors += 1
                writes.tallies[ref, actor] = before + n
            for e in w.gained:
                writes.members[e.id] = (ref, e.actor)
                writes.items.add((ref, e.id))
                added.append(e.id)
            if not w.existed:
                if free:
                    s.slot = free.pop(0)
                else:
                    s.slot, next_slot = next_slot, next_slot + 1
            writes.slots[s.slot] = s
        for w in self.dropped:
            if w.existed:
                writes.gone_members.update(dropped_items.get(w.slot.ref, ()))
                writes.dropped.add(w.slot.ref)
        for number in freed.intersection(free):  # freed by the trim and not reused
            writes.slots[number] = Slot(number)
        writes.counts = recount(_final_slots(self.snapshot, writes))
        return writes, sorted(added)


# -- removing ---------------------------------------------------------------------------------


class RemovePlan:
    """Taking activities out of one feed.

    ``found`` maps each activity id that is in the feed to its (ref, actor), in the order the
    caller named them (the order ``removed`` reports). Needed reads, keyed by ref:
    ``newest_needed`` / ``oldest_needed`` (how many ids, newest / oldest first) and
    ``tallies_needed``.
    """

    def __init__(self, snapshot: Snapshot, found: Mapping[str, Pair], *, shown: int) -> None:
        self.snapshot = snapshot
        self.shown = shown
        groups = snapshot.by_ref()
        self.removed = [a for a, (ref, _) in found.items() if ref in groups]
        self.found = found
        self.per_group: dict[str, list[str]] = {}
        for activity_id in self.removed:
            self.per_group.setdefault(found[activity_id][0], []).append(activity_id)
        self.newest_needed: dict[str, int] = {}
        self.oldest_needed: dict[str, int] = {}
        self.tallies_needed: set[Pair] = set()
        for ref, ids in self.per_group.items():
            slot = groups[ref]
            if slot.count > len(ids):
                self.newest_needed[ref] = shown + len(ids)
                if slot.oldest in ids:
                    self.oldest_needed[ref] = len(ids) + 1
                self.tallies_needed |= {(ref, found[a][1]) for a in ids}

    def finish(
        self,
        newest: Mapping[str, list[str]],
        oldest: Mapping[str, list[str]],
        tallies: Mapping[Pair, int],
    ) -> Writes:
        writes = Writes()
        groups = self.snapshot.by_ref()
        for ref, ids in self.per_group.items():
            gone = set(ids)
            writes.gone_members |= gone
            slot = replace(groups[ref])
            if slot.count <= len(ids):
                writes.dropped.add(ref)
                writes.slots[slot.slot] = Slot(slot.slot)
                continue
            writes.gone_items |= {(ref, a) for a in ids}
            remaining = [a for a in newest[ref] if a not in gone]
            if not remaining:  # the snapshot's group has more; the rows read do not
                raise Stale(f"group {ref} changed after the snapshot")
            slot.recent = remaining[: self.shown]
            slot.position = remaining[0]
            if ref in self.oldest_needed:
                still = next((a for a in oldest[ref] if a not in gone), None)
                if still is None:
                    raise Stale(f"group {ref} changed after the snapshot")
                slot.oldest = still
            slot.count -= len(ids)
            for actor, n in Counter(self.found[a][1] for a in ids).items():
                left = tallies.get((ref, actor), 0) - n
                if left > 0:
                    writes.tallies[ref, actor] = left
                else:
                    writes.gone_tallies.add((ref, actor))
                    slot.actors -= 1
            writes.slots[slot.slot] = slot
        # Membership rows pointing at no live group should not exist; drop any found anyway.
        writes.gone_members |= set(self.found) - set(self.removed)
        writes.counts = recount(_final_slots(self.snapshot, writes))
        return writes


# -- marking ----------------------------------------------------------------------------------


def plan_mark(
    snapshot: Snapshot,
    marks: Marks,
    *,
    gids: Collection[str] = (),
    refs: Collection[str] = (),
    all: bool = False,
    up_to: str | None = None,
) -> Writes:
    """Set or clear flags on the groups named by id or ref (or all, up to a position); empty
    if nothing changes."""
    writes = Writes()
    for slot in snapshot.slots:
        if not slot.gid:
            continue
        if all:
            if up_to is not None and slot.position > up_to:
                continue
        elif slot.gid not in gids and slot.ref not in refs:
            continue
        new = replace(
            slot,
            seen=slot.seen if marks.seen is None else marks.seen,
            read=slot.read if marks.read is None else marks.read,
            archived=slot.archived if marks.archived is None else marks.archived,
        )
        if (new.seen, new.read, new.archived) != (slot.seen, slot.read, slot.archived):
            writes.slots[slot.slot] = new
    writes.counts = recount(_final_slots(snapshot, writes))
    return writes


def page(snapshot: Snapshot, *, limit: int, id_lt: str | None, id_gt: str | None) -> list[Slot]:
    """Groups strictly between the cursors (by position), newest first."""
    picked = [
        s
        for s in snapshot.groups()
        if (id_lt is None or s.position < id_lt) and (id_gt is None or s.position > id_gt)
    ]
    return picked[:limit]
