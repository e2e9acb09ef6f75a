"""The storage contract for notification-group annotations (done, snoozed until) and for
reading a whole group's members: every backend, unchanged (the ``storage`` fixture)."""

from __future__ import annotations

from datetime import UTC, datetime

from notifier.storage.base import Annotation, Counts, Storage
from tests.storage.helpers import aid, entry, notification

LATER = datetime(2030, 1, 2, 3, 4, 5, 123000, tzinfo=UTC)


async def test_annotations_round_trip_per_feed_and_delete(storage: Storage) -> None:
    group = notification()
    assert await storage.annotations(group, "bo") == {}
    await storage.annotate(
        group, "bo", {aid(1): Annotation(done=True), aid(2): Annotation(snoozed_until=LATER)}
    )
    await storage.annotate(group, "cy", {aid(1): Annotation(done=True, snoozed_until=LATER)})
    found = await storage.annotations(group, "bo")
    assert found == {aid(1): Annotation(done=True), aid(2): Annotation(snoozed_until=LATER)}
    assert found[aid(2)].snoozed_until == LATER  # exact to the microsecond, aware UTC
    # None and an empty annotation both delete; other entries and other users stay.
    await storage.annotate(group, "bo", {aid(1): None, aid(2): Annotation()})
    assert await storage.annotations(group, "bo") == {}
    assert await storage.annotations(group, "cy") == {
        aid(1): Annotation(done=True, snoozed_until=LATER)
    }


async def test_annotate_overwrites_an_entry_whole(storage: Storage) -> None:
    group = notification()
    await storage.annotate(group, "bo", {aid(1): Annotation(done=True, snoozed_until=LATER)})
    await storage.annotate(group, "bo", {aid(1): Annotation(done=True)})
    assert await storage.annotations(group, "bo") == {aid(1): Annotation(done=True)}


async def test_group_members_lists_every_activity_not_only_the_shown_ones(
    storage: Storage,
) -> None:
    group = notification(shown=2)
    await storage.add_to_feeds(group, ["bo"], [entry(n, actor=f"u{n}") for n in range(1, 6)])
    await storage.add_to_feeds(group, ["bo"], [entry(9, key="other")])
    stored = await storage.read_groups(group, "bo", limit=10)
    by_key = {g.key: g for g in stored}
    assert len(by_key["k"].activity_ids) == 2  # what a read shows: max_activities
    members = await storage.group_members(
        group, "bo", [by_key["k"].id, by_key["other"].id, aid(77)]
    )
    assert members == {
        by_key["k"].id: [aid(5), aid(4), aid(3), aid(2), aid(1)],
        by_key["other"].id: [aid(9)],
    }
    assert await storage.group_members(group, "nobody", [by_key["k"].id]) == {}
    # Removing every member removes the group, which is what deleting a notification does.
    changes = await storage.remove_from_feeds(group, ["bo"], members[by_key["k"].id])
    assert changes[0].removed == members[by_key["k"].id]
    assert [g.key for g in await storage.read_groups(group, "bo", limit=10)] == ["other"]
    assert (await storage.counts(group, "bo")).unseen == 1


async def test_read_inbox_is_read_page_with_the_annotations(storage: Storage) -> None:
    group = notification()
    await storage.add_to_feeds(group, ["bo"], [entry(1, key="a"), entry(2, key="b")])
    await storage.annotate(group, "bo", {aid(1): Annotation(done=True)})
    stored, counts, notes = await storage.read_inbox(group, "bo", limit=10)
    assert (stored, counts) == await storage.read_page(group, "bo", limit=10)
    assert notes == {aid(1): Annotation(done=True)}
    page, _, notes = await storage.read_inbox(group, "bo", limit=1, id_lt=aid(2))
    assert [g.id for g in page] == [aid(1)] and notes == {aid(1): Annotation(done=True)}
    assert await storage.read_inbox(group, "nobody", limit=10) == ([], Counts(0, 0), {})
