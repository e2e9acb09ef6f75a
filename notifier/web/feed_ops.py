"""Feed reads and marks shared by the server API (any user) and the client API (own feeds)."""

from __future__ import annotations

import logging

from notifier.categories import Categories
from notifier.errors import InvalidInput, NotFound
from notifier.fanout.manager import Manager
from notifier.feeds import AggregatedFeed, Feed, FlatFeed, FlatPage, GroupPage, NotificationFeed
from notifier.ids import is_id
from notifier.inbox import Inbox, check_until
from notifier.realtime.bus import Bus, UserEvent, events_for, marked
from notifier.storage.base import Counts, Marks
from notifier.web.schemas import (
    CategoryCountsOut,
    CountsByCategoryOut,
    CountsOut,
    CountsQuery,
    DeletedOut,
    MarkIn,
    PageQuery,
    SnoozeIn,
)

log = logging.getLogger(__name__)

MAX_MARK_IDS = 1000


async def read_page(
    feed: Feed, query: PageQuery, categories: Categories | None = None
) -> FlatPage | GroupPage:
    """A page of any feed kind; notification feeds filtered by status and category."""
    if isinstance(feed, NotificationFeed):
        if query.category is not None:
            (categories or Categories()).check(query.category)
        return await feed.read(
            query.limit,
            id_lt=query.id_lt,
            id_gt=query.id_gt,
            status=query.status or "inbox",
            category=query.category,
        )
    for field in ("status", "category"):
        if getattr(query, field) is not None:
            raise InvalidInput(field, f"only notification feeds filter by {field}")
    if isinstance(feed, FlatFeed | AggregatedFeed):
        return await feed.read(query.limit, id_lt=query.id_lt, id_gt=query.id_gt)
    raise InvalidInput("group", f"feed group {feed.group.name!r} cannot be read")


def _notification(feed: Feed) -> NotificationFeed:
    if not isinstance(feed, NotificationFeed):
        raise InvalidInput("group", f"{feed.group.name!r} is a {feed.group.kind} feed: no counts")
    return feed


async def counts(
    feed: Feed, query: CountsQuery | None = None, categories: Categories | None = None
) -> CountsByCategoryOut:
    """Exact unseen / unread counts of a notification feed (``by=category``: split too)."""
    target = _notification(feed)
    if query is None or query.by is None:
        counts = await target.counts()
        return CountsByCategoryOut(counts.unseen, counts.unread)
    declared = [c.name for c in categories or ()]
    tally = await Inbox(target).counts_by_category(declared)
    return CountsByCategoryOut(
        tally.counts.unseen,
        tally.counts.unread,
        categories={
            name: CategoryCountsOut(c.unseen, c.unread) for name, c in tally.categories.items()
        },
        uncategorized=CategoryCountsOut(tally.uncategorized.unseen, tally.uncategorized.unread),
    )


async def mark(feed: Feed, body: MarkIn, bus: Bus) -> CountsOut:
    """Apply a mark request (exactly one target: ids, or ``all``) and announce the new counts
    to every connection of the user, wherever it lives."""
    counts = await _mark(_notification(feed), body)
    await _announce(bus, [marked(feed.user, feed.group.name, counts)], feed.user)
    return CountsOut.of(counts)


async def _mark(target: NotificationFeed, body: MarkIn) -> Counts:
    flags = (body.seen, body.read, body.archived)
    if all(flag is None for flag in flags) and body.done is None:
        raise InvalidInput("seen", "set at least one of seen, read, archived, done")
    if len(body.group_ids) + len(body.activity_ids) > MAX_MARK_IDS:
        raise InvalidInput("group_ids", f"at most {MAX_MARK_IDS} ids per request")
    if body.all:
        if body.group_ids or body.activity_ids:
            raise InvalidInput("all", "give either all or ids, not both")
    else:
        for field in ("up_to", "category", "status"):
            if getattr(body, field) is not None:
                raise InvalidInput(field, f"{field} only applies with all=true")
        if not body.group_ids and not body.activity_ids:
            raise InvalidInput("group_ids", "name group_ids or activity_ids, or set all=true")
    for field, values in (("group_ids", body.group_ids), ("activity_ids", body.activity_ids)):
        if not all(is_id(v) for v in values):
            raise InvalidInput(field, "every id must be an activity id (26 hex digits)")
    marks = None if all(flag is None for flag in flags) else Marks(*flags)
    return await Inbox(target).mark(
        marks,
        done=body.done,
        group_ids=body.group_ids,
        activity_ids=body.activity_ids,
        all=body.all,
        up_to=body.up_to,
        category=body.category,
        status=body.status,
    )


async def snooze(feed: Feed, body: SnoozeIn, bus: Bus, max_days: int) -> Counts:
    """Snooze (or unsnooze) groups and announce the new counts; the caller schedules the
    wake timer."""
    check_until(body.until, max_days=max_days)
    if not all(is_id(v) for v in body.group_ids):
        raise InvalidInput("group_ids", "every id must be an activity id (26 hex digits)")
    target = _notification(feed)
    counts = await Inbox(target).snooze(body.group_ids, body.until)
    await _announce(bus, [marked(feed.user, feed.group.name, counts)], feed.user)
    return counts


async def wake_at(manager: Manager, feed: Feed, body: SnoozeIn) -> None:
    """Schedule the wake timers of a snooze (notifier/inbox.py ``Inbox.wake``)."""
    if body.until is not None:
        await manager.wake_later(feed.group, feed.user, body.group_ids, body.until)


async def delete(feed: Feed, group_id: str, bus: Bus) -> DeletedOut:
    """Delete one notification group for good and announce the removal."""
    if not is_id(group_id):
        raise InvalidInput("group_id", "must be a group id (26 hex digits)")
    target = _notification(feed)
    deleted = await Inbox(target).delete([group_id])
    if deleted.change is None:
        raise NotFound(f"no notification {group_id!r} in this feed", field="group_id")
    events = events_for(feed.group.name, "removed", [deleted.change])
    await _announce(bus, events, feed.user)
    return DeletedOut(removed=deleted.change.removed, counts=CountsOut.of(deleted.counts))


async def _announce(bus: Bus, events: list[UserEvent], user: str) -> None:
    try:
        await bus.publish(events)
    except Exception:  # the write is done; connections heal on their next event or resume
        log.exception("realtime publish failed user=%s", user)
