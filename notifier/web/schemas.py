"""What crosses the HTTP boundary: request and response bodies and query strings.

All are msgspec structs that reject unknown fields; msgspec does the type checking, and the
domain rules (lengths, verbs, feed ids) are checked by ``notifier.model`` with the same
field names, so every 422 names the field at fault.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from notifier.categories import CATEGORY_NAME
from notifier.feeds import MAX_PAGE, Status
from notifier.model import USER_ID, Activity
from notifier.storage.base import Counts

UserId = Annotated[str, msgspec.Meta(pattern=USER_ID.pattern, description="A user id")]
ActivityId = Annotated[
    str, msgspec.Meta(pattern=r"^[0-9a-f]{26}$", description="An activity id (a cursor)")
]
Ref = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="Any id of yours; length limited by limits.max_ref_length",
    ),
]
CategoryName = Annotated[
    str, msgspec.Meta(pattern=CATEGORY_NAME.pattern, description="A notification category")
]
FeedId = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,31}:[A-Za-z0-9_.@=+-]{1,128}$")]


class ActivityIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """An activity as an app backend sends it; notifier adds the id."""

    actor: UserId
    verb: str
    object: Ref
    target: Ref | None = None
    time: datetime | None = None
    extra: dict[str, Any] = msgspec.field(default_factory=dict)
    foreign_id: Ref | None = None
    to: list[FeedId] = msgspec.field(default_factory=list)
    category: str | None = None
    """Notification category (tab); defaults to the verb's configured category."""
    expires_at: datetime | None = None
    """When the activity leaves every feed and count by itself (live, as a removal)."""


class ActivityBatchIn(msgspec.Struct, forbid_unknown_fields=True):
    """Several activities in one request (at most ``limits.max_batch``)."""

    activities: list[ActivityIn]


class ActivityBatchOut(msgspec.Struct):
    """The stored activities with their ids, in request order."""

    activities: list[Activity]


class RemovedOut(msgspec.Struct):
    """Ids of the activities removed."""

    removed: list[str]


class RemoveQuery(msgspec.Struct, forbid_unknown_fields=True):
    """Remove by foreign id."""

    foreign_id: Ref


class FollowIn(msgspec.Struct, forbid_unknown_fields=True):
    """``user`` starts following ``target``; ``backfill`` of the target's latest activities."""

    user: UserId
    target: UserId
    backfill: Annotated[int, msgspec.Meta(ge=0)] | None = None


class FollowOut(msgspec.Struct):
    """Whether the follow is new (re-following changes nothing)."""

    followed: bool


class UnfollowQuery(msgspec.Struct, forbid_unknown_fields=True):
    """``keep_history`` leaves the target's activities in the follower's feeds."""

    keep_history: bool = False


class UnfollowOut(msgspec.Struct):
    """Whether a follow existed."""

    unfollowed: bool


class UsersQuery(msgspec.Struct, forbid_unknown_fields=True):
    """A page of user ids after ``after``."""

    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    after: UserId | None = None


class UsersPage(msgspec.Struct):
    """User ids in a stable order; ``next`` is the ``after`` of the next page."""

    users: list[str]
    next: str | None


class FollowCounts(msgspec.Struct):
    """How many follow a user, and how many the user follows."""

    followers: int
    following: int


class PageQuery(msgspec.Struct, forbid_unknown_fields=True):
    """Cursor pagination: ``id_lt`` / ``id_gt`` are activity ids (group positions).
    Notification feeds also filter by ``status`` (default ``inbox``: neither archived nor
    snoozed) and ``category``."""

    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_PAGE)] = 25
    id_lt: ActivityId | None = None
    id_gt: ActivityId | None = None
    status: Status | None = None
    category: CategoryName | None = None


class CountsQuery(msgspec.Struct, forbid_unknown_fields=True):
    """``by=category`` adds unseen / unread per category."""

    by: Literal["category"] | None = None


class MarkIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Set (true) or clear (false) flags on groups, on the groups of activities, or on all
    (``all``, optionally only up to the position ``up_to``)."""

    seen: bool | None = None
    read: bool | None = None
    archived: bool | None = None
    done: bool | None = None
    """The user acted on the group (an action button); pushed live like the flags."""
    group_ids: list[ActivityId] = msgspec.field(default_factory=list)
    activity_ids: list[ActivityId] = msgspec.field(default_factory=list)
    all: bool = False
    up_to: ActivityId | None = None
    category: CategoryName | None = None
    """With ``all``: only groups of this category."""
    status: Status | None = None
    """With ``all``: only groups now in this status (``read``: archive all read ones)."""


class CategoryCountsOut(msgspec.Struct):
    """Unseen and unread groups of one category."""

    unseen: int
    unread: int


class CountsByCategoryOut(msgspec.Struct, omit_defaults=True):
    """Exact totals, and (with ``by=category``) the same split by category."""

    unseen: int
    unread: int
    categories: dict[str, CategoryCountsOut] | None = None
    """Every declared category (zeros included) and any other found in the feed."""
    uncategorized: CategoryCountsOut | None = None
    """Groups whose activities carry no category."""


class SnoozeIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Hide notification groups until ``until`` (they come back unseen); ``null`` ends the
    snooze now."""

    group_ids: Annotated[list[ActivityId], msgspec.Meta(min_length=1, max_length=1000)]
    until: datetime | None


class DeletedOut(msgspec.Struct):
    """The activities a delete took out of the feed, and the new counts."""

    removed: list[str]
    counts: CountsOut


class CountsOut(msgspec.Struct):
    """Exact unseen and unread counts of a notification feed."""

    unseen: int
    unread: int

    @classmethod
    def of(cls, counts: Counts) -> CountsOut:
        """From storage's Counts."""
        return cls(counts.unseen, counts.unread)


class MutedIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What to mute: category names (not critical ones), registered verbs, actors' user ids;
    each list at most ``limits.max_muted`` names. A list left out mutes nothing of its kind."""

    categories: list[str] = msgspec.field(default_factory=list)
    verbs: list[str] = msgspec.field(default_factory=list)
    actors: list[str] = msgspec.field(default_factory=list)


class PreferencesIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A user's notification preferences, replacing the stored ones. ``channels`` and
    ``email`` left out keep what is stored (a client that knows only mutes keeps them)."""

    muted: MutedIn
    channels: dict[str, list[str]] | msgspec.UnsetType = msgspec.UNSET
    """Delivery channel (``email``, ``webhook``) → categories not sent through it; ``*``:
    none at all (docs/delivery.md)."""
    email: str | msgspec.UnsetType | None = msgspec.UNSET
    """The address of email digests (server API only; null forgets it)."""


class MutedOut(msgspec.Struct):
    """What the user muted, each list sorted."""

    categories: list[str]
    verbs: list[str]
    actors: list[str]


class CategoryOut(msgspec.Struct):
    """A declared category; ``critical`` ones cannot be muted."""

    name: str
    critical: bool


class PreferencesOut(msgspec.Struct):
    """A user's notification preferences, and the categories there are to mute."""

    muted: MutedOut
    categories: list[CategoryOut]
    channels: dict[str, list[str]] = msgspec.field(default_factory=dict)
    """Delivery channel → categories not sent through it (``*``: none), each list sorted."""
    email: str | None = None


class TokenIn(msgspec.Struct, forbid_unknown_fields=True):
    """Issue a user token; ``feeds`` limits it to some feed groups."""

    user: UserId
    ttl: Annotated[int, msgspec.Meta(ge=1)] | None = None
    feeds: list[str] | None = None


class TokenOut(msgspec.Struct):
    """A user token and when it expires (epoch seconds)."""

    token: str
    expires_at: int


class Health(msgspec.Struct):
    """Liveness or readiness, with the state of each dependency when it matters."""

    status: str
    checks: dict[str, str] = msgspec.field(default_factory=dict)
