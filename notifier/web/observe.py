"""``Observe``: the ASGI middleware that gives each HTTP request an id, a log line and metrics.

The request id is the caller's ``X-Request-Id`` when it is a sane token (a proxy's id, so one
id runs through the proxy's and notifier's logs), else a fresh one; it is answered in the
response's ``X-Request-Id``, set for every log line written while the request runs, and
carried into the fanout jobs the request enqueues (notifier/context.py).

The access line replaces uvicorn's: uvicorn's prints the query string, where a careless
client's token would land in the log. This one prints the path, never the query string, with
the status, the time taken and the request id. ``NOTIFIER_ACCESS_LOG=off`` silences it.

Metrics are labelled with the route's template (``/v1/feeds/{group}/{user}``), never the raw
path, so users and ids cannot blow up the number of series; a path no route matched counts
as ``unmatched``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from notifier import context, metrics

access = logging.getLogger("notifier.access")

HEADER = b"x-request-id"


class Observe:
    """See the module docstring; websockets and lifespan pass through untouched."""

    def __init__(self, app: ASGIApp, *, access_log: bool = True) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = next((v for k, v in scope["headers"] if k == HEADER), None)
        rid = context.accept_request_id(offered.decode("latin-1") if offered else None)
        rid_token = context.request_id.set(rid)
        accepted_token = context.accepted_ms.set(int(time.time() * 1000))
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((HEADER, rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_of(scope)
            method = scope["method"]
            metrics.HTTP_REQUESTS.labels(route, method, str(status)).inc()
            metrics.HTTP_LATENCY.labels(route, method).observe(elapsed)
            if self.access_log:
                access.info("%s %s %d %.1fms", method, scope["path"], status, elapsed * 1000)
            context.request_id.reset(rid_token)
            context.accepted_ms.reset(accepted_token)


def _route_of(scope: Scope) -> str:
    """The matched route's path template (set on the scope by Starlette's router)."""
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"
