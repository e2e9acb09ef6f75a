"""One websocket connection: authenticate, subscribe to feeds, push what changes.

Two tasks per connection, at most. The reader takes client messages (with the idle timeout and
the size limit); the pump owns every send: it takes work from a bounded queue (bus events,
subscriptions, pongs) in order, reads storage, and sends one frame at a time. The pump is a
task that exists only while work waits; a fanout's frame that is encoded already and meets an
idle connection with a socket that is not backed up is written at once, with no task at all.

The hub only ever hands work over without waiting, so a slow client stalls nobody but itself:
its waiting changes collapse into one resync when they pass ``send_queue``, and a client that
leaves its unread bytes over ``send_buffer`` for ``slow_timeout`` is closed with 4429 by the
websocket protocol (notifier/realtime/uvicorn_ws.py); it resumes later from its position.
A storage outage is waited out (retries with backoff, then one resync) for ``outage_grace``
before the connection is closed with 1013.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect

from notifier import metrics
from notifier.errors import Busy, is_transient
from notifier.feedgroups import FeedGroup
from notifier.realtime.bus import UserEvent
from notifier.realtime.connection_cap import Slot
from notifier.realtime.protocol import (
    Auth,
    ClientMessage,
    CloseCode,
    FeedInfo,
    Ping,
    Pong,
    ServerFrame,
    Subscribe,
    Unsubscribe,
    Welcome,
    Window,
    encode,
    parse,
)
from notifier.realtime.sync import FeedView, Prepared
from notifier.realtime.uvicorn_ws import SEND_PREPARED, SERVICE_RESTART
from notifier.web.auth import Unauthorized, UserClaims

if TYPE_CHECKING:
    from notifier.realtime.server import RealtimeServer

log = logging.getLogger(__name__)

#: Frames each connection remembers for the operator page's inspector.
RECENT_FRAMES = 5
#: Retry delays through a storage outage, seconds: doubling, with full jitter (thousands of
#: connections resyncing after Redis comes back must not all ask at the same instant).
_OUTAGE_BACKOFF = (0.1, 2.0)


class Closed(Exception):
    """The connection is to be closed with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason[:120]  # a close reason must fit in 123 bytes


@dataclass(frozen=True)
class _Subscription:
    view: FeedView
    request: Subscribe


class _Resync:
    """Marker: re-read every subscribed feed."""


_RESYNC = _Resync()

#: What the pump works through, in order: an event, a resync, a new subscription, a frame
#: (a pong, or a fanout's frame encoded already).
Work = UserEvent | _Resync | _Subscription | Pong | Prepared


class Connection:
    """See the module docstring; ``run`` returns when the connection is over.

    Idle connections are the common case (thousands per process), so one costs as little as
    possible: the reader is ``run``'s own task, and the pump task exists only while there is
    work queued (it ends when the queue is empty and starts again with the next item).
    """

    __slots__ = ("_direct", "_gone", "_pump", "_reader", "claims", "closed", "opened_at",
                 "queue", "recent", "server", "settings", "views", "ws")  # fmt: skip

    def __init__(self, websocket: WebSocket, server: RealtimeServer) -> None:
        self.ws = websocket
        self.server = server
        self.settings = server.settings
        self.claims: UserClaims | None = None
        self.views: dict[str, FeedView] = {}
        self.queue: deque[Work] | None = None
        """Work waiting for the pump; None while there is none (most connections, most of
        the time: an empty deque alone is 0.6 KiB)."""
        self.closed: Closed | None = None
        self.opened_at = time.time()
        self.recent: tuple[tuple[float, str], ...] = ()
        """The last frames sent (time, start of the text), newest first: the operator
        page's per-user inspector shows them (notifier/web/admin.py)."""
        self._pump: asyncio.Task[None] | None = None
        """The task sending what is queued, while there is any."""
        self._gone = False
        """Nothing more is queued or sent: the connection is ending (``run`` is past its
        reader), or a send found it closed (the reader then gets the close code from the
        protocol and ends it)."""
        self._reader: asyncio.Task[object] | None = None
        """``run``'s task while it reads: cancelled to end the connection from elsewhere."""
        self._direct: Callable[[bytes], bool] | None = websocket.scope.get("extensions", {}).get(
            SEND_PREPARED
        )
        """The server's way to write a prepared frame as is (notifier/realtime/uvicorn_ws.py)."""

    # -- Listener (called by the hub, must not block) --------------------------------------
    def deliver(self, event: UserEvent) -> None:
        if event.feed in self.views:
            self._enqueue(event)

    def resync(self) -> None:
        self._enqueue(_RESYNC)

    def _enqueue(self, work: Work) -> None:
        if self.closed is not None or self._gone:
            return
        if self.queue is None and self._pump is None:
            # Idle: a fanout's frame, encoded already, goes to a socket that is not backed
            # up right here, with no task (the common case of a fanout to many followers).
            ready = self._ready(work)
            if ready is not None:
                if self._direct is not None and self._direct(ready.wire):
                    self.server.frames_sent += 1
                    self._sent(ready.text)
                    return
                work = ready
        if self.queue is None:
            self.queue = deque()
        elif len(self.queue) >= self.settings.send_queue:
            self._collapse()
            if self.closed is not None:
                return
            if isinstance(work, UserEvent | _Resync | Prepared):
                return  # the resync that ends the queue covers it
        self.queue.append(work)
        if self._pump is None:
            self._pump = asyncio.get_running_loop().create_task(self._run_pump())

    def _collapse(self) -> None:
        """Too much waiting: one resync (a storage read) replaces every waiting change. What
        the client asked for itself (subscriptions, pongs) stays; a client that piles up more
        of those than ``send_queue`` without reading is closed."""
        assert self.queue is not None
        kept = [w for w in self.queue if isinstance(w, _Subscription | Pong)]
        if len(kept) >= self.settings.send_queue:
            self.close(
                CloseCode.TOO_SLOW,
                f"too slow: more than {self.settings.send_queue} requests unanswered",
            )
            return
        self.queue.clear()
        self.queue.extend(kept)
        self.queue.append(_RESYNC)

    def close(self, code: int, reason: str) -> None:
        """End the connection (idempotent; the first reason wins)."""
        if self.closed is not None:
            return
        self.closed = Closed(code, reason)
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()

    # -- lifecycle -------------------------------------------------------------------------
    async def run(self, token: str | None) -> None:
        """Serve the connection (already accepted) until either side ends it."""
        subscribed = False
        slot: Slot | None = None  # a local, not a slot of the object: idle connections are many
        try:
            claims = await self._authenticate(token)
            self.claims = claims
            slot = await self.server.admit(claims.user)
            if self.server.on_connect is not None:
                await self.server.on_connect(claims.user)
            await self.server.hub.subscribe(claims.user, self)
            subscribed = True
            await self.ws.send_text(
                encode(
                    Welcome(
                        user=claims.user,
                        expires=claims.expires,
                        idle_timeout=self.settings.idle_timeout,
                        resume_limit=self.settings.resume_limit,
                        max_message_bytes=self.settings.max_message_bytes,
                        feeds={
                            name: _info(group)
                            for name, group in self.server.feeds.items()
                            if claims.allows(name)
                        },
                    )
                )
            )
            await self._read_until_closed()
        except Closed as exc:
            self.close(exc.code, exc.reason)
        except WebSocketDisconnect as exc:
            # The client left, or the protocol closed it (a slow client: 4429; the process
            # stopping: 1012).
            server_side = exc.code >= 4000 or exc.code == SERVICE_RESTART
            self.close(exc.code if server_side else 1000, exc.reason)
        finally:
            self._reader = None
            # Nothing is sent from here on. The flag, not the cancellation, is what stops the
            # pump: on Python 3.11, asyncio.wait_for (which redis-py awaits inside a command)
            # returns its result and drops a cancellation that arrives once the result is
            # in, so a cancelled pump could go on to send after the close below.
            self._gone = True
            if self._pump is not None:
                self._pump.cancel()
            try:
                if slot is not None:  # first: the user's next connection may be waiting for it
                    await self.server.release(slot)
            finally:
                if subscribed and self.claims is not None:
                    await self.server.hub.unsubscribe(self.claims.user, self)
        closed = self.closed or Closed(1000, "")
        if closed.code != 1000 or closed.reason:
            user = self.claims.user if self.claims is not None else "-"
            # A restart closes every connection of the process: one line each is noise.
            level = logging.DEBUG if closed.code == SERVICE_RESTART else logging.INFO
            log.log(level, "websocket closed user=%s code=%d reason=%s", user, closed.code,
                    closed.reason)  # fmt: skip
        with contextlib.suppress(Exception):
            # Never waits for a client that does not read: the protocol writes the close
            # frame behind the backlog and aborts the socket if no answer comes in time.
            await asyncio.wait_for(
                self.ws.close(closed.code, closed.reason), self.settings.close_timeout
            )

    async def _read_until_closed(self) -> None:
        """The reader, on ``run``'s own task; ``close`` from elsewhere cancels it."""
        task = asyncio.current_task()
        assert task is not None
        if self.closed is not None:
            return
        self._reader = task
        try:
            await self._read()
        except asyncio.CancelledError:
            if self.closed is None:
                raise  # cancelled from outside (server shutdown): not ours to swallow
            task.uncancel()

    async def _authenticate(self, token: str | None) -> UserClaims:
        if token is None:
            try:
                async with asyncio.timeout(self.settings.auth_timeout):
                    message = await self._receive()
            except TimeoutError:
                raise Closed(
                    CloseCode.UNAUTHORIZED,
                    f"no auth message within {self.settings.auth_timeout:g}s",
                ) from None
            if not isinstance(message, Auth):
                raise Closed(CloseCode.UNAUTHORIZED, "the first message must be auth")
            token = message.token
        try:
            return self.server.tokens.verify(token)
        except Unauthorized as exc:
            raise Closed(CloseCode.UNAUTHORIZED, exc.message) from None

    # -- reader ----------------------------------------------------------------------------
    async def _read(self) -> None:
        """Messages until the connection ends: at the idle timeout, or when the token
        expires (one deadline serves both, so an idle connection holds one timer)."""
        assert self.claims is not None
        loop = asyncio.get_running_loop()
        expires_at = loop.time() + max(0.0, self.claims.expires - time.time())
        while True:
            idle_at = loop.time() + self.settings.idle_timeout
            try:
                # asyncio.timeout, not wait_for: no extra task per idle connection.
                async with asyncio.timeout_at(min(idle_at, expires_at)):
                    message = await self._receive()
            except TimeoutError:
                if expires_at <= idle_at:
                    raise Closed(
                        CloseCode.UNAUTHORIZED,
                        "token expired: reconnect with a fresh token and resume",
                    ) from None
                raise Closed(
                    CloseCode.TIMEOUT, f"idle for {self.settings.idle_timeout:g}s (send ping)"
                ) from None
            self._handle(message)
            if self.closed is not None:
                return  # closed while handling it (a client that asks and never reads)

    async def _receive(self) -> ClientMessage:
        raw = await self.ws.receive()
        if raw["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(raw.get("code", 1000), raw.get("reason"))
        text = raw.get("text")
        if text is None:
            raise Closed(CloseCode.BAD_MESSAGE, "binary frames are not part of the protocol")
        if len(text) > self.settings.max_message_bytes or (
            len(text.encode()) > self.settings.max_message_bytes
        ):
            raise Closed(CloseCode.TOO_BIG, f"message over {self.settings.max_message_bytes} bytes")
        try:
            return parse(text)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise Closed(CloseCode.BAD_MESSAGE, f"bad message: {exc}") from None

    def _handle(self, message: ClientMessage) -> None:
        assert self.claims is not None
        if isinstance(message, Ping):
            self._enqueue(Pong())
        elif isinstance(message, Subscribe):
            view = self._open_view(message.feed)
            self.views[message.feed] = view
            self._enqueue(_Subscription(view, message))
        elif isinstance(message, Window):
            if message.feed not in self.views:
                raise Closed(CloseCode.BAD_MESSAGE, f"not subscribed to {message.feed!r}")
            self.views[message.feed].widen(message.oldest)
        elif isinstance(message, Unsubscribe):
            self.views.pop(message.feed, None)
        else:
            raise Closed(CloseCode.BAD_MESSAGE, "already authenticated")

    def _open_view(self, feed: str) -> FeedView:
        assert self.claims is not None
        groups = self.server.feeds
        if feed not in groups:
            raise Closed(CloseCode.NOT_FOUND, f"unknown feed group {feed!r}")
        if not self.claims.allows(feed):
            raise Closed(CloseCode.FORBIDDEN, f"this token does not cover the {feed!r} feeds")
        return FeedView(
            self.server.storage,
            self.server.cache,
            self.server.frames,
            groups[feed],
            self.claims.user,
            self.settings.resume_limit,
        )

    # -- pump ------------------------------------------------------------------------------
    async def _run_pump(self) -> None:
        """Send what is queued, in order, until the queue is empty (and end the connection,
        with a reason, when sending fails)."""
        try:
            while self.queue and not self._gone:
                work = self.queue.popleft()
                for frame in await self._frames(work):
                    if self._gone:
                        return
                    await self._send(frame)
        except asyncio.CancelledError:
            raise
        except Closed as exc:
            self.close(exc.code, exc.reason)
        except WebSocketDisconnect:
            # Gone (or closed by the protocol: a slow client). The reader gets the close
            # code from the protocol and ends the connection; what waits here is moot, and
            # nothing may start another send (starlette refuses any after a disconnect).
            self._gone = True
            self.queue = None
        except Exception as exc:
            log.error("websocket pump failed user=%s", self._user(), exc_info=exc)
            self.close(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            # No await between the last look at the queue and this: nothing can slip in.
            self._pump = None
            if not self.queue:
                self.queue = None

    async def _send(self, frame: ServerFrame | Prepared) -> None:
        if isinstance(frame, Prepared):
            if self._direct is not None and self._direct(frame.wire):
                self.server.frames_sent += 1
                self._sent(frame.text)
                return
            text = frame.text
        else:
            text = encode(frame)
        await self.ws.send_text(text)
        self.server.frames_sent += 1
        self._sent(text)

    def _sent(self, text: str) -> None:
        """Remember a sent frame (the last ``RECENT_FRAMES``, their first 300 characters)."""
        self.recent = ((time.time(), text[:300]), *self.recent[: RECENT_FRAMES - 1])

    def _ready(self, work: Work) -> Prepared | None:
        """The frame for ``work`` when it is encoded already (a fanout's): no await at all."""
        if not isinstance(work, UserEvent):
            return None
        view = self.views.get(work.feed)
        return None if view is None else view.ready(work)

    async def _frames(self, work: Work) -> list[ServerFrame | Prepared]:
        """The frames ``work`` calls for. Through a storage outage: retried with backoff
        (an event's change is then re-read with everything else, as a resync) until
        ``outage_grace`` has passed, then the connection closes with 1013."""
        if isinstance(work, Pong | Prepared):
            return [work]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.outage_grace
        delay = _OUTAGE_BACKOFF[0]
        while True:
            try:
                return await self._read_frames(work)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                metrics.count_backend_error("realtime", exc)
                if loop.time() + delay > deadline:
                    state = "busy" if isinstance(exc, Busy) else "unavailable"
                    reason = f"storage {state} ({type(exc).__name__}): resume later"
                    raise Closed(CloseCode.TRY_AGAIN_LATER, reason) from None
                log.info("websocket user=%s waits out a storage outage: %r", self._user(), exc)
            await asyncio.sleep(delay * random.random())
            delay = min(delay * 2, _OUTAGE_BACKOFF[1])
            if isinstance(work, UserEvent):
                work = _RESYNC

    async def _read_frames(self, work: UserEvent | _Resync | _Subscription) -> list[
            ServerFrame | Prepared]:  # fmt: skip
        if isinstance(work, _Subscription):
            return [await work.view.subscribe(work.request)]
        if isinstance(work, _Resync):
            return [await view.resync() for view in list(self.views.values())]
        view = self.views.get(work.feed)
        frame = None if view is None else await view.on_event(work)
        return [] if frame is None else [frame]

    def _user(self) -> str:
        return self.claims.user if self.claims is not None else "-"


def _info(group: FeedGroup) -> FeedInfo:
    return FeedInfo(kind=group.kind.value, max_length=group.max_length)
