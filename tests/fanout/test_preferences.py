"""Mutes applied when writing: through real workers, a muted activity never reaches that
user's notification feed, counts or realtime events, while followers who do not mute it get
it; a critical category gets through whatever is stored; timelines are not filtered."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import AsyncIterator

import msgspec
import pytest
import redis.asyncio as aioredis

from notifier.fanout.runtime import open_manager
from notifier.model import Activity
from notifier.preferences import Muted, Preferences
from notifier.realtime.bus import decode_event
from notifier.realtime.redis_bus import SharedEvent, channel_prefix, fanout_channel
from tests.fanout.conftest import FEEDS, Harness, WorkerPool, make_config, memory_harness

CATEGORIES = """
[categories.billing]
critical = true
verbs = ["invite"]

[categories.social]
verbs = ["like", "comment"]
"""


def muting(
    categories: tuple[str, ...] = (), verbs: tuple[str, ...] = (), actors: tuple[str, ...] = ()
) -> Preferences:
    return Preferences(
        muted=Muted(
            categories=frozenset(categories), verbs=frozenset(verbs), actors=frozenset(actors)
        )
    )


@pytest.fixture(params=["memory", "redis"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    """Memory: the in-process broker and worker. Redis: a worker OS process on the broker."""
    if request.param == "memory":
        made = await memory_harness(feeds=FEEDS + CATEGORIES)
        pool = None
    else:
        url = request.getfixturevalue("storage_redis_url")
        config, path = make_config(url, f"f{uuid.uuid4().hex[:10]}", feeds=FEEDS + CATEGORIES)
        pool = WorkerPool(path)
        pool.start(1)
        made = Harness("redis", config, open_manager(config), pool=pool)
    try:
        yield made
    finally:
        await made.manager.close()
        if pool is not None:
            if getattr(request.node, "rep_call", None) and request.node.rep_call.failed:
                print(pool.output())
            pool.stop()


class Announced:
    """Every ``added`` event the workers publish, per (feed, user): the memory harness's
    recording bus, or the Redis bus's channels (user channels and the shared fanout one).
    None on a Redis Cluster, whose sharded channels (notifier/realtime/cluster_bus.py) this
    does not listen to: the single-server run checks the events, this one the feeds."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.pubsub: aioredis.client.PubSub | None = None

    async def __aenter__(self) -> Announced:
        if self.harness.backend == "redis" and self.watchable:
            client = aioredis.Redis.from_url(self.harness.config.storage_url)
            self.pubsub = client.pubsub()
            await self.pubsub.psubscribe(f"{self.harness.config.key_prefix}:rt:*")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.pubsub is not None:
            await self.pubsub.aclose()  # type: ignore[no-untyped-call]

    @property
    def watchable(self) -> bool:
        return not self.harness.config.storage_url.startswith("redis+cluster")

    async def added(self) -> dict[tuple[str, str], set[str]] | None:
        if not self.watchable:
            return None
        found: dict[tuple[str, str], set[str]] = defaultdict(set)
        if self.harness.bus is not None:
            for event in self.harness.bus.events:
                if event.kind == "added":
                    found[event.feed, event.user] |= set(event.activity_ids)
            return found
        assert self.pubsub is not None
        prefix = self.harness.config.key_prefix
        users_at = channel_prefix(prefix).encode()
        while (message := await self.pubsub.get_message(timeout=1)) is not None:
            if message["type"] != "pmessage":
                continue
            if message["channel"] == fanout_channel(prefix).encode():
                shared = msgspec.json.decode(message["data"], type=SharedEvent)
                event, users = decode_event(shared.event), shared.users
            else:
                event = decode_event(message["data"])
                users = [message["channel"][len(users_at) :].decode()]
            if event.kind == "added":
                for user in users:
                    found[event.feed, user] |= set(event.activity_ids)
        return found


async def digest_ids(harness: Harness, user: str) -> set[str]:
    group = harness.config.feeds["digest"]
    return {i for g in await harness.storage.read_groups(group, user, limit=100)
            for i in g.activity_ids}  # fmt: skip


async def test_mutes_keep_activities_out_of_notification_feeds_counts_and_events(
    harness: Harness,
) -> None:
    u = harness.user
    ana, cy = u("ana"), u("cy")
    plain, by_actor, by_verb, by_category, critical = (
        u("plain"), u("by-actor"), u("by-verb"), u("by-category"), u("critical"),
    )  # fmt: skip
    followers = [plain, by_actor, by_verb, by_category, critical]
    await harness.follow_all(followers, ana)
    await harness.storage.put_preferences(by_actor, muting(actors=(ana,)))
    await harness.storage.put_preferences(by_verb, muting(verbs=("comment",)))
    await harness.storage.put_preferences(by_category, muting(categories=("social",)))
    # Stored before billing became critical (the API refuses it now): billing still arrives,
    # even though its verb and its actor are muted too; social does not.
    await harness.storage.put_preferences(
        critical, muting(categories=("billing", "social"), verbs=("invite",))
    )
    app = harness.app()
    like = app.activity(actor=ana, verb="like", object="photo:1")
    comment = app.activity(actor=ana, verb="comment", object="photo:1")
    post = app.activity(actor=ana, verb="post", object="post:1")
    invoice = app.activity(actor=ana, verb="invite", object="invoice:1")
    assert (like.category, comment.category, post.category, invoice.category) == (
        "social", "social", None, "billing",
    )  # fmt: skip
    # And a direct write (``to``), not fanout: cy's like into three notification feeds, one
    # of whose users mutes cy.
    to = [f"notification:{user}" for user in (plain, by_actor, by_verb)]
    direct = app.activity(actor=cy, verb="like", object="photo:2", to=to)
    await harness.storage.put_preferences(by_verb, muting(verbs=("comment",), actors=(cy,)))

    async with Announced(harness) as announced:
        await harness.manager.add_activities([like, comment, post, invoice, direct])
        await harness.manager.join(60)
        events = await announced.added()

    ids = {a.id: a.verb for a in (like, comment, post, invoice)}
    expected = {
        plain: {like.id, comment.id, post.id, invoice.id},
        by_actor: {invoice.id},
        by_verb: {like.id, post.id, invoice.id},
        by_category: {post.id, invoice.id},
        critical: {post.id, invoice.id},
    }
    for user, wanted in expected.items():
        got = await digest_ids(harness, user)
        assert got == wanted, (user, sorted(ids[i] for i in got))
        counts = await harness.storage.counts(harness.config.feeds["digest"], user)
        groups = await harness.storage.count(harness.config.feeds["digest"], user)
        # The digest groups by verb and actor: one group per activity received.
        assert (groups, counts.unseen, counts.unread) == (len(wanted),) * 3, user
        assert events is None or events["digest", user] == wanted, user
        # Timelines (flat) are not notifications: every follower gets everything.
        timeline = await harness.storage.read_flat(harness.config.feeds["timeline"], user, limit=10)
        assert set(timeline) == set(ids), user

    notification = harness.config.feeds["notification"]
    for user, gets in ((plain, True), (by_actor, True), (by_verb, False)):
        stored = await harness.storage.read_groups(notification, user, limit=10)
        assert [g.activity_ids for g in stored] == ([[direct.id]] if gets else []), user
        assert (await harness.storage.counts(notification, user)).unread == int(gets), user


async def test_a_follower_muting_something_else_gets_the_activity_in_any_chunk(
    harness: Harness,
) -> None:
    ana = harness.user("ana")
    followers = [harness.user(f"f{i:03d}") for i in range(250)]  # two chunks of 200 / 50
    await harness.follow_all(followers, ana)
    await harness.storage.put_preferences(followers[-1], muting(verbs=("comment",)))
    activity: Activity = harness.app().activity(actor=ana, verb="like", object="photo:1")
    await harness.manager.add_activity(activity)
    await harness.manager.join(60)
    for user in (followers[0], followers[-1]):
        assert await digest_ids(harness, user) == {activity.id}
