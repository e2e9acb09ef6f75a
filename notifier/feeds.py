"""Feeds as an app developer sees them: add, remove, read pages, count, mark.

A feed is a feed group (its kind and limits) plus a user id. It turns activities into the
entries storage keeps (rendering group keys with the group's aggregation rule) and storage's
ids back into activities, fetching the bodies of a whole page in one round trip.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Literal, get_args

import msgspec

from notifier import ids
from notifier.aggregation import MAX_KEY_LENGTH
from notifier.errors import InvalidInput
from notifier.feedgroups import FeedGroup, FeedKind
from notifier.model import Activity, check_user_id
from notifier.storage.base import Annotation, Counts, Entry, Marks, Storage, StoredGroup

MAX_PAGE = 100

Bodies = Callable[[Sequence[str]], Awaitable[dict[str, Activity]]]
"""Fetches activity bodies by id (``Storage.get_activities`` or a cache in front of it)."""


class FlatPage(msgspec.Struct, frozen=True, kw_only=True):
    """A page of a flat feed, newest first; ``next`` is the ``id_lt`` of the following page."""

    activities: list[Activity]
    next: str | None


class Group(msgspec.Struct, frozen=True, kw_only=True):
    """An aggregated group with its newest activities: "ana and 3 others liked your photo"."""

    id: str
    key: str
    verb: str
    activities: list[Activity]
    activity_count: int
    actor_count: int
    actors: list[str]
    """Distinct actors of the shown activities, most recent first."""
    created_at: datetime
    updated_at: datetime
    position: str
    is_seen: bool
    is_read: bool
    is_archived: bool
    category: str | None = None
    """The category of its activities (a group never mixes categories)."""
    is_done: bool = False
    """The user acted on it (an action, or marked done)."""
    snoozed_until: datetime | None = None
    """Set while the group is snoozed (it is archived until then; notifier/inbox.py)."""


class GroupPage(msgspec.Struct, frozen=True, kw_only=True):
    """A page of an aggregated feed by position, newest first, with counts when it has them."""

    groups: list[Group]
    next: str | None
    counts: Counts | None = None


def entries_for(group: FeedGroup, activities: Sequence[Activity]) -> list[Entry]:
    """The entries ``group``'s feeds store for ``activities`` (group keys rendered once).

    A categorised activity's key starts with its category, so one group never mixes
    categories (notifier.categories)."""
    rule = group.rule
    if rule is None:
        return [Entry(a.id, a.actor, a.verb) for a in activities]
    return [Entry(a.id, a.actor, a.verb, group_key(rule.key(a), a.category)) for a in activities]


def group_key(key: str, category: str | None) -> str:
    """The stored group key of an activity whose rule rendered ``key``."""
    return key if category is None else f"{category}:{key}"[:MAX_KEY_LENGTH]


def check_cursor(value: str | None, field: str) -> str | None:
    """A cursor must be an activity id; anything else is the caller's mistake."""
    if value is not None and not ids.is_id(value):
        raise InvalidInput(field, "must be an activity id (26 hex digits)")
    return value


def check_limit(limit: int, maximum: int = MAX_PAGE) -> int:
    """Page sizes are 1..maximum."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= maximum:
        raise InvalidInput("limit", f"must be an integer from 1 to {maximum}")
    return limit


class Feed:
    """Operations every feed kind has."""

    def __init__(
        self, storage: Storage, group: FeedGroup, user: str, bodies: Bodies | None = None
    ) -> None:
        self.storage = storage
        self.group = group
        self.user = check_user_id(user, "user")
        self.bodies: Bodies = bodies or storage.get_activities
        """Where page reads fetch activity bodies: storage, or a process's cache of it."""

    @property
    def id(self) -> str:
        """``group:user``, as used in ``to`` and the HTTP API."""
        return f"{self.group.name}:{self.user}"

    async def add(self, activity: Activity) -> bool:
        """Store ``activity`` and add it to this feed; False when it was already there."""
        return bool(await self.add_many([activity]))

    async def add_many(self, activities: Sequence[Activity]) -> list[str]:
        """Store and add several activities at once; returns the ids that were new here."""
        entries = entries_for(self.group, activities)
        await self.storage.put_activities(activities)
        changes = await self.storage.add_to_feeds(self.group, [self.user], entries)
        return changes[0].added if changes else []

    async def remove(
        self, activity_id: str | None = None, *, foreign_id: str | None = None
    ) -> list[str]:
        """Take an activity out of this feed by id or by foreign id; returns removed ids."""
        if (activity_id is None) == (foreign_id is None):
            raise InvalidInput("activity_id", "give exactly one of activity_id and foreign_id")
        if activity_id is not None:
            targets = [activity_id]
        else:
            targets = await self.storage.find_foreign_ids([foreign_id or ""])
        changes = await self.storage.remove_from_feeds(self.group, [self.user], targets)
        return changes[0].removed if changes else []

    async def count(self) -> int:
        """Activities (flat) or groups (aggregated) in the feed."""
        return await self.storage.count(self.group, self.user)

    async def trim(self) -> None:
        """Enforce ``max_length`` now."""
        await self.storage.trim(self.group, [self.user])


class FlatFeed(Feed):
    """Activities, newest first."""

    async def read(
        self, limit: int = 25, *, id_lt: str | None = None, id_gt: str | None = None
    ) -> FlatPage:
        """A page of activities strictly older than ``id_lt`` / newer than ``id_gt``."""
        check_limit(limit)
        found = await self.storage.read_flat(
            self.group,
            self.user,
            limit=limit,
            id_lt=check_cursor(id_lt, "id_lt"),
            id_gt=check_cursor(id_gt, "id_gt"),
        )
        bodies = await self.bodies(found)
        now = datetime.now(UTC)
        activities = [bodies[i] for i in found if i in bodies and not bodies[i].expired(now)]
        return FlatPage(activities=activities, next=found[-1] if len(found) == limit else None)


class AggregatedFeed(Feed):
    """Groups of activities, most recently updated first."""

    async def read(
        self, limit: int = 25, *, id_lt: str | None = None, id_gt: str | None = None
    ) -> GroupPage:
        """A page of groups whose position is strictly between the cursors."""
        check_limit(limit)
        stored, counts = await self._read_stored(
            limit, check_cursor(id_lt, "id_lt"), check_cursor(id_gt, "id_gt")
        )
        groups = await hydrate(self.storage, stored, self.bodies)
        return GroupPage(
            groups=groups,
            next=stored[-1].position if len(stored) == limit else None,
            counts=counts,
        )

    async def _read_stored(
        self, limit: int, id_lt: str | None, id_gt: str | None
    ) -> tuple[list[StoredGroup], Counts | None]:
        stored = await self.storage.read_groups(
            self.group, self.user, limit=limit, id_lt=id_lt, id_gt=id_gt
        )
        return stored, None


Status = Literal["inbox", "unread", "unseen", "read", "seen", "archived", "snoozed", "all"]
STATUSES: tuple[Status, ...] = get_args(Status)
_SCAN = 100
"""Groups per storage read while a filtered read looks for a page of matches."""


def in_status(status: Status, *, seen: bool, read: bool, archived: bool, snoozed: bool) -> bool:
    """Whether a group with these flags is listed under ``status``.

    ``inbox`` (the default) is everything neither archived nor snoozed; a snoozed group is
    archived until it wakes, so it is only ever under ``snoozed`` (and ``all``)."""
    return {
        "inbox": not archived,
        "unread": not read and not archived,
        "unseen": not seen and not archived,
        "read": read and not archived,
        "seen": seen and not archived,
        "archived": archived and not snoozed,
        "snoozed": snoozed,
        "all": True,
    }[status]


class NotificationFeed(AggregatedFeed):
    """An aggregated feed with seen / read / archived state, exact counts, annotations (done,
    snoozed) and filtered reads (by status and category)."""

    async def read(
        self,
        limit: int = 25,
        *,
        id_lt: str | None = None,
        id_gt: str | None = None,
        status: Status = "inbox",
        category: str | None = None,
    ) -> GroupPage:
        """A page of the groups matching ``status`` and ``category``, by position, strictly
        between the cursors. A filtered page reads on down the feed until it has ``limit``
        matches or reaches the end, so its cost grows with the groups it skips (bounded by
        ``max_length``); ``status="all"`` without a category is one storage read."""
        check_limit(limit)
        if status not in STATUSES:
            raise InvalidInput("status", f"must be one of {', '.join(STATUSES)}")
        id_lt, id_gt = check_cursor(id_lt, "id_lt"), check_cursor(id_gt, "id_gt")

        stored, counts, notes = await self.storage.read_inbox(
            self.group, self.user, limit=limit, id_lt=id_lt, id_gt=id_gt
        )
        found: list[Group] = []
        batch = limit
        while True:
            # Flags and annotations decide the status before any body is fetched: groups a
            # filter skips cost a storage read, not a hydration.
            wanted = [g for g in stored if stored_in(g, notes.get(g.id), status)]
            groups = await hydrate(self.storage, wanted, self.bodies, notes)
            found += [g for g in groups if category is None or g.category == category]
            if len(found) >= limit or len(stored) < batch:
                break
            batch = min(max((limit - len(found)) * 2, 20), _SCAN)
            stored, _ = await self.storage.read_page(
                self.group, self.user, limit=batch, id_lt=stored[-1].position, id_gt=id_gt
            )
        found = found[:limit]
        return GroupPage(
            groups=found,
            next=found[-1].position if len(found) == limit else None,
            counts=counts,
        )

    async def counts(self) -> Counts:
        """Exact unseen and unread counts."""
        return await self.storage.counts(self.group, self.user)

    async def mark(
        self,
        *,
        seen: bool | None = None,
        read: bool | None = None,
        archived: bool | None = None,
        group_ids: Sequence[str] = (),
        activity_ids: Sequence[str] = (),
    ) -> Counts:
        """Set or clear flags on some groups (named directly or by one of their activities)."""
        return await self.storage.mark(
            self.group,
            self.user,
            _marks(seen, read, archived),
            group_ids=group_ids,
            activity_ids=activity_ids,
        )

    async def mark_all(
        self,
        *,
        seen: bool | None = None,
        read: bool | None = None,
        archived: bool | None = None,
        up_to: str | None = None,
    ) -> Counts:
        """Set or clear flags on every group (only those at or below ``up_to`` when given)."""
        return await self.storage.mark(
            self.group,
            self.user,
            _marks(seen, read, archived),
            all=True,
            up_to=check_cursor(up_to, "up_to"),
        )


def _marks(seen: bool | None, read: bool | None, archived: bool | None) -> Marks:
    if seen is None and read is None and archived is None:
        raise InvalidInput("seen", "set at least one of seen, read, archived")
    return Marks(seen, read, archived)


async def hydrate(
    storage: Storage,
    stored: Sequence[StoredGroup],
    bodies_of: Bodies | None = None,
    notes: Mapping[str, Annotation] | None = None,
) -> list[Group]:
    """Groups with their activity bodies, all fetched in one round trip (or from a cache),
    and the user's annotations (``notes``). Expired activities are left out, and a group
    whose shown activities all expired with them: the expiry timer removes them from storage
    soon, reads must not show them until then (notifier/fanout/timers.py)."""
    wanted = [i for g in stored for i in g.activity_ids]
    bodies = await (bodies_of or storage.get_activities)(wanted)
    if any(b.expires_at is not None for b in bodies.values()):
        now = datetime.now(UTC)
        expired = {i for i, b in bodies.items() if b.expired(now)}
        bodies = {i: b for i, b in bodies.items() if i not in expired}
        groups_left = [
            g
            for g in stored
            if any(i in bodies for i in g.activity_ids) or not expired.intersection(g.activity_ids)
        ]
    else:
        groups_left = list(stored)
    notes = notes or {}
    groups = []
    for g in groups_left:
        activities = [bodies[i] for i in g.activity_ids if i in bodies]
        note = notes.get(g.id) if notes else None
        snoozed = note.snoozed_until if note is not None and g.is_archived else None
        groups.append(
            Group(
                id=g.id,
                key=g.key,
                verb=g.verb,
                activities=activities,
                activity_count=g.activity_count,
                actor_count=g.actor_count,
                actors=list(dict.fromkeys(a.actor for a in activities)),
                created_at=ids.id_time(g.oldest),
                updated_at=ids.id_time(g.position),
                position=g.position,
                is_seen=g.is_seen,
                is_read=g.is_read,
                is_archived=g.is_archived,
                category=activities[0].category if activities else None,
                is_done=note is not None and note.done,
                snoozed_until=snoozed,
            )
        )
    return groups


def stored_in(group: StoredGroup, note: Annotation | None, status: Status) -> bool:
    """``in_status`` for a stored group and its annotation (snoozed: archived with a wake
    time)."""
    snoozed = group.is_archived and note is not None and note.snoozed_until is not None
    return in_status(
        status, seen=group.is_seen, read=group.is_read, archived=group.is_archived, snoozed=snoozed
    )


def open_feed(storage: Storage, group: FeedGroup, user: str, bodies: Bodies | None = None) -> Feed:
    """The feed object for ``group``'s kind."""
    if group.kind is FeedKind.NOTIFICATION:
        return NotificationFeed(storage, group, user, bodies)
    if group.kind is FeedKind.AGGREGATED:
        return AggregatedFeed(storage, group, user, bodies)
    return FlatFeed(storage, group, user, bodies)
