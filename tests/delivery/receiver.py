"""A local webhook receiver for tests: a real HTTP server (uvicorn, on the test's event loop)
that verifies every delivery's signature and records it.

``answers`` scripts what it says: a list of statuses used in order (then 200), or ``hold``
to keep a request open until released (to kill a worker while it waits for the answer).
A receiver remembers ids as the docs tell real receivers to: ``acknowledged`` holds each
``webhook-id`` it answered 2xx to, once per answer, so a test sees duplicates too.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from notifier.delivery.signing import BadSignature, verify


@dataclass
class Received:
    """One request as it arrived."""

    path: str
    headers: dict[str, str]
    body: bytes
    delivery_id: str | None
    """The verified ``webhook-id``; None when the signature did not verify."""
    status: int = 0
    """What it answered; 0 while unanswered, or when the sender was gone first."""

    def json(self) -> Any:
        return msgspec.json.decode(self.body)


@dataclass
class WebhookReceiver:
    """Records and verifies deliveries; ``secrets`` by path (one path per endpoint)."""

    secrets: dict[str, str] = field(default_factory=dict)
    answers: dict[str, list[int]] = field(default_factory=dict)
    hold: asyncio.Event | None = None
    """When set (not None and not yet set), every request waits for it before answering."""
    held: int = 0
    """Requests that waited for ``hold``."""
    delay: float = 0.0
    """Seconds every answer waits (a slower receiver: more attempts are in flight)."""
    received: list[Received] = field(default_factory=list)
    acknowledged: Counter[str] = field(default_factory=Counter)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def verified(self, path: str | None = None) -> list[Received]:
        return [r for r in self.received if r.delivery_id and (path is None or r.path == path)]

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        path = request.url.path
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            delivery_id: str | None = verify(self.secrets[path], headers, body, time.time())
        except (BadSignature, KeyError):
            delivery_id = None
        record = Received(path, headers, body, delivery_id)
        self.received.append(record)
        self.arrived.set()
        if delivery_id is None:
            record.status = 401
            return Response(status_code=401)
        if self.hold is not None and not self.hold.is_set():
            self.held += 1
            await self.hold.wait()
            if await request.is_disconnected():
                return Response(status_code=499)  # the sender is gone: nothing acknowledged
        if self.delay:
            await asyncio.sleep(self.delay)
        scripted = self.answers.get(path)
        record.status = scripted.pop(0) if scripted else 200
        if 200 <= record.status < 300:
            self.acknowledged[delivery_id] += 1
        return Response(status_code=record.status)

    async def start(self) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST"])])
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:  # noqa: ASYNC110 (uvicorn sets a flag, no event)
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self.hold is not None:
            self.hold.set()
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
