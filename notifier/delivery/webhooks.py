"""Webhooks: what an escalated group looks like on the wire, and the POST that carries it.

The body is JSON (``WebhookEvent``), frozen when the delivery is decided: every attempt sends
the same bytes, signed afresh (notifier.delivery.signing). One ``httpx.AsyncClient`` per
process keeps connections to receivers alive between deliveries; redirects are not followed
(a receiver that moved is told to update its URL by a failing delivery, not silently
followed to wherever a redirect points).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from urllib.parse import urlsplit

import httpx
import msgspec

from notifier.delivery.egress import CheckedTransport, is_private
from notifier.delivery.settings import Rule, WebhookSettings
from notifier.delivery.signing import headers
from notifier.errors import InvalidInput
from notifier.feeds import Group

#: Longest endpoint URL accepted.
MAX_URL = 2_000
_USER_AGENT = "notifier-webhooks/1"


class RuleOut(msgspec.Struct, frozen=True, kw_only=True):
    """The rule that escalated the group."""

    category: str | None
    after_s: float
    until: str


class WebhookEvent(msgspec.Struct, frozen=True, kw_only=True):
    """The body of a webhook delivery."""

    type: str
    """``notification.unseen`` or ``notification.unread``: what the user has not done."""
    delivery_id: str
    created_at: datetime
    user: str
    feed: str
    summary: str
    """"ana and 3 others liked your photo" (English; the group has what other languages need)."""
    group: Group
    rule: RuleOut


def event_body(
    *, delivery_id: str, created_at: datetime, user: str, feed: str, group: Group,
    summary: str, rule: Rule,
) -> bytes:  # fmt: skip
    """The JSON body of a delivery of ``group``."""
    event = WebhookEvent(
        type=f"notification.un{rule.until}",
        delivery_id=delivery_id,
        created_at=created_at,
        user=user,
        feed=feed,
        summary=summary,
        group=group,
        rule=RuleOut(category=group.category, after_s=rule.after_s, until=rule.until),
    )
    return msgspec.json.encode(event)


def check_url(url: object, *, allow_private: bool) -> str:
    """An endpoint URL, or InvalidInput on ``url``: http(s), a host, no credentials, and
    (unless ``allow_private``) no loopback, private, link-local or reserved address, so the
    API cannot be used to make the server call into its own network. Names are checked as
    written here; what they resolve to is checked when connecting (notifier.delivery.egress)."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        raise InvalidInput("url", f"must be an http(s) URL of at most {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidInput("url", "is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("url", "must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("url", "must not carry credentials (the signature authenticates)")
    if port == 0:
        raise InvalidInput("url", "port 0 is not a port")
    if not allow_private and is_private(parts.hostname):
        raise InvalidInput(
            "url", "points at a private or loopback address (delivery.webhook.allow_private)"
        )
    return url


class WebhookFailed(Exception):
    """A POST that did not end in a 2xx answer. ``permanent``: retrying cannot help (410
    Gone: the receiver says the endpoint is no more)."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class WebhookSender:
    """POSTs signed deliveries, on one connection pool for the process."""

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._loop = asyncio.get_running_loop()
            limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
            self._client = httpx.AsyncClient(
                transport=CheckedTransport(
                    limits=limits, allow_private=self.settings.allow_private
                ),
                timeout=httpx.Timeout(self.settings.timeout_s),
                follow_redirects=False,
                headers={"user-agent": _USER_AGENT, "content-type": "application/json"},
            )
        return self._client

    async def post(self, url: str, secret: str, delivery_id: str, body: bytes) -> int:
        """POST ``body`` signed now; the status on 2xx, WebhookFailed otherwise."""
        signed = headers(secret, delivery_id, int(time.time()), body)
        try:
            response = await self._http().post(url, content=body, headers=signed)
        except httpx.TimeoutException:
            raise WebhookFailed(f"no answer within {self.settings.timeout_s:g}s") from None
        except httpx.HTTPError as exc:
            raise WebhookFailed(f"{type(exc).__name__}: {exc}"[:300]) from None
        if 200 <= response.status_code < 300:
            return response.status_code
        raise WebhookFailed(f"HTTP {response.status_code}", permanent=response.status_code == 410)

    async def close(self) -> None:
        """Close the connection pool, on the loop that made it: in-process workers (memory
        storage) send from their own loop, not the one that closes the manager."""
        client, loop = self._client, self._loop
        self._client = self._loop = None
        if client is None or loop is None or loop.is_closed():
            return
        if loop is asyncio.get_running_loop():
            await client.aclose()
        elif loop.is_running():
            done = asyncio.run_coroutine_threadsafe(client.aclose(), loop)
            await asyncio.wrap_future(done)
