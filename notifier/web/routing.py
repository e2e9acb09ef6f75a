"""Endpoints declared once: the same declaration builds the Starlette route (auth, rate limit,
body and query decoding) and its OpenAPI operation, so the schema cannot miss a route."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from notifier.errors import InvalidInput, NotifierError
from notifier.web.auth import (
    ApiKeys,
    Forbidden,
    Unauthorized,
    UserClaims,
    UserTokens,
    bearer,
    looks_like_token,
)
from notifier.web.errors import (
    BodyTooLarge,
    MalformedBody,
    UnsupportedMediaType,
    from_notifier_error,
    validation_error,
)
from notifier.web.nesting import check_nesting
from notifier.web.ratelimit import Limiter
from notifier.web.shared_limits import check_and_hit

Auth = Literal["api_key", "user", "none"]
_encoder = msgspec.json.Encoder()


@dataclass
class Call:
    """One request as a handler sees it: who, what was sent, and the path parameters."""

    request: Request
    path: dict[str, str]
    body: Any = None
    query: Any = None
    user: UserClaims | None = None
    api_key: str | None = None

    @property
    def claims(self) -> UserClaims:
        """The verified user token (only on ``auth="user"`` endpoints)."""
        assert self.user is not None
        return self.user


Handler = Callable[[Call], Awaitable[Any]]


@dataclass(frozen=True)
class Link:
    """An OpenAPI link: ``operation``'s parameters (and body) from runtime expressions such
    as ``$response.body#/id`` or ``$request.body#/actor``, or constants."""

    operation: str
    """The handler name of the linked operation (its ``operationId``)."""
    parameters: dict[str, str]
    body: dict[str, Any] | None = None


@dataclass(frozen=True)
class Endpoint:
    """One operation: method + path, who may call it, what it takes and returns."""

    method: str
    path: str
    handler: Handler
    summary: str
    auth: Auth = "api_key"
    body: type[Any] | None = None
    query: type[Any] | None = None
    response: Any = None
    status: int = 200
    errors: tuple[int, ...] = ()
    tags: tuple[str, ...] = field(default=())
    links: dict[str, Link] = field(default_factory=dict)
    """OpenAPI links from this operation's success response to operations that use what it
    returned (a client's next step; schemathesis's stateful tests walk them)."""

    @property
    def path_params(self) -> list[str]:
        """Names of the ``{param}`` parts of the path."""
        return re.findall(r"{(\w+)}", self.path)


@dataclass
class Guards:
    """What every request passes through before its handler: credentials and rate limits."""

    api_keys: ApiKeys
    tokens: UserTokens
    key_limiter: Limiter
    user_limiter: Limiter
    auth_failures: Limiter
    """Failed credentials per client address: past the budget, 429 before any check."""
    max_body_bytes: int
    max_extra_depth: int


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing more than ``limit`` bytes whatever Content-Length claims."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def decode_body(raw: bytes, kind: type[Any]) -> Any:
    """JSON → struct; not JSON is 400, JSON of the wrong shape is 422 naming the field."""
    if not raw.strip():
        raise MalformedBody("a JSON body is required", field="body")
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None
    except msgspec.DecodeError as exc:
        raise MalformedBody(f"body is not valid JSON: {exc}", field="body") from None


def decode_query(request: Request, kind: type[Any] | None) -> Any:
    """Query string → struct (strings converted to the declared types); unknown keys are 422."""
    params = dict(request.query_params)
    if len(params) != len(request.query_params.multi_items()):
        repeated = next(k for k in params if len(request.query_params.getlist(k)) > 1)
        raise InvalidInput(repeated, "given more than once")
    if kind is None:
        if params:
            raise validation_error(
                msgspec.ValidationError(f"Object contains unknown field `{next(iter(params))}`")
            )
        return None
    try:
        return msgspec.convert(params, kind, strict=False)
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None


def json_response(value: Any, status: int = 200) -> Response:
    """A msgspec-encoded JSON response."""
    return Response(_encoder.encode(value), status, media_type="application/json")


def build_routes(endpoints: Sequence[Endpoint], guards: Guards) -> list[Route]:
    """One Starlette route per path (so a 405 lists every method the path has in ``Allow``)."""
    by_path: dict[str, dict[str, Endpoint]] = {}
    for endpoint in endpoints:
        by_path.setdefault(endpoint.path, {})[endpoint.method] = endpoint
    routes = []
    for path, methods in by_path.items():
        runners = {method: _runner(e, guards) for method, e in methods.items()}

        async def dispatch(request: Request, runners: dict[str, Handler_] = runners) -> Response:
            return await runners[request.method](request)

        routes.append(Route(path, dispatch, methods=list(runners)))
    return routes


Handler_ = Callable[[Request], Awaitable[Response]]


def _runner(endpoint: Endpoint, guards: Guards) -> Handler_:
    """Guards, decoding and the handler of one endpoint, errors as JSON."""

    async def run(request: Request) -> Response:
        try:
            call = Call(request, dict(request.path_params))
            if endpoint.auth != "none":
                address = request.client.host if request.client else "-"
                credential = bearer(request.headers.get("authorization"))
                # The credential is checked first (no I/O), but an address past its budget
                # of failures gets 429 whether the credential was right or not.
                try:
                    if endpoint.auth == "api_key":
                        if looks_like_token(credential):
                            raise Forbidden("this endpoint needs an API key, not a user token")
                        call.api_key = guards.api_keys.check(credential)
                    else:
                        call.user = guards.tokens.verify(credential)
                except Unauthorized:
                    await guards.auth_failures.check(address)
                    await guards.auth_failures.spend(address)
                    raise
                except Forbidden:
                    await guards.auth_failures.check(address)
                    raise
                if call.api_key is not None:
                    await check_and_hit(
                        guards.auth_failures, address, guards.key_limiter, call.api_key
                    )
                elif call.user is not None:
                    await check_and_hit(
                        guards.auth_failures, address, guards.user_limiter, call.user.user
                    )
            call.query = decode_query(request, endpoint.query)
            if endpoint.body is not None:
                media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
                if media != "application/json" and not (
                    media.startswith("application/") and media.endswith("+json")
                ):
                    raise UnsupportedMediaType(
                        f"send the body as JSON with Content-Type: application/json "
                        f"(got {media or 'none'})",
                        field="Content-Type",
                    )
                raw = await read_body(request, guards.max_body_bytes)
                check_nesting(raw, guards.max_extra_depth)
                call.body = decode_body(raw, endpoint.body)
            result = await endpoint.handler(call)
        except NotifierError as exc:
            return from_notifier_error(exc)
        if isinstance(result, Response):
            return result
        return json_response(result, endpoint.status)

    return run
