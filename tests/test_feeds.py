"""The Python API on every backend: activities in, hydrated pages out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from notifier import Config, FeedGroup, FeedGroups, FeedKind, InvalidInput, Notifier
from notifier.storage.base import Counts, Storage

T0 = datetime(2024, 6, 1, 12, tzinfo=UTC)


@pytest.fixture
def app(storage: Storage) -> Notifier:
    groups = FeedGroups.of(
        [
            FeedGroup("user", FeedKind.FLAT, max_length=1000),
            FeedGroup("news", FeedKind.AGGREGATED),
            FeedGroup("notification", FeedKind.NOTIFICATION),
        ]
    )
    return Notifier(Config(feeds=groups), storage)


async def test_flat_feed_pages_hydrate_bodies(app: Notifier) -> None:
    feed = app.flat_feed("user", "ana")
    made = [
        app.activity(actor="ana", verb="post", object=f"post:{n}", time=T0 + timedelta(seconds=n))
        for n in range(5)
    ]
    assert await feed.add_many(made) == [a.id for a in made]
    assert await feed.add(made[0]) is False
    page = await feed.read(limit=3)
    assert page.activities == made[::-1][:3]
    assert page.next == made[2].id
    rest = await feed.read(limit=3, id_lt=page.next)
    assert rest.activities == made[1::-1] and rest.next is None


async def test_notification_feed_groups_and_counts(app: Notifier) -> None:
    feed = app.notification_feed("notification", "bo")
    for n, who in enumerate(["ana", "cy", "dee", "ana"]):
        await feed.add(
            app.activity(
                actor=who,
                verb="like",
                object=f"like:{n}",
                target="photo:1",
                time=T0 + timedelta(minutes=n),
                extra={"url": "/photo/1"},
            )
        )
    page = await feed.read()
    (group,) = page.groups
    assert group.actors == ["ana", "dee", "cy"]
    assert (group.activity_count, group.actor_count) == (4, 3)
    assert group.created_at == T0 and group.updated_at == T0 + timedelta(minutes=3)
    assert group.activities[0].extra == {"url": "/photo/1"}
    assert page.counts == Counts(1, 1)
    assert await feed.mark_all(seen=True) == Counts(0, 1)
    assert await feed.mark(read=True, activity_ids=[group.activities[-1].id]) == Counts(0, 0)
    assert (await feed.read()).groups[0].is_read


async def test_aggregated_feed_has_no_counts(app: Notifier) -> None:
    feed = app.aggregated_feed("news", "bo")
    await feed.add(app.activity(actor="ana", verb="post", object="p:1"))
    page = await feed.read()
    assert len(page.groups) == 1 and page.counts is None


async def test_remove_by_foreign_id(app: Notifier) -> None:
    feed = app.flat_feed("user", "ana")
    kept = app.activity(actor="ana", verb="post", object="p:1", foreign_id="post:1")
    gone = app.activity(actor="ana", verb="post", object="p:2", foreign_id="post:2")
    await feed.add_many([kept, gone])
    assert await feed.remove(foreign_id="post:2") == [gone.id]
    assert [a.id for a in (await feed.read()).activities] == [kept.id]
    assert await feed.remove(kept.id) == [kept.id]
    assert await feed.count() == 0


async def test_resending_same_foreign_id_and_time_is_idempotent(app: Notifier) -> None:
    feed = app.notification_feed("notification", "bo")
    first = app.activity(actor="ana", verb="like", object="p", foreign_id="like:1", time=T0)
    again = app.activity(actor="ana", verb="like", object="p", foreign_id="like:1", time=T0)
    assert first.id == again.id
    await feed.add(first)
    assert await feed.add(again) is False
    assert await feed.counts() == Counts(1, 1)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"id_lt": "nope"}, "id_lt")],
)
async def test_bad_page_requests_name_the_field(
    app: Notifier, kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        await app.flat_feed("user", "ana").read(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


async def test_unknown_group_kind_mismatch_and_bad_user(app: Notifier) -> None:
    with pytest.raises(InvalidInput, match="unknown feed group"):
        app.feed("nope", "bo")
    with pytest.raises(InvalidInput, match="is a flat feed"):
        app.notification_feed("user", "bo")
    with pytest.raises(InvalidInput):
        app.feed("user", "b o")
    with pytest.raises(InvalidInput, match="at least one"):
        await app.notification_feed("notification", "bo").mark_all()
