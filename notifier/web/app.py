"""``create_app``: the Starlette application, composed from small pieces."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from notifier.checks import backend_findings, log_findings
from notifier.errors import NotifierError
from notifier.web.admin import admin_routes
from notifier.web.api import server_endpoints
from notifier.web.auth import ApiKeys
from notifier.web.client_api import client_endpoints
from notifier.web.delivery_api import delivery_endpoints
from notifier.web.errors import (
    OutageResponses,
    handle_http_exception,
    handle_notifier_error,
    handle_unexpected,
)
from notifier.web.metrics_endpoint import metrics_route
from notifier.web.observe import Observe
from notifier.web.openapi import build_openapi
from notifier.web.reporter import WebReporter
from notifier.web.routing import Call, Endpoint, Guards, build_routes, json_response
from notifier.web.schemas import Health
from notifier.web.services import Services
from notifier.web.static import static_mount
from notifier.web.unsubscribe import unsubscribe_routes

REALTIME_PATH = "/v1/realtime"
"""The websocket endpoint (docs/realtime.md); not in the OpenAPI document, which has no
websockets."""


class _App(Starlette):
    """Starlette, with the realtime endpoint taken before the middleware stack.

    A websocket connection holds its ASGI call for as long as it is open, and every layer it
    passes through (error and CORS middleware, exception wrappers, router, route) stays on
    its stack: 5 KiB per idle connection, of ~30. None of them does anything for this
    endpoint (CORS has no say over websockets, the endpoint checks Origin and answers every
    failure with a close code itself), so ``/v1/realtime`` is dispatched here, directly.
    """

    def __init__(self, realtime: Callable[[WebSocket], Awaitable[None]], **options: Any) -> None:
        super().__init__(**options)
        self._realtime = realtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            root, path = scope.get("root_path", ""), scope["path"]
            if (path[len(root) :] if path.startswith(root) else path) == REALTIME_PATH:
                scope["app"] = self
                await self._realtime(WebSocket(scope, receive, send))
                return
        await super().__call__(scope, receive, send)


def endpoints(services: Services) -> list[Endpoint]:
    """Every HTTP endpoint of the API (health and schema routes aside)."""
    return server_endpoints(services) + delivery_endpoints(services) + client_endpoints(services)


def create_app(services: Services, *, extra_routes: Sequence[BaseRoute] = ()) -> Starlette:
    """The ASGI app for ``services``: API routes, health, OpenAPI, CORS and JSON errors,
    and the widget's files at ``/static``.

    ``extra_routes`` are mounted beside the API without being part of it (not in the
    OpenAPI document): ``notifier demo`` adds its page there, so ``serve`` never has them.
    """
    settings = services.settings
    guards = Guards(
        api_keys=ApiKeys(settings.api_keys),
        tokens=services.tokens,
        key_limiter=services.limits.keys,
        user_limiter=services.limits.users,
        auth_failures=services.limits.auth_failures,
        max_body_bytes=settings.max_body_bytes,
        max_extra_depth=services.notifier.config.limits.max_extra_depth,
    )
    declared = endpoints(services)
    from importlib.metadata import version

    async def healthz(call: Call) -> Health:
        return Health("ok")

    async def readyz(call: Call) -> Response:
        checks: dict[str, str] = {}
        probes = {"storage": services.notifier.storage.ping, "broker": services.broker_ping}
        for name, probe in probes.items():
            if probe is None:
                continue
            try:
                await probe()
                checks[name] = "ok"
            except Exception as exc:  # any failure means "not ready"; report it, don't raise
                checks[name] = f"unavailable: {type(exc).__name__}: {exc}"
        ok = all(v == "ok" for v in checks.values())
        return json_response(Health("ok" if ok else "unavailable", checks), 200 if ok else 503)

    declared += [
        Endpoint("GET", "/healthz", healthz, "Liveness", auth="none", response=Health,
                 tags=("health",)),
        Endpoint("GET", "/readyz", readyz, "Readiness: storage and broker reachable (503 if "
                 "not)", auth="none", response=Health, tags=("health",)),
    ]  # fmt: skip
    schema = json_response(build_openapi(declared, version("notifier")))

    async def openapi(request: Request) -> Response:
        return schema

    routes: list[BaseRoute] = list(build_routes(declared, guards))
    routes.append(Route("/openapi.json", openapi, methods=["GET"]))
    scrape = metrics_route(services)
    if scrape is not None:
        routes.append(scrape)
    reporter = WebReporter(services)
    routes.extend(admin_routes(services, reporter))
    routes.extend(unsubscribe_routes(services))
    routes.extend(extra_routes)
    static = static_mount()
    if static is not None:
        routes.append(static)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # What the backends must be to keep acknowledged data (eviction, persistence): said
        # once, at start, as warnings; `notifier check` tells more.
        log_findings(await backend_findings(services.notifier.config))
        reporter.start()
        yield
        await reporter.close()
        await services.realtime.hub.close()
        await services.limits.close()
        await services.fanout.close()
        await services.bus.close()
        await services.notifier.close()

    middleware = [
        Middleware(Observe, access_log=settings.access_log),
        Middleware(
            CORSMiddleware,
            allow_origins=list(settings.allowed_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        ),
        Middleware(OutageResponses),
    ]
    app = _App(
        services.realtime.endpoint,
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={
            NotifierError: handle_notifier_error,
            HTTPException: handle_http_exception,
            Exception: handle_unexpected,
        },
    )
    app.state.services = services
    return app
