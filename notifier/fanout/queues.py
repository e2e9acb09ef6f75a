"""What waits in the fanout queues: depth (ready and delayed), the oldest ready job's age,
and the dead letters, per queue; read from the broker when metrics are scraped.

Read straight from dramatiq's Redis layout (``<ns>:<queue>`` list of message ids, oldest
first; ``<ns>:<queue>.msgs`` hash of bodies; ``.DQ`` the delayed queue of retries waiting
their backoff; ``.XQ`` the dead letters): two pipelined round trips.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import dq_name, xq_name
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


@dataclass(frozen=True)
class QueueStats:
    """One queue, now."""

    queue: str
    ready: int
    """Jobs waiting for a worker."""
    delayed: int
    """Failed jobs waiting out their retry backoff."""
    oldest_age: float
    """Seconds since the oldest ready job was enqueued (0 when none waits)."""
    dead: int
    """Dead letters kept for `notifier deadletters`."""


def queue_stats(broker: dramatiq.Broker, queues: Mapping[str, str]) -> list[QueueStats]:
    """Stats of ``queues`` (label → queue name), synchronously (call it off the event loop)."""
    if isinstance(broker, RedisBroker):
        return _redis_stats(broker, queues)
    if isinstance(broker, StubBroker):
        return [
            QueueStats(
                queue=label,
                ready=broker.queues[name].qsize() if name in broker.queues else 0,
                delayed=broker.queues[dq_name(name)].qsize()
                if dq_name(name) in broker.queues
                else 0,
                oldest_age=0.0,
                dead=len(broker.dead_letters_by_queue.get(name, ())),
            )
            for label, name in queues.items()
        ]
    return []


def _redis_stats(broker: RedisBroker, queues: Mapping[str, str]) -> list[QueueStats]:
    ns = broker.namespace
    pipe = broker.client.pipeline(transaction=False)
    for name in queues.values():
        pipe.llen(f"{ns}:{name}")
        pipe.llen(f"{ns}:{dq_name(name)}")
        pipe.zcard(f"{ns}:{xq_name(name)}")
        pipe.lindex(f"{ns}:{name}", 0)
    replies = pipe.execute()
    rows = [replies[4 * n : 4 * n + 4] for n in range(len(queues))]
    # The oldest jobs' bodies (their enqueue time), all queues in one more round trip.
    pipe = broker.client.pipeline(transaction=False)
    for name, (_, _, _, oldest_id) in zip(queues.values(), rows, strict=True):
        pipe.hget(f"{ns}:{name}.msgs", oldest_id if oldest_id is not None else "")
    bodies = pipe.execute()
    now_ms = time.time() * 1000
    found = []
    for label, (ready, delayed, dead, _), body in zip(queues, rows, bodies, strict=True):
        age = 0.0
        if body is not None:
            stamp = json.loads(body).get("message_timestamp")
            if isinstance(stamp, int | float):
                age = max(0.0, (now_ms - stamp) / 1000)
        found.append(QueueStats(label, int(ready), int(delayed), age, int(dead)))
    return found


class QueueCollector(Collector):
    """The queue gauges, read from the broker at each scrape. A broker that cannot be read
    yields ``notifier_queue_up 0`` and no other queue series (the scrape still succeeds)."""

    def __init__(self, broker: dramatiq.Broker, queues: Mapping[str, str]) -> None:
        self.broker = broker
        self.queues = dict(queues)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("notifier_queue_up", "Whether the broker could be read (1/0).")
        try:
            stats = queue_stats(self.broker, self.queues)
        except Exception:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        depth = GaugeMetricFamily(
            "notifier_queue_depth",
            "Fanout jobs in a queue: ready (waiting for a worker) or delayed (waiting out a "
            "retry backoff).",
            labels=["queue", "state"],
        )
        age = GaugeMetricFamily(
            "notifier_queue_oldest_age_seconds",
            "Age of the oldest ready job in a queue (0 when empty): how far behind fanout is.",
            labels=["queue"],
        )
        dead = GaugeMetricFamily(
            "notifier_dead_letters", "Dead-lettered fanout jobs kept.", labels=["queue"]
        )
        for stat in stats:
            depth.add_metric([stat.queue, "ready"], stat.ready)
            depth.add_metric([stat.queue, "delayed"], stat.delayed)
            age.add_metric([stat.queue], stat.oldest_age)
            dead.add_metric([stat.queue], stat.dead)
        yield depth
        yield age
        yield dead
