"""Feed reads and marks shared by the server API (any user) and the client API (own feeds)."""

from __future__ import annotations

import logging

from notifier.errors import InvalidInput
from notifier.feeds import AggregatedFeed, Feed, FlatFeed, FlatPage, GroupPage, NotificationFeed
from notifier.ids import is_id
from notifier.realtime.bus import Bus, marked
from notifier.storage.base import Counts
from notifier.web.schemas import CountsOut, MarkIn, PageQuery

log = logging.getLogger(__name__)

MAX_MARK_IDS = 1000


async def read_page(feed: Feed, query: PageQuery) -> FlatPage | GroupPage:
    """A page of any feed kind."""
    if isinstance(feed, FlatFeed | AggregatedFeed):
        return await feed.read(query.limit, id_lt=query.id_lt, id_gt=query.id_gt)
    raise InvalidInput("group", f"feed group {feed.group.name!r} cannot be read")


def _notification(feed: Feed) -> NotificationFeed:
    if not isinstance(feed, NotificationFeed):
        raise InvalidInput("group", f"{feed.group.name!r} is a {feed.group.kind} feed: no counts")
    return feed


async def counts(feed: Feed) -> CountsOut:
    """Exact unseen / unread counts of a notification feed."""
    return CountsOut.of(await _notification(feed).counts())


async def mark(feed: Feed, body: MarkIn, bus: Bus) -> CountsOut:
    """Apply a mark request (exactly one target: ids, or ``all``) and announce the new counts
    to every connection of the user, wherever it lives."""
    counts = await _mark(_notification(feed), body)
    try:
        await bus.publish([marked(feed.user, feed.group.name, counts)])
    except Exception:  # the mark is done; connections heal on their next event or resume
        log.exception("realtime publish of a mark failed user=%s", feed.user)
    return CountsOut.of(counts)


async def _mark(target: NotificationFeed, body: MarkIn) -> Counts:
    if body.seen is None and body.read is None and body.archived is None:
        raise InvalidInput("seen", "set at least one of seen, read, archived")
    if len(body.group_ids) + len(body.activity_ids) > MAX_MARK_IDS:
        raise InvalidInput("group_ids", f"at most {MAX_MARK_IDS} ids per request")
    flags = {"seen": body.seen, "read": body.read, "archived": body.archived}
    if body.all:
        if body.group_ids or body.activity_ids:
            raise InvalidInput("all", "give either all or ids, not both")
        return await target.mark_all(**flags, up_to=body.up_to)
    if body.up_to is not None:
        raise InvalidInput("up_to", "up_to only applies with all=true")
    if not body.group_ids and not body.activity_ids:
        raise InvalidInput("group_ids", "name group_ids or activity_ids, or set all=true")
    for field, values in (("group_ids", body.group_ids), ("activity_ids", body.activity_ids)):
        if not all(is_id(v) for v in values):
            raise InvalidInput(field, "every id must be an activity id (26 hex digits)")
    return await target.mark(**flags, group_ids=body.group_ids, activity_ids=body.activity_ids)
