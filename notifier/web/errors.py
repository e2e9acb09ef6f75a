"""Every error the caller can cause becomes one status code and one JSON body, here only.

Body: ``{"error": {"code": ..., "message": ..., "field": ...}}``.
"""

from __future__ import annotations

import logging
import re

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from notifier import metrics
from notifier.errors import Busy, Conflict, InvalidInput, NotFound, NotifierError, is_outage
from notifier.web.auth import Forbidden, Unauthorized
from notifier.web.ratelimit import RateLimited

log = logging.getLogger(__name__)


class ErrorDetail(msgspec.Struct, frozen=True):
    """What went wrong, machine-readable ``code`` and the offending ``field`` when there is one."""

    code: str
    message: str
    field: str | None = None


class ErrorBody(msgspec.Struct, frozen=True):
    """The body of every 4xx/5xx response."""

    error: ErrorDetail


class MalformedBody(NotifierError):
    """The body is not JSON at all (HTTP 400)."""

    code = "malformed"


class BodyTooLarge(NotifierError):
    """The body is over the configured limit (HTTP 413)."""

    code = "too_large"


class UnsupportedMediaType(NotifierError):
    """The body is not declared as JSON (HTTP 415)."""

    code = "unsupported_media_type"


STATUS: dict[type[NotifierError], int] = {
    MalformedBody: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    BodyTooLarge: 413,
    UnsupportedMediaType: 415,
    InvalidInput: 422,
    RateLimited: 429,
    Busy: 503,
}

_encoder = msgspec.json.Encoder()
_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")


def error_response(status: int, code: str, message: str, field: str | None = None) -> Response:
    """A JSON error response."""
    body = _encoder.encode(ErrorBody(ErrorDetail(code, message, field)))
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return Response(body, status, headers=headers, media_type="application/json")


def from_notifier_error(exc: NotifierError) -> Response:
    """The response for one of notifier's own errors."""
    status = next((s for t, s in STATUS.items() if isinstance(exc, t)), 400)
    response = error_response(status, exc.code, exc.message, exc.field)
    if isinstance(exc, RateLimited):
        response.headers["Retry-After"] = str(exc.retry_after)
    elif isinstance(exc, Busy):
        response.headers["Retry-After"] = "1"
    return response


def validation_error(exc: msgspec.ValidationError, prefix: str = "") -> InvalidInput:
    """msgspec's message ``Expected `int`, got `str` - at `$.limit``` → InvalidInput("limit")."""
    text = str(exc)
    match = _PATH.search(text)
    field = None
    if match:
        field = match.group("path").lstrip(".") or None
        text = text[: match.start()]
    elif text.startswith(("Object contains unknown field", "Object missing required field")):
        field = text.split("`")[1] if "`" in text else None
    if field and prefix:
        field = f"{prefix}.{field}"
    return InvalidInput(field or prefix or "body", text)


async def handle_notifier_error(request: Request, exc: Exception) -> Response:
    """Starlette exception handler for NotifierError."""
    assert isinstance(exc, NotifierError)
    if isinstance(exc, Busy):
        metrics.count_backend_error("http", exc)
        log.warning("busy method=%s path=%s: %s", request.method, request.url.path, exc.message)
    return from_notifier_error(exc)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 / 405 as JSON errors."""
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    response = error_response(exc.status_code, codes.get(exc.status_code, "http"), exc.detail)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    """A backend outage is 503 with ``Retry-After`` (nothing was lost: the caller retries);
    anything else is a bug: log it with context, answer 500 with a JSON body, no internals."""
    if is_outage(exc):
        metrics.count_backend_error("http", exc)
        log.warning("backend unavailable method=%s path=%s: %r", request.method,
                    request.url.path, exc)  # fmt: skip
        response = error_response(503, "unavailable", "storage or broker unreachable; retry")
        response.headers["Retry-After"] = "1"
        return response
    log.exception("unhandled error method=%s path=%s", request.method, request.url.path)
    return error_response(500, "internal", "internal server error")


class OutageResponses:
    """ASGI middleware: a backend outage raised by a request becomes its ``503`` right here.

    Starlette sends exceptions without a handler of their own class (an outage is any of
    several redis-py, cassandra-driver and OS errors, told apart by ``is_outage``) to its
    error middleware, which answers with the ``Exception`` handler and then re-raises: uvicorn
    logs each as "Exception in ASGI application", an ERROR with a traceback, for every request
    while Redis fails over or restarts. Innermost, so access logs and metrics still see the
    503. Anything that is not an outage, or comes after the response started, goes on up."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            if started or not is_outage(exc):
                raise
            response = await handle_unexpected(Request(scope, receive), exc)
            await response(scope, receive, send)
