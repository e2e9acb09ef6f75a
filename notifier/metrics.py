"""Prometheus metrics of one notifier process (web or worker), in one registry.

The metric objects are module globals, as prometheus-client intends: code anywhere in the
process counts into them without being handed an object. Each process has its own numbers
(Prometheus scrapes every web process at ``/metrics`` and every worker at its metrics
listen address, and sums them); nothing here crosses processes.

What the push path does per frame stays a plain integer on the realtime server
(``RealtimeServer.frames_sent`` and friends), read only when scraped: a prometheus-client
counter takes a lock on every increment, which a fanout to thousands of sockets would pay
thousands of times. The rest (per request, per job, per pool wait) costs a microsecond or two
against work that costs a hundred times more.

docs/operations.md lists every family with what to alert on.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)
"""This process's metrics (not prometheus-client's global default registry: a library
importing notifier must not find its metrics mixed into its own)."""

#: Seconds: from a cache hit (~100 µs) to a request stuck behind a busy backend (seconds).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Seconds: fanout lag runs from milliseconds (a few followers) to minutes (a backlog).
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
               300.0)  # fmt: skip

# -- web process -------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "notifier_http_requests",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "notifier_http_request_duration_seconds",
    "Time from a request's arrival in the app to its response's last byte, by route.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
ACTIVITIES_ACCEPTED = Counter(
    "notifier_activities_accepted",
    "Activities stored and handed to fanout (single and batch POSTs).",
    registry=REGISTRY,
)
WS_REFUSED = Counter(
    "notifier_ws_handshakes_refused",
    "Websocket handshakes refused with an HTTP status before accept (origin, subprotocol).",
    ["status"],
    registry=REGISTRY,
)
BACKEND_ERRORS = Counter(
    "notifier_backend_errors",
    "Storage or broker calls that failed: 'outage' (unreachable), 'busy' (no connection "
    "free in time), by the component that saw it (http, realtime, fanout).",
    ["component", "kind"],
    registry=REGISTRY,
)
POOL_WAIT = Histogram(
    "notifier_storage_pool_wait_seconds",
    "Waits for a free Redis connection (only calls that found the pool exhausted).",
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
POOL_TIMEOUTS = Counter(
    "notifier_storage_pool_timeouts",
    "Waits for a free Redis connection that gave up after pool_timeout (answered 503 busy).",
    registry=REGISTRY,
)

# -- worker process ----------------------------------------------------------------------------
FANOUT_JOBS = Counter(
    "notifier_fanout_jobs",
    "Fanout jobs processed, by kind (fanout, chunk), priority (high, low) and outcome "
    "(ok, failed: retried later or dead-lettered).",
    ["kind", "priority", "outcome"],
    registry=REGISTRY,
)
FANOUT_JOB_DURATION = Histogram(
    "notifier_fanout_job_duration_seconds",
    "Time a worker spent on one fanout job.",
    ["kind", "priority"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
FANOUT_WRITES = Counter(
    "notifier_fanout_feed_writes",
    "Follower feeds written by fanout jobs (one per follower and feed group).",
    registry=REGISTRY,
)
FANOUT_LAG = Histogram(
    "notifier_fanout_lag_seconds",
    "Time from an activity's POST being accepted to the end of each fanout job that wrote "
    "its followers' feeds; an activity's own lag is the largest of its jobs'.",
    ["priority"],
    buckets=LAG_BUCKETS,
    registry=REGISTRY,
)
FANOUT_RETRIES = Counter(
    "notifier_fanout_retries",
    "Failed fanout jobs sent back for another attempt (dramatiq's retries).",
    registry=REGISTRY,
)
FANOUT_DEAD_LETTERS = Counter(
    "notifier_fanout_dead_lettered",
    "Fanout jobs that exhausted their retries (or could not be decoded) and were "
    "dead-lettered; `notifier deadletters` lists and requeues them.",
    registry=REGISTRY,
)
DELIVERY_DECISIONS = Counter(
    "notifier_delivery_decisions",
    "Deliveries decided (claimed) by escalation rules, by channel.",
    ["channel"],
    registry=REGISTRY,
)
DELIVERY_ATTEMPTS = Counter(
    "notifier_delivery_attempts",
    "Delivery attempts, by channel and outcome (delivered, retry, dead).",
    ["channel", "outcome"],
    registry=REGISTRY,
)


def count_backend_error(component: str, exc: BaseException) -> None:
    """Count ``exc`` (an outage or a busy pool, seen by ``component``) in BACKEND_ERRORS."""
    from notifier.errors import Busy

    BACKEND_ERRORS.labels(component, "busy" if isinstance(exc, Busy) else "outage").inc()


class Union(Collector):
    """Several registries scraped as one (this process's, and a scrape's own collectors)."""

    def __init__(self, *registries: CollectorRegistry) -> None:
        self.registries = registries

    def collect(self) -> Iterator[Metric]:
        for registry in self.registries:
            yield from registry.collect()
