"""uvicorn's sans-I/O websocket protocol, made lean per idle connection, with one extension.

Thousands of idle websockets per process are notifier's normal state, and most of what one
costs is the server's: uvicorn keeps the parsed handshake request and response for the whole
connection, and the handshake's headers in the scope (~4 KiB together), and an
``asyncio.Queue`` plus an ``asyncio.Event`` allocate five deques up front (~3.7 KiB). This
subclass drops the handshake once it is answered (so ``scope["headers"]`` is empty after
``websocket.accept``: read what you need before accepting, as notifier's endpoint does) and
uses a lazily allocated inbox and a flag for writability.

It also offers the ASGI extension ``notifier.send_prepared`` in the connection's scope: a
callable that writes an already serialized websocket frame straight to the transport, when
the connection is open, not backed up and not compressed (else it returns False and the
caller sends through ASGI as usual). A fanout sends the same frame to many connections; its
bytes are the same for all of them (server frames are not masked), so they are made once.

It also owns what only the transport can see: **slow consumers**. A client that stops reading
fills the transport's write buffer; past ``send_buffer`` bytes the transport pauses writing, and
if it stays paused for ``slow_timeout`` seconds the connection is closed with 4429. A close frame
is written behind the backlog at once (never waiting for it to drain), and the transport is
aborted if the closing handshake has not finished ``close_timeout`` seconds later: a peer that
never reads again cannot hold the connection, and its buffers, open. uvicorn's own close waits
for the buffer to drain before it writes the close frame, and then closes the transport with
``close()``, which waits for the buffer to drain again: with a peer that does not read, forever.

And **restarts**: when the process stops (SIGTERM), uvicorn closes its listening sockets and
calls ``shutdown()`` on every connection. uvicorn's own closes each websocket with a bare 1012
and ``transport.close()``, which waits for a backlog to drain (forever, for a client that does
not read), and every client of the process comes back in the same second. Here each one gets
``close_now(1012, "restart; retry in N ms")``, N drawn uniformly in [0, ``restart_window``)
seconds: its clients spread their reconnects over the window (docs/realtime.md, close codes),
and the process exits once they have answered, or ``close_timeout`` later.

uvicorn passes this class as ``ws`` (``uvicorn_options`` configures a subclass with the limits).
Checked against uvicorn 0.54 and websockets 17.4: it relies on the attributes of
``WebSocketsSansIOProtocol`` (``conn``, ``transport``, ``queue``, ``writable``,
``close_sent``, ``close_timer``, ``read_paused``, ``handshake_complete``, ``disconnected``,
``initial_response``), and on uvicorn's ``Server.shutdown`` calling ``shutdown()`` on each
connection; tests/realtime/test_uvicorn_ws.py drives each of them, and
tests/realtime/test_graceful_restart.py the restart, with 1,000 connections.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from typing import Any

from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State

#: The scope extension's key: ``scope["extensions"][SEND_PREPARED](frame_bytes) -> bool``.
SEND_PREPARED = "notifier.send_prepared"
#: The close code of a connection whose client does not read what it is sent.
TOO_SLOW = 4429
#: The close code of every connection of a process that stops (a deploy): "service restart".
SERVICE_RESTART = 1012


def restart_reason(window: float) -> str:
    """The reason of a restart's close: ``restart; retry in N ms``, N drawn uniformly in
    [0, ``window``) seconds, which the client waits before it reconnects (docs/realtime.md)."""
    return f"restart; retry in {int(random.random() * window * 1000)} ms"


def prepared_frame(text: str) -> bytes:
    """The bytes of an unmasked, uncompressed text frame carrying ``text``."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


class _Inbox:
    """What the protocol uses of ``asyncio.Queue`` (``put_nowait``, ``get``, ``empty``) for
    its single reader, allocating nothing until a message waits."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[Any] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        assert self._items is not None
        item = self._items.popleft()
        if not self._items:
            self._items = None
        return item

    def empty(self) -> bool:
        return not self._items


class _Writable:
    """What the protocol uses of ``asyncio.Event`` (``set``, ``clear``, ``is_set``,
    ``wait``), with no deque until a sender waits for a backed-up socket."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = True
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        await waiter
        return True


class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
    """See the module docstring."""

    send_buffer: int = 64 * 1024
    """Bytes the transport buffers for the client before writing pauses (its high-water mark)."""
    slow_timeout: float = 10.0
    """Seconds writing may stay paused before the client is closed with 4429 (0: never)."""
    closing_timeout: float = 5.0
    """Seconds the closing handshake may take before the transport is aborted."""
    restart_window: float = 10.0
    """Seconds over which the clients of a stopping process are told to come back."""

    @classmethod
    def configured(
        cls,
        *,
        send_buffer: int,
        slow_timeout: float,
        close_timeout: float,
        restart_window: float = 10.0,
    ) -> type[LeanWebSocketProtocol]:
        """A subclass with these limits (uvicorn instantiates the class it is given)."""
        limits = {
            "send_buffer": send_buffer,
            "slow_timeout": slow_timeout,
            "closing_timeout": close_timeout,
            "restart_window": restart_window,
        }
        return type(cls.__name__, (cls,), limits)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _Inbox()  # type: ignore[assignment]
        self.writable = _Writable()  # type: ignore[assignment]
        self.close_timeout = self.closing_timeout
        self._slow_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.transport.set_write_buffer_limits(high=self.send_buffer)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_slow_timer()
        super().connection_lost(exc)

    # -- slow consumers ----------------------------------------------------------------------
    def pause_writing(self) -> None:
        super().pause_writing()
        if self.slow_timeout > 0 and self._slow_timer is None and not self.close_sent:
            self._slow_timer = self.loop.call_later(self.slow_timeout, self._too_slow)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._stop_slow_timer()

    def _stop_slow_timer(self) -> None:
        if self._slow_timer is not None:
            self._slow_timer.cancel()
            self._slow_timer = None

    def _too_slow(self) -> None:
        self._slow_timer = None
        reason = (
            f"too slow: over {self.send_buffer} bytes unread for {self.slow_timeout:g}s; "
            "resume later"
        )
        self.close_now(TOO_SLOW, reason)

    def close_now(self, code: int, reason: str) -> None:
        """Start the closing handshake without waiting for the backlog to drain: the close
        frame goes behind it, the app is told (``websocket.disconnect``), and the transport is
        aborted unless the client answers within ``close_timeout``."""
        if self.close_sent or self.disconnected or self.transport.is_closing():
            return
        self.conn.send_close(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        if self.read_paused:  # the client's close reply must be read
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(self.close_timeout, self._abort)
        self.writable.set()  # a sender waiting for the backlog finds the connection closed

    def _abort(self) -> None:
        self.close_timer = None
        self.transport.abort()

    def shutdown(self) -> None:
        """The process is stopping: an open websocket is closed with 1012 and told when to
        come back (``restart_reason``), through ``close_now``, so a client that does not
        answer is aborted after ``close_timeout`` rather than waited for. A connection
        closing already is left to finish (its own timer aborts it); a handshake not
        answered yet is refused as uvicorn does (HTTP 500)."""
        self.stop_keepalive()
        if self.close_sent or self.disconnected:
            # uvicorn would cancel the close timer and close(): that waits for the backlog
            # of a client that does not read (the one being dropped as too slow), for good.
            return
        if not self.handshake_complete or self.initial_response is not None:
            super().shutdown()
            return
        self.close_now(SERVICE_RESTART, restart_reason(self.restart_window))

    def handle_parser_exception(self) -> None:
        """A client broke the protocol (a message over ``ws_max_size``, a bad frame): its
        close frame (1009, 1002…) goes out, then, unlike uvicorn, which closes the socket at
        once, the connection half-closes and reads on, discarding, until the client closes or
        ``close_timeout`` passes. Closing a socket with unread input makes the kernel send a
        reset, which can destroy the close frame before the client reads it: the client saw
        an abrupt drop (1006) instead of the documented code."""
        if self.close_sent:
            return  # failing already: what else arrives is discarded
        assert self.conn.close_sent is not None
        code, reason = self.conn.close_sent.code, self.conn.close_sent.reason
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(self.close_timeout, self._abort)

    def keepalive_timeout(self) -> None:
        """A client that does not answer a ping in time: closed as uvicorn does (1011), but
        aborted rather than left to drain a buffer it will never read."""
        self.pong_timer = None
        self.pending_ping_payload = None
        self.close_now(1011, "keepalive ping timeout")

    # -- handshake and sends -------------------------------------------------------------------
    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        # Copied into the scope already. The websockets library's parser keeps the request
        # object itself for the life of the connection, so its headers are emptied too.
        event.headers.clear()
        self.request = None  # type: ignore[assignment]
        scope: Any = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][SEND_PREPARED] = self.send_prepared

    async def send(self, message: Any) -> None:
        if self.handshake_complete and self.initial_response is None:
            if message["type"] == "websocket.close":
                # Not behind uvicorn's wait for a drained buffer: a client that does not
                # read would hold the close (and the connection) back for good.
                if self.disconnected or self.close_sent:
                    return
                self.close_now(message.get("code", 1000), message.get("reason") or "")
                return
            if message["type"] == "websocket.send":
                if not self.writable.is_set():
                    # Waited for here, not in uvicorn's send: a close that comes meanwhile
                    # (close_now: a slow client, a restart) must end this send as a
                    # disconnect, where uvicorn's would raise RuntimeError.
                    await self.writable.wait()
                if self.close_sent:
                    raise ClientDisconnected  # closed here: as if the client had left
        handshaking = not self.handshake_complete
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and self.close_sent:
            # A refused handshake, answered in full: uvicorn leaves handshake_complete unset
            # and, once the app returns, logs "ASGI callable returned without completing
            # handshake" as an ERROR for what is a client's mistake.
            self.handshake_complete = True
            return
        if handshaking and self.handshake_complete:
            # Answered: the handshake's request headers (read by the app before it accepts
            # or denies) and the response (written) are not needed again.
            self.response = None  # type: ignore[assignment]
            scope: Any = getattr(self, "scope", None)
            if scope is not None:
                scope["headers"].clear()

    def send_prepared(self, frame: bytes) -> bool:
        """Write ``frame`` (from ``prepared_frame``) now; False when it cannot be (closing,
        backed up, compressed): then send through ASGI instead."""
        if (
            not self.handshake_complete
            or self.close_sent
            or self.disconnected
            or not self.writable.is_set()
            or self.conn.state is not State.OPEN
            or self.conn.extensions
            or self.transport.is_closing()
        ):
            return False
        self.transport.write(frame)
        return True
