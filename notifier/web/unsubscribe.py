"""``/v1/unsubscribe``: the one-click unsubscribe of email digests (RFC 8058) and its page.

A digest's ``List-Unsubscribe`` points here with a signed token (notifier.delivery.
unsubscribe), the only credential: no user token, no API key, no Origin check. Mail clients
POST ``List-Unsubscribe=One-Click`` to that URL from no page at all, so CORS does not apply
(a form POST is a simple request: the CORS middleware adds headers, it refuses nothing).

- ``GET`` shows what will happen and a button that POSTs; it changes nothing, because mail
  scanners and link previews follow links in mail.
- ``POST`` turns every email digest off for the token's user (``channels["email"]`` =
  ``{"*"}``, everything else kept) and says so; again, the same answer.

A missing, malformed, forged or expired token is a 400 page with the reason, and changes
nothing. A storage outage is a 503 page (nothing changed; the click can be repeated). The
token rides in the query string: access logs print paths only (notifier/web/observe.py),
and the page sends no Referer and is never cached or indexed.

The routes are pages, not JSON API: they are not in the OpenAPI document.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from urllib.parse import urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from notifier.delivery.unsubscribe import (
    UNSUBSCRIBE_PATH,
    InvalidUnsubscribeToken,
    read_unsubscribe_token,
    without_email,
)
from notifier.errors import is_transient
from notifier.preferences import Preferences
from notifier.web.services import Services
from notifier.web.static import TEMPLATES_DIR

log = logging.getLogger(__name__)

HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
}


def unsubscribe_routes(
    services: Services, templates: jinja2.Environment | None = None
) -> list[BaseRoute]:
    """``GET`` and ``POST /v1/unsubscribe`` (see the module docstring)."""
    settings = services.notifier.config.delivery
    storage = services.notifier.storage
    env = templates or jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True
    )

    def page(status: int, title: str, state: str, **context: str) -> Response:
        html = env.get_template("unsubscribe.html").render(title=title, state=state, **context)
        return HTMLResponse(html, status, headers=HEADERS)

    def refused(exc: InvalidUnsubscribeToken) -> Response:
        return page(400, "This link does not work", "refused", reason=exc.message)

    async def confirm(request: Request) -> Response:
        token = request.query_params.get("token")
        try:
            read_unsubscribe_token(token, settings, datetime.now(UTC))
        except InvalidUnsubscribeToken as exc:
            return refused(exc)
        action = f"{request.url.path}?{urlencode({'token': token})}"
        return page(200, "Unsubscribe from email digests?", "confirm", action=action)

    async def unsubscribe(request: Request) -> Response:
        # The body (List-Unsubscribe=One-Click) says nothing the URL does not: not read.
        try:
            user = read_unsubscribe_token(
                request.query_params.get("token"), settings, datetime.now(UTC)
            )
        except InvalidUnsubscribeToken as exc:
            return refused(exc)
        try:
            found = await storage.preferences([user])
            before = found.get(user, Preferences())
            after = without_email(before)
            if after != before:
                await storage.put_preferences(user, after)
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("unsubscribe failed, storage unavailable user=%s: %r", user, exc)
            reason = "Your request could not be saved just now. Please try again in a minute."
            return page(503, "Please try again", "unavailable", reason=reason)
        if after != before:
            log.info("email digests turned off by unsubscribe link user=%s", user)
        return page(200, "You are unsubscribed", "done")

    async def dispatch(request: Request) -> Response:
        return await (unsubscribe if request.method == "POST" else confirm)(request)

    # One route for both methods, so that a 405 lists them both in Allow.
    return [Route(UNSUBSCRIBE_PATH, dispatch, methods=["GET", "POST"])]
