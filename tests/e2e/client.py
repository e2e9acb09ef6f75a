"""A websocket client that keeps what a widget keeps, by the protocol's rules only.

``FeedState`` is the rules, without I/O (docs/realtime.md, and the rules the driver's brief
states where the doc lags):

1. ``welcome`` carries ``feeds``: ``{group: {"kind", "max_length"}}``.
2. Per feed: items by id, ``position`` (largest of any frame's ``position``), ``oldest``
   (``""``: the client holds the whole feed; else the position of its window's oldest item).
3. ``sync``: drop held items whose position >= ``oldest`` (all when ``""``), insert the sync's
   items; client oldest := min(client oldest, sync oldest), ``""`` being the smallest.
4. ``update``: insert or replace by id, except items below a non-empty client ``oldest``.
5. After a sync or an update keep the ``max_length`` items with the highest positions.
6. ``removed``: drop the ids. ``counts``: set them. ``refetch``: clear, subscribe fresh.
7. Position: a group's ``position``, an activity's ``id``; compared as strings.
8. Resume: with a position, subscribe with ``position`` and ``oldest``; without one, fresh,
   and the answering sync replaces everything.
9. ``window``: after loading older items over HTTP, widen the window.
10. A close whose reason says ``retry in N ms`` (a restarting process's 1012): wait N ms,
    then reconnect once, to a process that is up, and resume (rule 8); if that attempt
    fails, the usual backoff.

``Tab`` is one browser tab: a connection that it drops and resumes when told to, on any web
process that is up, and that records every close code, every frame that breaks the protocol
and, after a close that named a delay, how long it was away.
Nothing here imports notifier.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import time
import traceback
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from tests.e2e.model import position

Json = dict[str, Any]
FRAME_TYPES = {"welcome", "sync", "update", "removed", "counts", "refetch", "pong"}
PING_EVERY = 20.0
RETRY_IN = re.compile(r"\bretry in (\d+) ms\b")
"""A close reason asking the client back later: a restart's 1012 says
``restart; retry in 3471 ms`` (docs/realtime.md, close codes)."""


def announced_delay(reason: str) -> float | None:
    """Seconds a close reason asks the client to wait before it reconnects (rule 10), or
    None when it names none."""
    match = RETRY_IN.search(reason)
    return None if match is None else int(match[1]) / 1000


def older(a: str | None, b: str) -> str:
    """The wider of two window bounds: ``""`` (everything) is the widest (rule 3)."""
    if a is None:
        return b
    if a == "" or b == "":
        return ""
    return min(a, b)


@dataclass
class FeedState:
    """One feed as a client holds it (rules 2-8)."""

    name: str
    limit: int
    max_length: int | None = None
    items: dict[str, Json] = field(default_factory=dict)
    position: str | None = None
    oldest: str | None = None
    counts: Json | None = None
    fresh: bool = True
    """The next sync answers a fresh subscription: it replaces everything (rule 8)."""
    history: deque[str] = field(default_factory=lambda: deque(maxlen=40))
    """The last frames applied, summarised (shown when the feed turns out wrong)."""

    def subscribe_message(self) -> Json:
        """Rule 8: resume from what is held, or subscribe fresh."""
        message: Json = {"type": "subscribe", "feed": self.name, "limit": self.limit}
        if self.position is not None and self.oldest is not None:
            message.update(position=self.position, oldest=self.oldest)
            self.fresh = False
        else:
            self.fresh = True
        return message

    def apply(self, frame: Json) -> None:
        kind = frame["type"]
        self.history.append(_describe(frame))
        if kind == "refetch":
            self.clear()
            if frame.get("counts") is not None:
                self.counts = frame["counts"]
            return
        if frame.get("counts") is not None:
            self.counts = frame["counts"]
        if frame.get("position"):
            self.position = max(self.position or "", frame["position"])
        items = frame.get("groups") or frame.get("activities") or []
        if kind == "sync":
            if self.fresh:
                self.items.clear()
                self.oldest = None
                self.fresh = False
            floor = frame["oldest"]
            self.items = {k: v for k, v in self.items.items() if floor and position(v) < floor}
            self.items.update((i["id"], i) for i in items)
            self.oldest = older(self.oldest, floor)
            self._trim()
        elif kind == "update":
            for item in items:
                if self.oldest and position(item) < self.oldest:
                    continue
                self.items[item["id"]] = item
            self._trim()
        elif kind == "removed":
            for activity_id in frame["activity_ids"]:
                self.items.pop(activity_id, None)

    def clear(self) -> None:
        self.items.clear()
        self.position = self.oldest = None
        self.fresh = True

    def _trim(self) -> None:
        if self.max_length is not None and len(self.items) > self.max_length:
            for item in self.newest()[self.max_length :]:
                del self.items[item["id"]]

    def newest(self) -> list[Json]:
        return sorted(self.items.values(), key=position, reverse=True)

    def widen(self, loaded: list[Json], next_cursor: str | None) -> str:
        """Rule 9: an older page loaded over HTTP (``next``: its ``next``); the window now
        ends at its last item (or holds everything when it was the last page). Returns the
        new ``oldest``, to send in a ``window`` message."""
        for item in loaded:
            self.items.setdefault(item["id"], item)
        self.oldest = position(loaded[-1]) if loaded and next_cursor is not None else ""
        self._trim()
        return self.oldest


def _describe(frame: Json) -> str:
    items = frame.get("groups") or frame.get("activities") or []
    parts = [frame["type"]]
    if "oldest" in frame:
        parts.append(f"oldest={frame['oldest'][-8:] or '∅'}")
    if frame.get("position"):
        parts.append(f"pos={frame['position'][-8:]}")
    if items:
        parts.append("items=" + ",".join(i["id"][-6:] for i in items))
    if frame.get("activity_ids"):
        parts.append("ids=" + ",".join(i[-6:] for i in frame["activity_ids"]))
    if frame.get("counts"):
        parts.append(f"counts={frame['counts']['unseen']}/{frame['counts']['unread']}")
    return f"{time.monotonic():.2f} " + " ".join(parts)


@dataclass
class Close:
    code: int
    reason: str
    mine: bool
    """Closed by the tab itself (a simulated drop), not by the server."""
    url: str = ""
    """The web process the tab was connected (or connecting) to."""
    at: float = field(default_factory=time.monotonic)


@dataclass
class Comeback:
    """A server close that named a delay (rule 10), and when the tab was back."""

    close: Close
    delay: float
    back_at: float | None = None
    """When the tab was connected again (welcomed, its feeds resumed); None: not yet."""
    back_url: str = ""

    @property
    def away(self) -> float | None:
        return None if self.back_at is None else self.back_at - self.close.at


class Tab:
    """One browser tab of ``user``: connects, subscribes, applies frames, drops and resumes."""

    def __init__(
        self,
        name: str,
        user: str,
        feeds: dict[str, int],
        urls: list[str],
        token: Callable[[], Awaitable[str]],
        rng: random.Random,
    ) -> None:
        self.name = name
        self.user = user
        self.urls = urls
        """The web processes that are up: the driver's list, which a deploy changes."""
        self.get_token = token
        self.token = ""
        self.rng = rng
        self.feeds = {f: FeedState(f, limit) for f, limit in feeds.items()}
        self.ws: ClientConnection | None = None
        self.url = ""
        self.connected = asyncio.Event()
        self.stopping = False
        self.dropping = False
        self.closes: deque[Close] = deque(maxlen=200)
        """The latest closes (a long soak drops thousands of times)."""
        self.drops = 0
        self.server_closed: list[Close] = []
        """Closes the server chose (kept whole: each is a finding or a note)."""
        self.violations: list[str] = []
        self.errors: list[str] = []
        """Exceptions of this client's own code (harness bugs)."""
        self.frames: Counter[str] = Counter()
        self.connections = 0
        self.last_frame = time.monotonic()
        self.welcome_feeds: dict[str, Json] | None = None
        self.comebacks: list[Comeback] = []
        """Every server close that named a delay (a restart's 1012), with the return."""

    # -- the connection loop -----------------------------------------------------------------
    async def run(self) -> None:
        backoff = 0.05
        while not self.stopping:
            self.url = self.rng.choice(self.urls)
            delay: float | None = None
            try:
                await self._session()
                backoff = 0.05
            except websockets.ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else 1006
                reason = exc.rcvd.reason if exc.rcvd else ""
                close = Close(code, reason, self.dropping or self.stopping, self.url)
                self._closed(close)
                if code == 4401 and not self.dropping:
                    self.token = ""  # expired: a fresh one, then resume
                delay = None if close.mine else announced_delay(reason)
                if delay is not None:
                    self.comebacks.append(Comeback(close, delay))
            except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
                self._closed(Close(-1, f"{type(exc).__name__}: {exc}", self.stopping, self.url))
            except Exception:  # a bug of this client: say so, and carry on
                self.errors.append(traceback.format_exc()[-1500:])
            finally:
                self.ws = None
                self.connected.clear()
            if self.stopping:
                return
            if self.dropping:
                self.dropping = False
                await asyncio.sleep(self.rng.uniform(0.05, 1.5))  # offline for a while
            elif delay is not None:
                await asyncio.sleep(delay)  # rule 10: then one attempt, else the backoff
            else:
                await asyncio.sleep(backoff * (1 + self.rng.random()))
                backoff = min(backoff * 2, 2.0)

    async def _session(self) -> None:
        if not self.token:
            self.token = await self.get_token()
        async with websockets.connect(self.url, open_timeout=10, close_timeout=3,
                                      max_size=None) as ws:  # fmt: skip
            self.ws = ws
            await ws.send(json.dumps({"type": "auth", "token": self.token}))
            welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if welcome.get("type") != "welcome":
                self._violation(f"first frame is not welcome: {str(welcome)[:200]}")
                return
            self._welcome(welcome)
            self.connections += 1
            for state in self.feeds.values():
                await ws.send(json.dumps(state.subscribe_message()))
            self.connected.set()
            if self.comebacks and self.comebacks[-1].back_at is None:
                self.comebacks[-1].back_at = time.monotonic()
                self.comebacks[-1].back_url = self.url
            pinger = asyncio.create_task(self._ping(ws))
            try:
                async for raw in ws:
                    await self._on_frame(ws, json.loads(raw))
            finally:
                pinger.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pinger
            # The iterator ends quietly on a normal close: record it like the others.
            raise ws.protocol.close_exc

    def _welcome(self, welcome: Json) -> None:
        feeds = welcome.get("feeds")
        if not isinstance(feeds, dict):
            self._violation("welcome has no 'feeds' (rule 1): trims cannot be retracted")
            return
        self.welcome_feeds = feeds
        for name, state in self.feeds.items():
            info = feeds.get(name)
            if not isinstance(info, dict) or not isinstance(info.get("max_length"), int):
                self._violation(f"welcome feeds lack {name!r} or its max_length: {feeds}")
                continue
            state.max_length = info["max_length"]

    async def _ping(self, ws: ClientConnection) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                await asyncio.sleep(PING_EVERY)
                await ws.send(json.dumps({"type": "ping"}))

    async def _on_frame(self, ws: ClientConnection, frame: Json) -> None:
        self.last_frame = time.monotonic()
        kind = frame.get("type")
        self.frames[str(kind)] += 1
        if kind not in FRAME_TYPES or kind == "welcome":
            self._violation(f"unexpected frame {str(frame)[:200]}")
            return
        if kind == "pong":
            return
        state = self.feeds.get(frame.get("feed", ""))
        if state is None:
            self._violation(f"frame for a feed not subscribed: {str(frame)[:200]}")
            return
        problem = _malformed(frame)
        if problem:
            self._violation(f"{state.name}: {problem}: {str(frame)[:300]}")
            return
        state.apply(frame)
        if kind == "refetch":
            await ws.send(json.dumps(state.subscribe_message()))

    def _violation(self, text: str) -> None:
        if len(self.violations) < 20 and text not in self.violations:
            self.violations.append(text)

    # -- what the driver does with a tab -----------------------------------------------------
    async def drop(self) -> None:
        """Go offline now: a clean close or a dead network (no close frame), at random."""
        ws = self.ws
        if ws is None or self.dropping:
            return
        self.dropping = True
        if self.rng.random() < 0.5:
            with contextlib.suppress(Exception):
                await ws.close()
        else:
            ws.transport.abort()

    async def stop(self) -> None:
        self.stopping = True
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()

    async def send(self, message: Json) -> bool:
        ws = self.ws
        if ws is None or not self.connected.is_set():
            return False
        try:
            await ws.send(json.dumps(message))
        except websockets.ConnectionClosed:
            return False
        return True

    def _closed(self, close: Close) -> None:
        self.closes.append(close)
        if close.mine:
            self.drops += 1
        elif len(self.server_closed) < 1000:
            self.server_closed.append(close)


def _malformed(frame: Json) -> str | None:
    """What a frame lacks that the protocol promises (None: nothing)."""
    kind = frame["type"]
    if kind == "sync" and not isinstance(frame.get("oldest"), str):
        return "sync without 'oldest'"
    if kind == "removed" and not isinstance(frame.get("activity_ids"), list):
        return "removed without 'activity_ids'"
    if kind == "counts" and not isinstance(frame.get("counts"), dict):
        return "counts without 'counts'"
    for item in frame.get("groups") or frame.get("activities") or []:
        if not isinstance(item, dict) or "id" not in item:
            return "an item without 'id'"
        if "groups" in frame and "position" not in item:
            return "a group without 'position'"
    return None
