"""uvicorn's HTTP protocol with a deadline for each request's head.

uvicorn times out an idle keep-alive connection after a response (``timeout_keep_alive``),
but a connection that never sends a request, or sends half of one and stops, stays open for
good: 19,900 such connections were held open in a test (slowloris). Here every request must
deliver its complete head (request line and headers) within ``header_timeout`` seconds of
the connection opening, or of the request's first byte; past it the server answers 408 and
closes. Bodies are bounded by size (``max_body_bytes``), heads by this deadline, idle
keep-alive connections by uvicorn, and all connections together by ``limit_concurrency``.

Checked against uvicorn 0.54 (``HttpToolsProtocol``: ``connection_made``,
``on_message_begin``, ``on_headers_complete``, ``connection_lost``, ``transport``,
``loop``); tests/realtime/test_connection_limits.py drives each.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_BODY = b'{"error":{"code":"timeout","message":"request head not received in time","field":null}}'
_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_BODY), _BODY)
)


class GuardedHttpProtocol(HttpToolsProtocol):
    """See the module docstring."""

    header_timeout: float = 10.0

    @classmethod
    def configured(cls, *, header_timeout: float) -> type[GuardedHttpProtocol]:
        """A subclass with this deadline (uvicorn instantiates the class it is given)."""
        return type(cls.__name__, (cls,), {"header_timeout": header_timeout})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _expired(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.write(_TIMEOUT)
            self.transport.close()
