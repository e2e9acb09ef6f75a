"""``/metrics``: this web process's Prometheus metrics, behind a server API key by default.

Three sources, read at each scrape: the process-wide registry (HTTP, storage, fanout
counters: notifier/metrics.py), the realtime server's plain counters (connections, frames),
and the fanout queues as the broker holds them (depth, oldest age, dead letters). The
exposition is built off the event loop: reading the queues is a (synchronous) broker round
trip, and no scrape should hold up a push.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from notifier import metrics
from notifier.fanout.queues import QueueCollector
from notifier.realtime.server import RealtimeServer
from notifier.web.auth import ApiKeys, Unauthorized, UserTokens, bearer
from notifier.web.errors import error_response
from notifier.web.services import Services


class RealtimeCollector(Collector):
    """The realtime server's counters, and the process's bounded caches, as metric families."""

    def __init__(self, server: RealtimeServer, tokens: UserTokens) -> None:
        self.server = server
        self.tokens = tokens

    def collect(self) -> Iterator[Metric]:
        s = self.server
        open_ = GaugeMetricFamily(
            "notifier_ws_connections_open", "Websocket connections open in this process."
        )
        open_.add_metric([], s.open_count)
        yield open_
        users = GaugeMetricFamily(
            "notifier_ws_users_connected", "Users with at least one authenticated connection."
        )
        users.add_metric([], len(s.connections))
        yield users
        opened = CounterMetricFamily(
            "notifier_ws_connections_opened", "Websocket connections accepted."
        )
        opened.add_metric([], s.opened)
        yield opened
        closed = CounterMetricFamily(
            "notifier_ws_connections_closed",
            "Websocket connections ended, by close code (docs/realtime.md lists them).",
            labels=["code"],
        )
        for code, count in sorted(s.closed_by_code.items()):
            closed.add_metric([str(code)], count)
        yield closed
        slow = CounterMetricFamily(
            "notifier_ws_slow_consumers_dropped",
            "Connections closed with 4429 because their client did not read what it was sent.",
        )
        slow.add_metric([], s.closed_by_code.get(4429, 0))
        yield slow
        frames = CounterMetricFamily("notifier_ws_frames_sent", "Websocket frames pushed.")
        frames.add_metric([], s.frames_sent)
        yield frames
        caches = GaugeMetricFamily(
            "notifier_cache_entries",
            "Entries held by this process's bounded caches (activity bodies: 10,000; "
            "encoded frames: 256; verified user tokens: 10,000): memory that grows until "
            "they are full, then stays.",
            labels=["cache"],
        )
        caches.add_metric(["activities"], len(s.cache))
        caches.add_metric(["frames"], len(s.frames))
        caches.add_metric(["tokens"], self.tokens.cached)
        yield caches


def metrics_route(services: Services) -> Route | None:
    """The ``/metrics`` route for ``services``, or None when metrics are ``off``."""
    access = services.settings.metrics
    if access == "off":
        return None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.Union(metrics.REGISTRY))
    registry.register(RealtimeCollector(services.realtime, services.tokens))
    broker = getattr(services.fanout.dispatcher, "broker", None)
    settings = services.fanout.settings
    if broker is not None:
        queues = {"high": settings.high_queue, "low": settings.low_queue,
                  "deliveries": settings.delivery_queue}  # fmt: skip
        registry.register(QueueCollector(broker, queues))
    keys = ApiKeys(services.settings.api_keys)

    async def scrape(request: Request) -> Response:
        if access == "api_key":
            try:
                keys.check(bearer(request.headers.get("authorization")))
            except Unauthorized as exc:
                return error_response(401, "unauthorized", exc.message, "Authorization")
        body = await asyncio.to_thread(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return Route("/metrics", scrape, methods=["GET"])
