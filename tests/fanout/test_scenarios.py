"""Fanout scenarios, each run on memory (in-process broker) and on Redis (worker processes)."""

from __future__ import annotations

import pytest

from notifier.errors import InvalidInput
from notifier.fanout.followers import FollowCounts
from tests.fanout.conftest import Harness


async def test_one_activity_reaches_10000_followers_once_and_removal_takes_it_back(
    harness: Harness,
) -> None:
    ana = harness.user("ana")
    followers = [harness.user(f"f{i:05d}") for i in range(10_000)]
    await harness.follow_all(followers, ana)
    assert (await harness.manager.follow_counts(ana)).followers == 10_000
    app = harness.app()
    like = app.activity(actor=ana, verb="like", object="photo:1", foreign_id=f"{ana}:like:1")

    await harness.manager.add_activity(like)
    await harness.manager.join(120)

    timelines = await harness.read_all("timeline", followers)
    assert all(ids == [like.id] for ids in timelines.values())
    digests = await harness.counts_all("digest", followers)
    assert set(digests.values()) == {(1, 1, 1)}
    assert await harness.storage.read_flat(harness.config.feeds["user"], ana, limit=5) == [like.id]
    if harness.bus is not None:
        added = [e for e in harness.bus.events if e.feed == "timeline" and e.kind == "added"]
        assert sorted(e.user for e in added) == followers
        # Run twice or not, a chunk publishes one event per user it changed.
        assert len({e.user for e in added}) == len(added)

    assert await harness.manager.remove_activity(foreign_id=f"{ana}:like:1") == [like.id]
    await harness.manager.join(120)

    timelines = await harness.read_all("timeline", followers)
    assert all(ids == [] for ids in timelines.values())
    assert set((await harness.counts_all("digest", followers)).values()) == {(0, 0, 0)}
    assert await harness.storage.read_flat(harness.config.feeds["user"], ana, limit=5) == []
    assert await harness.storage.get_activities([like.id]) == {}


async def test_to_feeds_are_written_at_once_and_removed_with_the_activity(
    harness: Harness,
) -> None:
    ana, bo, cy = harness.user("ana"), harness.user("bo"), harness.user("cy")
    app = harness.app()
    mention = app.activity(
        actor=ana,
        verb="mention",
        object="comment:1",
        to=[f"notification:{bo}", f"notification:{cy}", f"timeline:{cy}"],
    )
    await harness.manager.add_activity(mention)
    # No join: the caller's own write is done when add_activity returns.
    for user in (bo, cy):
        page = await app.notification_feed("notification", user).read()
        assert [a.id for g in page.groups for a in g.activities] == [mention.id]
        assert page.counts is not None and page.counts.unseen == 1
    assert (await app.flat_feed("timeline", cy).read()).activities == [mention]

    assert await harness.manager.remove_activity(mention.id) == [mention.id]
    for user in (bo, cy):
        assert (await app.notification_feed("notification", user).counts()).unseen == 0
    assert (await app.flat_feed("timeline", cy).read()).activities == []
    await harness.manager.join(60)


async def test_follow_backfills_the_newest_activities_and_unfollow_takes_them_out(
    harness: Harness,
) -> None:
    ana, bo, cy = harness.user("ana"), harness.user("bo"), harness.user("cy")
    app = harness.app()
    posts = [app.activity(actor=ana, verb="post", object=f"post:{n}") for n in range(5)]
    for post in posts:
        await harness.manager.add_activity(post)
    await harness.manager.join(60)
    newest = sorted((p.id for p in posts), reverse=True)

    assert await harness.manager.follow(bo, ana, backfill=3)
    assert (
        await harness.storage.read_flat(harness.config.feeds["timeline"], bo, limit=10)
        == (newest[:3])
    )
    assert (await harness.counts_all("digest", [bo]))[bo] == (1, 1, 1)  # one "post:ana" group
    assert not await harness.manager.follow(bo, ana, backfill=5)  # already followed: no copy
    assert len(await harness.storage.read_flat(harness.config.feeds["timeline"], bo, limit=10)) == 3
    assert await harness.manager.following(bo) == [ana]
    assert await harness.manager.followers(ana) == [bo]

    assert await harness.manager.unfollow(bo, ana)
    assert await harness.storage.read_flat(harness.config.feeds["timeline"], bo, limit=10) == []
    assert (await harness.counts_all("digest", [bo]))[bo] == (0, 0, 0)
    assert not await harness.manager.unfollow(bo, ana)
    assert (await harness.manager.follow_counts(ana)).followers == 0

    # The default backfill (100) copies all five; keep_history leaves them in place.
    assert await harness.manager.follow(cy, ana)
    assert len(await harness.storage.read_flat(harness.config.feeds["timeline"], cy, limit=10)) == 5
    assert await harness.manager.unfollow(cy, ana, keep_history=True)
    assert len(await harness.storage.read_flat(harness.config.feeds["timeline"], cy, limit=10)) == 5

    with pytest.raises(InvalidInput) as error:
        await harness.manager.follow(bo, ana, backfill=1001)
    assert error.value.field == "backfill"


async def test_removing_an_activity_reaches_who_unfollowed_keeping_it(
    harness: Harness,
) -> None:
    """docs/api.md: a removal takes the activity out of every feed it reached, also of a
    user who unfollowed the actor with keep_history (no follower any more)."""
    ana, bo, cy = harness.user("ana"), harness.user("bo"), harness.user("cy")
    timeline = harness.config.feeds["timeline"]
    for user in (bo, cy):
        assert await harness.manager.follow(user, ana)
    app = harness.app()
    posts = [app.activity(actor=ana, verb="post", object=f"post:{n}") for n in range(3)]
    for post in posts:
        await harness.manager.add_activity(post)
    await harness.manager.join(60)
    assert await harness.manager.unfollow(bo, ana, keep_history=True)
    assert len(await harness.storage.read_flat(timeline, bo, limit=10)) == 3

    assert await harness.manager.remove_activity(posts[1].id) == [posts[1].id]
    await harness.manager.join(60)
    kept = sorted((posts[0].id, posts[2].id), reverse=True)
    assert await harness.storage.read_flat(timeline, bo, limit=10) == kept
    assert await harness.storage.read_flat(timeline, cy, limit=10) == kept
    assert (await harness.counts_all("digest", [bo]))[bo] == (1, 1, 1)


async def test_followers_are_paged_in_a_stable_order(harness: Harness) -> None:
    ana = harness.user("ana")
    followers = sorted(harness.user(f"f{i:02d}") for i in range(25))
    await harness.follow_all(followers, ana)
    seen: list[str] = []
    after = None
    while page := await harness.manager.followers(ana, limit=10, after=after):
        seen += page
        after = page[-1]
    assert seen == followers
    assert await harness.manager.follow_counts(ana) == FollowCounts(followers=25, following=0)
    assert (await harness.manager.follow_counts(followers[0])).following == 1


async def test_an_activity_removed_before_its_fanout_runs_reaches_nobody(
    harness: Harness,
) -> None:
    ana = harness.user("ana")
    followers = [harness.user(f"f{i}") for i in range(50)]
    await harness.follow_all(followers, ana)
    app = harness.app()
    post = app.activity(actor=ana, verb="post", object="post:1")
    await harness.manager.add_activity(post)
    await harness.manager.remove_activity(post.id)
    await harness.manager.join(60)
    assert all(ids == [] for ids in (await harness.read_all("timeline", followers)).values())
    assert set((await harness.counts_all("digest", followers)).values()) == {(0, 0, 0)}
