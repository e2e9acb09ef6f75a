"""The client API, for browsers holding a user token: only ever the token's own feeds.

There is no user id in these paths: the user is the token's ``sub``, so a token for one user
cannot name another's feed at all. A token limited to some feed groups gets 403 for others.
"""

from __future__ import annotations

from notifier.feeds import Feed, FlatPage, GroupPage
from notifier.web import feed_ops, preference_ops
from notifier.web.auth import Forbidden
from notifier.web.routing import Call, Endpoint
from notifier.web.schemas import (
    CountsByCategoryOut,
    CountsOut,
    CountsQuery,
    DeletedOut,
    MarkIn,
    PageQuery,
    PreferencesIn,
    PreferencesOut,
    SnoozeIn,
)
from notifier.web.services import Services


def client_endpoints(s: Services) -> list[Endpoint]:
    """Every client API endpoint, bound to this process's services."""

    def own_feed(call: Call) -> Feed:
        group = call.path["group"]
        s.group(group)
        if not call.claims.allows(group):
            raise Forbidden(f"this token does not cover the {group!r} feeds", field="group")
        return s.feed(group, call.claims.user)

    categories = s.notifier.config.categories
    limits = s.notifier.config.limits

    async def read_own_feed(call: Call) -> FlatPage | GroupPage:
        feed = own_feed(call)
        await s.active.seen(feed.user)  # a user reading their feeds is active: HIGH fanout
        return await feed_ops.read_page(feed, call.query, categories)

    async def own_counts(call: Call) -> CountsByCategoryOut:
        feed = own_feed(call)
        await s.active.seen(feed.user)
        return await feed_ops.counts(feed, call.query, categories)

    async def mark_own_feed(call: Call) -> CountsOut:
        return await feed_ops.mark(own_feed(call), call.body, s.bus)

    async def snooze_own(call: Call) -> CountsOut:
        feed = own_feed(call)
        counts = await feed_ops.snooze(feed, call.body, s.bus, limits.max_snooze_days)
        await feed_ops.wake_at(s.fanout, feed, call.body)
        return CountsOut.of(counts)

    async def delete_own(call: Call) -> DeletedOut:
        return await feed_ops.delete(own_feed(call), call.path["group_id"], s.bus)

    async def own_preferences(call: Call) -> PreferencesOut:
        return await preference_ops.read(s.notifier, call.claims.user)

    async def set_own_preferences(call: Call) -> PreferencesOut:
        return await preference_ops.replace(
            s.notifier, call.claims.user, call.body, may_set_email=False
        )

    tags = ("client",)
    return [
        Endpoint("GET", "/v1/me/feeds/{group}", read_own_feed, "Read one of your feeds",
                 auth="user", query=PageQuery, response=(FlatPage, GroupPage), errors=(404,),
                 tags=tags),
        Endpoint("GET", "/v1/me/feeds/{group}/counts", own_counts,
                 "Your unseen and unread counts (by=category: per category too)", auth="user",
                 query=CountsQuery, response=CountsByCategoryOut, errors=(404,), tags=tags),
        Endpoint("POST", "/v1/me/feeds/{group}/mark", mark_own_feed,
                 "Mark your notifications seen / read / archived / done (or clear)",
                 auth="user", body=MarkIn, response=CountsOut, errors=(404,), tags=tags),
        Endpoint("POST", "/v1/me/feeds/{group}/snooze", snooze_own,
                 "Snooze your notifications until a time (null: unsnooze)", auth="user",
                 body=SnoozeIn, response=CountsOut, errors=(404,), tags=tags),
        Endpoint("DELETE", "/v1/me/feeds/{group}/groups/{group_id}", delete_own,
                 "Delete one of your notifications for good", auth="user",
                 response=DeletedOut, errors=(404,), tags=tags),
        Endpoint("GET", "/v1/me/preferences", own_preferences,
                 "Your notification preferences (what you muted)", auth="user",
                 response=PreferencesOut, tags=tags),
        Endpoint("PUT", "/v1/me/preferences", set_own_preferences,
                 "Replace your notification preferences (mute categories, verbs, actors)",
                 auth="user", body=PreferencesIn, response=PreferencesOut, tags=tags),
    ]  # fmt: skip
