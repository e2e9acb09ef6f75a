"""The embedded backend: plain Python structures, one lock.

Used by ``notifier demo``, the quick start and single-process tests. It is real code, not a
mock: the contract suite holds it to exactly the same behaviour as Redis and Cassandra. The
lock makes every method atomic, also when dramatiq's in-process workers call it from threads.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from notifier.feedgroups import FeedGroup
from notifier.model import Activity
from notifier.preferences import Preferences
from notifier.storage.base import (
    Annotation,
    Counts,
    Entry,
    FeedChange,
    Marks,
    StoredGroup,
    fresh_group_id,
    read_inbox_apart,
)


@dataclass
class _Group:
    id: str
    key: str
    verb: str
    ids: list[str] = field(default_factory=list)  # ascending
    actors: Counter[str] = field(default_factory=Counter)
    actor_of: dict[str, str] = field(default_factory=dict)
    seen: bool = False
    read: bool = False
    archived: bool = False

    @property
    def position(self) -> str:
        return self.ids[-1]

    @property
    def unseen(self) -> int:
        return int(not self.seen and not self.archived)

    @property
    def unread(self) -> int:
        return int(not self.read and not self.archived)


@dataclass
class _AggregatedFeed:
    groups: dict[str, _Group] = field(default_factory=dict)
    order: list[tuple[str, str]] = field(default_factory=list)  # (position, group id) ascending
    members: dict[str, str] = field(default_factory=dict)  # activity id -> group id
    unseen: int = 0
    unread: int = 0

    def counts(self) -> Counts:
        return Counts(self.unseen, self.unread)

    def set_flags(self, group: _Group, seen: bool, read: bool, archived: bool) -> None:
        self.unseen -= group.unseen
        self.unread -= group.unread
        group.seen, group.read, group.archived = seen, read, archived
        self.unseen += group.unseen
        self.unread += group.unread

    def recent(self, window: int) -> list[_Group]:
        return [self.groups[gid] for _, gid in reversed(self.order[-window:])]

    def add(self, entry: Entry, window: int) -> None:
        target = next((g for g in self.recent(window) if g.key == entry.key), None)
        if target is None:
            target = _Group(fresh_group_id(entry.id, self.groups), entry.key, entry.verb)
            self.groups[target.id] = target
            self.unseen += 1
            self.unread += 1
        else:
            self.order.remove((target.position, target.id))
        bisect.insort(target.ids, entry.id)
        target.actors[entry.actor] += 1
        target.actor_of[entry.id] = entry.actor
        self.members[entry.id] = target.id
        bisect.insort(self.order, (target.position, target.id))
        self.set_flags(target, False, False, False)

    def remove(self, activity_id: str) -> None:
        gid = self.members.pop(activity_id)
        group = self.groups[gid]
        self.order.remove((group.position, gid))
        group.ids.remove(activity_id)
        actor = group.actor_of.pop(activity_id)
        group.actors[actor] -= 1
        if group.actors[actor] == 0:
            del group.actors[actor]
        if group.ids:
            bisect.insort(self.order, (group.position, gid))
        else:
            self.drop(group, ordered=False)

    def drop(self, group: _Group, ordered: bool = True) -> None:
        self.set_flags(group, True, True, True)
        del self.groups[group.id]
        if ordered:
            self.order.remove((group.position, group.id))
        for activity_id in group.ids:
            self.members.pop(activity_id, None)

    def trim(self, max_length: int) -> list[str]:
        removed: list[str] = []
        while len(self.order) > max_length:
            group = self.groups[self.order[0][1]]
            removed.extend(group.ids)
            self.drop(group)
        return removed


class MemoryStorage:
    """In-process storage; see the module docstring."""

    flat_feeds_exact = True

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._activities: dict[str, Activity] = {}
        self._foreign: dict[str, set[str]] = defaultdict(set)
        self._flat: dict[tuple[str, str], list[str]] = defaultdict(list)
        self._aggregated: dict[tuple[str, str], _AggregatedFeed] = defaultdict(_AggregatedFeed)
        self._followers: dict[str, set[str]] = defaultdict(set)
        self._keepers: dict[str, set[str]] = defaultdict(set)
        self._following: dict[str, set[str]] = defaultdict(set)
        self._preferences: dict[str, Preferences] = {}
        self._annotations: dict[tuple[str, str], dict[str, Annotation]] = defaultdict(dict)

    # -- activities ------------------------------------------------------------------------
    async def put_activities(self, activities: Sequence[Activity]) -> None:
        with self._lock:
            for activity in activities:
                self._activities[activity.id] = activity
                if activity.foreign_id is not None:
                    self._foreign[activity.foreign_id].add(activity.id)

    async def get_activities(self, ids: Sequence[str]) -> dict[str, Activity]:
        with self._lock:
            return {i: self._activities[i] for i in ids if i in self._activities}

    async def delete_activities(self, ids: Sequence[str]) -> None:
        with self._lock:
            for activity_id in ids:
                activity = self._activities.pop(activity_id, None)
                if activity is not None and activity.foreign_id is not None:
                    self._foreign[activity.foreign_id].discard(activity_id)
                    if not self._foreign[activity.foreign_id]:
                        del self._foreign[activity.foreign_id]

    async def find_foreign_ids(self, foreign_ids: Sequence[str]) -> list[str]:
        with self._lock:
            found = {i for fid in foreign_ids for i in self._foreign.get(fid, ())}
            return sorted(found)

    # -- timelines -------------------------------------------------------------------------
    async def add_to_feeds(
        self, group: FeedGroup, users: Sequence[str], entries: Sequence[Entry]
    ) -> list[FeedChange]:
        ordered = sorted(entries, key=lambda e: e.id)
        changes: list[FeedChange] = []
        with self._lock:
            for user in dict.fromkeys(users):
                if group.aggregated:
                    changes.extend(self._add_aggregated(group, user, ordered))
                else:
                    changes.extend(self._add_flat(group, user, ordered))
        return changes

    def _add_flat(self, group: FeedGroup, user: str, entries: list[Entry]) -> list[FeedChange]:
        ids = self._flat[group.name, user]
        added: list[str] = []
        for entry in entries:
            index = bisect.bisect_left(ids, entry.id)
            if index < len(ids) and ids[index] == entry.id:
                continue
            ids.insert(index, entry.id)
            added.append(entry.id)
        if len(ids) > group.max_length:
            dropped = set(ids[: len(ids) - group.max_length])
            del ids[: len(ids) - group.max_length]
            added = [i for i in added if i not in dropped]
        return [FeedChange(user=user, added=added)] if added else []

    def _add_aggregated(
        self, group: FeedGroup, user: str, entries: list[Entry]
    ) -> list[FeedChange]:
        feed = self._aggregated[group.name, user]
        added: list[str] = []
        for entry in entries:
            if entry.id in feed.members:
                continue
            feed.add(entry, group.merge_window)
            added.append(entry.id)
        trimmed = set(feed.trim(group.max_length))
        added = [i for i in added if i not in trimmed]
        if not added:
            return []
        counts = feed.counts() if group.kind == "notification" else None
        return [FeedChange(user=user, added=added, counts=counts)]

    async def remove_from_feeds(
        self, group: FeedGroup, users: Sequence[str], ids: Sequence[str]
    ) -> list[FeedChange]:
        changes: list[FeedChange] = []
        with self._lock:
            for user in dict.fromkeys(users):
                removed: list[str] = []
                if group.aggregated:
                    feed = self._aggregated[group.name, user]
                    for activity_id in dict.fromkeys(ids):
                        if activity_id in feed.members:
                            feed.remove(activity_id)
                            removed.append(activity_id)
                    counts = feed.counts() if group.kind == "notification" else None
                else:
                    flat = self._flat[group.name, user]
                    for activity_id in dict.fromkeys(ids):
                        index = bisect.bisect_left(flat, activity_id)
                        if index < len(flat) and flat[index] == activity_id:
                            del flat[index]
                            removed.append(activity_id)
                    counts = None
                if removed:
                    changes.append(FeedChange(user=user, removed=removed, counts=counts))
        return changes

    async def read_flat(
        self,
        group: FeedGroup,
        user: str,
        *,
        limit: int,
        id_lt: str | None = None,
        id_gt: str | None = None,
    ) -> list[str]:
        with self._lock:
            ids = self._flat.get((group.name, user), [])
            high = bisect.bisect_left(ids, id_lt) if id_lt is not None else len(ids)
            low = bisect.bisect_right(ids, id_gt) if id_gt is not None else 0
            return ids[max(low, high - limit) : high][::-1] if high > low else []

    async def read_groups(
        self,
        group: FeedGroup,
        user: str,
        *,
        limit: int,
        id_lt: str | None = None,
        id_gt: str | None = None,
    ) -> list[StoredGroup]:
        with self._lock:
            feed = self._aggregated.get((group.name, user))
            if feed is None:
                return []
            order = feed.order
            high = bisect.bisect_left(order, (id_lt, "")) if id_lt is not None else len(order)
            low = bisect.bisect_right(order, (id_gt, "\uffff")) if id_gt is not None else 0
            picked = order[max(low, high - limit) : high][::-1] if high > low else []
            return [self._stored(feed.groups[gid], group.max_activities) for _, gid in picked]

    @staticmethod
    def _stored(group: _Group, max_activities: int) -> StoredGroup:
        return StoredGroup(
            id=group.id,
            key=group.key,
            verb=group.verb,
            activity_ids=group.ids[-max_activities:][::-1],
            activity_count=len(group.ids),
            actor_count=len(group.actors),
            position=group.position,
            oldest=group.ids[0],
            is_seen=group.seen,
            is_read=group.read,
            is_archived=group.archived,
        )

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
        with self._lock:
            if group.aggregated:
                feed = self._aggregated.get((group.name, user))
                return len(feed.groups) if feed else 0
            return len(self._flat.get((group.name, user), ()))

    async def trim(self, group: FeedGroup, users: Sequence[str]) -> None:
        with self._lock:
            for user in users:
                if group.aggregated:
                    self._aggregated[group.name, user].trim(group.max_length)
                else:
                    ids = self._flat[group.name, user]
                    del ids[: max(0, len(ids) - group.max_length)]

    # -- notification state ----------------------------------------------------------------
    async def counts(self, group: FeedGroup, user: str) -> Counts:
        with self._lock:
            feed = self._aggregated.get((group.name, user))
            return feed.counts() if feed else Counts()

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
        with self._lock:
            feed = self._aggregated[group.name, user]
            if all:
                targets = [g for g in feed.groups.values() if up_to is None or g.position <= up_to]
            else:
                gids = set(group_ids) | {feed.members[a] for a in activity_ids if a in feed.members}
                targets = [feed.groups[gid] for gid in gids if gid in feed.groups]
            for target in targets:
                feed.set_flags(
                    target,
                    target.seen if marks.seen is None else marks.seen,
                    target.read if marks.read is None else marks.read,
                    target.archived if marks.archived is None else marks.archived,
                )
            return feed.counts()

    async def annotations(self, group: FeedGroup, user: str) -> dict[str, Annotation]:
        with self._lock:
            return dict(self._annotations.get((group.name, user), {}))

    async def annotate(
        self, group: FeedGroup, user: str, changes: Mapping[str, Annotation | None]
    ) -> None:
        with self._lock:
            notes = self._annotations[group.name, user]
            for gid, annotation in changes.items():
                if annotation is None or annotation.empty:
                    notes.pop(gid, None)
                else:
                    notes[gid] = annotation

    async def group_members(
        self, group: FeedGroup, user: str, group_ids: Sequence[str]
    ) -> dict[str, list[str]]:
        with self._lock:
            feed = self._aggregated.get((group.name, user))
            if feed is None:
                return {}
            return {gid: feed.groups[gid].ids[::-1] for gid in group_ids if gid in feed.groups}

    # -- follow graph ----------------------------------------------------------------------
    async def follow(self, user: str, targets: Sequence[str]) -> list[str]:
        with self._lock:
            new = [t for t in dict.fromkeys(targets) if t not in self._following[user]]
            for target in new:
                self._following[user].add(target)
                self._followers[target].add(user)
            return new

    async def unfollow(self, user: str, targets: Sequence[str]) -> list[str]:
        with self._lock:
            gone = [t for t in dict.fromkeys(targets) if t in self._following[user]]
            for target in gone:
                self._following[user].discard(target)
                self._followers[target].discard(user)
            return gone

    async def keep_history(self, user: str, targets: Sequence[str]) -> None:
        with self._lock:
            for target in targets:
                self._keepers[target].add(user)

    async def history_keepers(
        self, user: str, *, limit: int, after: str | None = None
    ) -> list[str]:
        with self._lock:
            return _page(self._keepers.get(user, set()), limit, after)

    async def followers(self, user: str, *, limit: int, after: str | None = None) -> list[str]:
        with self._lock:
            return _page(self._followers.get(user, set()), limit, after)

    async def following(self, user: str, *, limit: int, after: str | None = None) -> list[str]:
        with self._lock:
            return _page(self._following.get(user, set()), limit, after)

    async def follow_counts(self, user: str) -> tuple[int, int]:
        with self._lock:
            return len(self._followers.get(user, ())), len(self._following.get(user, ()))

    # -- preferences -----------------------------------------------------------------------
    async def preferences(self, users: Sequence[str]) -> dict[str, Preferences]:
        with self._lock:
            return {u: self._preferences[u] for u in users if u in self._preferences}

    async def put_preferences(self, user: str, prefs: Preferences) -> None:
        with self._lock:
            if prefs.is_default:
                self._preferences.pop(user, None)
            else:
                self._preferences[user] = prefs

    # -- lifecycle -------------------------------------------------------------------------
    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


def _page(members: set[str], limit: int, after: str | None) -> list[str]:
    ordered = sorted(members)
    start = bisect.bisect_right(ordered, after) if after is not None else 0
    return ordered[start : start + limit]
