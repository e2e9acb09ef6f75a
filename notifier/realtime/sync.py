"""What a connection sends for one feed, read from storage: the source of truth.

A ``FeedView`` is one connection's subscription to one feed. It remembers the ``position`` it
has sent (the newest item's: an activity id for flat feeds, a group's position for aggregated
ones) and the ``oldest`` item the client holds, and turns bus events into frames:

- new items: an ``update`` with what is newer than ``position`` (flat feeds take the bodies
  the event names, through a shared cache, so a fanout to many connections reads storage once);
- marks and removals in aggregated feeds, and resumes: a ``sync`` with the exact state of the
  whole range the client holds, so flags, counts and vanished groups all converge;
- more than ``resume_limit`` new items: a ``refetch``.

Expired activities (``expires_at`` passed) are left out of flat feeds' frames from that moment,
as reads leave them out, before their timer removes them (and announces the removal).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from notifier.bodies import ActivityCache, retrieved
from notifier.feedgroups import FeedGroup, FeedKind
from notifier.feeds import Group, hydrate
from notifier.model import Activity
from notifier.realtime.bus import UserEvent
from notifier.realtime.protocol import (
    CountsFrame,
    Refetch,
    Removed,
    ServerFrame,
    Subscribe,
    Sync,
    Update,
    encode,
)
from notifier.realtime.uvicorn_ws import prepared_frame
from notifier.storage.base import Counts, Storage

#: Encoded frames kept for reuse: the recent fanouts' (each sent to many connections).
_FRAMES = 256


class Prepared:
    """A frame shared by many connections: its text, and (made on first use) the bytes of
    the websocket frame carrying it, the same for every connection of this server."""

    __slots__ = ("_wire", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._wire: bytes | None = None

    @property
    def wire(self) -> bytes:
        if self._wire is None:
            self._wire = prepared_frame(self.text)
        return self._wire


class FrameCache:
    """Encoded ``update`` frames by (feed, activity ids), shared by a process's connections:
    a fanout sends the same frame to every follower, so it is encoded once."""

    def __init__(self) -> None:
        self._frames: OrderedDict[tuple[str, tuple[str, ...]], Prepared | None] = OrderedDict()
        self._building: dict[tuple[str, tuple[str, ...]], asyncio.Task[Prepared | None]] = {}

    def __len__(self) -> int:
        return len(self._frames)

    async def shared(
        self, key: tuple[str, tuple[str, ...]], build: Callable[[], Awaitable[str | None]]
    ) -> Prepared | None:
        """The frame for ``key``: made once by ``build``, however many connections ask at the
        same moment (a fanout's deliveries all arrive together). The build runs in a task of
        its own and each caller waits on it shielded: a caller cancelled in the middle (its
        connection closed) stops neither the build nor anyone else waiting for it."""
        if key in self._frames:
            return self._frames[key]
        task = self._building.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._build(key, build))
            task.add_done_callback(retrieved)
            self._building[key] = task
        return await asyncio.shield(task)

    async def _build(
        self, key: tuple[str, tuple[str, ...]], build: Callable[[], Awaitable[str | None]]
    ) -> Prepared | None:
        try:
            text = await build()
        finally:
            del self._building[key]
        frame = None if text is None else Prepared(text)
        self._frames[key] = frame
        if len(self._frames) > _FRAMES:
            self._frames.popitem(last=False)
        return frame

    def ready(self, key: tuple[str, tuple[str, ...]]) -> Prepared | None:
        """The frame for ``key`` if it is encoded already (None: not yet, or no frame)."""
        return self._frames.get(key)

    async def added(self, cache: ActivityCache, feed: str, ids: list[str]) -> Prepared | None:
        """The ``update`` frame announcing ``ids`` added to a flat ``feed`` (None when the
        newest of them is gone already: connections then build their own frames)."""
        return await self.shared((feed, tuple(ids)), lambda: _encode_added(cache, feed, ids))


class FeedView:
    """One connection's view of one feed (see the module docstring)."""

    __slots__ = ("cache", "counted", "flat", "frames", "group", "oldest", "position",
                 "resume_limit", "storage", "user")  # fmt: skip

    def __init__(
        self,
        storage: Storage,
        cache: ActivityCache,
        frames: FrameCache,
        group: FeedGroup,
        user: str,
        resume_limit: int,
    ) -> None:
        self.storage = storage
        self.cache = cache
        self.frames = frames
        self.group = group
        self.user = user
        self.resume_limit = resume_limit
        self.flat = group.kind is FeedKind.FLAT
        self.counted = group.kind is FeedKind.NOTIFICATION
        self.position: str | None = None
        """Newest position sent (or resumed from)."""
        self.oldest: str | None = None
        """Oldest position the client holds; '' for "everything"; None for "nothing" (the
        client only shows counts)."""

    # -- requests --------------------------------------------------------------------------
    async def subscribe(self, request: Subscribe) -> ServerFrame:
        """The first frame of a subscription (or of a resume)."""
        if request.position is None:
            if request.limit == 0:
                self.oldest = None
                return await self._idle_frame()
            items, counts = await self._read(request.limit)
            self.oldest = "" if len(items) < request.limit else _position(items[-1])
            return self._sync(items, counts, since=None)
        self.position = request.position
        if request.oldest is None:
            self.oldest = request.position
            return await self.update()
        self.oldest = min(request.oldest, request.position)
        return await self.sync()

    def widen(self, oldest: str) -> None:
        """The client loaded older items: later syncs cover them."""
        if self.oldest is None or oldest < self.oldest:
            self.oldest = oldest

    # -- events ----------------------------------------------------------------------------
    async def on_event(self, event: UserEvent) -> ServerFrame | Prepared | None:
        """The frame announcing ``event`` to this client (None: nothing to say)."""
        if self.oldest is None:
            if not self.counted:
                return None
            if event.counts is not None:
                return CountsFrame(
                    feed=self.group.name, counts=event.counts, position=self.position
                )
            return await self._idle_frame()
        if event.kind == "added":
            if self.flat:
                return await self._flat_added(event.activity_ids)
            if self.position is not None and any(i <= self.position for i in event.activity_ids):
                # Back-dated: it joined a group the client holds, or opened one below the
                # newest (``update`` reads only what is newer than ``position``).
                return await self.sync()
            return await self.update()
        if event.kind == "removed" and self.flat:
            self.cache.forget(event.activity_ids)
            if not self.storage.flat_feeds_exact:
                # An id the feed held past max_length may now be among the newest: the
                # client learns it from the exact state, as the rules of a sync say.
                return await self.sync()
            return Removed(
                feed=self.group.name, activity_ids=event.activity_ids, position=self.position
            )
        return await self.sync()

    def ready(self, event: UserEvent) -> Prepared | None:
        """``on_event``'s frame when it needs no await: a flat feed's addition whose frame is
        encoded already (the common case of a fanout, prepared before dispatch). None: ask
        ``on_event``."""
        if event.kind != "added" or not self.flat or self.oldest is None:
            return None
        newest = max(event.activity_ids, default="")
        if self.position is not None and newest < self.position:
            return None
        frame = self.frames.ready((self.group.name, tuple(event.activity_ids)))
        if frame is not None:
            self.position = newest
        return frame

    async def resync(self) -> ServerFrame:
        """After events may have been lost: the state of everything the client holds."""
        if self.oldest is None:
            return await self._idle_frame()
        return await self.sync()

    # -- frames ----------------------------------------------------------------------------
    async def update(self) -> ServerFrame:
        """What is newer than ``position``."""
        items, counts = await self._read(self.resume_limit + 1, id_gt=self.position)
        if len(items) > self.resume_limit:
            return self._refetch(counts)
        if not items and counts is not None:
            return CountsFrame(feed=self.group.name, counts=counts, position=self.position)
        self._advance(items)
        if self.flat:
            activities = [i for i in items if isinstance(i, Activity)]
            return Update(feed=self.group.name, position=self.position, activities=activities)
        groups = [i for i in items if isinstance(i, Group)]
        return Update(feed=self.group.name, position=self.position, groups=groups, counts=counts)

    async def sync(self) -> ServerFrame:
        """The exact state of every item down to ``oldest``; a ``refetch`` when that is more
        than ``resume_limit`` items (a sync never covers less than the client holds: items
        it would leave out could have changed or gone unseen)."""
        items, counts = await self._read(self.resume_limit + 1)
        floor = self.oldest or ""
        held = [i for i in items if _position(i) >= floor]
        if len(held) > self.resume_limit:
            return self._refetch(counts)
        return self._sync(held, counts, since=self.position)

    def _sync(
        self, held: Sequence[Group | Activity], counts: Counts | None, since: str | None
    ) -> Sync:
        floor = self.oldest or ""
        new = [i.id for i in held if since is not None and _position(i) > since]
        self._advance(held)
        if self.flat:
            activities = [i for i in held if isinstance(i, Activity)]
            return Sync(feed=self.group.name, position=self.position, oldest=floor,
                        activities=activities, new=new)  # fmt: skip
        groups = [i for i in held if isinstance(i, Group)]
        return Sync(feed=self.group.name, position=self.position, oldest=floor,
                    groups=groups, counts=counts, new=new)  # fmt: skip

    async def _flat_added(self, ids: list[str]) -> ServerFrame | Prepared:
        """An ``update`` with the activities themselves (no feed read). Encoded once per
        fanout: every follower whose position it advances gets the same frame."""
        newest = max(ids, default="")
        if self.position is None or newest >= self.position:
            # Every follower whose position this advances gets the very same frame.
            frame = await self.frames.added(self.cache, self.group.name, ids)
            if frame is not None:
                self.position = newest
                return frame
        # Back-dated (or gone already): only what falls inside the client's window.
        floor = self.oldest or ""
        activities = [a for a in await self._newest_first(ids) if a.id >= floor]
        if not activities:
            return Update(feed=self.group.name, position=self.position)
        self._advance(activities)
        return Update(feed=self.group.name, position=self.position, activities=activities)

    async def _newest_first(self, ids: list[str]) -> list[Activity]:
        return await _newest_first(self.cache, ids)

    def _refetch(self, counts: Counts | None) -> Refetch:
        self.position = None
        self.oldest = None
        reason = f"more than {self.resume_limit} items changed (resume_limit)"
        return Refetch(feed=self.group.name, reason=reason, counts=counts)

    async def _idle_frame(self) -> ServerFrame:
        """For a client holding no items: counts, or (feeds without counts) an empty update."""
        if self.counted:
            counts = await self.storage.counts(self.group, self.user)
            return CountsFrame(feed=self.group.name, counts=counts, position=self.position)
        return Update(feed=self.group.name, position=self.position)

    def _advance(self, items: Sequence[Group | Activity]) -> None:
        for item in items:
            position = _position(item)
            if self.position is None or position > self.position:
                self.position = position

    async def _read(
        self, limit: int, *, id_gt: str | None = None
    ) -> tuple[list[Group] | list[Activity], Counts | None]:
        """Items newest first, and the counts (notification feeds: from the same call)."""
        if self.flat:
            found = await self.storage.read_flat(self.group, self.user, limit=limit, id_gt=id_gt)
            bodies = await self.cache.get(found)
            now = datetime.now(UTC)
            return [bodies[i] for i in found if i in bodies and not bodies[i].expired(now)], None
        if self.counted:
            stored, counts, notes = await self.storage.read_inbox(
                self.group, self.user, limit=limit, id_gt=id_gt
            )
            return await hydrate(self.storage, stored, self.cache.get, notes), counts
        stored = await self.storage.read_groups(self.group, self.user, limit=limit, id_gt=id_gt)
        return await hydrate(self.storage, stored, self.cache.get), None


def _position(item: Group | Activity) -> str:
    return item.position if isinstance(item, Group) else item.id


async def _newest_first(cache: ActivityCache, ids: list[str]) -> list[Activity]:
    """The activities of ``ids`` still stored and not expired, newest first."""
    bodies = await cache.get(ids)
    now = datetime.now(UTC)
    live = [a for a in bodies.values() if not a.expired(now)]
    return sorted(live, key=lambda a: a.id, reverse=True)


async def _encode_added(cache: ActivityCache, feed: str, ids: list[str]) -> str | None:
    activities = await _newest_first(cache, ids)
    if not activities or activities[0].id != max(ids):
        return None  # the newest is gone (or expired) already: callers build their own frames
    return encode(Update(feed=feed, position=activities[0].id, activities=activities))
