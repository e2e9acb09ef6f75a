"""Limits of the websocket endpoint: every one explicit, configurable, and documented in
docs/realtime.md (``NOTIFIER_WS_*`` variables or ``ws_*`` keys of the ``[server]`` table)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from notifier.realtime.uvicorn_ws import LeanWebSocketProtocol

#: Seconds a stopping process waits past ``close_timeout`` before uvicorn cancels what is
#: still running (and logs it as an error).
SHUTDOWN_MARGIN = 5.0


@dataclass(frozen=True)
class RealtimeSettings:
    """What one websocket connection may do and how long it may take."""

    max_message_bytes: int = 8192
    """Largest inbound message; bigger ones close the connection with 1009."""
    send_queue: int = 256
    """Changes waiting for one client's sender; past it they collapse into one resync from
    storage (nothing is lost, and a client's waiting work stays bounded)."""
    send_buffer: int = 64 * 1024
    """Bytes written for one client that it has not read yet, before sending to it pauses."""
    slow_timeout: float = 10.0
    """A client whose unread bytes stay over ``send_buffer`` this long is closed (4429)."""
    close_timeout: float = 5.0
    """Seconds a closing handshake may take; then the connection is dropped (TCP abort)."""
    outage_grace: float = 30.0
    """Seconds a connection keeps retrying storage through an outage before it is closed
    with 1013 (its client resumes later)."""
    max_per_user: int = 20
    """Connections of one user at once, across every web process that shares the realtime
    Redis; more are closed (4409). notifier/realtime/connection_cap.py says how."""
    slot_ttl: float = 60.0
    """Seconds a connection's place in that count outlives its process if the process dies
    without closing it (each process refreshes its own every ``slot_ttl / 3`` seconds)."""
    ping_interval: float = 20.0
    """Protocol-level pings (and the time allowed for each pong), seconds; 0 turns them off."""
    idle_timeout: float = 75.0
    """A connection that sends nothing (not even a ``ping``) for this long is closed (4408)."""
    auth_timeout: float = 10.0
    """Time allowed between connecting and authenticating (4401 after it)."""
    resume_limit: int = 200
    """Most items replayed in one frame; a bigger gap gets ``refetch``. At least 100 (the
    largest first page)."""
    compression: bool = False
    """permessage-deflate. Off: frames are small JSON, and it costs ~3x memory per idle
    connection (about 46 KB instead of 13 KiB measured here)."""
    restart_window: float = 10.0
    """When the process stops (SIGTERM: a deploy), each connection is closed with 1012 and
    told to come back after a delay drawn uniformly in [0, restart_window) seconds, so the
    clients of a restarted process do not all reconnect in the same second (0: at once)."""


def uvicorn_options(settings: RealtimeSettings) -> dict[str, Any]:
    """The uvicorn options ``notifier serve`` runs with (and the benchmarks' baselines too):
    the websockets library's sans-I/O implementation (cheaper per frame than the legacy one,
    which uvicorn deprecates), made lean per connection and dropping slow consumers
    (notifier/realtime/uvicorn_ws.py), with the protocol limits above."""
    return {
        "server_header": False,
        "ws": LeanWebSocketProtocol.configured(
            send_buffer=settings.send_buffer,
            slow_timeout=settings.slow_timeout,
            close_timeout=settings.close_timeout,
            restart_window=settings.restart_window,
        ),
        "ws_max_size": settings.max_message_bytes,
        "ws_ping_interval": settings.ping_interval or None,
        "ws_ping_timeout": settings.ping_interval or None,
        "ws_per_message_deflate": settings.compression,
        # A backstop only: on SIGTERM every websocket gets its close frame at once and is
        # aborted if the client has not answered within close_timeout, so the connections
        # are gone by then; this bounds whatever else (an HTTP request, a storage read)
        # would hold the exit back.
        "timeout_graceful_shutdown": settings.close_timeout + SHUTDOWN_MARGIN,
    }
