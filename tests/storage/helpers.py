"""Small builders shared by the storage tests."""

from __future__ import annotations

from datetime import UTC, datetime

from notifier.feedgroups import FeedGroup, FeedKind
from notifier.model import Activity
from notifier.storage.base import Entry

BASE_US = 1_700_000_000_000_000


def aid(n: int, suffix: int = 0) -> str:
    """The n-th activity id: time BASE + n µs; ``suffix`` makes ids that share a microsecond."""
    return f"{BASE_US + n:014x}{suffix:012x}"


def entry(n: int, actor: str = "ana", key: str = "k", verb: str = "like", suffix: int = 0) -> Entry:
    return Entry(aid(n, suffix), actor, verb, key)


def activity(n: int, actor: str = "ana", foreign_id: str | None = None) -> Activity:
    return Activity(
        id=aid(n),
        actor=actor,
        verb="like",
        object=f"photo:{n}",
        target="album:1",
        time=datetime.fromtimestamp((BASE_US + n) / 1e6, tz=UTC),
        extra={"url": f"/p/{n}", "nested": {"a": [1, 2.5, None, True]}, "ü": "ß"},
        foreign_id=foreign_id,
        to=("notification:bo",),
    )


def flat(max_length: int = 100) -> FeedGroup:
    return FeedGroup("timeline", FeedKind.FLAT, max_length=max_length)


def aggregated(max_length: int = 100, window: int = 20, shown: int = 15) -> FeedGroup:
    return FeedGroup(
        "aggregated",
        FeedKind.AGGREGATED,
        max_length=max_length,
        merge_window=window,
        max_activities=shown,
    )


def notification(max_length: int = 100, window: int = 20, shown: int = 15) -> FeedGroup:
    return FeedGroup(
        "notification",
        FeedKind.NOTIFICATION,
        max_length=max_length,
        merge_window=window,
        max_activities=shown,
    )
