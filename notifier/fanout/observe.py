"""``JobObserver``: the dramatiq middleware that carries a request's context through fanout
jobs and measures them.

On enqueue (in the web process, and in a worker enqueueing a job's chunks) it stamps the
message's options with the current request id and the time the request arrived
(notifier/context.py); a job enqueued outside any request is stamped with the time of its
first enqueue. Retries and continuations keep the original stamps, so lag is measured from
the POST, not from the last hop.

Around each job (in the worker) it sets the context again, so every log line of the job
carries the request id, and counts the job, its duration, its outcome, and its fanout lag.
It comes first in the broker's middleware list: dramatiq runs "after" hooks in reverse order,
so this one sees what Retries decided (another attempt, or a dead letter).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.registry import Collector

from notifier import board, context, metrics

log = logging.getLogger(__name__)

#: (when, lag seconds) of this process's last jobs, for the operator page.
RECENT_LAGS: deque[tuple[float, float]] = deque(maxlen=1024)
REQUEST_ID = "notifier_request_id"
ACCEPTED_MS = "notifier_accepted_ms"


class JobObserver(Middleware):
    """See the module docstring."""

    def __init__(self) -> None:
        self._started: dict[str, float] = {}

    def before_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int | None) -> None:
        options = message.options
        if REQUEST_ID not in options:
            rid = context.request_id.get()
            if rid is not None:
                options[REQUEST_ID] = rid
        if ACCEPTED_MS not in options:
            options[ACCEPTED_MS] = context.accepted_ms.get() or int(time.time() * 1000)

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        context.request_id.set(message.options.get(REQUEST_ID))
        context.accepted_ms.set(message.options.get(ACCEPTED_MS))
        self._started[message.message_id] = time.perf_counter()

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        started = self._started.pop(message.message_id, None)
        kind, priority = _labels(message)
        if started is not None:
            metrics.FANOUT_JOB_DURATION.labels(kind, priority).observe(
                time.perf_counter() - started
            )
        if exception is None:
            metrics.FANOUT_JOBS.labels(kind, priority, "ok").inc()
            accepted = message.options.get(ACCEPTED_MS)
            if isinstance(accepted, int):
                lag = max(0.0, time.time() - accepted / 1000)
                metrics.FANOUT_LAG.labels(priority).observe(lag)
                RECENT_LAGS.append((time.time(), lag))
            log.debug("fanout job done %s %s in %.1fms", kind, priority,
                      (time.perf_counter() - started) * 1000 if started else 0.0)  # fmt: skip
        else:
            metrics.FANOUT_JOBS.labels(kind, priority, "failed").inc()
            if not message.failed:
                metrics.FANOUT_RETRIES.inc()
        context.request_id.set(None)
        context.accepted_ms.set(None)

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self._started.pop(message.message_id, None)

    def after_nack(self, broker: dramatiq.Broker, message: Any) -> None:
        metrics.FANOUT_DEAD_LETTERS.inc()


def _labels(message: Any) -> tuple[str, str]:
    """(kind, priority) from the actor's name, ``notifier.<kind>.<priority>``."""
    parts = str(message.actor_name).split(".")
    return (parts[1], parts[2]) if len(parts) == 3 else (message.actor_name, "-")


class MetricsExporter(Middleware):
    """Serves a worker's metrics (its jobs, and the queues it sees) over HTTP on ``listen``
    (``host:port``), from boot to shutdown. With several workers on one host (``--processes``)
    each takes the first free port from ``port`` on: Prometheus scrapes the range."""

    #: Ports tried from the configured one before giving up.
    PORTS = 64

    def __init__(self, listen: str, queues: Collector) -> None:
        self.host, self.port = parse_listen(listen)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(metrics.Union(metrics.REGISTRY))
        self.registry.register(queues)
        self.server: Any = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        for port in range(self.port, self.port + self.PORTS):
            try:
                self.server, _ = start_http_server(port, self.host, self.registry)
            except OSError:
                continue
            log.info("worker metrics at http://%s:%d/metrics", self.host, port)
            return
        log.error("worker metrics not served: ports %d-%d of %s all taken", self.port,
                  self.port + self.PORTS - 1, self.host)  # fmt: skip

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9191`` for IPv6); ValueError names what is wrong."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{listen!r} is not host:port")
    return host.strip("[]"), int(port)


def recent_lag(window: float = 60.0) -> dict[str, float]:
    """The worst fanout lag of this process's jobs in the last ``window`` seconds, and how
    many jobs ended in it (the operator page's figure; Prometheus has the histogram)."""
    since = time.time() - window
    lags = [lag for when, lag in list(RECENT_LAGS) if when >= since]
    return {"lag_max_60s": max(lags, default=0.0), "jobs_60s": float(len(lags))}


class BoardReporter(Middleware):
    """Puts a worker on the operators' board (notifier/board.py) from boot to shutdown."""

    def __init__(self) -> None:
        self.reporter: board.SyncReporter | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        from dramatiq.brokers.redis import RedisBroker

        if isinstance(broker, RedisBroker):
            self.reporter = board.SyncReporter(broker.client, broker.namespace, _worker_snapshot)
            self.reporter.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self.reporter is not None:
            self.reporter.stop()
            self.reporter = None


def _worker_snapshot() -> dict[str, Any]:
    jobs: dict[str, float] = {}
    for family in metrics.FANOUT_JOBS.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                outcome = sample.labels["outcome"]
                jobs[outcome] = jobs.get(outcome, 0.0) + sample.value
    writes = sum(s.value for f in metrics.FANOUT_WRITES.collect() for s in f.samples
                 if s.name.endswith("_total"))  # fmt: skip
    return {
        "jobs_ok": int(jobs.get("ok", 0)),
        "jobs_failed": int(jobs.get("failed", 0)),
        "feed_writes": int(writes),
        **recent_lag(),
    }
