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

uvicorn passes this class as ``ws`` (``uvicorn_options``); if uvicorn's sans-I/O protocol is
not importable, the stock one is used and the extension is simply absent.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State

#: The scope extension's key: ``scope["extensions"][SEND_PREPARED](frame_bytes) -> bool``.
SEND_PREPARED = "notifier.send_prepared"


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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _Inbox()  # type: ignore[assignment]
        self.writable = _Writable()  # type: ignore[assignment]

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
        handshaking = not self.handshake_complete
        await super().send(message)
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
