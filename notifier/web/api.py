"""The server API, for app backends holding an API key: activities, follows, any feed, tokens."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.responses import Response

from notifier import metrics
from notifier.errors import Conflict, InvalidInput, NotFound
from notifier.feeds import FlatPage, GroupPage
from notifier.model import Activity, check_user_id
from notifier.web import feed_ops, preference_ops
from notifier.web.routing import Call, Endpoint, Link, json_response
from notifier.web.schemas import (
    ActivityBatchIn,
    ActivityBatchOut,
    ActivityIn,
    CountsByCategoryOut,
    CountsOut,
    CountsQuery,
    DeletedOut,
    FollowCounts,
    FollowIn,
    FollowOut,
    MarkIn,
    PageQuery,
    PreferencesIn,
    PreferencesOut,
    RemovedOut,
    RemoveQuery,
    SnoozeIn,
    TokenIn,
    TokenOut,
    UnfollowOut,
    UnfollowQuery,
    UsersPage,
    UsersQuery,
)
from notifier.web.services import Services

MAX_USERS_PAGE = 1000


def server_endpoints(s: Services) -> list[Endpoint]:
    """Every server API endpoint, bound to this process's services."""

    def build(raw: ActivityIn, index: int | None = None) -> Activity:
        try:
            return s.notifier.activity(
                actor=raw.actor,
                verb=raw.verb,
                object=raw.object,
                target=raw.target,
                time=raw.time,
                extra=raw.extra,
                foreign_id=raw.foreign_id,
                to=raw.to,
                category=raw.category,
                expires_at=raw.expires_at,
            )
        except InvalidInput as exc:
            if index is None:
                raise
            raise InvalidInput(f"activities[{index}].{exc.field}", exc.message) from None

    async def store(activities: Sequence[Activity]) -> tuple[list[Activity], bool]:
        """Add activities; a re-send of a stored id must match it or 409.

        A matching re-send runs the (idempotent) writes and fanout again rather than
        returning early: if the first attempt failed half-way (a storage or broker outage
        after the body was stored), the retry is what completes it. Nothing changes twice.
        """
        first: dict[str, int] = {}
        for i, activity in enumerate(activities):
            j = first.setdefault(activity.id, i)
            if activities[j] != activity:
                # Same foreign_id and time, different content: one would silently replace the
                # other. The same rule as across requests (409), and nothing is stored.
                raise Conflict(
                    f"activities[{j}] and activities[{i}] share foreign_id "
                    f"{activity.foreign_id!r} and time but differ; nothing was stored",
                    field=f"activities[{i}].foreign_id",
                )
        existing = await s.notifier.storage.get_activities([a.id for a in activities])
        for activity in activities:
            before = existing.get(activity.id)
            if before is not None and before != activity:
                raise Conflict(
                    f"an activity with foreign_id {activity.foreign_id!r} and this time exists "
                    "with different content",
                    field="foreign_id",
                )
        await s.fanout.add_activities(list({a.id: a for a in activities}.values()))
        metrics.ACTIVITIES_ACCEPTED.inc(sum(a.id not in existing for a in activities))
        created = any(a.id not in existing for a in activities)
        return [existing.get(a.id, a) for a in activities], created

    async def add_activity(call: Call) -> Response:
        (stored,), created = await store([build(call.body)])
        return json_response(stored, 201 if created else 200)

    async def add_activities(call: Call) -> Response:
        items = call.body.activities
        if not items:
            raise InvalidInput("activities", "at least one activity")
        if len(items) > s.notifier.config.limits.max_batch:
            limit = s.notifier.config.limits.max_batch
            raise InvalidInput("activities", f"at most {limit} activities per batch")
        stored, created = await store([build(raw, i) for i, raw in enumerate(items)])
        return json_response(ActivityBatchOut(stored), 201 if created else 200)

    async def remove_activity(call: Call) -> RemovedOut:
        activity_id = call.path["activity_id"]
        removed = await s.fanout.remove_activity(activity_id=activity_id)
        s.notifier.bodies.forget(removed)
        if not removed:
            raise NotFound(f"no activity {activity_id!r}", field="activity_id")
        return RemovedOut(removed)

    async def remove_by_foreign_id(call: Call) -> RemovedOut:
        removed = await s.fanout.remove_activity(foreign_id=call.query.foreign_id)
        s.notifier.bodies.forget(removed)
        if not removed:
            foreign_id = call.query.foreign_id
            raise NotFound(f"no activity with foreign_id {foreign_id!r}", field="foreign_id")
        return RemovedOut(removed)

    async def follow(call: Call) -> FollowOut:
        body: FollowIn = call.body
        check_user_id(body.user, "user")
        check_user_id(body.target, "target")
        if body.user == body.target:
            raise InvalidInput("target", "a user cannot follow themselves")
        if body.backfill is not None and body.backfill < 0:
            raise InvalidInput("backfill", "must be 0 or more")
        return FollowOut(await s.fanout.follow(body.user, body.target, backfill=body.backfill))

    async def unfollow(call: Call) -> UnfollowOut:
        user = check_user_id(call.path["user"], "user")
        target = check_user_id(call.path["target"], "target")
        keep = call.query.keep_history
        return UnfollowOut(await s.fanout.unfollow(user, target, keep_history=keep))

    def users_query(call: Call) -> tuple[str, UsersQuery]:
        query: UsersQuery = call.query
        if not 1 <= query.limit <= MAX_USERS_PAGE:
            raise InvalidInput("limit", f"must be from 1 to {MAX_USERS_PAGE}")
        return check_user_id(call.path["user"], "user"), query

    async def list_followers(call: Call) -> UsersPage:
        user, q = users_query(call)
        users = await s.notifier.storage.followers(user, limit=q.limit, after=q.after)
        return UsersPage(users, users[-1] if len(users) == q.limit else None)

    async def list_following(call: Call) -> UsersPage:
        user, q = users_query(call)
        users = await s.notifier.storage.following(user, limit=q.limit, after=q.after)
        return UsersPage(users, users[-1] if len(users) == q.limit else None)

    async def follow_counts(call: Call) -> FollowCounts:
        user = check_user_id(call.path["user"], "user")
        followers, following = await s.notifier.storage.follow_counts(user)
        return FollowCounts(followers, following)

    categories = s.notifier.config.categories

    async def read_feed(call: Call) -> FlatPage | GroupPage:
        feed = s.feed(call.path["group"], call.path["user"])
        return await feed_ops.read_page(feed, call.query, categories)

    async def feed_counts(call: Call) -> CountsByCategoryOut:
        feed = s.feed(call.path["group"], call.path["user"])
        return await feed_ops.counts(feed, call.query, categories)

    async def mark_feed(call: Call) -> CountsOut:
        feed = s.feed(call.path["group"], call.path["user"])
        return await feed_ops.mark(feed, call.body, s.bus)

    async def snooze_feed(call: Call) -> CountsOut:
        feed = s.feed(call.path["group"], call.path["user"])
        max_days = s.notifier.config.limits.max_snooze_days
        counts = await feed_ops.snooze(feed, call.body, s.bus, max_days)
        await feed_ops.wake_at(s.fanout, feed, call.body)
        return CountsOut.of(counts)

    async def delete_group(call: Call) -> DeletedOut:
        feed = s.feed(call.path["group"], call.path["user"])
        return await feed_ops.delete(feed, call.path["group_id"], s.bus)

    async def issue_token(call: Call) -> TokenOut:
        body: TokenIn = call.body
        if body.ttl is not None and body.ttl < 1:
            raise InvalidInput("ttl", "must be at least 1 second")
        for group in body.feeds or ():
            s.group(group)
        token, expires = s.tokens.issue(body.user, body.ttl, body.feeds)
        return TokenOut(token, expires)

    async def user_preferences(call: Call) -> PreferencesOut:
        return await preference_ops.read(s.notifier, check_user_id(call.path["user"], "user"))

    async def set_user_preferences(call: Call) -> PreferencesOut:
        user = check_user_id(call.path["user"], "user")
        return await preference_ops.replace(s.notifier, user, call.body)

    activities, follows, feeds = ("activities",), ("follows",), ("feeds",)
    actor_feed = s.notifier.config.feeds.actor_group
    made = {
        "Remove": Link("remove_activity", {"activity_id": "$response.body#/id"}),
        "ActorFeed": Link("read_feed", {"group": actor_feed, "user": "$request.body#/actor"}),
        "Followers": Link("list_followers", {"user": "$request.body#/actor"}),
    }
    followed = {
        "Unfollow": Link("unfollow", {"user": "$request.body#/user",
                                      "target": "$request.body#/target"}),
        "Followers": Link("list_followers", {"user": "$request.body#/target"}),
        "Following": Link("list_following", {"user": "$request.body#/user"}),
        "Counts": Link("follow_counts", {"user": "$request.body#/target"}),
    }  # fmt: skip
    read = {
        "Counts": Link("feed_counts", {"group": "$request.path.group",
                                       "user": "$request.path.user"}),
        "Mark": Link("mark_feed", {"group": "$request.path.group", "user": "$request.path.user"},
                     body={"read": True, "all": True}),
    }  # fmt: skip
    return [
        Endpoint("POST", "/v1/activities", add_activity, "Add an activity (fanout runs in the "
                 "background)", body=ActivityIn, response=Activity, status=201, errors=(409,),
                 tags=activities, links=made),
        Endpoint("POST", "/v1/activities/batch", add_activities, "Add a batch of activities",
                 body=ActivityBatchIn, response=ActivityBatchOut, status=201, errors=(409,),
                 tags=activities),
        Endpoint("DELETE", "/v1/activities/{activity_id}", remove_activity,
                 "Remove an activity everywhere it went", response=RemovedOut, errors=(404,),
                 tags=activities),
        Endpoint("DELETE", "/v1/activities", remove_by_foreign_id,
                 "Remove the activities with a foreign id", query=RemoveQuery,
                 response=RemovedOut, errors=(404,), tags=activities),
        Endpoint("POST", "/v1/follows", follow, "Follow a user (with backfill)", body=FollowIn,
                 response=FollowOut, tags=follows, links=followed),
        Endpoint("DELETE", "/v1/follows/{user}/{target}", unfollow, "Unfollow a user",
                 query=UnfollowQuery, response=UnfollowOut, tags=follows),
        Endpoint("GET", "/v1/users/{user}/followers", list_followers, "Followers of a user",
                 query=UsersQuery, response=UsersPage, tags=follows),
        Endpoint("GET", "/v1/users/{user}/following", list_following, "Whom a user follows",
                 query=UsersQuery, response=UsersPage, tags=follows),
        Endpoint("GET", "/v1/users/{user}/follow_counts", follow_counts,
                 "Follower and following counts", response=FollowCounts, tags=follows),
        Endpoint("GET", "/v1/feeds/{group}/{user}", read_feed, "Read any feed", query=PageQuery,
                 response=(FlatPage, GroupPage), errors=(404,), tags=feeds, links=read),
        Endpoint("GET", "/v1/feeds/{group}/{user}/counts", feed_counts,
                 "Unseen and unread counts of any notification feed (by=category: per "
                 "category too)", query=CountsQuery, response=CountsByCategoryOut,
                 errors=(404,), tags=feeds),
        Endpoint("POST", "/v1/feeds/{group}/{user}/mark", mark_feed,
                 "Mark on behalf of a user", body=MarkIn, response=CountsOut, errors=(404,),
                 tags=feeds),
        Endpoint("POST", "/v1/feeds/{group}/{user}/snooze", snooze_feed,
                 "Snooze a user's notifications until a time (null: unsnooze)", body=SnoozeIn,
                 response=CountsOut, errors=(404,), tags=feeds),
        Endpoint("DELETE", "/v1/feeds/{group}/{user}/groups/{group_id}", delete_group,
                 "Delete one of a user's notifications for good", response=DeletedOut,
                 errors=(404,), tags=feeds),
        Endpoint("GET", "/v1/users/{user}/preferences", user_preferences,
                 "A user's notification preferences", response=PreferencesOut,
                 tags=("preferences",)),
        Endpoint("PUT", "/v1/users/{user}/preferences", set_user_preferences,
                 "Replace a user's notification preferences", body=PreferencesIn,
                 response=PreferencesOut, tags=("preferences",)),
        Endpoint("POST", "/v1/tokens", issue_token, "Issue a user token for a browser",
                 body=TokenIn, response=TokenOut, errors=(404,), tags=("auth",)),
    ]  # fmt: skip
