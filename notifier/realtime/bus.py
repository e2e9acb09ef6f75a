"""The realtime bus: how a storage change reaches the users it concerns.

Fanout (and every other writer) publishes one ``UserEvent`` per affected user and feed *after*
the storage write is done, so a user who is told about a change can read it. The protocol is
deliberately narrow: writers only ever need ``publish``; the websocket side listens through a
``Hub`` (notifier/realtime/hub.py) and reads what changed from storage, the source of truth.
An event is a *hint* that carries absolute counts: losing one loses nothing, because the next
event or a resume re-reads storage.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Literal, Protocol

import msgspec

from notifier.storage.base import Counts, FeedChange

EventKind = Literal["added", "removed", "marked"]


class UserEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Something changed in one user's feed: activities came or went, or flags were marked."""

    user: str
    feed: str
    """The feed group's name (``timeline``, ``notification``…)."""
    kind: EventKind
    activity_ids: list[str] = msgspec.field(default_factory=list)
    """Added or removed activities (empty for ``marked``)."""
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


class Shared(msgspec.Struct, frozen=True):
    """One change made to many users' feeds alike (a fanout chunk's): what ``publish_shared``
    takes, so that a bus need not make, then regroup, an event per user."""

    activity_ids: list[str]
    counts: Counts | None
    users: list[str]


def shared_events(feed: str, kind: EventKind, shared: Sequence[Shared]) -> list[UserEvent]:
    """``shared`` as one event per user: for buses that deliver per user anyway."""
    return [
        UserEvent(
            user=user, feed=feed, kind=kind, activity_ids=change.activity_ids, counts=change.counts
        )
        for change in shared
        for user in change.users
    ]


async def publish_changes(
    bus: Bus, feed: str, kind: EventKind, changes: Sequence[FeedChange]
) -> None:
    """Publish what ``add_to_feeds`` / ``remove_from_feeds`` reported, grouped: users that
    got the same ids and counts together (storage hands a chunk's feeds one shared ids list,
    so the grouping costs a lookup per user, and no event object per follower is made)."""
    groups: dict[tuple[int, Counts | None], Shared] = {}
    for change in changes:
        ids = change.added if kind == "added" else change.removed
        key = (id(ids), change.counts)
        group = groups.get(key)
        if group is None:
            groups[key] = Shared(ids, change.counts, [change.user])
        else:
            group.users.append(change.user)
    if groups:
        await bus.publish_shared(feed, kind, list(groups.values()))


def marked(user: str, feed: str, counts: Counts) -> UserEvent:
    """The event announcing a mark (seen / read / archived) and the counts it led to."""
    return UserEvent(user=user, feed=feed, kind="marked", counts=counts)


class WireEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An event as it travels on a user's channel: the channel names the user, so a fanout
    chunk's events for flat feeds are one identical message sent to many channels."""

    feed: str
    kind: EventKind
    activity_ids: list[str] = msgspec.field(default_factory=list)
    counts: Counts | None = None

    def to(self, user: str) -> UserEvent:
        """This event, as ``user``'s."""
        return UserEvent(
            user=user, feed=self.feed, kind=self.kind, activity_ids=self.activity_ids,
            counts=self.counts,
        )  # fmt: skip


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(WireEvent)


def encode_event(event: UserEvent) -> bytes:
    """The wire form of an event, without its user (JSON)."""
    return encode_wire(event.feed, event.kind, event.activity_ids, event.counts)


def encode_wire(
    feed: str, kind: EventKind, activity_ids: list[str], counts: Counts | None
) -> bytes:
    """The wire form of an event, from its parts."""
    return _encoder.encode(
        WireEvent(feed=feed, kind=kind, activity_ids=activity_ids, counts=counts)
    )


def by_message(events: Sequence[UserEvent]) -> dict[bytes, list[str]]:
    """Each distinct encoded event and the users it goes to: what a Redis publisher sends
    once (to a channel many share) instead of once per user."""
    grouped: dict[bytes, list[str]] = {}
    for event in events:
        grouped.setdefault(encode_event(event), []).append(event.user)
    return grouped


def shared_by_message(
    feed: str, kind: EventKind, shared: Sequence[Shared]
) -> dict[bytes, list[str]]:
    """``by_message`` for changes already grouped by what they did (``publish_changes``)."""
    grouped: dict[bytes, list[str]] = {}
    for change in shared:
        message = encode_wire(feed, kind, change.activity_ids, change.counts)
        grouped.setdefault(message, []).extend(change.users)
    return grouped


def decode_event(data: bytes | msgspec.Raw) -> WireEvent:
    """An event from its wire form (``.to(user)`` makes it that user's); msgspec.DecodeError
    when it is not one."""
    return _decoder.decode(data)


class Bus(Protocol):
    """Where events go. Implementations must be safe to call from any thread's event loop."""

    async def publish(self, events: Sequence[UserEvent]) -> None:
        """Deliver ``events`` (best effort: the feed itself is the history)."""

    async def publish_shared(self, feed: str, kind: EventKind, shared: Sequence[Shared]) -> None:
        """Deliver, to each of its users, each change made alike to many feeds (what
        ``publish`` of ``shared_events`` does; a bus may send each change once)."""

    async def close(self) -> None:
        """Release connections."""


class NullBus:
    """Publishes nowhere: for deployments or workers with no realtime layer yet."""

    async def publish(self, events: Sequence[UserEvent]) -> None:
        return None

    async def publish_shared(self, feed: str, kind: EventKind, shared: Sequence[Shared]) -> None:
        return None

    async def close(self) -> None:
        return None


class RecordingBus:
    """Keeps every published event in order, in memory: the in-process bus tests listen on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[UserEvent] = []

    async def publish(self, events: Sequence[UserEvent]) -> None:
        with self._lock:
            self._events.extend(events)

    async def publish_shared(self, feed: str, kind: EventKind, shared: Sequence[Shared]) -> None:
        await self.publish(shared_events(feed, kind, shared))

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

    async def close(self) -> None:
        return None
