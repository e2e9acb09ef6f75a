"""The listening side of the bus: a web process's per-user subscriptions, and the in-process bus.

A ``Hub`` lets the websocket connections of one process listen to the users they serve. It
keeps one subscription per user, however many tabs that user has open here (refcounted), and
``subscribe`` returns only once the subscription is live, so a connection that reads storage
after subscribing cannot miss a change between the two. When the hub loses events (its
pub/sub link dropped and came back), it asks every listener to ``resync`` from storage.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from notifier.realtime.bus import EventKind, Shared, UserEvent, shared_events


class Listener(Protocol):
    """A websocket connection, as the hub sees it. Both methods run on the hub's loop and must
    return at once (queue the work, never await the network)."""

    def deliver(self, event: UserEvent) -> None:
        """An event for the listener's user."""

    def resync(self) -> None:
        """Events may have been lost: re-read storage."""


class Hub(Protocol):
    """Per-user subscriptions of one process."""

    async def subscribe(self, user: str, listener: Listener) -> None:
        """Start delivering ``user``'s events to ``listener``; returns once that is live."""

    async def unsubscribe(self, user: str, listener: Listener) -> None:
        """Stop; the last listener of a user ends the user's subscription."""

    async def close(self) -> None:
        """Drop every subscription and connection."""


class Listeners:
    """Listeners by user, with the event loop each one lives on. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_user: dict[str, dict[Listener, asyncio.AbstractEventLoop]] = {}

    def add(self, user: str, listener: Listener) -> bool:
        """Register; True when ``user`` had no listener yet (a subscription must start)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            first = user not in self._by_user
            self._by_user.setdefault(user, {})[listener] = loop
            return first

    def remove(self, user: str, listener: Listener) -> bool:
        """Unregister; True when that was ``user``'s last listener."""
        with self._lock:
            listeners = self._by_user.get(user)
            if listeners is None:
                return False
            listeners.pop(listener, None)
            if listeners:
                return False
            del self._by_user[user]
            return True

    def has(self, user: str) -> bool:
        """Whether ``user`` has a listener here (a dict lookup: fanout messages ask per user)."""
        return user in self._by_user

    def users(self) -> list[str]:
        """Users with at least one listener."""
        with self._lock:
            return list(self._by_user)

    def dispatch(self, event: UserEvent) -> None:
        """Hand ``event`` to each listener of its user, on the listener's own loop."""
        self.dispatch_all([event])

    def dispatch_all(self, events: Sequence[UserEvent]) -> None:
        """``dispatch`` for many events (a fanout's, one per user) under one lock."""
        with self._lock:
            calls = [
                (loop, listener.deliver, event)
                for event in events
                for listener, loop in self._by_user.get(event.user, {}).items()
            ]
        _call_each(calls)

    def resync_all(self) -> None:
        """Ask every listener to re-read storage."""
        with self._lock:
            calls = [
                (loop, _resync, listener)
                for users in self._by_user.values()
                for listener, loop in users.items()
            ]
        _call_each(calls)

    def resync(self, user: str) -> None:
        """Ask ``user``'s listeners to re-read storage."""
        with self._lock:
            calls = [
                (loop, _resync, listener) for listener, loop in self._by_user.get(user, {}).items()
            ]
        _call_each(calls)


def _resync(listener: Listener) -> None:
    listener.resync()


def _call_each(
    calls: Sequence[tuple[asyncio.AbstractEventLoop, Callable[[Any], None], Any]],
) -> None:
    """``call(argument)`` for each, right here when its loop is the running one, else
    scheduled on its loop (fanout workers publish from their own threads)."""
    try:
        current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        current = None
    for loop, call, argument in calls:
        if loop is current:
            call(argument)
        elif not loop.is_closed():
            loop.call_soon_threadsafe(call, argument)


class LocalBus:
    """Bus and hub in one, for one process (the memory backend): fanout worker threads publish,
    the connections of this process listen. Nothing can be lost in between, so it never asks
    for a resync."""

    def __init__(self) -> None:
        self.listeners = Listeners()

    async def publish(self, events: Sequence[UserEvent]) -> None:
        self.listeners.dispatch_all(events)

    async def publish_shared(self, feed: str, kind: EventKind, shared: Sequence[Shared]) -> None:
        self.listeners.dispatch_all(shared_events(feed, kind, shared))

    async def subscribe(self, user: str, listener: Listener) -> None:
        self.listeners.add(user, listener)

    async def unsubscribe(self, user: str, listener: Listener) -> None:
        self.listeners.remove(user, listener)

    async def close(self) -> None:
        return None
