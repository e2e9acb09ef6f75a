"""A deliberately naive model of feeds, for property tests: slow, obvious, and independent.

It re-derives everything by scanning (no indexes, no incremental counts), so agreement with a
backend means the backend's bookkeeping is right, not that two copies share a bug.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from notifier.storage.base import Counts, Entry, Marks, StoredGroup


@dataclass
class RefGroup:
    id: str
    key: str
    verb: str
    entries: dict[str, Entry] = field(default_factory=dict)
    seen: bool = False
    read: bool = False
    archived: bool = False

    @property
    def position(self) -> str:
        return max(self.entries)


@dataclass
class RefAggregatedFeed:
    max_length: int
    window: int
    shown: int
    groups: list[RefGroup] = field(default_factory=list)

    def ordered(self) -> list[RefGroup]:
        return sorted(self.groups, key=lambda g: (g.position, g.id), reverse=True)

    def holder(self, activity_id: str) -> RefGroup | None:
        return next((g for g in self.groups if activity_id in g.entries), None)

    def add(self, entries: list[Entry]) -> None:
        for e in sorted(entries, key=lambda e: e.id):
            if self.holder(e.id) is not None:
                continue
            candidates = [g for g in self.ordered()[: self.window] if g.key == e.key]
            if candidates:
                target = candidates[0]
            else:
                taken = {g.id for g in self.groups}
                gid = e.id
                while gid in taken:  # opened by a re-added activity whose old group lives on
                    gid = f"{gid[:14]}{int(gid[14:], 16) + 1:012x}"
                target = RefGroup(gid, e.key, e.verb)
                self.groups.append(target)
            target.entries[e.id] = e
            target.seen = target.read = target.archived = False
        while len(self.groups) > self.max_length:
            self.groups.remove(self.ordered()[-1])

    def remove(self, ids: list[str]) -> None:
        for activity_id in ids:
            group = self.holder(activity_id)
            if group is not None:
                del group.entries[activity_id]
                if not group.entries:
                    self.groups.remove(group)

    def mark(self, marks: Marks, targets: list[RefGroup]) -> None:
        for g in targets:
            g.seen = g.seen if marks.seen is None else marks.seen
            g.read = g.read if marks.read is None else marks.read
            g.archived = g.archived if marks.archived is None else marks.archived

    def counts(self) -> Counts:
        return Counts(
            sum(not g.seen and not g.archived for g in self.groups),
            sum(not g.read and not g.archived for g in self.groups),
        )

    def stored(self) -> list[StoredGroup]:
        return [
            StoredGroup(
                id=g.id,
                key=g.key,
                verb=g.verb,
                activity_ids=sorted(g.entries, reverse=True)[: self.shown],
                activity_count=len(g.entries),
                actor_count=len({e.actor for e in g.entries.values()}),
                position=g.position,
                oldest=min(g.entries),
                is_seen=g.seen,
                is_read=g.read,
                is_archived=g.archived,
            )
            for g in self.ordered()
        ]
