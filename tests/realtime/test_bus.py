"""The realtime bus interface and its in-process implementations."""

from __future__ import annotations

from notifier.realtime.bus import NullBus, RecordingBus, UserEvent, events_for
from notifier.storage.base import Counts, FeedChange


def test_events_for_turns_feed_changes_into_one_event_per_user() -> None:
    changes = [
        FeedChange(user="bo", added=["a1"], counts=Counts(2, 3)),
        FeedChange(user="cy", added=["a1", "a2"]),
    ]
    assert events_for("notification", "added", changes) == [
        UserEvent(
            user="bo", feed="notification", kind="added", activity_ids=["a1"], counts=Counts(2, 3)
        ),
        UserEvent(user="cy", feed="notification", kind="added", activity_ids=["a1", "a2"]),
    ]
    removed = events_for("timeline", "removed", [FeedChange(user="bo", removed=["a9"])])
    assert removed[0].activity_ids == ["a9"]


async def test_recording_bus_keeps_events_in_order_and_null_bus_drops_them() -> None:
    bus = RecordingBus()
    first = UserEvent(user="bo", feed="timeline", kind="added", activity_ids=["a"])
    second = UserEvent(user="cy", feed="timeline", kind="removed", activity_ids=["a"])
    await bus.publish([first])
    await bus.publish([second])
    assert bus.events == [first, second]
    assert bus.for_user("cy") == [second]
    bus.clear()
    assert bus.events == []
    await NullBus().publish([first])
