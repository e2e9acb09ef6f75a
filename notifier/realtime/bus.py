"""The realtime bus: how a storage change reaches the users it concerns.

Fanout (and every other writer) publishes one ``UserEvent`` per affected user and feed *after*
the storage write is done, so a user who is told about a change can read it. The protocol is
deliberately narrow: the realtime issue adds a Redis pub/sub implementation and the websocket
side (subscribe, resume) on top of it; writers only ever need ``publish``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Literal, Protocol

import msgspec

from notifier.storage.base import Counts, FeedChange

EventKind = Literal["added", "removed"]


class UserEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Something changed in one user's feed: which activities came or went, and new counts."""

    user: str
    feed: str
    """The feed group's name (``timeline``, ``notification``…)."""
    kind: EventKind
    activity_ids: list[str]
    counts: Counts | None = None
    """Absolute unseen / unread counts after the change, for notification feeds."""


def events_for(feed: str, kind: EventKind, changes: Sequence[FeedChange]) -> list[UserEvent]:
    """The events announcing what ``add_to_feeds`` / ``remove_from_feeds`` reported."""
    return [
        UserEvent(
            user=change.user,
            feed=feed,
            kind=kind,
            activity_ids=change.added if kind == "added" else change.removed,
            counts=change.counts,
        )
        for change in changes
    ]


class Bus(Protocol):
    """Where events go. Implementations must be safe to call from any thread's event loop."""

    async def publish(self, events: Sequence[UserEvent]) -> None:
        """Deliver ``events`` (best effort: the feed itself is the history)."""


class NullBus:
    """Publishes nowhere: for deployments or workers with no realtime layer yet."""

    async def publish(self, events: Sequence[UserEvent]) -> None:
        return None


class RecordingBus:
    """Keeps every published event in order, in memory: the in-process bus tests listen on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[UserEvent] = []

    async def publish(self, events: Sequence[UserEvent]) -> None:
        with self._lock:
            self._events.extend(events)

    @property
    def events(self) -> list[UserEvent]:
        """A copy of everything published so far."""
        with self._lock:
            return list(self._events)

    def for_user(self, user: str) -> list[UserEvent]:
        """The events published for ``user``, oldest first."""
        return [event for event in self.events if event.user == user]

    def clear(self) -> None:
        """Forget what was recorded."""
        with self._lock:
            self._events.clear()
