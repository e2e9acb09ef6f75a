"""The inbox on every backend, through the Python API: categories, status filters, counts by
category, scoped marks, done, snooze (and its wake), delete and expiry in reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from notifier import Config, FeedGroup, FeedGroups, FeedKind, InvalidInput, Notifier
from notifier.categories import Categories, Category
from notifier.feeds import STATUSES, NotificationFeed, in_status
from notifier.inbox import Inbox
from notifier.model import Activity
from notifier.storage.base import Counts, Marks, Storage

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


@pytest.fixture
def app(storage: Storage) -> Notifier:
    groups = FeedGroups.of(
        [
            FeedGroup("user", FeedKind.FLAT, max_length=1000),
            FeedGroup("notification", FeedKind.NOTIFICATION, max_activities=2),
        ]
    )
    categories = Categories(
        [
            Category("social", verbs=("like", "follow")),
            Category("billing", critical=True),
            Category("mentions", verbs=("mention",)),
        ]
    )
    return Notifier(Config(feeds=groups, categories=categories), storage)


async def notify(
    app: Notifier, user: str, n: int, *, verb: str = "like", obj: str | None = None, **kw: object
) -> Activity:
    made = app.activity(
        actor=f"actor{n}",
        verb=verb,
        object=obj or f"photo:{n}",
        time=T0 + timedelta(seconds=n),
        **kw,  # type: ignore[arg-type]
    )
    await app.notification_feed("notification", user).add(made)
    return made


async def ids(feed: NotificationFeed, **filters: object) -> list[str]:
    """Group ids of every page of a filtered read, following ``next`` with small pages."""
    found: list[str] = []
    cursor = None
    while True:
        page = await feed.read(2, id_lt=cursor, **filters)  # type: ignore[arg-type]
        found += [g.id for g in page.groups]
        if page.next is None:
            return found
        cursor = page.next


async def test_a_category_is_the_verbs_default_or_the_one_given_and_splits_groups(
    app: Notifier,
) -> None:
    liked = await notify(app, "bo", 1, obj="photo:1")
    billed = await notify(app, "bo", 2, obj="photo:1", category="billing")
    other = await notify(app, "bo", 3, verb="share", obj="photo:1")
    assert (liked.category, billed.category, other.category) == ("social", "billing", None)
    page = await app.notification_feed("notification", "bo").read()
    # Same verb, object and day: one group, were it not for the categories.
    assert {g.category: g.activity_count for g in page.groups} == {
        "social": 1,
        "billing": 1,
        None: 1,
    }
    with pytest.raises(InvalidInput) as bad:
        app.activity(actor="ana", verb="like", object="x", category="nope")
    assert bad.value.field == "category"


async def test_status_filters_select_exactly_their_groups_across_pages(app: Notifier) -> None:
    feed = app.notification_feed("notification", "bo")
    made = [await notify(app, "bo", n) for n in range(10)]
    gid = [a.id for a in made]
    await feed.mark(read=True, group_ids=gid[0:4])  # 0-3 read
    await feed.mark(seen=True, group_ids=gid[2:6])  # 2-5 seen
    await feed.mark(archived=True, group_ids=[gid[1], gid[5], gid[9]])
    await Inbox(feed).snooze([gid[7]], datetime.now(UTC) + timedelta(hours=1))
    everything = (await feed.read(50, status="all")).groups
    assert len(everything) == 10
    for status in STATUSES:
        expected = [
            g.id
            for g in everything
            if in_status(
                status,
                seen=g.is_seen,
                read=g.is_read,
                archived=g.is_archived,
                snoozed=g.snoozed_until is not None,
            )
        ]
        assert await ids(feed, status=status) == expected, status
    newest_first = gid[::-1]
    assert await ids(feed) == [i for i in newest_first if i not in (gid[1], gid[5], gid[9], gid[7])]
    assert await ids(feed, status="archived") == [gid[9], gid[5], gid[1]]
    assert await ids(feed, status="snoozed") == [gid[7]]
    assert await ids(feed, status="unread") == [gid[8], gid[6], gid[4]]
    with pytest.raises(InvalidInput) as bad:
        await feed.read(status="bogus")  # type: ignore[arg-type]
    assert bad.value.field == "status"


async def test_category_filter_and_counts_by_category_match_the_groups(app: Notifier) -> None:
    feed = app.notification_feed("notification", "bo")
    social = [await notify(app, "bo", n) for n in range(3)]
    mentions = [await notify(app, "bo", 10 + n, verb="mention") for n in range(2)]
    plain = await notify(app, "bo", 20, verb="share")
    billing = await notify(app, "bo", 30, verb="share", category="billing")
    await feed.mark(read=True, group_ids=[social[0].id, mentions[0].id])
    await feed.mark(seen=True, group_ids=[social[1].id])
    await feed.mark(archived=True, group_ids=[social[2].id])
    assert await ids(feed, category="social") == [social[1].id, social[0].id]
    assert await ids(feed, category="mentions", status="unread") == [mentions[1].id]
    assert await ids(feed, category="billing") == [billing.id]
    tally = await Inbox(feed).counts_by_category(["social", "billing", "mentions", "legal"])
    assert tally.counts == await feed.counts() == Counts(unseen=5, unread=4)
    split = {name: (c.unseen, c.unread) for name, c in tally.categories.items()}
    assert split == {"social": (1, 1), "mentions": (2, 1), "billing": (1, 1), "legal": (0, 0)}
    assert (tally.uncategorized.unseen, tally.uncategorized.unread) == (1, 1)
    assert plain.category is None


async def test_scoped_mark_all_touches_only_its_category_or_status(app: Notifier) -> None:
    feed = app.notification_feed("notification", "bo")
    inbox = Inbox(feed)
    social = [await notify(app, "bo", n) for n in range(3)]
    mention = await notify(app, "bo", 10, verb="mention")
    counts = await inbox.mark(Marks(read=True), all=True, category="social")
    assert counts == Counts(unseen=4, unread=1)
    assert await ids(feed, status="unread") == [mention.id]
    # Archive all read: exactly the social ones go; the unread mention stays.
    counts = await inbox.mark(Marks(archived=True), all=True, status="read")
    assert await ids(feed) == [mention.id]
    assert await ids(feed, status="archived") == [a.id for a in social[::-1]]
    assert counts == await feed.counts() == Counts(unseen=1, unread=1)
    # Unarchive one.
    await inbox.mark(Marks(archived=False), group_ids=[social[0].id])
    assert await ids(feed) == [mention.id, social[0].id]


async def test_done_is_set_and_cleared_and_shown_on_the_group(app: Notifier) -> None:
    feed = app.notification_feed("notification", "bo")
    inbox = Inbox(feed)
    first, second = await notify(app, "bo", 1), await notify(app, "bo", 2)
    counts = await inbox.mark(None, done=True, group_ids=[first.id])
    assert counts == Counts(unseen=2, unread=2)  # done changes no flag
    assert {g.id: g.is_done for g in (await feed.read()).groups} == {
        second.id: False,
        first.id: True,
    }
    await inbox.mark(None, done=True, all=True)
    assert all(g.is_done for g in (await feed.read()).groups)
    await inbox.mark(None, done=False, activity_ids=[second.id])
    assert {g.id: g.is_done for g in (await feed.read()).groups} == {
        second.id: False,
        first.id: True,
    }
    # An activity older than the shown ones (max_activities is 2 here) names its group too.
    more = [await notify(app, "bo", n, obj="photo:1") for n in (3, 4)]
    await inbox.mark(None, done=False, activity_ids=[first.id])
    [joined] = [g for g in (await feed.read()).groups if g.id == first.id]
    assert first.id not in [a.id for a in joined.activities] and len(more) == 2
    assert joined.is_done is False


async def test_snooze_hides_until_wake_which_brings_it_back_unseen(app: Notifier) -> None:
    feed = app.notification_feed("notification", "bo")
    inbox = Inbox(feed)
    first, second = await notify(app, "bo", 1), await notify(app, "bo", 2)
    await feed.mark(seen=True, read=True, group_ids=[first.id])
    until = datetime.now(UTC) + timedelta(minutes=5)
    counts = await inbox.snooze([second.id, "0" * 26], until)
    assert counts == Counts(unseen=0, unread=0)
    assert await ids(feed) == [first.id]
    [snoozed] = (await feed.read(status="snoozed")).groups
    assert (snoozed.id, snoozed.snoozed_until, snoozed.is_archived) == (second.id, until, True)
    assert await ids(feed, status="archived") == []
    # A stale timer (the snooze moved) does nothing; the right one wakes it unseen and unread.
    assert await inbox.wake(second.id, until - timedelta(minutes=1)) is None
    assert await inbox.wake(second.id, until) == Counts(unseen=1, unread=1)
    assert await inbox.wake(second.id, until) is None  # at-least-once timers: idempotent
    [woken, _] = (await feed.read()).groups
    assert (woken.id, woken.is_seen, woken.is_read, woken.snoozed_until) == (
        second.id,
        False,
        False,
        None,
    )


async def test_unsnooze_and_new_activity_end_a_snooze(app: Notifier) -> None:
    feed = app.notification_feed("notification", "bo")
    inbox = Inbox(feed)
    first = await notify(app, "bo", 1, obj="photo:9")
    other = await notify(app, "bo", 2)
    until = datetime.now(UTC) + timedelta(hours=2)
    await inbox.snooze([first.id, other.id], until)
    assert await ids(feed) == []
    assert await inbox.snooze([other.id], None) == Counts(unseen=1, unread=1)
    assert await ids(feed) == [other.id]
    # Someone else likes the snoozed photo: its group is news again, snoozed no more.
    await notify(app, "bo", 3, obj="photo:9")
    page = await feed.read()
    assert [(g.id, g.snoozed_until) for g in page.groups] == [(first.id, None), (other.id, None)]
    # Its timer then finds it unarchived: nothing to do, the user's flags stay as they are.
    await feed.mark(read=True, group_ids=[first.id])
    assert await inbox.wake(first.id, until) is None
    assert (await feed.counts()).unread == 1


async def test_archiving_a_snoozed_group_ends_the_snooze(app: Notifier) -> None:
    feed = app.notification_feed("notification", "bo")
    inbox = Inbox(feed)
    made = await notify(app, "bo", 1)
    until = datetime.now(UTC) + timedelta(hours=2)
    await inbox.snooze([made.id], until)
    await inbox.mark(Marks(archived=True), group_ids=[made.id])
    assert await ids(feed, status="archived") == [made.id]
    assert await inbox.wake(made.id, until) is None
    assert await ids(feed, status="archived") == [made.id]


async def test_delete_removes_every_activity_of_the_group_for_this_user_only(
    app: Notifier,
) -> None:
    feed = app.notification_feed("notification", "bo")
    made = [await notify(app, "bo", n, obj="photo:1") for n in range(5)]  # one group of 5
    await app.notification_feed("notification", "cy").add_many(made)
    kept = await notify(app, "bo", 9, verb="mention")
    [group] = [g for g in (await feed.read()).groups if g.activity_count == 5]
    deleted = await Inbox(feed).delete([group.id])
    assert deleted.change is not None
    assert sorted(deleted.change.removed) == sorted(a.id for a in made)  # not only the 2 shown
    assert deleted.counts == Counts(unseen=1, unread=1)
    assert await ids(feed, status="all") == [kept.id]
    assert len((await app.notification_feed("notification", "cy").read()).groups) == 1
    assert (await Inbox(feed).delete([group.id])).change is None


async def test_expired_activities_leave_reads_before_any_timer(
    app: Notifier, storage: Storage
) -> None:
    feed = app.notification_feed("notification", "bo")
    timeline = app.flat_feed("user", "actor1")
    live = await notify(app, "bo", 1)
    await timeline.add(live)
    gone = msgspec.structs.replace(
        app.activity(actor="actor1", verb="mention", object="x", time=T0),
        expires_at=datetime.now(UTC) - timedelta(seconds=1),
    )
    await feed.add(gone)
    await timeline.add(gone)
    assert [g.id for g in (await feed.read(status="all")).groups] == [live.id]
    assert [a.id for a in (await timeline.read()).activities] == [live.id]
    assert await feed.count() == 2  # storage still has it until the expiry timer runs
