"""The Storage protocol and the values it speaks in.

Every method is one logical operation over many items: the per-item loop lives inside the
backend, where it becomes one pipeline, one Lua call or one concurrent batch. Callers never loop
over feeds issuing a round trip each.

Semantics every backend must share (the contract suite in tests/storage checks them):

- Activity storage is separate from timelines: a body is written once, feeds hold ids.
- Adding is idempotent: an activity already in a feed changes nothing, nor does one merged
  into a group long ago. A flat feed does not remember what it trimmed: a trimmed id added
  again stays out while the feed is full, and comes back if removals made room since.
- Flat feeds keep the ``max_length`` newest ids, newest first.
- Aggregated feeds keep at most ``max_length`` groups ordered by *position*, the id of the
  group's newest activity. A new activity joins the most recent group with the same key among
  the ``merge_window`` most recent groups, or opens a new group whose id is its own id (or, in
  the rare case that id still names a group, ``fresh_group_id``'s next free one). Entries
  of one call are applied oldest first. A group that gains an activity becomes unseen, unread
  and unarchived. A group that loses its last activity disappears.
- Notification counts are exact: ``unseen`` counts groups neither seen nor archived, ``unread``
  groups neither read nor archived. They change in the same atomic step as the state they count.
"""

from __future__ import annotations

import asyncio
from collections.abc import Container, Mapping, Sequence
from datetime import datetime
from typing import Protocol

import msgspec

from notifier.feedgroups import FeedGroup
from notifier.model import Activity
from notifier.preferences import Preferences


def fresh_group_id(activity_id: str, taken: Container[str]) -> str:
    """The id of a group opened by ``activity_id``: that id, unless a group of the feed already
    has it (the activity opened a group, was removed, and is added again while that group
    lives on), then the next id up in the 12-hex-digit suffix. Every backend uses this rule."""
    gid = activity_id
    while gid in taken:
        suffix = (int(gid[14:], 16) + 1) % (1 << 48)
        gid = f"{gid[:14]}{suffix:012x}"
    return gid


class Entry(msgspec.Struct, frozen=True, array_like=True):
    """An activity as a timeline sees it: its id, who did it, and its group key."""

    id: str
    actor: str
    verb: str
    key: str = ""
    """Group key from the feed group's aggregation rule; empty for flat feeds."""


class Counts(msgspec.Struct, frozen=True):
    """Exact numbers of unseen and unread groups in a notification feed."""

    unseen: int = 0
    unread: int = 0


class StoredGroup(msgspec.Struct, frozen=True, kw_only=True):
    """One aggregated group as stored (activity ids, not bodies)."""

    id: str
    """Stable within its feed: the id of the activity that opened the group."""
    key: str
    verb: str
    """The verb of the activity that opened the group."""
    activity_ids: list[str]
    """Newest first, at most the group's ``max_activities``."""
    activity_count: int
    actor_count: int
    position: str
    """Id of the group's newest activity: groups sort by it and cursors name it."""
    oldest: str
    """Id of the group's oldest activity (its ``created_at``)."""
    is_seen: bool = False
    is_read: bool = False
    is_archived: bool = False


class FeedChange(msgspec.Struct, frozen=True, kw_only=True):
    """What one write did to one user's feed (returned only for feeds that changed)."""

    user: str
    added: list[str] = msgspec.field(default_factory=list)
    removed: list[str] = msgspec.field(default_factory=list)
    counts: Counts | None = None
    """New absolute counts, for notification feeds."""


class Marks(msgspec.Struct, frozen=True):
    """Which flags to set (True), clear (False) or leave alone (None)."""

    seen: bool | None = None
    read: bool | None = None
    archived: bool | None = None

    def __post_init__(self) -> None:
        if self.seen is None and self.read is None and self.archived is None:
            raise ValueError("Marks must set or clear at least one flag")


class Annotation(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a user set on one notification group besides the flags the counts depend on.

    Kept beside the feed, not in it: the counts never depend on these, so they need no
    atomic step with the feed's state (a snoozed group is also archived, which is what takes
    it out of the counts; notifier/inbox.py)."""

    done: bool = False
    """The user acted on it (an action button, or marked done)."""
    snoozed_until: datetime | None = None
    """Hidden until then; it comes back unseen (the wake timer, notifier/inbox.py)."""

    @property
    def empty(self) -> bool:
        return not self.done and self.snoozed_until is None


class Storage(Protocol):
    """Everything notifier keeps: activities, timelines, notification state, the follow graph."""

    #: Whether a flat feed always holds at most ``max_length`` ids. Cassandra's may hold one
    #: more for a while (docs/storage.md), which a removal then brings back into the newest
    #: ``max_length``: the realtime layer answers a removal with a sync there, not a bare
    #: ``removed`` frame, so a client sees the id that resurfaced.
    flat_feeds_exact: bool

    # -- activities ------------------------------------------------------------------------
    async def put_activities(self, activities: Sequence[Activity]) -> None:
        """Store activity bodies by id (idempotent) and index their foreign ids."""

    async def get_activities(self, ids: Sequence[str]) -> dict[str, Activity]:
        """Bodies by id, in one round trip; unknown ids are absent from the result."""

    async def delete_activities(self, ids: Sequence[str]) -> None:
        """Forget bodies and their foreign-id index entries (feeds are cleaned separately)."""

    async def find_foreign_ids(self, foreign_ids: Sequence[str]) -> list[str]:
        """Ids of all stored activities carrying any of ``foreign_ids``."""

    # -- timelines -------------------------------------------------------------------------
    async def add_to_feeds(
        self, group: FeedGroup, users: Sequence[str], entries: Sequence[Entry]
    ) -> list[FeedChange]:
        """Add ``entries`` to the ``group`` feed of every user in ``users``, trimming after."""

    async def remove_from_feeds(
        self, group: FeedGroup, users: Sequence[str], ids: Sequence[str]
    ) -> list[FeedChange]:
        """Take activities out of the ``group`` feed of every user in ``users``."""

    async def read_flat(
        self,
        group: FeedGroup,
        user: str,
        *,
        limit: int,
        id_lt: str | None = None,
        id_gt: str | None = None,
    ) -> list[str]:
        """Activity ids of a flat feed, newest first, strictly between the cursors."""

    async def read_groups(
        self,
        group: FeedGroup,
        user: str,
        *,
        limit: int,
        id_lt: str | None = None,
        id_gt: str | None = None,
    ) -> list[StoredGroup]:
        """Groups of an aggregated feed by position, newest first, strictly between cursors."""

    async def read_page(
        self,
        group: FeedGroup,
        user: str,
        *,
        limit: int,
        id_lt: str | None = None,
        id_gt: str | None = None,
    ) -> tuple[list[StoredGroup], Counts]:
        """``read_groups`` and the feed's ``counts`` together: what a notification page shows,
        in one round trip (and one consistent instant) where the backend can."""

    async def read_inbox(
        self,
        group: FeedGroup,
        user: str,
        *,
        limit: int,
        id_lt: str | None = None,
        id_gt: str | None = None,
    ) -> tuple[list[StoredGroup], Counts, dict[str, Annotation]]:
        """``read_page`` and the feed's ``annotations`` together: what a notification page
        shows, in one round trip where the backend can (Redis: one script)."""

    async def count(self, group: FeedGroup, user: str) -> int:
        """Activities in a flat feed, groups in an aggregated one."""

    async def trim(self, group: FeedGroup, users: Sequence[str]) -> None:
        """Enforce ``max_length`` now (adds trim by themselves; this is for a lowered limit)."""

    # -- notification state ----------------------------------------------------------------
    async def counts(self, group: FeedGroup, user: str) -> Counts:
        """Exact unseen and unread counts of a notification feed."""

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
        """Set flags on the named groups, the groups holding the named activities, or all
        groups (with ``up_to``: only groups whose position is at most that id). Unknown ids
        are ignored. Returns the new counts."""

    async def annotations(self, group: FeedGroup, user: str) -> dict[str, Annotation]:
        """Every group's annotation in a notification feed, by group id (one round trip)."""

    async def annotate(
        self, group: FeedGroup, user: str, changes: Mapping[str, Annotation | None]
    ) -> None:
        """Set annotations by group id; None (or an empty annotation) deletes one."""

    async def group_members(
        self, group: FeedGroup, user: str, group_ids: Sequence[str]
    ) -> dict[str, list[str]]:
        """Every activity id (newest first) of the named groups of an aggregated feed, not
        only the shown ``max_activities``, by group id; unknown groups are absent."""

    # -- follow graph ----------------------------------------------------------------------
    async def follow(self, user: str, targets: Sequence[str]) -> list[str]:
        """Make ``user`` follow ``targets``; returns the targets that were not followed yet."""

    async def unfollow(self, user: str, targets: Sequence[str]) -> list[str]:
        """Stop following; returns the targets that were followed."""

    async def keep_history(self, user: str, targets: Sequence[str]) -> None:
        """``user`` unfollowed ``targets`` and keeps their past activities in its feeds:
        removing one of those activities must still reach ``user`` (``history_keepers``)."""

    async def history_keepers(
        self, user: str, *, limit: int, after: str | None = None
    ) -> list[str]:
        """Users who unfollowed ``user`` keeping its activities, in a stable order, the page
        after ``after``."""

    async def followers(self, user: str, *, limit: int, after: str | None = None) -> list[str]:
        """Followers of ``user`` in a stable order, the page after ``after``."""

    async def following(self, user: str, *, limit: int, after: str | None = None) -> list[str]:
        """Users that ``user`` follows in a stable order, the page after ``after``."""

    async def follow_counts(self, user: str) -> tuple[int, int]:
        """(followers, following) of ``user``."""

    # -- preferences -----------------------------------------------------------------------
    async def preferences(self, users: Sequence[str]) -> dict[str, Preferences]:
        """Stored preferences of ``users`` in one round trip (fanout reads a chunk's at
        once); users who mute nothing are absent."""

    async def put_preferences(self, user: str, prefs: Preferences) -> None:
        """Replace ``user``'s preferences (default ones are forgotten, not stored)."""

    # -- lifecycle -------------------------------------------------------------------------
    async def ping(self) -> None:
        """Raise if the backend cannot be reached (used by readiness checks)."""

    async def close(self) -> None:
        """Release connections."""


async def read_inbox_apart(
    storage: Storage,
    group: FeedGroup,
    user: str,
    *,
    limit: int,
    id_lt: str | None = None,
    id_gt: str | None = None,
) -> tuple[list[StoredGroup], Counts, dict[str, Annotation]]:
    """``Storage.read_inbox`` as two concurrent reads, for backends without one call."""
    (stored, counts), notes = await asyncio.gather(
        storage.read_page(group, user, limit=limit, id_lt=id_lt, id_gt=id_gt),
        storage.annotations(group, user),
    )
    return stored, counts, notes
