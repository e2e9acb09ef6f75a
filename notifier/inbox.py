"""What a user does with their notifications beyond seen / read: categories, scoped marks,
done, snooze and delete. Built on the storage's feed operations and its annotations, so every
backend has it with no new atomic step:

- **Counts by category** tally one read of the whole feed (its ``max_length`` groups). The
  totals are storage's exact counts from that same read.
- **Scoped marks** (one category, or only groups in one status) read the feed, then mark
  the matching groups by id: a group that arrives in between is left alone, as a group newer
  than ``up_to`` is.
- **Snooze** archives the groups, which takes them out of the counts in storage's own atomic
  step, and records when they wake in their annotations. A group is snoozed while it is
  archived *and* has a wake time, so a new activity (which unarchives its group) brings it
  back at once. At the wake time a timer (``wake``) makes it unseen and unread again.
- **Delete** removes every activity of the groups from this user's feed (others keep theirs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from notifier.errors import InvalidInput
from notifier.feeds import NotificationFeed, Status, stored_in
from notifier.storage.annotations import prune
from notifier.storage.base import Annotation, Counts, FeedChange, Marks, StoredGroup

_SCAN = 500
"""Groups per storage read when an operation reads the whole feed."""


class CategoryCounts(msgspec.Struct, frozen=True):
    """Unseen and unread groups of one category."""

    unseen: int = 0
    unread: int = 0


@dataclass(frozen=True)
class Tally:
    """Exact totals and their split by category (``uncategorized``: groups without one)."""

    counts: Counts
    categories: dict[str, CategoryCounts]
    uncategorized: CategoryCounts


@dataclass(frozen=True)
class Deleted:
    """What deleting notification groups did to the feed."""

    change: FeedChange | None
    counts: Counts


class Inbox:
    """One user's notification feed, with the operations of the module docstring."""

    def __init__(self, feed: NotificationFeed) -> None:
        self.feed = feed
        self.storage = feed.storage
        self.group = feed.group
        self.user = feed.user

    # -- reading the whole feed ------------------------------------------------------------
    async def _everything(self) -> tuple[list[StoredGroup], Counts, dict[str, Annotation]]:
        """Every group, newest first, with the counts and the annotations of the first read
        (one round trip on Redis for a feed of up to ``_SCAN`` groups)."""
        found, counts, notes = await self.storage.read_inbox(self.group, self.user, limit=_SCAN)
        stored = found
        while len(stored) == _SCAN:
            stored, _ = await self.storage.read_page(
                self.group, self.user, limit=_SCAN, id_lt=stored[-1].position
            )
            found += stored
        return found, counts, notes

    async def _categories(self, stored: Sequence[StoredGroup]) -> dict[str, str | None]:
        """Each group's category, from the body of its newest activity (a group never mixes
        categories); one body fetch, from the process's cache where it has them."""
        newest = [g.activity_ids[0] for g in stored if g.activity_ids]
        bodies = await self.feed.bodies(newest)
        return {
            g.id: bodies[g.activity_ids[0]].category
            for g in stored
            if g.activity_ids and g.activity_ids[0] in bodies
        }

    async def _select(
        self,
        stored: Sequence[StoredGroup],
        notes: Mapping[str, Annotation],
        category: str | None,
        status: Status | None,
    ) -> list[StoredGroup]:
        categories = await self._categories(stored) if category is not None else {}
        chosen = []
        for g in stored:
            if category is not None and categories.get(g.id) != category:
                continue
            if status is not None and not stored_in(g, notes.get(g.id), status):
                continue
            chosen.append(g)
        return chosen

    # -- counts ----------------------------------------------------------------------------
    async def counts_by_category(self, declared: Sequence[str] = ()) -> Tally:
        """Unseen / unread per category (every ``declared`` one present, zeros included)."""
        stored, counts, _ = await self._everything()
        categories = await self._categories(stored)
        tallies: dict[str | None, list[int]] = {name: [0, 0] for name in declared}
        tallies.setdefault(None, [0, 0])
        for g in stored:
            tally = tallies.setdefault(categories.get(g.id), [0, 0])
            tally[0] += not g.is_seen and not g.is_archived
            tally[1] += not g.is_read and not g.is_archived
        none = tallies.pop(None)
        return Tally(
            counts=counts,
            categories={
                name: CategoryCounts(*tally) for name, tally in tallies.items() if name is not None
            },
            uncategorized=CategoryCounts(*none),
        )

    # -- marks -----------------------------------------------------------------------------
    async def mark(
        self,
        marks: Marks | None,
        *,
        done: bool | None = None,
        group_ids: Sequence[str] = (),
        activity_ids: Sequence[str] = (),
        all: bool = False,
        up_to: str | None = None,
        category: str | None = None,
        status: Status | None = None,
    ) -> Counts:
        """Set flags (``marks``) and ``done`` on the named groups, or on all (with ``all``:
        only those at or below ``up_to``, of ``category``, in ``status``). Archiving or
        unarchiving a snoozed group ends its snooze. Returns the new counts."""
        if marks is None and done is None:
            raise InvalidInput("seen", "set at least one of seen, read, archived, done")
        scoped = all and (category is not None or status not in (None, "all"))
        unsnooze = marks is not None and marks.archived is not None
        annotating = done is not None or unsnooze
        targets = list(group_ids)
        notes: dict[str, Annotation] | None = None
        if all and (scoped or annotating):
            stored, _, notes = await self._everything()
            chosen = await self._select(stored, notes, category, status)
            targets = [g.id for g in chosen if up_to is None or g.position <= up_to]
        elif activity_ids and annotating:
            # Every member, not only the shown ones: an older activity names its group too.
            stored, _, notes = await self._everything()
            members = await self.storage.group_members(
                self.group, self.user, [g.id for g in stored]
            )
            wanted = set(activity_ids)
            targets += [gid for gid, ids in members.items() if wanted.intersection(ids)]
        if marks is None:
            counts = await self.storage.counts(self.group, self.user)
        elif all and not scoped:
            counts = await self.storage.mark(self.group, self.user, marks, all=True, up_to=up_to)
        elif all:
            counts = await self.storage.mark(self.group, self.user, marks, group_ids=targets)
        else:
            counts = await self.storage.mark(
                self.group, self.user, marks, group_ids=group_ids, activity_ids=activity_ids
            )
        if annotating and targets:
            if notes is None:
                notes = await self.storage.annotations(self.group, self.user)
            await self._annotate(targets, notes, done=done, unsnooze=unsnooze)
        return counts

    async def _annotate(
        self,
        group_ids: Sequence[str],
        notes: Mapping[str, Annotation],
        *,
        done: bool | None,
        unsnooze: bool,
    ) -> None:
        changes: dict[str, Annotation | None] = {}
        for gid in dict.fromkeys(group_ids):
            note = notes.get(gid, Annotation())
            updated = Annotation(
                done=note.done if done is None else done,
                snoozed_until=None if unsnooze else note.snoozed_until,
            )
            if updated != note:
                changes[gid] = updated
        if changes:
            await self.storage.annotate(self.group, self.user, changes)

    # -- snooze ----------------------------------------------------------------------------
    async def snooze(self, group_ids: Sequence[str], until: datetime | None) -> Counts:
        """Hide the groups until ``until`` (None: bring them back now, as they were). The
        caller schedules ``wake`` at ``until``. Unknown ids are ignored."""
        stored, counts, notes = await self._everything()
        live = {g.id: g for g in stored}
        targets = [gid for gid in dict.fromkeys(group_ids) if gid in live]
        changes: dict[str, Annotation | None] = dict(prune(notes, list(live)))
        for gid in targets:
            note = notes.get(gid, Annotation())
            changes[gid] = Annotation(done=note.done, snoozed_until=until)
        if changes:
            await self.storage.annotate(self.group, self.user, changes)
        if not targets:
            return counts
        if until is None:
            back = [gid for gid in targets if notes.get(gid, Annotation()).snoozed_until]
            if not back:
                return counts
            return await self.storage.mark(
                self.group, self.user, Marks(archived=False), group_ids=back
            )
        return await self.storage.mark(
            self.group, self.user, Marks(archived=True), group_ids=targets
        )

    async def wake(self, group_id: str, until: datetime) -> Counts | None:
        """The wake timer of a snooze: if ``group_id`` is still snoozed until ``until``, it
        comes back unseen and unread; returns the new counts (None: nothing to do, e.g. it
        was unsnoozed, snoozed again, or deleted). Idempotent."""
        stored, _, notes = await self._everything()
        note = notes.get(group_id)
        if note is None or note.snoozed_until != until:
            return None
        group = next((g for g in stored if g.id == group_id), None)
        await self.storage.annotate(self.group, self.user, {group_id: Annotation(done=note.done)})
        if group is None or not group.is_archived:
            return None  # gone, or back already (a new activity unarchived it)
        return await self.storage.mark(
            self.group,
            self.user,
            Marks(seen=False, read=False, archived=False),
            group_ids=[group_id],
        )

    # -- delete ----------------------------------------------------------------------------
    async def delete(self, group_ids: Sequence[str]) -> Deleted:
        """Remove every activity of the groups from this feed, for good."""
        members = await self.storage.group_members(self.group, self.user, group_ids)
        ids = [i for gid in members for i in members[gid]]
        changes = await self.storage.remove_from_feeds(self.group, [self.user], ids) if ids else []
        if members:
            await self.storage.annotate(self.group, self.user, dict.fromkeys(members))
        change = changes[0] if changes else None
        if change is not None and change.counts is not None:
            return Deleted(change, change.counts)
        return Deleted(change, await self.storage.counts(self.group, self.user))


def check_until(until: datetime | None, *, max_days: int, now: datetime | None = None) -> None:
    """A snooze must end in the future and within ``max_days``."""
    if until is None:
        return
    now = now or datetime.now(UTC)
    if until.tzinfo is None:
        raise InvalidInput("until", "must carry a time zone (e.g. 2026-12-01T09:00:00Z)")
    if until <= now:
        raise InvalidInput("until", "must be in the future")
    if (until - now).days >= max_days:
        raise InvalidInput("until", f"must be within {max_days} days (limits.max_snooze_days)")
