"""The receiver of the webhook benchmark: a bare ASGI app under uvicorn, in a process of its own.

Every ``POST`` (any path but the two below) is one delivery. When it carries Standard
Webhooks headers, the signature is checked as the specification tells a receiver to (its own
few lines here, not notifier's ``signing.verify``, so the bench also checks notifier's wire
format against the spec): HMAC-SHA256 of ``<id>.<timestamp>.<body>`` under the secret's key,
compared in constant time, the timestamp within five minutes. A bad signature is answered
401 and counted; a good one (or an unsigned request) 200, and its ``webhook-id`` counted.

- ``GET /_counts``: JSON ``{"answered", "distinct", "rejected", "unsigned",
  "last_new_at"}``; ``last_new_at`` is ``time.monotonic()`` when the newest distinct id was
  answered: CLOCK_MONOTONIC on Linux, one clock for every process of the machine, so the
  driver times a round to the exact answer rather than to its next poll.
- ``POST /_reset``: forget everything (between rounds).

Run as ``python -m notifier.bench.webhook_receiver PORT`` with the endpoint's secret
(``whsec_…``) in ``NOTIFIER_BENCH_WEBHOOK_SECRET``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SECRET_ENV = "NOTIFIER_BENCH_WEBHOOK_SECRET"
TOLERANCE_S = 300


def signed_id(key: bytes, headers: dict[bytes, bytes], body: bytes, now: float) -> str | None:
    """The ``webhook-id`` of a correctly signed, fresh request; None otherwise."""
    try:
        msg_id = headers[b"webhook-id"]
        stamp = headers[b"webhook-timestamp"]
        offered = headers[b"webhook-signature"].split()
        fresh = abs(now - int(stamp)) <= TOLERANCE_S
    except (KeyError, ValueError):
        return None
    mac = hmac.new(key, msg_id + b"." + stamp + b"." + body, hashlib.sha256).digest()
    expected = b"v1," + base64.b64encode(mac)
    matched = any(hmac.compare_digest(expected, candidate) for candidate in offered)
    return msg_id.decode() if fresh and matched else None


class Receiver:
    """The ASGI app: verifies, answers and counts (see the module docstring)."""

    def __init__(self, secret: str) -> None:
        self.key = base64.b64decode(secret.removeprefix("whsec_"))
        self.reset()

    def reset(self) -> None:
        self.ids: set[str] = set()
        self.answered = self.rejected = self.unsigned = 0
        self.last_new_at = 0.0

    def counts(self) -> dict[str, Any]:
        return {
            "answered": self.answered,
            "distinct": len(self.ids),
            "rejected": self.rejected,
            "unsigned": self.unsigned,
            "last_new_at": self.last_new_at,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await _body(receive)
        method, path = scope["method"], scope["path"]
        if method == "GET" and path == "/_counts":
            await _answer(send, 200, json.dumps(self.counts()).encode())
        elif method == "POST" and path == "/_reset":
            self.reset()
            await _answer(send, 204)
        elif method == "POST":
            await _answer(send, self._delivery(dict(scope["headers"]), body))
        else:
            await _answer(send, 405)

    def _delivery(self, headers: dict[bytes, bytes], body: bytes) -> int:
        if b"webhook-signature" not in headers:
            self.unsigned += 1
            self.answered += 1
            return 200
        msg_id = signed_id(self.key, headers, body, time.time())
        if msg_id is None:
            self.rejected += 1
            return 401
        self.answered += 1
        if msg_id not in self.ids:
            self.ids.add(msg_id)
            self.last_new_at = time.monotonic()
        return 200


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _answer(send: Send, status: int, body: bytes = b"") -> None:
    headers = [(b"content-type", b"application/json")] if body else []
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main(port: int) -> None:
    app = Receiver(os.environ[SECRET_ENV])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                lifespan="off", server_header=False)  # fmt: skip


if __name__ == "__main__":
    main(int(sys.argv[1]))
