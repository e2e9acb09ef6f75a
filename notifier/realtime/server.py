"""The websocket endpoint of a web process, and the state its connections share.

Checks that happen before ``accept()`` answer with an HTTP status (a browser sees a failed
handshake): a foreign ``Origin`` gets 403. Starlette's CORS middleware does not cover
websockets, and browsers send no preflight for them, so without this check a page on any site
could open a socket to notifier from a user's browser (cross-site websocket hijacking).
Everything after ``accept()`` ends with a close code and reason (notifier/realtime/protocol.py,
docs/realtime.md).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

from notifier import metrics
from notifier.bodies import ActivityCache
from notifier.feedgroups import FeedGroup, FeedKind
from notifier.realtime.bus import WireEvent
from notifier.realtime.connection import Closed, Connection
from notifier.realtime.connection_cap import ConnectionCap, LocalCap, Slot
from notifier.realtime.hub import Hub
from notifier.realtime.protocol import SUBPROTOCOL, TOKEN_PROTOCOL_PREFIX, CloseCode
from notifier.realtime.settings import RealtimeSettings
from notifier.realtime.sync import FrameCache
from notifier.storage.base import Storage
from notifier.web.auth import UserTokens

log = logging.getLogger(__name__)


class RealtimeServer:
    """Per-process realtime state: the hub, the body cache, connection counts per user."""

    def __init__(
        self,
        *,
        hub: Hub,
        storage: Storage,
        feeds: Mapping[str, FeedGroup],
        tokens: UserTokens,
        settings: RealtimeSettings,
        allowed_origins: tuple[str, ...],
        bodies: ActivityCache | None = None,
        on_connect: Callable[[str], Awaitable[None]] | None = None,
        cap: ConnectionCap | None = None,
    ) -> None:
        self.hub = hub
        self.storage = storage
        self.feeds = feeds
        self.tokens = tokens
        self.settings = settings
        self.allowed_origins = frozenset(allowed_origins)
        self.cache = bodies or ActivityCache(storage)
        self.frames = FrameCache()
        self.on_connect = on_connect
        """Told the user of every authenticated connection (fanout priorities)."""
        self.cap = cap or LocalCap(settings.max_per_user)
        """Admits a user's connections up to ``max_per_user`` (across processes if shared)."""
        self.connections: dict[str, int] = {}
        """Open, authenticated connections in this process, by user."""
        # Plain integers, read when metrics are scraped (notifier/metrics.py says why).
        self.frames_sent = 0
        self.opened = 0
        """Connections accepted since start."""
        self.closed_by_code: dict[int, int] = {}
        """Connections ended since start, by the close code they ended with."""
        self.live: set[Connection] = set()
        """Every accepted connection not yet ended (the operator page's inspector)."""

    async def admit(self, user: str) -> Slot:
        """Count a new connection of ``user``, or refuse it past ``max_per_user`` (Closed
        with 4409)."""
        slot = await self.cap.admit(user)
        if slot is None:
            raise Closed(
                CloseCode.TOO_MANY_CONNECTIONS,
                f"more than {self.cap.max_per_user} connections for this user",
            )
        self.connections[user] = self.connections.get(user, 0) + 1
        return slot

    async def release(self, slot: Slot) -> None:
        """Forget one connection of ``slot.user``."""
        count = self.connections.get(slot.user, 0) - 1
        if count > 0:
            self.connections[slot.user] = count
        else:
            self.connections.pop(slot.user, None)
        await self.cap.release(slot)

    async def prepare(self, event: WireEvent) -> None:
        """Before a fanout's event reaches this process's connections: encode its frame
        once, so that each idle connection writes it at once, with no task, instead of
        waiting for a storage read. Best effort: a failure here leaves
        each connection to read for itself, and report what it finds."""
        group = self.feeds.get(event.feed)
        if event.kind != "added" or group is None or group.kind is not FeedKind.FLAT:
            return
        try:
            await self.frames.added(self.cache, event.feed, event.activity_ids)
        except Exception as exc:
            log.warning("realtime: frame for feed=%s not prepared: %r", event.feed, exc)

    @property
    def connection_count(self) -> int:
        """Open, authenticated connections in this process."""
        return sum(self.connections.values())

    async def endpoint(self, websocket: WebSocket) -> None:
        """The ASGI websocket handler (``/v1/realtime``)."""
        origin = websocket.headers.get("origin")
        if origin is not None and origin not in self.allowed_origins:
            await _deny(websocket, 403, "forbidden", f"origin {origin!r} is not allowed", "Origin")
            return
        offered = list(websocket.scope.get("subprotocols") or [])
        tokens = [p[len(TOKEN_PROTOCOL_PREFIX) :] for p in offered if p.startswith(
            TOKEN_PROTOCOL_PREFIX)]  # fmt: skip
        if tokens and SUBPROTOCOL not in offered:
            await _deny(
                websocket, 400, "malformed",
                f"offer {SUBPROTOCOL!r} next to the bearer.<token> subprotocol",
                "Sec-WebSocket-Protocol",
            )  # fmt: skip
            return
        await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
        self.opened += 1
        connection = Connection(websocket, self)
        self.live.add(connection)
        try:
            await connection.run(tokens[0] if tokens else None)
        finally:
            self.live.discard(connection)
            code = connection.closed.code if connection.closed is not None else 1000
            self.closed_by_code[code] = self.closed_by_code.get(code, 0) + 1

    def connections_of(self, user: str) -> list[Connection]:
        """``user``'s open, authenticated connections in this process."""
        return [c for c in self.live if c.claims is not None and c.claims.user == user]

    @property
    def open_count(self) -> int:
        """Accepted connections not yet ended (authenticated or not)."""
        return self.opened - sum(self.closed_by_code.values())


async def _deny(websocket: WebSocket, status: int, code: str, message: str, field: str) -> None:
    """Refuse the handshake with an HTTP status: the client's mistake (uvicorn logs the
    status at INFO), never an error of the server's."""
    metrics.WS_REFUSED.labels(str(status)).inc()
    body = {"error": {"code": code, "message": message, "field": field}}
    await websocket.send_denial_response(JSONResponse(body, status_code=status))
