"""A websocket client for the tests: the real ``websockets`` library plus the state a widget
keeps, built only from frames (the rules of docs/realtime.md), to compare with HTTP reads."""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

WAIT = 10.0
#: What a close reason says when the server wants the client back later (docs/realtime.md,
#: close codes): a restart's 1012 says ``restart; retry in 3471 ms``.
RETRY_IN = re.compile(r"\bretry in (\d+) ms\b")


def announced_delay(reason: str | None) -> float | None:
    """Seconds a close reason asks the client to wait before it reconnects, or None when it
    names no delay (then the client's own backoff applies)."""
    match = RETRY_IN.search(reason or "")
    return None if match is None else int(match[1]) / 1000


@dataclass
class FeedState:
    """What a client holds of one feed, by applying frames (docs/realtime.md, "Keeping a
    copy exact")."""

    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    position: str | None = None
    oldest: str | None = None
    counts: dict[str, int] | None = None
    refetch: bool = False
    max_length: int | None = None
    """From ``welcome.feeds``: the client keeps at most this many items."""

    def apply(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if "counts" in frame:
            self.counts = frame["counts"]
        items = frame.get("groups") or frame.get("activities") or []
        if kind == "sync":
            floor = frame["oldest"]
            self.items = {k: v for k, v in self.items.items() if _position(v) < floor}
            self.items.update({i["id"]: i for i in items})
            self.oldest = floor if self.oldest is None else min(self.oldest, floor)
            self._trim()
        elif kind == "update":
            floor = self.oldest or ""
            self.items.update({i["id"]: i for i in items if _position(i) >= floor})
            self._trim()
        elif kind == "removed":
            for i in frame["activity_ids"]:
                self.items.pop(i, None)
        elif kind == "refetch":
            self.items.clear()
            self.position = self.oldest = None
            self.refetch = True
            return
        if frame.get("position"):
            self.position = max(self.position or "", frame["position"])

    def _trim(self) -> None:
        if self.max_length is not None and len(self.items) > self.max_length:
            self.items = {i["id"]: i for i in self.newest(self.max_length)}

    def newest(self, n: int) -> list[dict[str, Any]]:
        return sorted(self.items.values(), key=_position, reverse=True)[:n]


def _position(item: dict[str, Any]) -> str:
    return str(item.get("position") or item["id"])


def summary(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What must agree between a client and an HTTP read, item by item."""
    return [
        (
            i["id"],
            i.get("activity_count"),
            i.get("actor_count"),
            i.get("is_seen"),
            i.get("is_read"),
            i.get("is_archived"),
            [a["id"] for a in i.get("activities", [])] if "activities" in i else None,
        )
        for i in items
    ]


class Client:
    """One connection (re-openable) and the feeds it follows."""

    def __init__(self, url: str, token: str, *, origin: str | None = None) -> None:
        self.url = url
        self.token = token
        self.origin = origin
        self.ws: ClientConnection | None = None
        self.feeds: dict[str, FeedState] = {}
        self.frames: list[dict[str, Any]] = []
        self.max_lengths: dict[str, int] = {}
        """Each feed's ``max_length``, from the last ``welcome``."""
        self.opened_at: float | None = None
        """``time.monotonic()`` when the last connection's handshake was answered."""

    async def connect(self, **kwargs: Any) -> dict[str, Any]:
        headers = {"Origin": self.origin} if self.origin else None
        self.ws = await websockets.connect(
            self.url, additional_headers=headers, open_timeout=WAIT, **kwargs
        )
        self.opened_at = time.monotonic()
        await self.send({"type": "auth", "token": self.token})
        welcome = await self.recv()
        assert welcome["type"] == "welcome", welcome
        self.max_lengths = {k: v["max_length"] for k, v in welcome.get("feeds", {}).items()}
        return welcome

    async def send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send(json.dumps(message))

    async def recv(self, within: float = WAIT) -> dict[str, Any]:
        assert self.ws is not None
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), within))
        self.frames.append(frame)
        if "feed" in frame and frame["feed"] in self.feeds:
            self.feeds[frame["feed"]].apply(frame)
        return frame

    async def subscribe(self, feed: str, limit: int = 25) -> dict[str, Any]:
        """Subscribe, resuming from what this client already holds of ``feed``."""
        state = self.feeds.setdefault(feed, FeedState())
        state.max_length = self.max_lengths.get(feed)
        message: dict[str, Any] = {"type": "subscribe", "feed": feed, "limit": limit}
        if state.position is None:
            state.items.clear()  # nothing to resume from: the answer replaces everything
            state.oldest = None
        else:
            message["position"] = state.position
            if state.oldest is not None:
                message["oldest"] = state.oldest
        await self.send(message)
        return await self.recv()

    async def wait_for(self, predicate: Any, within: float = WAIT) -> dict[str, Any]:
        """Receive frames until one satisfies ``predicate``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            frame = await self.recv(max(0.01, deadline - loop.time()))
            if predicate(frame):
                return frame

    async def quiet(self, seconds: float = 0.3) -> list[dict[str, Any]]:
        """Frames that arrive within ``seconds`` (to show that nothing arrives)."""
        got: list[dict[str, Any]] = []
        try:
            while True:
                got.append(await self.recv(seconds))
        except TimeoutError:
            return got

    async def closed(self, within: float = WAIT) -> tuple[int | None, str]:
        """Take frames (applying them) until the server closes the connection: its close
        code and reason (None and "" when it dropped without a close frame)."""
        assert self.ws is not None
        try:
            while True:
                await self.recv(within)
        except websockets.ConnectionClosed as exc:
            self.ws = None
            return (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd is not None else (None, "")

    async def come_back(self, reason: str | None, url: str | None = None) -> dict[str, Any]:
        """Reconnect as a client should after the server closed with ``reason``: wait the
        delay it announces (if any), connect (to ``url``, another web process, if given),
        and resume every feed held. The resumed feeds' frames, by feed."""
        delay = announced_delay(reason)
        if delay:
            await asyncio.sleep(delay)
        if url is not None:
            self.url = url
        await self.connect()
        return {feed: await self.subscribe(feed) for feed in list(self.feeds)}

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
            self.ws = None


def _everything(feed: str) -> dict[str, str]:
    """A websocket client holds a notification feed's archived groups too; the HTTP default
    (``inbox``) leaves them out, so the comparisons read ``status=all``."""
    return {"status": "all"} if feed == "notification" else {}


async def http_state(
    http: httpx.AsyncClient, feed: str, headers: dict[str, str], limit: int = 25
) -> tuple[list[dict[str, Any]], dict[str, int] | None]:
    """A fresh HTTP read of the first page: items and counts."""
    params = {"limit": limit, **_everything(feed)}
    response = await http.get(f"/v1/me/feeds/{feed}", params=params, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    return body.get("groups") or body.get("activities") or [], body.get("counts")


async def http_window(
    http: httpx.AsyncClient, feed: str, headers: dict[str, str], oldest: str | None
) -> tuple[list[dict[str, Any]], dict[str, int] | None]:
    """An HTTP read of a client's whole window: every item from the top down to ``oldest``
    ("" or None: the whole feed), paged with ``id_lt``, and the counts of the first page."""
    items: list[dict[str, Any]] = []
    counts: dict[str, int] | None = None
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 100, **_everything(feed)}
        if cursor is not None:
            params["id_lt"] = cursor
        response = await http.get(f"/v1/me/feeds/{feed}", params=params, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        if cursor is None:
            counts = body.get("counts")
        page = body.get("groups") or body.get("activities") or []
        items += [i for i in page if not oldest or _position(i) >= oldest]
        cursor = body.get("next")
        if cursor is None or (oldest and page and _position(page[-1]) < oldest):
            return items, counts
