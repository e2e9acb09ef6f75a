"""The storage contract: every backend must pass every test here, unchanged."""

from __future__ import annotations

import asyncio

from notifier.storage.base import Counts, Marks, Storage
from tests.storage.helpers import activity, aggregated, aid, entry, flat, notification

# -- activity storage -------------------------------------------------------------------------


async def test_activity_bodies_round_trip_every_field(storage: Storage) -> None:
    originals = [activity(1, foreign_id="like:1"), activity(2)]
    await storage.put_activities(originals)
    found = await storage.get_activities([aid(2), aid(1), aid(99)])
    assert found == {a.id: a for a in originals}
    assert found[aid(1)].time.tzinfo is not None


async def test_put_activities_twice_is_idempotent(storage: Storage) -> None:
    await storage.put_activities([activity(1, foreign_id="f")])
    await storage.put_activities([activity(1, foreign_id="f")])
    assert await storage.find_foreign_ids(["f"]) == [aid(1)]


async def test_foreign_ids_find_and_delete(storage: Storage) -> None:
    await storage.put_activities([activity(1, foreign_id="f"), activity(2, foreign_id="f")])
    await storage.put_activities([activity(3, foreign_id="g")])
    assert await storage.find_foreign_ids(["f"]) == [aid(1), aid(2)]
    assert await storage.find_foreign_ids(["f", "g", "nope"]) == [aid(1), aid(2), aid(3)]
    await storage.delete_activities([aid(1)])
    assert await storage.find_foreign_ids(["f"]) == [aid(2)]
    assert await storage.get_activities([aid(1)]) == {}


# -- flat feeds -------------------------------------------------------------------------------


async def test_flat_add_reports_new_ids_and_is_idempotent(storage: Storage) -> None:
    group = flat()
    first = await storage.add_to_feeds(group, ["bo"], [entry(1), entry(2)])
    assert [(c.user, c.added) for c in first] == [("bo", [aid(1), aid(2)])]
    again = await storage.add_to_feeds(group, ["bo"], [entry(2), entry(1)])
    assert again == []
    assert await storage.count(group, "bo") == 2


async def test_flat_read_is_newest_first(storage: Storage) -> None:
    group = flat()
    await storage.add_to_feeds(group, ["bo"], [entry(3), entry(1), entry(2)])
    assert await storage.read_flat(group, "bo", limit=10) == [aid(3), aid(2), aid(1)]
    assert await storage.read_flat(group, "other", limit=10) == []


async def test_flat_cursor_pages_reach_every_id_once_even_within_one_microsecond(
    storage: Storage,
) -> None:
    group = flat()
    entries = [entry(n // 5, suffix=n % 5) for n in range(30)]  # 6 microseconds, 5 ids each
    await storage.add_to_feeds(group, ["bo"], entries)
    seen: list[str] = []
    cursor = None
    while True:
        page = await storage.read_flat(group, "bo", limit=4, id_lt=cursor)
        seen += page
        if len(page) < 4:
            break
        cursor = page[-1]
    assert seen == sorted((e.id for e in entries), reverse=True)


async def test_flat_id_gt_returns_only_newer(storage: Storage) -> None:
    group = flat()
    await storage.add_to_feeds(group, ["bo"], [entry(n) for n in range(10)])
    assert await storage.read_flat(group, "bo", limit=3, id_gt=aid(5)) == [aid(9), aid(8), aid(7)]
    assert await storage.read_flat(group, "bo", limit=10, id_gt=aid(5), id_lt=aid(8)) == [
        aid(7),
        aid(6),
    ]


async def test_flat_trims_to_max_length_keeping_newest(storage: Storage) -> None:
    group = flat(max_length=3)
    await storage.add_to_feeds(group, ["bo"], [entry(n) for n in range(1, 6)])
    assert await storage.read_flat(group, "bo", limit=10) == [aid(5), aid(4), aid(3)]
    # Older than everything in a full feed: not kept, and not reported as added.
    assert await storage.add_to_feeds(group, ["bo"], [entry(0)]) == []
    assert await storage.count(group, "bo") == 3


async def test_flat_explicit_trim_after_lowering_max_length(storage: Storage) -> None:
    await storage.add_to_feeds(flat(), ["bo"], [entry(n) for n in range(6)])
    await storage.trim(flat(max_length=2), ["bo"])
    assert await storage.read_flat(flat(), "bo", limit=10) == [aid(5), aid(4)]


async def test_aggregated_explicit_trim_after_lowering_max_length(storage: Storage) -> None:
    await storage.add_to_feeds(notification(), ["bo"], [entry(n, key=str(n)) for n in range(6)])
    await storage.trim(notification(max_length=2), ["bo"])
    groups = await storage.read_groups(notification(), "bo", limit=10)
    assert [g.id for g in groups] == [aid(5), aid(4)]
    assert await storage.counts(notification(), "bo") == Counts(2, 2)
    # The trimmed groups' keys are free again: an activity with one opens a new group.
    await storage.add_to_feeds(notification(), ["bo"], [entry(6, key="0")])
    groups = await storage.read_groups(notification(), "bo", limit=10)
    assert [(g.key, g.activity_count) for g in groups] == [("0", 1), ("5", 1), ("4", 1)]


async def test_flat_remove_reports_removed_ids(storage: Storage) -> None:
    group = flat()
    await storage.add_to_feeds(group, ["bo", "cy"], [entry(1), entry(2)])
    changes = await storage.remove_from_feeds(group, ["bo", "cy", "dee"], [aid(1), aid(7)])
    assert sorted((c.user, c.removed) for c in changes) == [("bo", [aid(1)]), ("cy", [aid(1)])]
    assert await storage.read_flat(group, "bo", limit=10) == [aid(2)]


async def test_add_to_many_feeds_at_once(storage: Storage) -> None:
    group = flat()
    users = [f"u{i}" for i in range(250)]
    changes = await storage.add_to_feeds(group, users, [entry(1)])
    assert sorted(c.user for c in changes) == sorted(users)
    for user in users[::50]:
        assert await storage.read_flat(group, user, limit=5) == [aid(1)]


# -- aggregated feeds -------------------------------------------------------------------------


async def test_same_key_merges_into_one_group(storage: Storage) -> None:
    group = aggregated()
    await storage.add_to_feeds(group, ["bo"], [entry(1, "ana"), entry(2, "cy"), entry(3, "ana")])
    (only,) = await storage.read_groups(group, "bo", limit=10)
    assert only.id == aid(1)
    assert only.key == "k"
    assert only.activity_ids == [aid(3), aid(2), aid(1)]
    assert (only.activity_count, only.actor_count) == (3, 2)
    assert (only.position, only.oldest) == (aid(3), aid(1))


async def test_groups_order_by_newest_activity_and_move_up_when_joined(storage: Storage) -> None:
    group = aggregated()
    await storage.add_to_feeds(group, ["bo"], [entry(1, key="a"), entry(2, key="b")])
    assert [g.key for g in await storage.read_groups(group, "bo", limit=10)] == ["b", "a"]
    await storage.add_to_feeds(group, ["bo"], [entry(3, key="a")])
    groups = await storage.read_groups(group, "bo", limit=10)
    assert [(g.key, g.position) for g in groups] == [("a", aid(3)), ("b", aid(2))]


async def test_merge_window_limits_which_groups_may_be_joined(storage: Storage) -> None:
    group = aggregated(window=2)
    await storage.add_to_feeds(group, ["bo"], [entry(1, key="a"), entry(2, key="b")])
    await storage.add_to_feeds(group, ["bo"], [entry(3, key="c")])
    # "a" is now third most recent: outside the window of 2, so a new "a" group opens.
    await storage.add_to_feeds(group, ["bo"], [entry(4, key="a")])
    groups = await storage.read_groups(group, "bo", limit=10)
    assert [(g.key, g.activity_count) for g in groups] == [("a", 1), ("c", 1), ("b", 1), ("a", 1)]
    assert groups[0].id == aid(4)


async def test_group_shows_newest_activities_but_counts_all(storage: Storage) -> None:
    group = aggregated(shown=3)
    entries = [entry(n, actor=f"u{n % 4}") for n in range(10)]
    await storage.add_to_feeds(group, ["bo"], entries)
    (only,) = await storage.read_groups(group, "bo", limit=10)
    assert only.activity_ids == [aid(9), aid(8), aid(7)]
    assert (only.activity_count, only.actor_count) == (10, 4)
    # Re-adding an activity no longer shown is still a no-op.
    assert await storage.add_to_feeds(group, ["bo"], [entries[0]]) == []
    (only,) = await storage.read_groups(group, "bo", limit=10)
    assert only.activity_count == 10


async def test_removing_activities_updates_counts_position_and_drops_empty_groups(
    storage: Storage,
) -> None:
    group = aggregated()
    await storage.add_to_feeds(
        group, ["bo"], [entry(1, "ana"), entry(2, "cy"), entry(3, "ana"), entry(4, key="z")]
    )
    changes = await storage.remove_from_feeds(group, ["bo"], [aid(3), aid(4)])
    assert changes[0].removed == [aid(3), aid(4)]
    (only,) = await storage.read_groups(group, "bo", limit=10)
    assert (only.position, only.activity_count, only.actor_count) == (aid(2), 2, 2)
    await storage.remove_from_feeds(group, ["bo"], [aid(2)])
    (only,) = await storage.read_groups(group, "bo", limit=10)
    assert (only.activity_count, only.actor_count) == (1, 1)
    await storage.remove_from_feeds(group, ["bo"], [aid(1)])
    assert await storage.read_groups(group, "bo", limit=10) == []
    assert await storage.count(group, "bo") == 0


async def test_aggregated_trims_oldest_groups(storage: Storage) -> None:
    group = aggregated(max_length=2)
    await storage.add_to_feeds(group, ["bo"], [entry(1, key="a"), entry(2, key="b")])
    await storage.add_to_feeds(group, ["bo"], [entry(3, key="c")])
    assert [g.key for g in await storage.read_groups(group, "bo", limit=10)] == ["c", "b"]
    # The trimmed group's activities are gone from the feed entirely.
    assert await storage.remove_from_feeds(group, ["bo"], [aid(1)]) == []


async def test_group_cursor_pagination(storage: Storage) -> None:
    group = aggregated()
    await storage.add_to_feeds(group, ["bo"], [entry(n, key=str(n)) for n in range(7)])
    first = await storage.read_groups(group, "bo", limit=3)
    second = await storage.read_groups(group, "bo", limit=3, id_lt=first[-1].position)
    third = await storage.read_groups(group, "bo", limit=3, id_lt=second[-1].position)
    keys = [g.key for g in first + second + third]
    assert keys == ["6", "5", "4", "3", "2", "1", "0"]
    newer = await storage.read_groups(group, "bo", limit=10, id_gt=aid(4))
    assert [g.key for g in newer] == ["6", "5"]


# -- notification state -----------------------------------------------------------------------


async def test_new_groups_are_unseen_and_unread(storage: Storage) -> None:
    group = notification()
    changes = await storage.add_to_feeds(group, ["bo"], [entry(1, key="a"), entry(2, key="b")])
    assert changes[0].counts == Counts(2, 2)
    assert await storage.counts(group, "bo") == Counts(2, 2)
    assert await storage.counts(group, "nobody") == Counts(0, 0)


async def test_mark_group_and_activity(storage: Storage) -> None:
    group = notification()
    await storage.add_to_feeds(
        group, ["bo"], [entry(1, key="a"), entry(2, key="a"), entry(3, key="b")]
    )
    counts = await storage.mark(group, "bo", Marks(seen=True), group_ids=[aid(1)])
    assert counts == Counts(1, 2)
    counts = await storage.mark(group, "bo", Marks(read=True), activity_ids=[aid(3), aid(99)])
    assert counts == Counts(1, 1)
    a, b = sorted(await storage.read_groups(group, "bo", limit=10), key=lambda g: g.key)
    assert (a.is_seen, a.is_read, b.is_seen, b.is_read) == (True, False, False, True)
    counts = await storage.mark(group, "bo", Marks(read=False), group_ids=[aid(3)])
    assert counts == Counts(1, 2)


async def test_mark_unknown_ids_changes_nothing(storage: Storage) -> None:
    group = notification()
    await storage.add_to_feeds(group, ["bo"], [entry(1)])
    assert await storage.mark(group, "bo", Marks(seen=True), group_ids=[aid(5)]) == Counts(1, 1)
    assert await storage.mark(group, "bo", Marks(seen=True)) == Counts(1, 1)


async def test_mark_all_with_and_without_cursor(storage: Storage) -> None:
    group = notification()
    await storage.add_to_feeds(group, ["bo"], [entry(n, key=str(n)) for n in range(5)])
    counts = await storage.mark(group, "bo", Marks(read=True), all=True, up_to=aid(2))
    assert counts == Counts(5, 2)
    groups = await storage.read_groups(group, "bo", limit=10)
    assert [g.is_read for g in groups] == [False, False, True, True, True]
    assert await storage.mark(group, "bo", Marks(seen=True, read=True), all=True) == Counts(0, 0)


async def test_archived_groups_leave_the_counts(storage: Storage) -> None:
    group = notification()
    await storage.add_to_feeds(group, ["bo"], [entry(1, key="a"), entry(2, key="b")])
    assert await storage.mark(group, "bo", Marks(archived=True), group_ids=[aid(1)]) == Counts(1, 1)
    assert await storage.mark(group, "bo", Marks(archived=False), group_ids=[aid(1)]) == Counts(
        2, 2
    )


async def test_read_page_is_read_groups_with_the_counts(storage: Storage) -> None:
    group = notification()
    await storage.add_to_feeds(group, ["bo"], [entry(n, key=f"k{n}") for n in range(1, 6)])
    await storage.mark(group, "bo", Marks(seen=True), group_ids=[aid(2)])
    await storage.mark(group, "bo", Marks(read=True), group_ids=[aid(3), aid(4)])
    for cursors in ({}, {"id_lt": aid(4)}, {"id_gt": aid(2)}):
        groups, counts = await storage.read_page(group, "bo", limit=2, **cursors)
        assert groups == await storage.read_groups(group, "bo", limit=2, **cursors)
        assert counts == await storage.counts(group, "bo") == Counts(4, 3)
    assert await storage.read_page(group, "cy", limit=5) == ([], Counts(0, 0))


async def test_new_activity_reopens_a_seen_read_archived_group(storage: Storage) -> None:
    group = notification()
    await storage.add_to_feeds(group, ["bo"], [entry(1)])
    await storage.mark(group, "bo", Marks(True, True, True), all=True)
    assert await storage.counts(group, "bo") == Counts(0, 0)
    changes = await storage.add_to_feeds(group, ["bo"], [entry(2)])
    assert changes[0].counts == Counts(1, 1)
    (only,) = await storage.read_groups(group, "bo", limit=10)
    assert (only.is_seen, only.is_read, only.is_archived, only.activity_count) == (
        False,
        False,
        False,
        2,
    )


async def test_re_adding_never_changes_state_or_counts(storage: Storage) -> None:
    group = notification()
    await storage.add_to_feeds(group, ["bo"], [entry(1), entry(2, key="b")])
    await storage.mark(group, "bo", Marks(seen=True, read=True), all=True)
    assert await storage.add_to_feeds(group, ["bo"], [entry(1), entry(2, key="b")]) == []
    assert await storage.counts(group, "bo") == Counts(0, 0)


async def test_trim_and_removal_keep_counts_exact(storage: Storage) -> None:
    group = notification(max_length=2)
    await storage.add_to_feeds(group, ["bo"], [entry(1, key="a"), entry(2, key="b")])
    changes = await storage.add_to_feeds(group, ["bo"], [entry(3, key="c")])
    assert changes[0].counts == Counts(2, 2)
    changes = await storage.remove_from_feeds(group, ["bo"], [aid(3)])
    assert changes[0].counts == Counts(1, 1)


async def test_counts_stay_exact_under_concurrent_adds_and_marks(storage: Storage) -> None:
    group = notification(max_length=1000, window=5)

    async def writer(offset: int) -> None:
        for n in range(40):
            await storage.add_to_feeds(group, ["bo"], [entry(offset + n, key=str(n % 7))])

    async def marker() -> None:
        for _ in range(20):
            await storage.mark(group, "bo", Marks(seen=True), all=True)
            await storage.mark(group, "bo", Marks(read=True), activity_ids=[aid(3)])

    await asyncio.gather(writer(0), writer(1000), writer(2000), marker())
    groups = await storage.read_groups(group, "bo", limit=1000)
    recount = Counts(
        sum(not g.is_seen and not g.is_archived for g in groups),
        sum(not g.is_read and not g.is_archived for g in groups),
    )
    assert await storage.counts(group, "bo") == recount
    assert sum(g.activity_count for g in groups) == 120


# -- follow graph -----------------------------------------------------------------------------


async def test_follow_unfollow_and_counts(storage: Storage) -> None:
    assert await storage.follow("bo", ["ana", "cy", "ana"]) == ["ana", "cy"]
    assert await storage.follow("bo", ["ana", "dee"]) == ["dee"]
    await storage.follow("eve", ["ana"])
    assert await storage.following("bo", limit=10) == ["ana", "cy", "dee"]
    assert await storage.followers("ana", limit=10) == ["bo", "eve"]
    assert await storage.follow_counts("ana") == (2, 0)
    assert await storage.follow_counts("bo") == (0, 3)
    assert await storage.unfollow("bo", ["ana", "zed"]) == ["ana"]
    assert await storage.followers("ana", limit=10) == ["eve"]


async def test_history_keepers_are_recorded_once_and_paged(storage: Storage) -> None:
    assert await storage.history_keepers("ana", limit=10) == []
    await storage.keep_history("bo", ["ana", "cy"])
    await storage.keep_history("bo", ["ana"])  # again: idempotent
    keepers = [f"k{i:02d}" for i in range(23)]
    for keeper in keepers:
        await storage.keep_history(keeper, ["ana"])
    pages: list[str] = []
    after = None
    while page := await storage.history_keepers("ana", limit=10, after=after):
        pages += page
        after = page[-1]
    assert pages == sorted(["bo", *keepers])
    assert await storage.history_keepers("cy", limit=10) == ["bo"]
    assert await storage.followers("ana", limit=10) == []  # keepers are no followers


async def test_followers_page_through_in_stable_order(storage: Storage) -> None:
    users = [f"u{i:04d}" for i in range(37)]
    for user in users:
        await storage.follow(user, ["star"])
    pages: list[str] = []
    after = None
    while page := await storage.followers("star", limit=10, after=after):
        pages += page
        after = page[-1]
    assert pages == sorted(users)


async def test_group_ids_stay_unique_when_an_opening_activity_comes_back(storage: Storage) -> None:
    group = notification(window=1)
    await storage.add_to_feeds(group, ["bo"], [entry(1, key="a"), entry(2, key="a")])
    await storage.add_to_feeds(group, ["bo"], [entry(3, key="b")])
    await storage.remove_from_feeds(group, ["bo"], [aid(1)])
    # aid(1) returns; "a" is outside the window of 1, so it opens a new group, whose id cannot
    # be aid(1): the first "a" group still has that id.
    await storage.add_to_feeds(group, ["bo"], [entry(1, key="a")])
    groups = await storage.read_groups(group, "bo", limit=10)
    assert [(g.key, g.activity_ids) for g in groups] == [
        ("b", [aid(3)]),
        ("a", [aid(2)]),
        ("a", [aid(1)]),
    ]
    assert len({g.id for g in groups}) == 3 and groups[1].id == aid(1)
    counts = await storage.mark(group, "bo", Marks(seen=True), group_ids=[groups[2].id])
    assert counts == Counts(2, 3)
